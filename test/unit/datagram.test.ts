/**
 * The datagram frames of capability udp (src/protocol/datagram.ts): known
 * bytes from docs/PROTOCOL.md, round trips through the frame decoder split at
 * every offset, and the decoder's limits.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { ProtocolError } from '../../src/errors.js';
import { Flag, FlowCloseCode, FrameType, GoAwayCode, MAX_DATAGRAM_PAYLOAD } from '../../src/protocol/constants.js';
import { FrameDecoder, parseCodeAndReason } from '../../src/protocol/decode.js';
import { encodeDatagram, encodeFlowClose, encodeFlowOpen, ipBytes, ipText, parseFlowOpen } from '../../src/protocol/datagram.js';
import type { Frame } from '../../src/protocol/frame.js';

function decodeAll(bytes: Buffer, splitAt?: number): Frame[] {
  const decoder = new FrameDecoder({ maxDataPayload: 1024, expectPreface: false });
  const frames: Frame[] = [];
  const pieces = splitAt === undefined ? [bytes] : [bytes.subarray(0, splitAt), bytes.subarray(splitAt)];
  for (const piece of pieces) {
    decoder.push(piece);
    let frame: Frame | null;
    while ((frame = decoder.next()) !== null) frames.push({ ...frame, payload: Buffer.from(frame.payload) });
  }
  assert.equal(decoder.bufferedBytes, 0);
  return frames;
}

describe('datagram frames', () => {
  test('the example bytes of docs/PROTOCOL.md', () => {
    assert.equal(encodeFlowOpen(1, 53, null).toString('hex'), '0a00000000010000000200' + '35');
    assert.equal(
      encodeFlowOpen(1, 53, { address: '192.0.2.7', port: 40000 }).toString('hex'),
      '0a0000000001000000090035' + '04c00002079c40',
    );
    assert.equal(encodeDatagram(1, 0, Buffer.from('hi')).toString('hex'), '0b0000000001000000026869');
    assert.equal(encodeDatagram(1, Flag.LOCAL, Buffer.alloc(0)).toString('hex'), '0b800000000100000000');
    assert.equal(
      encodeFlowClose(1, Flag.LOCAL, FlowCloseCode.IDLE, 'idle').toString('hex'),
      '0c8000000001000000050069646c65',
    );
  });

  test('FLOW_OPEN round trips with IPv4, IPv6 and no origin', () => {
    for (const origin of [null, { address: '10.1.2.3', port: 1 }, { address: '::1', port: 65535 }, { address: '2001:db8::8:800:200c:417a', port: 5353 }]) {
      const [frame] = decodeAll(encodeFlowOpen(7, 5353, origin));
      assert.ok(frame !== undefined);
      assert.equal(frame.type, FrameType.FLOW_OPEN);
      assert.equal(frame.streamId, 7);
      assert.deepEqual(parseFlowOpen(frame.payload), { port: 5353, origin });
    }
    // An IPv4-mapped address travels as IPv4.
    assert.deepEqual(parseFlowOpen(decodeAll(encodeFlowOpen(7, 53, { address: '::ffff:127.0.0.1', port: 9 }))[0]?.payload ?? Buffer.alloc(0)).origin, {
      address: '127.0.0.1',
      port: 9,
    });
  });

  test('a DATAGRAM arrives whole whatever the split, zero-length and largest included', () => {
    const big = Buffer.alloc(MAX_DATAGRAM_PAYLOAD, 7);
    const stream = Buffer.concat([encodeDatagram(3, 0, Buffer.from('abc')), encodeDatagram(3, Flag.LOCAL, Buffer.alloc(0)), encodeDatagram(4, 0, big)]);
    for (const at of [0, 1, 5, 10, 12, 13, 22, 23, 30, stream.length - 1]) {
      const frames = decodeAll(stream, at);
      assert.deepEqual(
        frames.map((f) => [f.type, f.flags, f.streamId, f.payload.length]),
        [
          [FrameType.DATAGRAM, 0, 3, 3],
          [FrameType.DATAGRAM, Flag.LOCAL, 3, 0],
          [FrameType.DATAGRAM, 0, 4, MAX_DATAGRAM_PAYLOAD],
        ],
        `split at ${at}`,
      );
      assert.ok(frames[2]?.payload.equals(big));
    }
  });

  test('FLOW_CLOSE carries a code and a reason', () => {
    const [frame] = decodeAll(encodeFlowClose(9, 0, FlowCloseCode.TARGET_REFUSED, 'port unreachable'));
    assert.ok(frame !== undefined);
    assert.deepEqual(parseCodeAndReason(frame.payload), { code: FlowCloseCode.TARGET_REFUSED, reason: 'port unreachable' });
  });

  test('the decoder rejects what the spec forbids', () => {
    const bad = (bytes: Buffer, code: number, pattern: RegExp): void => {
      assert.throws(() => decodeAll(bytes), (err: unknown) => err instanceof ProtocolError && err.goAwayCode === code && pattern.test(err.message));
    };
    const tooBig = encodeDatagram(1, 0, Buffer.alloc(0));
    tooBig.writeUInt32BE(MAX_DATAGRAM_PAYLOAD + 1, 6);
    bad(tooBig, GoAwayCode.LIMIT_EXCEEDED, /DATAGRAM of 65536 bytes/);
    const noId = encodeDatagram(0, 0, Buffer.from('x'));
    bad(noId, GoAwayCode.PROTOCOL_ERROR, /needs a stream id/);
    const openWithLocal = encodeFlowOpen(1, 53, null);
    openWithLocal[1] = Flag.LOCAL;
    bad(openWithLocal, GoAwayCode.PROTOCOL_ERROR, /bad flags/);
    const closeEmpty = encodeFlowClose(1, 0, 0, '').subarray(0, 10);
    closeEmpty.writeUInt32BE(0, 6);
    bad(closeEmpty, GoAwayCode.PROTOCOL_ERROR, /bad length/);
    assert.throws(() => parseFlowOpen(Buffer.from([0, 53, 5, 1, 2, 3, 4, 0, 1])), /address family/);
    assert.throws(() => parseFlowOpen(Buffer.from([0, 0])), /port 0/);
    assert.throws(() => parseFlowOpen(Buffer.from([0, 53, 4])), /2, 9 or 21/);
  });

  test('IP addresses to bytes and back', () => {
    for (const text of ['0.0.0.0', '255.255.255.255', '::', '::1', 'fe80::1', '2001:db8:0:1:1:1:1:1']) assert.equal(ipText(ipBytes(text)), text);
    assert.equal(ipText(ipBytes('[::1]')), '::1');
    assert.equal(ipText(ipBytes('fe80::1%eth0')), 'fe80::1');
    for (const text of ['1.2.3', '256.1.1.1', '1::2::3', 'x::1', '1:2:3:4:5:6:7']) assert.throws(() => ipBytes(text), RangeError, text);
  });
});
