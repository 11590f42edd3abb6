/**
 * The HELLO record (src/protocol/hello.ts): its resumption parameters
 * (resume grace, key share, session id), encoded and validated.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { ErrorCodes, ProtocolError } from '../../src/errors.js';
import { Capability, FrameType, GoAwayCode, HEADER_LENGTH, HelloKey } from '../../src/protocol/constants.js';
import { FrameDecoder, parseHello } from '../../src/protocol/decode.js';
import { u32, u8 } from '../../src/protocol/encode.js';
import { KEY_SHARE_LENGTH, SESSION_ID_LENGTH, bothSpeak, decodeHelloInfo, encodeHelloInfo, unmetRequirement, type HelloInfo } from '../../src/protocol/hello.js';

const BASE: HelloInfo = {
  role: 'client',
  initialWindow: 256 * 1024,
  maxFramePayload: 64 * 1024,
  maxStreams: 1024,
  heartbeatMs: 15_000,
  software: 'tcpipe-test',
  capabilities: [],
};

const SHARE = Buffer.from(Array.from({ length: 32 }, (_, i) => 0x40 + i));
const SESSION = Buffer.from(Array.from({ length: 16 }, (_, i) => 0xc0 + i));

/** The HELLO's parameters as the wire carries them (through the frame decoder). */
function paramsOf(hello: Buffer): Map<number, Buffer> {
  const decoder = new FrameDecoder({ maxDataPayload: 1 << 20, expectPreface: false });
  decoder.push(hello);
  const frame = decoder.next();
  assert.ok(frame !== null);
  assert.equal(frame.type, FrameType.HELLO);
  assert.equal(decoder.bufferedBytes, 0);
  return new Map(parseHello(frame.payload));
}

/** The parameters of BASE, plus or minus some. */
function baseParams(extra: ReadonlyArray<readonly [number, Buffer]> = []): Map<number, Buffer> {
  const params = new Map<number, Buffer>([
    [HelloKey.ROLE, u8(0)],
    [HelloKey.INITIAL_WINDOW, u32(BASE.initialWindow)],
    [HelloKey.MAX_FRAME, u32(BASE.maxFramePayload)],
    [HelloKey.MAX_STREAMS, u32(BASE.maxStreams)],
    [HelloKey.HEARTBEAT_MS, u32(BASE.heartbeatMs)],
    [HelloKey.SOFTWARE, Buffer.from(BASE.software)],
  ]);
  for (const [key, value] of extra) params.set(key, value);
  return params;
}

function assertHelloError(fn: () => unknown, message: RegExp): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof ProtocolError, `expected a ProtocolError, got ${String(err)}`);
    assert.equal(err.goAwayCode, GoAwayCode.PROTOCOL_ERROR);
    assert.equal(err.code, ErrorCodes.PROTOCOL);
    assert.match(err.message, message);
    return true;
  });
}

describe('HELLO resumption parameters: encoding', () => {
  test('the sizes are the protocol table', () => {
    assert.equal(KEY_SHARE_LENGTH, 32);
    assert.equal(SESSION_ID_LENGTH, 16);
  });

  test('without resumption no resume key is sent', () => {
    for (const info of [
      BASE,
      { ...BASE, resumeGraceMs: 0, keyShare: SHARE, sessionId: SESSION },
      { ...BASE, resumeGraceMs: 30_000, keyShare: null, sessionId: SESSION },
      { ...BASE, resumeGraceMs: 30_000 },
    ]) {
      const params = paramsOf(encodeHelloInfo(info));
      assert.deepEqual([...params.keys()], [1, 2, 3, 4, 5, 6]);
    }
  });

  test('a server with resumption: grace u32 (key 7) and key share (key 8), byte for byte', () => {
    const hello = encodeHelloInfo({ ...BASE, role: 'server', resumeGraceMs: 30_000, keyShare: SHARE });
    const params = paramsOf(hello);
    assert.deepEqual([...params.keys()], [1, 2, 3, 4, 5, 6, 7, 8]);
    assert.equal(params.get(HelloKey.ROLE)?.toString('hex'), '01');
    assert.equal(params.get(HelloKey.RESUME_GRACE_MS)?.toString('hex'), '00007530');
    assert.equal(params.get(HelloKey.KEY_SHARE)?.toString('hex'), SHARE.toString('hex'));
    // The TLVs at the end of the frame, written out: 0007 0004 00007530, 0008 0020 <share>.
    const tail = hello.subarray(hello.length - (8 + 4 + 32));
    assert.equal(tail.toString('hex'), `000700040000753000080020${SHARE.toString('hex')}`);
    assert.equal(hello.readUInt32BE(6), hello.length - HEADER_LENGTH);
  });

  test('a client asking to resume adds its session id (key 9, 16 bytes)', () => {
    const hello = encodeHelloInfo({ ...BASE, resumeGraceMs: 1, keyShare: SHARE, sessionId: SESSION });
    const params = paramsOf(hello);
    assert.deepEqual([...params.keys()], [1, 2, 3, 4, 5, 6, 7, 8, 9]);
    assert.equal(params.get(HelloKey.RESUME_GRACE_MS)?.toString('hex'), '00000001');
    assert.equal(hello.subarray(hello.length - 20).toString('hex'), `00090010${SESSION.toString('hex')}`);
  });

  test('encode then decode gives the same resumption parameters (client and server)', () => {
    for (const info of [
      { ...BASE, resumeGraceMs: 30_000, keyShare: SHARE, sessionId: SESSION },
      { ...BASE, resumeGraceMs: 0xffffffff, keyShare: SHARE, sessionId: null },
      { ...BASE, role: 'server' as const, resumeGraceMs: 5, keyShare: SHARE, sessionId: null },
    ]) {
      const decoded = decodeHelloInfo(paramsOf(encodeHelloInfo(info)));
      assert.deepEqual(decoded, { ...info, keyShare: SHARE, sessionId: info.sessionId });
    }
    const plain = decodeHelloInfo(paramsOf(encodeHelloInfo(BASE)));
    assert.deepEqual(plain, { ...BASE, resumeGraceMs: 0, keyShare: null, sessionId: null });
  });

  test('decoded key share and session id are copies, not views of the received bytes', () => {
    const params = baseParams([
      [HelloKey.RESUME_GRACE_MS, u32(1000)],
      [HelloKey.KEY_SHARE, Buffer.from(SHARE)],
      [HelloKey.SESSION_ID, Buffer.from(SESSION)],
    ]);
    const info = decodeHelloInfo(params);
    for (const key of [HelloKey.KEY_SHARE, HelloKey.SESSION_ID]) params.get(key)?.fill(0);
    assert.deepEqual(info.keyShare, SHARE);
    assert.deepEqual(info.sessionId, SESSION);
  });
});

describe('HELLO resumption parameters: validation', () => {
  test('resume without a key share, or with one of the wrong size, is an error', () => {
    assertHelloError(() => decodeHelloInfo(baseParams([[HelloKey.RESUME_GRACE_MS, u32(1000)]])), /^HELLO: resume without a 32-byte key share$/);
    for (const length of [0, 1, 31, 33, 64]) {
      assertHelloError(
        () => decodeHelloInfo(baseParams([[HelloKey.RESUME_GRACE_MS, u32(1000)], [HelloKey.KEY_SHARE, Buffer.alloc(length, 1)]])),
        /resume without a 32-byte key share/,
      );
    }
  });

  test('a session id must be 16 bytes', () => {
    for (const length of [0, 1, 15, 17, 32]) {
      assertHelloError(
        () =>
          decodeHelloInfo(
            baseParams([
              [HelloKey.RESUME_GRACE_MS, u32(1000)],
              [HelloKey.KEY_SHARE, SHARE],
              [HelloKey.SESSION_ID, Buffer.alloc(length, 2)],
            ]),
          ),
        /^HELLO: session id must be 16 bytes$/,
      );
    }
  });

  test('the grace must be a u32', () => {
    for (const length of [0, 1, 3, 5, 8]) {
      assertHelloError(
        () => decodeHelloInfo(baseParams([[HelloKey.RESUME_GRACE_MS, Buffer.alloc(length, 1)], [HelloKey.KEY_SHARE, SHARE]])),
        /HELLO: parameter 7 must be 4 bytes/,
      );
    }
  });

  test('a grace of 0, or none, means no resumption: key share and session id are dropped', () => {
    for (const extra of [
      [[HelloKey.RESUME_GRACE_MS, u32(0)], [HelloKey.KEY_SHARE, SHARE], [HelloKey.SESSION_ID, SESSION]],
      [[HelloKey.KEY_SHARE, SHARE], [HelloKey.SESSION_ID, SESSION]],
      [[HelloKey.KEY_SHARE, SHARE]],
      [[HelloKey.RESUME_GRACE_MS, u32(0)]],
    ] as ReadonlyArray<ReadonlyArray<readonly [number, Buffer]>>) {
      const info = decodeHelloInfo(baseParams(extra));
      assert.equal(info.resumeGraceMs, 0);
      assert.equal(info.keyShare, null);
      assert.equal(info.sessionId, null);
    }
  });

  test('the other parameters are still checked next to the resumption ones', () => {
    const resume: ReadonlyArray<readonly [number, Buffer]> = [
      [HelloKey.RESUME_GRACE_MS, u32(1000)],
      [HelloKey.KEY_SHARE, SHARE],
    ];
    assertHelloError(() => decodeHelloInfo(baseParams([...resume, [HelloKey.ROLE, u8(2)]])), /missing or bad role/);
    assertHelloError(() => decodeHelloInfo(baseParams([...resume, [HelloKey.INITIAL_WINDOW, u32(1023)]])), /initial window 1023 below 1024/);
    assertHelloError(() => decodeHelloInfo(baseParams([...resume, [HelloKey.MAX_FRAME, u32(2 ** 20 + 1)]])), /max frame \d+ out of range/);
    assertHelloError(() => decodeHelloInfo(baseParams([...resume, [HelloKey.MAX_STREAMS, u32(0)]])), /max streams must be at least 1/);
  });
});

describe('HELLO capabilities (key 10)', () => {
  test('absent when the sender speaks none: a HELLO of the first version, byte for byte', () => {
    assert.equal(paramsOf(encodeHelloInfo(BASE)).has(HelloKey.CAPABILITIES), false);
    assert.deepEqual(decodeHelloInfo(baseParams()).capabilities, []);
  });

  test('a list of u16 ids, in the order given; unknown ids are kept and ignored by unmetRequirement', () => {
    const params = paramsOf(encodeHelloInfo({ ...BASE, capabilities: [Capability.ORIGIN, 0x7001] }));
    assert.deepEqual(params.get(HelloKey.CAPABILITIES), Buffer.from([0x00, 0x01, 0x70, 0x01]));
    const decoded = decodeHelloInfo(params);
    assert.deepEqual(decoded.capabilities, [Capability.ORIGIN, 0x7001]);
    assert.equal(unmetRequirement([{ capability: Capability.ORIGIN, neededBy: '--proxy-protocol' }], decoded), null);
  });

  test('an odd length is a protocol error', () => {
    assertHelloError(() => decodeHelloInfo(baseParams([[HelloKey.CAPABILITIES, Buffer.from([0, 1, 2])]])), /capabilities/);
  });

  test('a requirement the partner does not announce gives the one-line reason naming capability and option', () => {
    const reason = unmetRequirement([{ capability: Capability.UDP, neededBy: 'the /udp port 5353' }], decodeHelloInfo(baseParams()));
    assert.match(reason ?? '', /lacks capability 'udp', which the \/udp port 5353 needs/);
    assert.match(reason ?? '', /tcpipe-test/);
  });

  test('bothSpeak needs the id on both sides', () => {
    const peer = decodeHelloInfo(baseParams([[HelloKey.CAPABILITIES, Buffer.from([0, Capability.FAST_LANE])]]));
    assert.equal(bothSpeak(Capability.FAST_LANE, [Capability.FAST_LANE], peer), true);
    assert.equal(bothSpeak(Capability.FAST_LANE, [], peer), false);
    assert.equal(bothSpeak(Capability.UDP, [Capability.UDP], peer), false);
  });
});
