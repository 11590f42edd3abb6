/**
 * Unit tests for the pure frame codec (src/protocol/encode.ts, decode.ts).
 *
 * 1. Known byte vectors, written out by hand from the layout in constants.ts.
 * 2. One stream split at every offset (two and three pieces) and fed byte by byte.
 * 3. Property-based round trips (fast-check) against an independent layout model.
 * 4. Random byte soup: only frames, null or ProtocolError; bounded; chunking-independent.
 * 5. Every validation rule, with the error class, codes and message.
 * 6. Zero-copy: DATA payloads are views of the pushed chunks.
 */
import { Buffer } from 'node:buffer';
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { ErrorCodes, ProtocolError } from '../../src/errors.js';
import {
  ALLOWED_FLAGS,
  Flag,
  FrameType,
  GoAwayCode,
  HEADER_LENGTH,
  HelloKey,
  MAX_CONTROL_PAYLOAD,
  MAX_DATA_PAYLOAD_LIMIT,
  MAX_FRAME_TYPE,
  MAX_REASON_BYTES,
  PREFACE,
  RESUMED_WINDOW_LENGTH,
  ResetCode,
  ResumeKind,
} from '../../src/protocol/constants.js';
import {
  encodeAccept,
  encodeDataHeader,
  encodeGoAway,
  encodeHello,
  encodeOpen,
  encodePing,
  encodeReset,
  encodeResume,
  encodeResumedWindow,
  encodeWindow,
  reasonBytes,
  u32,
  u8,
} from '../../src/protocol/encode.js';
import {
  FrameDecoder,
  helloU32,
  helloU8,
  parseCodeAndReason,
  parseHello,
  parseOpenPort,
  parseResumedReceived,
  parseWindow,
  type DecoderOptions,
} from '../../src/protocol/decode.js';
import type { Frame } from '../../src/protocol/frame.js';

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

const RUNS = 300;
const LIMIT: DecoderOptions = { maxDataPayload: MAX_DATA_PAYLOAD_LIMIT };
const NO_PREFACE: DecoderOptions = { maxDataPayload: MAX_DATA_PAYLOAD_LIMIT, expectPreface: false };

/** Hex written by hand, spaces allowed. Refuses anything Buffer.from would silently drop. */
function h(text: string): Buffer {
  const clean = text.replace(/\s+/g, '');
  assert.match(clean, /^(?:[0-9a-f]{2})*$/, `bad hex literal: ${text}`);
  return Buffer.from(clean, 'hex');
}

function hex(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex');
}

/** A copy in a fresh, unpooled ArrayBuffer of its own (so views can be traced to it). */
function fresh(bytes: Uint8Array): Buffer {
  const out = Buffer.alloc(bytes.length);
  out.set(bytes);
  return out;
}

function be16(value: number): Buffer {
  const out = Buffer.alloc(2);
  out.writeUInt16BE(value, 0);
  return out;
}

function be32(value: number): Buffer {
  const out = Buffer.alloc(4);
  out.writeUInt32BE(value, 0);
  return out;
}

function be64(value: number): Buffer {
  const out = Buffer.alloc(8);
  out.writeBigUInt64BE(BigInt(value), 0);
  return out;
}

/** A frame laid out by hand: type u8, flags u8, stream u32 BE, length u32 BE, payload. */
function rawFrame(type: number, flags: number, streamId: number, payload: Buffer, length = payload.length): Buffer {
  const head = Buffer.alloc(HEADER_LENGTH);
  head.writeUInt8(type, 0);
  head.writeUInt8(flags, 1);
  head.writeUInt32BE(streamId, 2);
  head.writeUInt32BE(length, 6);
  return Buffer.concat([head, payload]);
}

interface PlainFrame {
  type: number;
  flags: number;
  streamId: number;
  payload: string;
}

function plain(frame: Frame): PlainFrame {
  return { type: frame.type, flags: frame.flags, streamId: frame.streamId, payload: hex(frame.payload) };
}

/**
 * Normalised view of a decoded frame sequence: consecutive DATA pieces of the
 * same stream (and same non-FIN flags) are joined until a piece with FIN;
 * control frames are kept as they are.
 */
type Event =
  | { kind: 'control'; type: number; flags: number; streamId: number; payload: string }
  | { kind: 'data'; streamId: number; flags: number; fin: boolean; payload: string };

function normalise(frames: readonly Frame[]): Event[] {
  const out: Event[] = [];
  for (const frame of frames) {
    if (frame.type !== FrameType.DATA) {
      out.push({ kind: 'control', ...plain(frame) });
      continue;
    }
    const fin = (frame.flags & Flag.FIN) !== 0;
    const flags = frame.flags & ~Flag.FIN;
    const last = out[out.length - 1];
    if (last !== undefined && last.kind === 'data' && !last.fin && last.streamId === frame.streamId && last.flags === flags) {
      out[out.length - 1] = { ...last, fin, payload: last.payload + hex(frame.payload) };
    } else {
      out.push({ kind: 'data', streamId: frame.streamId, flags, fin, payload: hex(frame.payload) });
    }
  }
  return out;
}

interface DecodeResult {
  readonly frames: Frame[];
  /** The ProtocolError that stopped decoding, if any. */
  readonly error: ProtocolError | undefined;
  readonly bufferedBytes: number;
}

/**
 * Pushes each chunk and drains the decoder after each push. Checks on every
 * call: bufferedBytes stays within [0, pushed]; a returned frame consumed at
 * least one byte (so the number of calls is bounded by the bytes pushed);
 * every non-empty DATA piece is a view of one pushed chunk. Rethrows anything
 * that is not a ProtocolError.
 */
function decodeChunks(chunks: readonly Buffer[], options: DecoderOptions = LIMIT): DecodeResult {
  const decoder = new FrameDecoder(options);
  const frames: Frame[] = [];
  const owners = new Map<ArrayBufferLike, Buffer>();
  let pushed = 0;
  try {
    for (const chunk of chunks) {
      decoder.push(chunk);
      if (chunk.length > 0) owners.set(chunk.buffer, chunk);
      pushed += chunk.length;
      assert.equal(decoder.bufferedBytes <= pushed, true, 'bufferedBytes exceeds the bytes pushed');
      for (let calls = 0; ; calls++) {
        if (calls > pushed + 1) assert.fail(`decoder returned ${calls} frames from ${pushed} bytes: no progress`);
        const before = decoder.bufferedBytes;
        const frame = decoder.next();
        const after = decoder.bufferedBytes;
        assert.ok(after >= 0 && after <= pushed, `bufferedBytes ${after} outside [0, ${pushed}]`);
        assert.ok(after <= before, 'bufferedBytes grew during next()');
        if (frame === null) break;
        assert.ok(after < before, 'next() returned a frame without consuming any byte');
        if (frame.type === FrameType.DATA && frame.payload.length > 0) {
          const owner = owners.get(frame.payload.buffer);
          assert.ok(owner !== undefined, 'DATA piece is not a view of a pushed chunk (it was copied)');
          assert.ok(
            frame.payload.byteOffset >= owner.byteOffset &&
              frame.payload.byteOffset + frame.payload.length <= owner.byteOffset + owner.length,
            'DATA piece reaches outside its chunk',
          );
        }
        frames.push(frame);
      }
    }
  } catch (err) {
    if (err instanceof ProtocolError) return { frames, error: err, bufferedBytes: decoder.bufferedBytes };
    throw err;
  }
  return { frames, error: undefined, bufferedBytes: decoder.bufferedBytes };
}

/** Decodes bytes that must be valid and complete; returns the frames. */
function decodeValid(chunks: readonly Buffer[], options: DecoderOptions = LIMIT): Frame[] {
  const result = decodeChunks(chunks, options);
  if (result.error !== undefined) assert.fail(`unexpected ProtocolError: ${result.error.message}`);
  assert.equal(result.bufferedBytes, 0, 'bytes left in the decoder');
  return result.frames;
}

/** Splits into fresh chunks of the given sizes, used cyclically; 0 makes an empty chunk; [] means one chunk. */
function splitBy(bytes: Buffer, sizes: readonly number[]): Buffer[] {
  if (!sizes.some((n) => n > 0)) return [fresh(bytes)];
  const out: Buffer[] = [];
  let at = 0;
  for (let i = 0; at < bytes.length; i++) {
    const n = sizes[i % sizes.length] ?? 1;
    out.push(fresh(bytes.subarray(at, at + n)));
    at += n;
  }
  return out;
}

function splitAt(bytes: Buffer, ...offsets: number[]): Buffer[] {
  const out: Buffer[] = [];
  let from = 0;
  for (const offset of offsets) {
    out.push(fresh(bytes.subarray(from, offset)));
    from = offset;
  }
  out.push(fresh(bytes.subarray(from)));
  return out;
}

interface ExpectedError {
  readonly message: RegExp;
  readonly goAwayCode?: number;
  readonly code?: string;
}

function checkProtocolError(err: unknown, expected: ExpectedError): true {
  assert.ok(err instanceof ProtocolError, `expected a ProtocolError, got ${String(err)}`);
  assert.match(err.message, expected.message);
  assert.equal(err.goAwayCode, expected.goAwayCode ?? GoAwayCode.PROTOCOL_ERROR);
  assert.equal(err.code, expected.code ?? ErrorCodes.PROTOCOL);
  assert.equal(err.name, 'ProtocolError');
  return true;
}

function assertProtocolError(fn: () => unknown, expected: ExpectedError): void {
  assert.throws(fn, (err: unknown) => checkProtocolError(err, expected));
}

/** Pushes the bytes (preface not expected) and calls next() once. */
function nextOf(bytes: Buffer, options: DecoderOptions = NO_PREFACE): Frame | null {
  const decoder = new FrameDecoder(options);
  decoder.push(fresh(bytes));
  return decoder.next();
}

/** HELLO, PING, GOAWAY and RESUME concern the link (stream id 0); the other types a stream. */
const CONNECTION_TYPES: ReadonlySet<number> = new Set<number>([FrameType.HELLO, FrameType.PING, FrameType.GOAWAY, FrameType.RESUME]);
/** A stream id that is valid for the type. */
function goodStream(type: number): number {
  return CONNECTION_TYPES.has(type) ? 0 : 1;
}

// ---------------------------------------------------------------------------
// An independent model of the layout, and frame specifications
// ---------------------------------------------------------------------------

type Spec =
  | { kind: 'hello'; params: ReadonlyArray<readonly [number, Buffer]> }
  | { kind: 'open'; streamId: number; flags: number; port: number }
  | { kind: 'accept'; streamId: number }
  | { kind: 'data'; streamId: number; flags: number; payload: Buffer }
  | { kind: 'window'; streamId: number; flags: number; consumed: number; window: number }
  /** A resumed link's stream entry: WINDOW with RESUMED (added by the encoder), 20 bytes. */
  | { kind: 'resumed-window'; streamId: number; flags: number; consumed: number; window: number; received: number }
  | { kind: 'resume'; resumeKind: number; body: Buffer }
  | { kind: 'reset'; streamId: number; flags: number; code: number; reason: string }
  | { kind: 'ping'; ack: boolean; opaque: Buffer }
  | { kind: 'goaway'; code: number; reason: string };

/** The longest prefix of whole characters that fits in MAX_REASON_BYTES (independent of reasonBytes). */
function modelReasonBytes(reason: string): Buffer {
  const parts: Buffer[] = [];
  let size = 0;
  for (const char of reason) {
    const bytes = Buffer.from(char, 'utf8');
    if (size + bytes.length > MAX_REASON_BYTES) break;
    parts.push(bytes);
    size += bytes.length;
  }
  return Buffer.concat(parts);
}

/** What parseCodeAndReason should give for a reason: truncated, decoded, C0 controls and DEL as '?'. */
function modelReason(reason: string): string {
  let out = '';
  for (const char of modelReasonBytes(reason).toString('utf8')) {
    const code = char.codePointAt(0) ?? 0;
    out += code < 0x20 || code === 0x7f ? '?' : char;
  }
  return out;
}

function modelFrame(spec: Spec): Frame {
  switch (spec.kind) {
    case 'hello':
      return {
        type: FrameType.HELLO,
        flags: 0,
        streamId: 0,
        payload: Buffer.concat(spec.params.flatMap(([key, value]) => [be16(key), be16(value.length), value])),
      };
    case 'open':
      return { type: FrameType.OPEN, flags: spec.flags, streamId: spec.streamId, payload: be16(spec.port) };
    case 'accept':
      // "ACCEPT: LOCAL (always set)": it always comes from the exit side.
      return { type: FrameType.ACCEPT, flags: Flag.LOCAL, streamId: spec.streamId, payload: Buffer.alloc(0) };
    case 'data':
      return { type: FrameType.DATA, flags: spec.flags, streamId: spec.streamId, payload: spec.payload };
    case 'window':
      return {
        type: FrameType.WINDOW,
        flags: spec.flags,
        streamId: spec.streamId,
        payload: Buffer.concat([be64(spec.consumed), be32(spec.window)]),
      };
    case 'resumed-window':
      return {
        type: FrameType.WINDOW,
        flags: spec.flags | Flag.RESUMED,
        streamId: spec.streamId,
        payload: Buffer.concat([be64(spec.consumed), be32(spec.window), be64(spec.received)]),
      };
    case 'resume':
      return { type: FrameType.RESUME, flags: 0, streamId: 0, payload: Buffer.concat([Buffer.from([spec.resumeKind]), spec.body]) };
    case 'reset':
      return {
        type: FrameType.RESET,
        flags: spec.flags,
        streamId: spec.streamId,
        payload: Buffer.concat([Buffer.from([spec.code]), modelReasonBytes(spec.reason)]),
      };
    case 'ping':
      return { type: FrameType.PING, flags: spec.ack ? Flag.ACK : 0, streamId: 0, payload: spec.opaque };
    case 'goaway':
      return {
        type: FrameType.GOAWAY,
        flags: 0,
        streamId: 0,
        payload: Buffer.concat([Buffer.from([spec.code]), modelReasonBytes(spec.reason)]),
      };
  }
}

function modelBytes(frame: Frame): Buffer {
  return rawFrame(frame.type, frame.flags, frame.streamId, frame.payload);
}

/** Encodes with the functions under test. */
function encodeSpec(spec: Spec): Buffer {
  switch (spec.kind) {
    case 'hello':
      return encodeHello(new Map(spec.params));
    case 'open':
      return encodeOpen(spec.streamId, spec.flags, spec.port);
    case 'accept':
      return encodeAccept(spec.streamId);
    case 'data':
      return Buffer.concat([encodeDataHeader(spec.streamId, spec.flags, spec.payload.length), spec.payload]);
    case 'window':
      return encodeWindow(spec.streamId, spec.flags, spec.consumed, spec.window);
    case 'resumed-window':
      return encodeResumedWindow(spec.streamId, spec.flags, spec.consumed, spec.window, spec.received);
    case 'resume':
      return encodeResume(spec.resumeKind, spec.body);
    case 'reset':
      return encodeReset(spec.streamId, spec.flags, spec.code, spec.reason);
    case 'ping':
      return encodePing(spec.ack ? Flag.ACK : 0, spec.opaque);
    case 'goaway':
      return encodeGoAway(spec.code, spec.reason);
  }
}

/** Checks that a whole decoded frame means what the spec says, through the parse functions. */
function checkSemantics(spec: Spec, frame: Frame): void {
  assert.deepEqual(plain(frame), plain(modelFrame(spec)));
  switch (spec.kind) {
    case 'hello': {
      const params = parseHello(frame.payload);
      assert.deepEqual(
        [...params].map(([key, value]) => [key, hex(value)]),
        spec.params.map(([key, value]) => [key, hex(value)]),
      );
      return;
    }
    case 'open':
      assert.equal(parseOpenPort(frame.payload), spec.port);
      return;
    case 'window':
      assert.deepEqual(parseWindow(frame.payload), { consumed: spec.consumed, window: spec.window });
      return;
    case 'resumed-window':
      assert.equal(frame.payload.length, RESUMED_WINDOW_LENGTH);
      assert.deepEqual(parseWindow(frame.payload), { consumed: spec.consumed, window: spec.window });
      assert.equal(parseResumedReceived(frame.payload), spec.received);
      return;
    case 'resume':
      assert.equal(frame.payload[0], spec.resumeKind);
      assert.equal(hex(frame.payload.subarray(1)), hex(spec.body));
      return;
    case 'reset':
    case 'goaway':
      assert.deepEqual(parseCodeAndReason(frame.payload), { code: spec.code, reason: modelReason(spec.reason) });
      return;
    case 'accept':
    case 'data':
    case 'ping':
      return;
  }
}

// ---------------------------------------------------------------------------
// 1. Known byte vectors
// ---------------------------------------------------------------------------

interface Vector {
  readonly name: string;
  readonly encoded: Buffer;
  readonly hex: string;
  readonly spec: Spec;
}

const VECTORS: readonly Vector[] = [
  {
    name: 'HELLO without parameters',
    encoded: encodeHello(new Map()),
    hex: '01 00 00000000 00000000',
    spec: { kind: 'hello', params: [] },
  },
  {
    name: 'HELLO with role, initial-window, max-frame, software',
    encoded: encodeHello(
      new Map([
        [HelloKey.ROLE, u8(1)],
        [HelloKey.INITIAL_WINDOW, u32(262144)],
        [HelloKey.MAX_FRAME, u32(65536)],
        [HelloKey.SOFTWARE, Buffer.from('tcpipe')],
      ]),
    ),
    hex: '01 00 00000000 0000001f  0001 0001 01  0002 0004 00040000  0003 0004 00010000  0006 0006 746370697065',
    spec: {
      kind: 'hello',
      params: [
        [1, h('01')],
        [2, h('00040000')],
        [3, h('00010000')],
        [6, h('746370697065')],
      ],
    },
  },
  {
    name: 'OPEN stream 1 port 8080',
    encoded: encodeOpen(1, 0, 8080),
    hex: '02 00 00000001 00000002 1f90',
    spec: { kind: 'open', streamId: 1, flags: 0, port: 8080 },
  },
  {
    name: 'OPEN stream 0xfffffffe port 443',
    encoded: encodeOpen(0xfffffffe, 0, 443),
    hex: '02 00 fffffffe 00000002 01bb',
    spec: { kind: 'open', streamId: 0xfffffffe, flags: 0, port: 443 },
  },
  {
    name: 'ACCEPT stream 7 (always LOCAL)',
    encoded: encodeAccept(7),
    hex: '03 80 00000007 00000000',
    spec: { kind: 'accept', streamId: 7 },
  },
  {
    name: 'ACCEPT stream 0x00abcdef',
    encoded: encodeAccept(0xabcdef),
    hex: '03 80 00abcdef 00000000',
    spec: { kind: 'accept', streamId: 0xabcdef },
  },
  {
    name: 'DATA stream 5 "abc"',
    encoded: Buffer.concat([encodeDataHeader(5, 0, 3), Buffer.from('abc')]),
    hex: '04 00 00000005 00000003 616263',
    spec: { kind: 'data', streamId: 5, flags: 0, payload: h('616263') },
  },
  {
    name: 'DATA FIN stream 5 "hi!"',
    encoded: Buffer.concat([encodeDataHeader(5, Flag.FIN, 3), Buffer.from('hi!')]),
    hex: '04 01 00000005 00000003 686921',
    spec: { kind: 'data', streamId: 5, flags: 0x01, payload: h('686921') },
  },
  {
    name: 'DATA LOCAL stream 65536, binary payload',
    encoded: Buffer.concat([encodeDataHeader(0x10000, Flag.LOCAL, 5), h('00ff107f80')]),
    hex: '04 80 00010000 00000005 00ff107f80',
    spec: { kind: 'data', streamId: 0x10000, flags: 0x80, payload: h('00ff107f80') },
  },
  {
    name: 'DATA FIN|LOCAL stream 0x01020304, empty',
    encoded: encodeDataHeader(0x01020304, Flag.FIN | Flag.LOCAL, 0),
    hex: '04 81 01020304 00000000',
    spec: { kind: 'data', streamId: 0x01020304, flags: 0x81, payload: Buffer.alloc(0) },
  },
  {
    name: 'WINDOW LOCAL stream 3 consumed 1000 window 65536',
    encoded: encodeWindow(3, Flag.LOCAL, 1000, 65536),
    hex: '05 80 00000003 0000000c 00000000 000003e8 00010000',
    spec: { kind: 'window', streamId: 3, flags: 0x80, consumed: 1000, window: 65536 },
  },
  {
    name: 'WINDOW consumed exactly 2^32',
    encoded: encodeWindow(9, 0, 2 ** 32, 0),
    hex: '05 00 00000009 0000000c 00000001 00000000 00000000',
    spec: { kind: 'window', streamId: 9, flags: 0, consumed: 2 ** 32, window: 0 },
  },
  {
    name: 'WINDOW consumed 0x1_2345_6789 (> 2^32)',
    encoded: encodeWindow(3, 0, 4886718345, 262144),
    hex: '05 00 00000003 0000000c 00000001 23456789 00040000',
    spec: { kind: 'window', streamId: 3, flags: 0, consumed: 4886718345, window: 262144 },
  },
  {
    name: 'WINDOW consumed 2^53-1, window 2^32-1, stream 2^32-1',
    encoded: encodeWindow(0xffffffff, 0, Number.MAX_SAFE_INTEGER, 0xffffffff),
    hex: '05 00 ffffffff 0000000c 001fffff ffffffff ffffffff',
    spec: { kind: 'window', streamId: 0xffffffff, flags: 0, consumed: Number.MAX_SAFE_INTEGER, window: 0xffffffff },
  },
  {
    name: 'WINDOW FIN_RECEIVED|LOCAL stream 2 consumed 5 window 1024',
    encoded: encodeWindow(2, Flag.FIN_RECEIVED | Flag.LOCAL, 5, 1024),
    hex: '05 81 00000002 0000000c 00000000 00000005 00000400',
    spec: { kind: 'window', streamId: 2, flags: 0x81, consumed: 5, window: 1024 },
  },
  {
    name: 'WINDOW RESUMED|LOCAL stream 3 consumed 1000 window 65536 received 1500',
    encoded: encodeResumedWindow(3, Flag.LOCAL, 1000, 65536, 1500),
    hex: '05 82 00000003 00000014 00000000 000003e8 00010000 00000000 000005dc',
    spec: { kind: 'resumed-window', streamId: 3, flags: 0x80, consumed: 1000, window: 65536, received: 1500 },
  },
  {
    name: 'WINDOW RESUMED|ACCEPTED|FIN_RECEIVED|LOCAL, consumed 2^32, received 0x1_2345_6789',
    encoded: encodeResumedWindow(7, Flag.LOCAL | Flag.ACCEPTED | Flag.FIN_RECEIVED, 2 ** 32, 0, 4886718345),
    hex: '05 87 00000007 00000014 00000001 00000000 00000000 00000001 23456789',
    spec: { kind: 'resumed-window', streamId: 7, flags: 0x85, consumed: 2 ** 32, window: 0, received: 4886718345 },
  },
  {
    name: 'WINDOW RESUMED, every counter at its largest, stream 2^32-1',
    encoded: encodeResumedWindow(0xffffffff, 0, Number.MAX_SAFE_INTEGER, 0xffffffff, Number.MAX_SAFE_INTEGER),
    hex: '05 02 ffffffff 00000014 001fffff ffffffff ffffffff 001fffff ffffffff',
    spec: {
      kind: 'resumed-window',
      streamId: 0xffffffff,
      flags: 0,
      consumed: Number.MAX_SAFE_INTEGER,
      window: 0xffffffff,
      received: Number.MAX_SAFE_INTEGER,
    },
  },
  {
    name: 'RESET LOCAL stream 4 TARGET_REFUSED "refused"',
    encoded: encodeReset(4, Flag.LOCAL, ResetCode.TARGET_REFUSED, 'refused'),
    hex: '06 80 00000004 00000008 01 72656675736564',
    spec: { kind: 'reset', streamId: 4, flags: 0x80, code: 1, reason: 'refused' },
  },
  {
    name: 'RESET stream 10 INTERNAL, empty reason',
    encoded: encodeReset(10, 0, ResetCode.INTERNAL, ''),
    hex: '06 00 0000000a 00000001 06',
    spec: { kind: 'reset', streamId: 10, flags: 0, code: 6, reason: '' },
  },
  {
    name: 'PING',
    encoded: encodePing(0, h('0102030405060708')),
    hex: '07 00 00000000 00000008 0102030405060708',
    spec: { kind: 'ping', ack: false, opaque: h('0102030405060708') },
  },
  {
    name: 'PING ACK',
    encoded: encodePing(Flag.ACK, h('ffeeddccbbaa9988')),
    hex: '07 01 00000000 00000008 ffeeddccbbaa9988',
    spec: { kind: 'ping', ack: true, opaque: h('ffeeddccbbaa9988') },
  },
  {
    name: 'GOAWAY NORMAL, empty reason',
    encoded: encodeGoAway(GoAwayCode.NORMAL, ''),
    hex: '08 00 00000000 00000001 00',
    spec: { kind: 'goaway', code: 0, reason: '' },
  },
  {
    name: 'GOAWAY PROTOCOL_ERROR "bye"',
    encoded: encodeGoAway(GoAwayCode.PROTOCOL_ERROR, 'bye'),
    hex: '08 00 00000000 00000004 02 627965',
    spec: { kind: 'goaway', code: 2, reason: 'bye' },
  },
  {
    name: 'GOAWAY SHUTDOWN "né €" (multi-byte UTF-8)',
    encoded: encodeGoAway(GoAwayCode.SHUTDOWN, 'né €'),
    hex: '08 00 00000000 00000008 01 6ec3a920e282ac',
    spec: { kind: 'goaway', code: 1, reason: 'né €' },
  },
  {
    name: 'RESUME NEW',
    encoded: encodeResume(ResumeKind.NEW),
    hex: '09 00 00000000 00000001 01',
    spec: { kind: 'resume', resumeKind: 1, body: Buffer.alloc(0) },
  },
  {
    name: 'RESUME RESUME session 00..0f proof 20..3f',
    encoded: encodeResume(
      ResumeKind.RESUME,
      Buffer.concat([
        h('000102030405060708090a0b0c0d0e0f'),
        h('202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f'),
      ]),
    ),
    hex:
      '09 00 00000000 00000031 02 000102030405060708090a0b0c0d0e0f' +
      ' 202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f',
    spec: {
      kind: 'resume',
      resumeKind: 2,
      body: h('000102030405060708090a0b0c0d0e0f 202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f'),
    },
  },
  {
    name: 'RESUME RESUMED proof a0..bf',
    encoded: encodeResume(ResumeKind.RESUMED, h('a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebf')),
    hex: '09 00 00000000 00000021 03 a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebf',
    spec: { kind: 'resume', resumeKind: 3, body: h('a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebf') },
  },
  {
    name: 'RESUME FRESH "no such session"',
    encoded: encodeResume(ResumeKind.FRESH, Buffer.from('no such session')),
    hex: '09 00 00000000 00000010 04 6e6f20737563682073657373696f6e',
    spec: { kind: 'resume', resumeKind: 4, body: Buffer.from('no such session') },
  },
  {
    name: 'RESUME DONE, last stream 42',
    encoded: encodeResume(ResumeKind.DONE, u32(42)),
    hex: '09 00 00000000 00000005 05 0000002a',
    spec: { kind: 'resume', resumeKind: 5, body: h('0000002a') },
  },
];

describe('known byte vectors', () => {
  test('the preface is TCPIPE\\0 + version 1', () => {
    assert.equal(hex(PREFACE), '5443504950450001');
  });

  test('the allowed flags per type are the protocol table', () => {
    // HELLO -, OPEN -, ACCEPT LOCAL, DATA FIN|LOCAL, WINDOW FIN_RECEIVED|RESUMED|ACCEPTED|LOCAL,
    // RESET LOCAL, PING ACK, GOAWAY -, RESUME -.
    assert.deepEqual({ ...ALLOWED_FLAGS }, { 1: 0, 2: 0, 3: 0x80, 4: 0x81, 5: 0x87, 6: 0x80, 7: 0x01, 8: 0, 9: 0, 10: 0, 11: 0x80, 12: 0x80 });
  });

  test('the resumption constants are the protocol table', () => {
    assert.equal(FrameType.RESUME, 0x09);
    assert.equal(MAX_FRAME_TYPE, 0x0c); // FLOW_OPEN, DATAGRAM, FLOW_CLOSE (capability udp) follow RESUME
    assert.deepEqual([Flag.FIN_RECEIVED, Flag.RESUMED, Flag.ACCEPTED], [0x01, 0x02, 0x04]);
    assert.deepEqual({ ...ResumeKind }, { NEW: 1, RESUME: 2, RESUMED: 3, FRESH: 4, DONE: 5 });
    assert.equal(GoAwayCode.RESUME_REFUSED, 9);
    assert.deepEqual([HelloKey.RESUME_GRACE_MS, HelloKey.KEY_SHARE, HelloKey.SESSION_ID], [7, 8, 9]);
    assert.equal(RESUMED_WINDOW_LENGTH, 20);
  });

  test('every frame type is covered', () => {
    const types = new Set(VECTORS.map((v) => modelFrame(v.spec).type));
    assert.deepEqual([...types].sort(), [1, 2, 3, 4, 5, 6, 7, 8, 9]);
  });

  test('encodeResumedWindow sets RESUMED whether or not the caller passed it', () => {
    for (const flags of [0, Flag.RESUMED, Flag.LOCAL, Flag.LOCAL | Flag.RESUMED | Flag.ACCEPTED]) {
      const frame = encodeResumedWindow(1, flags, 1, 2, 3);
      assert.equal(frame[1], flags | Flag.RESUMED);
      assert.equal(frame.readUInt32BE(6), RESUMED_WINDOW_LENGTH);
      assert.equal(frame.length, HEADER_LENGTH + RESUMED_WINDOW_LENGTH);
    }
  });

  test('encodeResume copies its body (a later change to the body does not show)', () => {
    const body = Buffer.from('abc');
    const frame = encodeResume(ResumeKind.FRESH, body);
    body.fill(0);
    assert.equal(hex(frame), hex(h('09 00 00000000 00000004 04 616263')));
  });

  for (const vector of VECTORS) {
    test(`encode: ${vector.name}`, () => {
      assert.equal(hex(vector.encoded), hex(h(vector.hex)));
      // The hand-written hex and the layout model agree too.
      assert.equal(hex(modelBytes(modelFrame(vector.spec))), hex(h(vector.hex)));
    });

    test(`decode: ${vector.name}`, () => {
      const frames = decodeValid([fresh(Buffer.concat([PREFACE, h(vector.hex)]))]);
      assert.equal(frames.length, 1);
      const [frame] = frames;
      assert.ok(frame !== undefined);
      checkSemantics(vector.spec, frame);
      const noPreface = decodeValid([fresh(h(vector.hex))], NO_PREFACE);
      assert.deepEqual(noPreface.map(plain), frames.map(plain));
    });
  }

  test('the example bytes of docs/PROTOCOL.md', () => {
    const examples: ReadonlyArray<readonly [Buffer, string]> = [
      [encodeOpen(1, 0, 40000), '02 00 00000001 00000002 9c40'],
      [encodeAccept(1), '03 80 00000001 00000000'],
      [Buffer.concat([encodeDataHeader(1, 0, 2), Buffer.from('hi')]), '04 00 00000001 00000002 6869'],
      [encodeDataHeader(1, Flag.FIN | Flag.LOCAL, 0), '04 81 00000001 00000000'],
      [encodeWindow(1, Flag.LOCAL, 131072, 262144), '05 80 00000001 0000000c 0000000000020000 00040000'],
      [encodeReset(1, Flag.LOCAL, ResetCode.TARGET_REFUSED, 'refused'), '06 80 00000001 00000008 01 72656675736564'],
      [encodePing(0, h('0102030405060708')), '07 00 00000000 00000008 0102030405060708'],
      [encodeGoAway(GoAwayCode.SHUTDOWN, 'bye'), '08 00 00000000 00000004 01 627965'],
    ];
    for (const [encoded, text] of examples) assert.equal(hex(encoded), hex(h(text)));
    const frames = decodeValid([fresh(Buffer.concat([PREFACE, ...examples.map(([, text]) => h(text))]))]);
    assert.deepEqual(
      frames.map((f) => [f.type, f.flags, f.streamId]),
      [
        [2, 0, 1],
        [3, 0x80, 1],
        [4, 0, 1],
        [4, 0x81, 1],
        [5, 0x80, 1],
        [6, 0x80, 1],
        [7, 0, 0],
        [8, 0, 0],
      ],
    );
    assert.deepEqual(parseWindow(frames[4]?.payload ?? assert.fail()), { consumed: 131072, window: 262144 });
    assert.deepEqual(parseCodeAndReason(frames[7]?.payload ?? assert.fail()), { code: 1, reason: 'bye' });
  });

  test('decode: all vectors back to back', () => {
    const frames = decodeValid([fresh(Buffer.concat([PREFACE, ...VECTORS.map((v) => h(v.hex))]))]);
    assert.equal(frames.length, VECTORS.length);
    VECTORS.forEach((vector, i) => {
      const frame = frames[i];
      assert.ok(frame !== undefined);
      checkSemantics(vector.spec, frame);
    });
  });

  test('HELLO parameters read back with helloU8 / helloU32', () => {
    const frame = nextOf(encodeHello(
      new Map([
        [HelloKey.ROLE, u8(1)],
        [HelloKey.INITIAL_WINDOW, u32(262144)],
        [HelloKey.MAX_FRAME, u32(65536)],
        [HelloKey.SOFTWARE, Buffer.from('tcpipe')],
      ]),
    ));
    assert.ok(frame !== null);
    const params = parseHello(frame.payload);
    assert.equal(helloU8(params, HelloKey.ROLE, 9), 1);
    assert.equal(helloU32(params, HelloKey.INITIAL_WINDOW, 9), 262144);
    assert.equal(helloU32(params, HelloKey.MAX_FRAME, 9), 65536);
    assert.equal(helloU32(params, HelloKey.MAX_STREAMS, 1234), 1234);
    assert.equal(helloU32(params, HelloKey.HEARTBEAT_MS, 0), 0);
    assert.equal(params.get(HelloKey.SOFTWARE)?.toString(), 'tcpipe');
  });

  test('u32 and u8 helpers', () => {
    assert.equal(hex(u32(0)), '00000000');
    assert.equal(hex(u32(0xdeadbeef)), 'deadbeef');
    assert.equal(hex(u8(0)), '00');
    assert.equal(hex(u8(255)), 'ff');
  });

  test('a DATA payload after the preface in the same chunk is not confused with it', () => {
    // Payload bytes that look like another preface and header must stay payload.
    const payload = Buffer.concat([PREFACE, h('04 00 00000005 00000003')]);
    const bytes = Buffer.concat([PREFACE, encodeDataHeader(1, Flag.FIN, payload.length), payload, encodeAccept(2)]);
    const frames = decodeValid([fresh(bytes)]);
    assert.deepEqual(frames.map(plain), [
      { type: 4, flags: 1, streamId: 1, payload: hex(payload) },
      { type: 3, flags: 0x80, streamId: 2, payload: '' },
    ]);
  });
});

// ---------------------------------------------------------------------------
// 2. One stream split at every offset
// ---------------------------------------------------------------------------

describe('input split at every offset', () => {
  const specs: Spec[] = [
    ...VECTORS.map((v) => v.spec),
    // Two DATA frames of one stream in a row, then FIN; a longer payload; interleaved streams.
    { kind: 'data', streamId: 11, flags: Flag.LOCAL, payload: Buffer.from('first part, ') },
    { kind: 'data', streamId: 11, flags: Flag.LOCAL, payload: Buffer.from('second part') },
    { kind: 'data', streamId: 12, flags: 0, payload: Buffer.from(Array.from({ length: 40 }, (_, i) => (i * 37) & 0xff)) },
    { kind: 'data', streamId: 11, flags: Flag.LOCAL | Flag.FIN, payload: Buffer.from('!') },
    { kind: 'data', streamId: 12, flags: Flag.FIN, payload: Buffer.alloc(0) },
    { kind: 'reset', streamId: 12, flags: 0, code: ResetCode.PEER_RESET, reason: 'gone' },
  ];
  const bytes = Buffer.concat([PREFACE, ...specs.map(encodeSpec)]);
  const expected = normalise(specs.map(modelFrame));
  // Byte ranges of the non-empty DATA payloads, to count the pieces exactly.
  const dataRanges: Array<readonly [number, number]> = [];
  {
    let at = PREFACE.length;
    for (const spec of specs) {
      const length = encodeSpec(spec).length;
      if (spec.kind === 'data' && spec.payload.length > 0) dataRanges.push([at + HEADER_LENGTH, at + length]);
      at += length;
    }
  }
  const dataFrames = specs.filter((s) => s.kind === 'data').length;
  const insideData = (offset: number): boolean => dataRanges.some(([from, to]) => offset > from && offset < to);
  const dataPieces = (frames: readonly Frame[]): number => frames.filter((f) => f.type === FrameType.DATA).length;

  test('the stream decodes whole', () => {
    const frames = decodeValid([fresh(bytes)]);
    assert.deepEqual(normalise(frames), expected);
    assert.equal(frames.length, specs.length);
    specs.forEach((spec, i) => {
      const frame = frames[i];
      assert.ok(frame !== undefined);
      checkSemantics(spec, frame);
    });
  });

  test('two pieces, split at every offset', () => {
    for (let offset = 0; offset <= bytes.length; offset++) {
      const frames = decodeValid(splitAt(bytes, offset));
      assert.deepEqual(normalise(frames), expected, `split at ${offset}`);
      // DATA is split only where the chunks split: one extra piece iff the cut is inside a payload.
      assert.equal(dataPieces(frames), dataFrames + (insideData(offset) ? 1 : 0), `DATA pieces, split at ${offset}`);
    }
  });

  test('three pieces: every first offset, with a middle piece of 0 to 16 bytes', () => {
    for (let first = 0; first <= bytes.length; first++) {
      for (let second = first; second <= Math.min(bytes.length, first + 16); second++) {
        const frames = decodeValid(splitAt(bytes, first, second));
        assert.deepEqual(normalise(frames), expected, `split at ${first}, ${second}`);
        const extra = (insideData(first) ? 1 : 0) + (second !== first && insideData(second) ? 1 : 0);
        assert.equal(dataPieces(frames), dataFrames + extra, `DATA pieces, split at ${first}, ${second}`);
      }
    }
  });

  test('one byte at a time', () => {
    const chunks = splitBy(bytes, [1]);
    assert.equal(chunks.length, bytes.length);
    const frames = decodeValid(chunks);
    assert.deepEqual(normalise(frames), expected);
    const pieces = specs.reduce((n, s) => n + (s.kind === 'data' ? Math.max(1, s.payload.length) : 0), 0);
    assert.equal(dataPieces(frames), pieces);
    for (const frame of frames) {
      if (frame.type === FrameType.DATA) assert.ok(frame.payload.length <= 1);
    }
  });

  test('one byte at a time, with empty chunks in between', () => {
    const frames = decodeValid(splitBy(bytes, [1, 0]));
    assert.deepEqual(normalise(frames), expected);
  });

  test('FIN is only on the last piece of a split DATA frame', () => {
    const data = Buffer.concat([encodeDataHeader(3, Flag.FIN | Flag.LOCAL, 6), Buffer.from('abcdef')]);
    const frames = decodeValid(splitAt(data, 12, 14), NO_PREFACE);
    assert.deepEqual(frames.map(plain), [
      { type: 4, flags: 0x80, streamId: 3, payload: '6162' },
      { type: 4, flags: 0x80, streamId: 3, payload: '6364' },
      { type: 4, flags: 0x81, streamId: 3, payload: '6566' },
    ]);
  });

  test('a DATA header without its payload yields null, then the payload pieces follow', () => {
    const decoder = new FrameDecoder(NO_PREFACE);
    decoder.push(encodeDataHeader(8, 0, 4));
    assert.equal(decoder.next(), null);
    assert.equal(decoder.bufferedBytes, 0);
    assert.equal(decoder.next(), null);
    decoder.push(fresh(h('aabb')));
    assert.deepEqual(plain(decoder.next() ?? assert.fail('no piece')), { type: 4, flags: 0, streamId: 8, payload: 'aabb' });
    assert.equal(decoder.next(), null);
    decoder.push(fresh(h('ccdd 03 00 00000008 00000000')));
    assert.deepEqual(plain(decoder.next() ?? assert.fail('no piece')), { type: 4, flags: 0, streamId: 8, payload: 'ccdd' });
    assert.deepEqual(plain(decoder.next() ?? assert.fail('no frame')), { type: 3, flags: 0, streamId: 8, payload: '' });
    assert.equal(decoder.next(), null);
    assert.equal(decoder.bufferedBytes, 0);
  });

  test('a partial control frame is not handed out, and bufferedBytes counts it', () => {
    const ping = encodePing(0, h('0102030405060708'));
    const decoder = new FrameDecoder(NO_PREFACE);
    for (let i = 0; i < ping.length - 1; i++) {
      decoder.push(fresh(ping.subarray(i, i + 1)));
      assert.equal(decoder.next(), null);
      assert.equal(decoder.bufferedBytes, i + 1);
    }
    decoder.push(fresh(ping.subarray(ping.length - 1)));
    assert.deepEqual(plain(decoder.next() ?? assert.fail('no frame')), {
      type: 7,
      flags: 0,
      streamId: 0,
      payload: '0102030405060708',
    });
    assert.equal(decoder.bufferedBytes, 0);
  });
});

// ---------------------------------------------------------------------------
// 3. Property-based round trips
// ---------------------------------------------------------------------------

const streamIdArb = fc.oneof(fc.integer({ min: 1, max: 3 }), fc.integer({ min: 1, max: 0xffffffff }));
/** Any flags value the protocol allows on the type (less the bits in `without`). */
const flagsArb = (type: number, without = 0): fc.Arbitrary<number> => {
  const allowed = (ALLOWED_FLAGS[type] ?? 0) & ~without;
  return fc.constantFrom(...Array.from({ length: 256 }, (_, f) => f).filter((f) => (f & ~allowed) === 0));
};
/** WINDOW counters: small ones and any safe integer. */
const counterArb = fc.oneof(fc.integer({ min: 0, max: 0xffffffff }), fc.maxSafeNat());
const bufferArb = (minLength: number, maxLength: number): fc.Arbitrary<Buffer> =>
  fc.uint8Array({ minLength, maxLength }).map((a) => Buffer.from(a));
/** Reasons for RESET / GOAWAY (C1 controls are covered by their own test). */
const reasonArb = fc.oneof(
  fc.string({ unit: 'binary', maxLength: 40 }).map((text) => text.replace(/[\u0080-\u009f]/g, 'c')),
  fc.string({
    unit: fc.constantFrom('a', 'é', '€', '😀', '\u0000', '\n', '\u001b', '\u007f', '\ud800', '\udfff'),
    maxLength: 300,
  }),
  fc.string({ unit: 'grapheme-ascii', minLength: 250, maxLength: 300 }),
);
const specArb: fc.Arbitrary<Spec> = fc.oneof(
  fc
    .uniqueArray(fc.tuple(fc.integer({ min: 0, max: 0xffff }), bufferArb(0, 20)), {
      selector: ([key]) => key,
      maxLength: 6,
    })
    .map((params): Spec => ({ kind: 'hello', params })),
  fc
    .record({ streamId: streamIdArb, flags: flagsArb(FrameType.OPEN), port: fc.integer({ min: 1, max: 0xffff }) })
    .map((r): Spec => ({ kind: 'open', ...r })),
  streamIdArb.map((streamId): Spec => ({ kind: 'accept', streamId })),
  fc
    .record({
      streamId: streamIdArb,
      flags: flagsArb(FrameType.DATA),
      payload: fc.oneof({ arbitrary: bufferArb(0, 64), weight: 5 }, { arbitrary: bufferArb(200, 3000), weight: 1 }),
    })
    .map((r): Spec => ({ kind: 'data', ...r })),
  fc
    .record({
      streamId: streamIdArb,
      // A plain WINDOW never has RESUMED (that is the 20-byte entry below).
      flags: flagsArb(FrameType.WINDOW, Flag.RESUMED),
      consumed: counterArb,
      window: fc.integer({ min: 0, max: 0xffffffff }),
    })
    .map((r): Spec => ({ kind: 'window', ...r })),
  fc
    .record({
      streamId: streamIdArb,
      flags: flagsArb(FrameType.WINDOW),
      consumed: counterArb,
      window: fc.integer({ min: 0, max: 0xffffffff }),
      received: counterArb,
    })
    .map((r): Spec => ({ kind: 'resumed-window', ...r })),
  fc
    .oneof(
      fc.constant<readonly [number, Buffer]>([ResumeKind.NEW, Buffer.alloc(0)]),
      bufferArb(48, 48).map((body): readonly [number, Buffer] => [ResumeKind.RESUME, body]),
      bufferArb(32, 32).map((body): readonly [number, Buffer] => [ResumeKind.RESUMED, body]),
      bufferArb(0, 60).map((body): readonly [number, Buffer] => [ResumeKind.FRESH, body]),
      bufferArb(4, 4).map((body): readonly [number, Buffer] => [ResumeKind.DONE, body]),
      // The codec does not judge kinds or their lengths (the handshake and the session do).
      fc.tuple(fc.integer({ min: 0, max: 255 }), bufferArb(0, 1023)),
    )
    .map(([resumeKind, body]): Spec => ({ kind: 'resume', resumeKind, body })),
  fc
    .record({ streamId: streamIdArb, flags: flagsArb(FrameType.RESET), code: fc.integer({ min: 0, max: 255 }), reason: reasonArb })
    .map((r): Spec => ({ kind: 'reset', ...r })),
  fc.record({ ack: fc.boolean(), opaque: bufferArb(8, 8) }).map((r): Spec => ({ kind: 'ping', ...r })),
  fc.record({ code: fc.integer({ min: 0, max: 255 }), reason: reasonArb }).map((r): Spec => ({ kind: 'goaway', ...r })),
);
/** Chunk sizes, used cyclically; 0 is an empty chunk; [] is one chunk. */
const chunkingArb = fc.oneof(
  fc.constant<number[]>([]),
  fc.array(fc.integer({ min: 0, max: 12 }), { minLength: 1, maxLength: 20 }),
  fc.array(fc.integer({ min: 1, max: 700 }), { minLength: 1, maxLength: 8 }),
);

describe('property-based round trips', () => {
  test('the encoder matches the layout model for every frame', () => {
    fc.assert(
      fc.property(specArb, (spec) => {
        assert.equal(hex(encodeSpec(spec)), hex(modelBytes(modelFrame(spec))));
      }),
      { numRuns: 500 },
    );
  });

  test('encode then decode (whole) gives one frame per spec, with the same meaning', () => {
    fc.assert(
      fc.property(fc.array(specArb, { maxLength: 12 }), fc.boolean(), (specs, preface) => {
        const body = specs.map(encodeSpec);
        const frames = decodeValid(
          [fresh(Buffer.concat(preface ? [PREFACE, ...body] : body))],
          preface ? LIMIT : NO_PREFACE,
        );
        assert.equal(frames.length, specs.length);
        specs.forEach((spec, i) => {
          const frame = frames[i];
          assert.ok(frame !== undefined);
          checkSemantics(spec, frame);
        });
      }),
      { numRuns: RUNS },
    );
  });

  test('encode then decode with arbitrary chunking gives the same frames', () => {
    fc.assert(
      fc.property(fc.array(specArb, { maxLength: 12 }), chunkingArb, (specs, sizes) => {
        const bytes = Buffer.concat([PREFACE, ...specs.map(encodeSpec)]);
        const frames = decodeValid(splitBy(bytes, sizes));
        assert.deepEqual(normalise(frames), normalise(specs.map(modelFrame)));
      }),
      { numRuns: RUNS },
    );
  });

  test('a sequence fed in arbitrary pieces, drained only at the end, gives the same frames', () => {
    fc.assert(
      fc.property(fc.array(specArb, { maxLength: 12 }), chunkingArb, (specs, sizes) => {
        const bytes = Buffer.concat([PREFACE, ...specs.map(encodeSpec)]);
        const decoder = new FrameDecoder(LIMIT);
        for (const chunk of splitBy(bytes, sizes)) decoder.push(chunk);
        assert.equal(decoder.bufferedBytes, bytes.length);
        const frames: Frame[] = [];
        for (let frame = decoder.next(); frame !== null; frame = decoder.next()) {
          frames.push(frame);
          assert.ok(frames.length <= bytes.length, 'no progress');
        }
        assert.equal(decoder.bufferedBytes, 0);
        assert.deepEqual(normalise(frames), normalise(specs.map(modelFrame)));
      }),
      { numRuns: RUNS },
    );
  });

  test('reasonBytes keeps the longest whole-character prefix of at most 256 bytes', () => {
    const strict = new TextDecoder('utf-8', { fatal: true });
    fc.assert(
      fc.property(reasonArb, (reason) => {
        const bytes = reasonBytes(reason);
        assert.ok(bytes.length <= MAX_REASON_BYTES);
        assert.equal(hex(bytes), hex(modelReasonBytes(reason)));
        assert.doesNotThrow(() => strict.decode(bytes), 'truncation produced invalid UTF-8');
      }),
      { numRuns: 500 },
    );
  });
});

// ---------------------------------------------------------------------------
// 4. Random byte soup
// ---------------------------------------------------------------------------

const FIXED: Readonly<Record<number, number>> = { 2: 2, 3: 0, 7: 8 };

/** What any frame handed out by the decoder must satisfy, whatever the input. */
function assertFrameValid(frame: Frame, maxDataPayload: number): void {
  assert.ok(frame.type >= 1 && frame.type <= 9, `type ${frame.type}`);
  assert.equal(frame.flags & ~(ALLOWED_FLAGS[frame.type] ?? 0), 0, `flags ${frame.flags} on type ${frame.type}`);
  const connection = CONNECTION_TYPES.has(frame.type);
  assert.ok(Number.isInteger(frame.streamId) && frame.streamId >= 0 && frame.streamId <= 0xffffffff);
  assert.equal(frame.streamId === 0, connection, `stream ${frame.streamId} on type ${frame.type}`);
  assert.ok(Buffer.isBuffer(frame.payload));
  const length = frame.payload.length;
  if (frame.type === FrameType.DATA) {
    assert.ok(length <= maxDataPayload, `DATA piece of ${length} > ${maxDataPayload}`);
    return;
  }
  assert.ok(length <= MAX_CONTROL_PAYLOAD);
  const fixed = FIXED[frame.type];
  if (fixed !== undefined) assert.equal(length, fixed);
  if (frame.type === FrameType.WINDOW) assert.equal(length, (frame.flags & Flag.RESUMED) !== 0 ? 20 : 12);
  if (frame.type === FrameType.RESUME) assert.ok(length >= 1, 'RESUME without a kind');
  if (frame.type === FrameType.RESET || frame.type === FrameType.GOAWAY) {
    assert.ok(length >= 1 && length <= 1 + MAX_REASON_BYTES);
  }
}

/** Valid frames with a few bytes overwritten and possibly cut short. */
const mutatedArb = fc
  .tuple(
    fc.array(specArb, { maxLength: 6 }),
    fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 3 }),
    fc.nat(),
  )
  .map(([specs, edits, cut]) => {
    const bytes = Buffer.concat(specs.map(encodeSpec));
    for (const [at, value] of edits) if (bytes.length > 0) bytes[at % bytes.length] = value;
    return bytes.subarray(0, bytes.length === 0 ? 0 : cut % (bytes.length + 1));
  });
/** Frame headers that are mostly plausible (so decoding gets past them), with payload bytes after them. */
const headerSoupArb = fc
  .array(
    fc.record({
      type: fc.oneof({ arbitrary: fc.integer({ min: 1, max: 9 }), weight: 6 }, fc.integer({ min: 0, max: 255 })),
      flags: fc.oneof(
        { arbitrary: fc.constantFrom(0, 0x01, 0x02, 0x04, 0x80, 0x81, 0x82, 0x87), weight: 6 },
        fc.integer({ min: 0, max: 255 }),
      ),
      stream: fc.oneof(
        { arbitrary: fc.constant(-1), weight: 6 }, // -1: a stream id that suits the type
        fc.constantFrom(0, 1, 0xffffffff),
      ),
      length: fc.oneof(
        { arbitrary: fc.constant(-1), weight: 6 }, // -1: the length of the bytes that follow
        fc.integer({ min: 0, max: 20 }),
        fc.integer({ min: 0, max: 0xffffffff }),
      ),
      tail: fc.oneof(bufferArb(0, 20), bufferArb(8, 8), bufferArb(12, 12), bufferArb(20, 20), bufferArb(2, 2), bufferArb(1, 49)),
    }),
    { maxLength: 8 },
  )
  .map((parts) =>
    Buffer.concat(
      parts.map(({ type, flags, stream, length, tail }) =>
        rawFrame(type, flags, stream < 0 ? goodStream(type) : stream, tail, length < 0 ? tail.length : length),
      ),
    ),
  );
const soupArb = fc.oneof(
  fc.uint8Array({ maxLength: 400 }).map((a) => Buffer.from(a)),
  { arbitrary: headerSoupArb, weight: 2 },
  { arbitrary: mutatedArb, weight: 2 },
);
type Prefix = 'none' | 'preface' | 'partial-preface' | 'other-version';
/** Mostly a prefix that matches the decoder's expectation, so the soup itself gets decoded. */
const framingArb: fc.Arbitrary<{ prefix: Prefix; expectPreface: boolean }> = fc.oneof(
  { arbitrary: fc.constant({ prefix: 'preface' as const, expectPreface: true }), weight: 3 },
  { arbitrary: fc.constant({ prefix: 'none' as const, expectPreface: false }), weight: 3 },
  {
    arbitrary: fc.record({
      prefix: fc.constantFrom<Prefix>('none', 'preface', 'partial-preface', 'other-version'),
      expectPreface: fc.boolean(),
    }),
    weight: 2,
  },
);
const maxDataArb = fc.oneof(
  { arbitrary: fc.constant(MAX_DATA_PAYLOAD_LIMIT), weight: 3 },
  fc.integer({ min: 0, max: 64 }),
);

function prefixed(prefix: Prefix, soup: Buffer): Buffer {
  switch (prefix) {
    case 'preface':
      return Buffer.concat([PREFACE, soup]);
    case 'partial-preface':
      return Buffer.concat([PREFACE.subarray(0, 5), soup]);
    case 'other-version':
      return Buffer.concat([PREFACE.subarray(0, 7), h('02'), soup]);
    case 'none':
      return soup;
  }
}

describe('random byte soup', () => {
  test('frames, null or ProtocolError only; valid frames; bounded; chunking does not change the outcome', () => {
    fc.assert(
      fc.property(framingArb, soupArb, chunkingArb, maxDataArb, ({ prefix, expectPreface }, soup, sizes, maxData) => {
        const bytes = prefixed(prefix, soup);
        const options: DecoderOptions = { maxDataPayload: maxData, expectPreface };
        const chunked = decodeChunks(splitBy(bytes, sizes), options);
        for (const frame of chunked.frames) assertFrameValid(frame, maxData);
        const whole = decodeChunks([fresh(bytes)], options);
        assert.deepEqual(normalise(chunked.frames), normalise(whole.frames));
        assert.equal(chunked.error?.message, whole.error?.message);
        assert.equal(chunked.error?.goAwayCode, whole.error?.goAwayCode);
        assert.equal(chunked.error?.code, whole.error?.code);
        if (expectPreface && prefix === 'other-version') {
          assert.equal(chunked.error?.goAwayCode, GoAwayCode.UNSUPPORTED_VERSION);
        }
        if (expectPreface && prefix === 'none' && bytes.length > 0 && bytes[0] !== PREFACE[0]) {
          // Rejected on the first byte alone.
          assert.match(decodeChunks([fresh(bytes.subarray(0, 1))], options).error?.message ?? '', /wrong preface/);
        }
      }),
      { numRuns: 500 },
    );
  });

  test('every prefix of a valid stream decodes without error (need-more-bytes is null)', () => {
    fc.assert(
      fc.property(fc.array(specArb, { maxLength: 6 }), fc.nat(), chunkingArb, (specs, cut, sizes) => {
        const bytes = Buffer.concat([PREFACE, ...specs.map(encodeSpec)]);
        const prefix = bytes.subarray(0, cut % (bytes.length + 1));
        const result = decodeChunks(splitBy(prefix, sizes));
        assert.equal(result.error, undefined, result.error?.message);
        const expected = normalise(specs.map(modelFrame));
        const got = normalise(result.frames);
        // What was decoded is a prefix of what was sent (the last DATA run may be partial).
        assert.ok(got.length <= expected.length);
        got.forEach((event, i) => {
          const want = expected[i];
          assert.ok(want !== undefined);
          if (event.kind === 'data' && want.kind === 'data' && i === got.length - 1) {
            assert.ok(want.payload.startsWith(event.payload));
            assert.equal(event.streamId, want.streamId);
            if (event.fin) assert.equal(event.payload, want.payload);
          } else {
            assert.deepEqual(event, want);
          }
        });
      }),
      { numRuns: RUNS },
    );
  });
});

// ---------------------------------------------------------------------------
// 5. Validation rules
// ---------------------------------------------------------------------------

/** A minimal valid payload for each frame type. */
const GOOD_PAYLOAD: Readonly<Record<number, Buffer>> = {
  [FrameType.HELLO]: Buffer.alloc(0),
  [FrameType.OPEN]: h('0050'),
  [FrameType.ACCEPT]: Buffer.alloc(0),
  [FrameType.DATA]: h('00'),
  [FrameType.WINDOW]: Buffer.alloc(12),
  [FrameType.RESET]: h('00'),
  [FrameType.PING]: Buffer.alloc(8),
  [FrameType.GOAWAY]: h('00'),
  [FrameType.RESUME]: h('01'),
};
const TYPES = [1, 2, 3, 4, 5, 6, 7, 8, 9] as const;
/** A WINDOW with RESUMED carries 20 bytes, any other 12. */
const goodPayload = (type: number, flags = 0): Buffer =>
  type === FrameType.WINDOW && (flags & Flag.RESUMED) !== 0
    ? Buffer.alloc(RESUMED_WINDOW_LENGTH)
    : GOOD_PAYLOAD[type] ?? assert.fail(`no payload for ${type}`);

describe('validation: preface', () => {
  test('a wrong preface with 8 bytes or more', () => {
    assertProtocolError(() => nextOf(Buffer.from('HTTP/1.1 200 OK\r\n'), LIMIT), { message: /wrong preface/ });
    for (let i = 0; i < 7; i++) {
      const bad = Buffer.from(PREFACE);
      bad[i] = (bad[i] ?? 0) ^ 0x20;
      assertProtocolError(() => nextOf(bad, LIMIT), { message: /not a tcpipe link: wrong preface/ });
    }
  });

  test('a wrong first byte is detected before 8 bytes arrive', () => {
    for (const text of ['G', 'GET ', 'SSH-2.', '\u0016\u0003\u0001']) {
      const decoder = new FrameDecoder(LIMIT);
      decoder.push(Buffer.from(text));
      assertProtocolError(() => decoder.next(), { message: /wrong preface/ });
    }
  });

  test('a wrong byte inside the first 7 is detected as soon as it arrives', () => {
    for (let i = 0; i < 7; i++) {
      const decoder = new FrameDecoder(LIMIT);
      for (let j = 0; j < i; j++) {
        decoder.push(fresh(PREFACE.subarray(j, j + 1)));
        assert.equal(decoder.next(), null, `correct byte ${j} accepted`);
      }
      decoder.push(Buffer.from([(PREFACE[i] ?? 0) ^ 0xff]));
      assertProtocolError(() => decoder.next(), { message: /wrong preface/ });
    }
  });

  test('a correct partial preface waits for more bytes', () => {
    const decoder = new FrameDecoder(LIMIT);
    decoder.push(fresh(PREFACE.subarray(0, 3)));
    assert.equal(decoder.next(), null);
    decoder.push(fresh(PREFACE.subarray(3, 7)));
    assert.equal(decoder.next(), null);
    assert.equal(decoder.bufferedBytes, 7);
    decoder.push(fresh(PREFACE.subarray(7)));
    assert.equal(decoder.next(), null);
    assert.equal(decoder.bufferedBytes, 0);
    decoder.push(encodeAccept(1));
    assert.deepEqual(plain(decoder.next() ?? assert.fail('no frame')), { type: 3, flags: 0x80, streamId: 1, payload: '' });
  });

  test('an unsupported version is UNSUPPORTED_VERSION and names the version', () => {
    for (const version of [0, 2, 255]) {
      const preface = Buffer.from(PREFACE);
      preface[7] = version;
      assertProtocolError(() => nextOf(preface, LIMIT), {
        message: new RegExp(`unsupported protocol version ${version} \\(this side speaks 1\\)`),
        goAwayCode: GoAwayCode.UNSUPPORTED_VERSION,
      });
      // Also when the version byte arrives on its own.
      const decoder = new FrameDecoder(LIMIT);
      decoder.push(fresh(PREFACE.subarray(0, 7)));
      assert.equal(decoder.next(), null);
      decoder.push(Buffer.from([version]));
      assertProtocolError(() => decoder.next(), {
        message: /unsupported protocol version/,
        goAwayCode: GoAwayCode.UNSUPPORTED_VERSION,
      });
    }
  });

  test('with expectPreface false, the preface itself is an error (type 0x54)', () => {
    assert.equal(nextOf(PREFACE), null); // 8 bytes: not a whole header yet
    assertProtocolError(() => nextOf(Buffer.concat([PREFACE, h('0000')])), { message: /unknown frame type 0x54/ });
  });
});

describe('validation: frame header', () => {
  test('unknown types 0, 13, 255', () => {
    for (const type of [0, 13, 255]) {
      assertProtocolError(() => nextOf(rawFrame(type, 0, 0, Buffer.alloc(0))), {
        message: new RegExp(`unknown frame type 0x${type.toString(16)}\\b`),
      });
      assertProtocolError(() => nextOf(rawFrame(type, 0, 1, Buffer.alloc(0))), { message: /unknown frame type/ });
    }
  });

  test('flags: every value for every type, allowed iff inside the allowed set', () => {
    let accepted = 0;
    for (const type of TYPES) {
      for (let flags = 0; flags < 256; flags++) {
        const bytes = rawFrame(type, flags, goodStream(type), goodPayload(type, flags));
        if ((flags & ~(ALLOWED_FLAGS[type] ?? 0)) === 0) {
          accepted++;
          const frame = nextOf(bytes);
          assert.ok(frame !== null);
          assert.equal(frame.flags, flags);
        } else {
          assertProtocolError(() => nextOf(bytes), {
            message: new RegExp(`frame type ${type}: bad flags 0x${flags.toString(16)}$`),
          });
        }
      }
    }
    assert.equal(accepted, 30); // with the table pinned above: 1 + 1 + 2 + 4 + 16 + 2 + 2 + 1 + 1
  });

  test('stream id 0 on OPEN, ACCEPT, DATA, WINDOW, RESET', () => {
    for (const type of [FrameType.OPEN, FrameType.ACCEPT, FrameType.DATA, FrameType.WINDOW, FrameType.RESET]) {
      assertProtocolError(() => nextOf(rawFrame(type, 0, 0, goodPayload(type))), {
        message: new RegExp(`frame type ${type} needs a stream id`),
      });
    }
  });

  test('a non-zero stream id on HELLO, PING, GOAWAY, RESUME', () => {
    for (const type of [FrameType.HELLO, FrameType.PING, FrameType.GOAWAY, FrameType.RESUME]) {
      for (const stream of [1, 0x80000000, 0xffffffff]) {
        assertProtocolError(() => nextOf(rawFrame(type, 0, stream, goodPayload(type))), {
          message: new RegExp(`frame type ${type} must have stream id 0`),
        });
      }
    }
  });

  test('oversize DATA is rejected from the header alone', () => {
    for (const [limit, length] of [
      [MAX_DATA_PAYLOAD_LIMIT, MAX_DATA_PAYLOAD_LIMIT + 1],
      [MAX_DATA_PAYLOAD_LIMIT, 0xffffffff],
      [16, 17],
      [0, 1],
    ] as const) {
      const decoder = new FrameDecoder({ maxDataPayload: limit, expectPreface: false });
      decoder.push(encodeDataHeader(1, 0, length)); // no payload bytes at all
      assertProtocolError(() => decoder.next(), {
        message: new RegExp(`DATA frame of ${length} bytes exceeds the limit of ${limit}`),
        goAwayCode: GoAwayCode.LIMIT_EXCEEDED,
        code: ErrorCodes.FRAME_TOO_LARGE,
      });
    }
  });

  test('DATA of exactly the limit is accepted', () => {
    const decoder = new FrameDecoder({ maxDataPayload: 16, expectPreface: false });
    decoder.push(Buffer.concat([encodeDataHeader(1, Flag.FIN, 16), Buffer.alloc(16, 7)]));
    const frame = decoder.next();
    assert.ok(frame !== null);
    assert.equal(frame.payload.length, 16);
    assert.equal(frame.flags, Flag.FIN);
    // The full limit too, from the header alone.
    const big = new FrameDecoder(NO_PREFACE);
    big.push(encodeDataHeader(1, 0, MAX_DATA_PAYLOAD_LIMIT));
    assert.equal(big.next(), null);
  });

  test('setMaxDataPayload lowers the limit for later frames', () => {
    const decoder = new FrameDecoder(NO_PREFACE);
    decoder.push(Buffer.concat([encodeDataHeader(1, 0, 100), Buffer.alloc(100)]));
    assert.equal(decoder.next()?.payload.length, 100);
    decoder.setMaxDataPayload(99);
    decoder.push(Buffer.concat([encodeDataHeader(1, 0, 100), Buffer.alloc(100)]));
    assertProtocolError(() => decoder.next(), {
      message: /DATA frame of 100 bytes exceeds the limit of 99/,
      goAwayCode: GoAwayCode.LIMIT_EXCEEDED,
      code: ErrorCodes.FRAME_TOO_LARGE,
    });
  });

  test('oversize control frames are rejected from the header alone', () => {
    for (const type of TYPES) {
      if (type === FrameType.DATA) continue;
      for (const length of [MAX_CONTROL_PAYLOAD + 1, 0xffffffff]) {
        assertProtocolError(() => nextOf(rawFrame(type, 0, goodStream(type), Buffer.alloc(0), length)), {
          message: new RegExp(`control frame of ${length} bytes exceeds the limit of 1024`),
          goAwayCode: GoAwayCode.LIMIT_EXCEEDED,
          code: ErrorCodes.FRAME_TOO_LARGE,
        });
      }
    }
  });

  test('a HELLO of exactly 1024 bytes is accepted', () => {
    const payload = Buffer.concat([h('7fff 03fc'), Buffer.alloc(1020, 0x61)]);
    const frame = nextOf(rawFrame(FrameType.HELLO, 0, 0, payload));
    assert.ok(frame !== null);
    assert.equal(frame.payload.length, 1024);
    assert.equal(parseHello(frame.payload).get(0x7fff)?.length, 1020);
  });

  test('wrong fixed lengths (checked from the header alone)', () => {
    const cases: ReadonlyArray<readonly [number, number, readonly number[]]> = [
      [FrameType.OPEN, 2, [0, 1, 3, 1024]],
      [FrameType.ACCEPT, 0, [1, 2, 1024]],
      [FrameType.PING, 8, [0, 7, 9]],
    ];
    for (const [type, fixed, lengths] of cases) {
      for (const length of lengths) {
        assertProtocolError(() => nextOf(rawFrame(type, 0, goodStream(type), Buffer.alloc(0), length)), {
          message: new RegExp(`frame type ${type} must carry ${fixed} bytes, not ${length}`),
        });
      }
    }
  });

  test('WINDOW carries 12 bytes, or exactly 20 with RESUMED (checked from the header alone)', () => {
    for (const flags of [0, Flag.LOCAL, Flag.FIN_RECEIVED, Flag.ACCEPTED, Flag.LOCAL | Flag.FIN_RECEIVED | Flag.ACCEPTED]) {
      for (const length of [0, 8, 11, 13, 19, 20, 21]) {
        assertProtocolError(() => nextOf(rawFrame(FrameType.WINDOW, flags, 1, Buffer.alloc(0), length)), {
          message: new RegExp(`WINDOW must carry 12 bytes, not ${length}$`),
        });
      }
      assert.equal(nextOf(rawFrame(FrameType.WINDOW, flags, 1, Buffer.alloc(12)))?.payload.length, 12);
      const resumed = flags | Flag.RESUMED;
      for (const length of [0, 8, 12, 13, 19, 21, 1024]) {
        assertProtocolError(() => nextOf(rawFrame(FrameType.WINDOW, resumed, 1, Buffer.alloc(0), length)), {
          message: new RegExp(`WINDOW must carry 20 bytes, not ${length}$`),
        });
      }
      assert.equal(nextOf(rawFrame(FrameType.WINDOW, resumed, 1, Buffer.alloc(20)))?.payload.length, 20);
    }
    // An oversize WINDOW is still a control frame above the limit first.
    assertProtocolError(() => nextOf(rawFrame(FrameType.WINDOW, Flag.RESUMED, 1, Buffer.alloc(0), 1025)), {
      message: /control frame of 1025 bytes exceeds the limit of 1024/,
      goAwayCode: GoAwayCode.LIMIT_EXCEEDED,
      code: ErrorCodes.FRAME_TOO_LARGE,
    });
  });

  test('RESUME needs a kind byte: 1..1024 payload bytes, whatever the kind', () => {
    assertProtocolError(() => nextOf(rawFrame(FrameType.RESUME, 0, 0, Buffer.alloc(0))), { message: /RESUME without a kind/ });
    for (const length of [1, 5, 33, 49, MAX_CONTROL_PAYLOAD]) {
      const frame = nextOf(rawFrame(FrameType.RESUME, 0, 0, Buffer.alloc(length, 0x05)));
      assert.ok(frame !== null);
      assert.equal(frame.type, FrameType.RESUME);
      assert.equal(frame.payload.length, length);
    }
    for (const kind of [0, 6, 255]) {
      assert.equal(nextOf(rawFrame(FrameType.RESUME, 0, 0, Buffer.from([kind])))?.payload[0], kind);
    }
  });

  test('RESET and GOAWAY need 1..257 payload bytes', () => {
    for (const type of [FrameType.RESET, FrameType.GOAWAY]) {
      for (const length of [0, 1 + MAX_REASON_BYTES + 1, 1000]) {
        assertProtocolError(() => nextOf(rawFrame(type, 0, goodStream(type), Buffer.alloc(0), length)), {
          message: new RegExp(`frame type ${type}: bad length ${length}`),
        });
      }
      const longest = nextOf(rawFrame(type, 0, goodStream(type), Buffer.alloc(1 + MAX_REASON_BYTES, 0x41)));
      assert.equal(longest?.payload.length, 257);
    }
  });

  test('an error leaves the decoder failing the same way (nothing half-consumed)', () => {
    const decoder = new FrameDecoder(NO_PREFACE);
    decoder.push(rawFrame(13, 0, 0, Buffer.alloc(0)));
    assertProtocolError(() => decoder.next(), { message: /unknown frame type 0xd\b/ });
    assertProtocolError(() => decoder.next(), { message: /unknown frame type 0xd\b/ });
    assert.equal(decoder.bufferedBytes, HEADER_LENGTH);
  });

  test('frames before a bad one are handed out first', () => {
    const result = decodeChunks([fresh(Buffer.concat([PREFACE, encodeAccept(1), rawFrame(3, 0, 0, Buffer.alloc(0))]))]);
    assert.deepEqual(result.frames.map(plain), [{ type: 3, flags: 0x80, streamId: 1, payload: '' }]);
    assert.ok(result.error !== undefined);
    checkProtocolError(result.error, { message: /frame type 3 needs a stream id/ });
  });
});

describe('validation: payload parsers', () => {
  test('parseHello: empty, unknown keys kept, order kept, values are views', () => {
    assert.equal(parseHello(Buffer.alloc(0)).size, 0);
    const payload = h('ffff 0000  0001 0001 00  1234 0003 aabbcc');
    const params = parseHello(payload);
    assert.deepEqual(
      [...params].map(([k, v]) => [k, hex(v)]),
      [
        [0xffff, ''],
        [1, '00'],
        [0x1234, 'aabbcc'],
      ],
    );
    assert.equal(params.get(0x1234)?.buffer, payload.buffer);
  });

  test('parseHello: truncated TLV header', () => {
    for (const bad of ['00', '0001', '000100', '0001 0001 00  0002', '0001 0001 00  000200']) {
      assertProtocolError(() => parseHello(h(bad)), { message: /HELLO: truncated parameter/ });
    }
  });

  test('parseHello: truncated TLV value', () => {
    for (const bad of ['0001 0001', '0002 0004 000000', '0001 0001 00  0002 ffff 00']) {
      assertProtocolError(() => parseHello(h(bad)), { message: /HELLO: truncated parameter/ });
    }
  });

  test('parseHello: a repeated key', () => {
    assertProtocolError(() => parseHello(h('0002 0004 00000001  0003 0000  0002 0004 00000002')), {
      message: /HELLO: parameter 2 repeated/,
    });
    assertProtocolError(() => parseHello(h('0009 0000 0009 0000')), { message: /parameter 9 repeated/ });
  });

  test('helloU32: fallback when absent, error on a wrong size', () => {
    const params = parseHello(h('0002 0003 000001  0003 0005 0000000001  0004 0004 00000010  0005 0000'));
    assert.equal(helloU32(params, HelloKey.MAX_STREAMS, 0), 16);
    assert.equal(helloU32(params, 77, 42), 42);
    for (const key of [HelloKey.INITIAL_WINDOW, HelloKey.MAX_FRAME, HelloKey.HEARTBEAT_MS]) {
      assertProtocolError(() => helloU32(params, key, 0), { message: new RegExp(`HELLO: parameter ${key} must be 4 bytes`) });
    }
  });

  test('helloU8: fallback when absent, error on a wrong size', () => {
    const params = parseHello(h('0001 0000  0006 0002 0101  0007 0001 ff'));
    assert.equal(helloU8(params, 7, 0), 255);
    assert.equal(helloU8(params, 8, 3), 3);
    assertProtocolError(() => helloU8(params, HelloKey.ROLE, 0), { message: /HELLO: parameter 1 must be 1 byte/ });
    assertProtocolError(() => helloU8(params, 6, 0), { message: /HELLO: parameter 6 must be 1 byte/ });
  });

  test('parseWindow: up to 2^53-1, beyond is an error', () => {
    assert.deepEqual(parseWindow(h('00000000 00000000 00000000')), { consumed: 0, window: 0 });
    assert.deepEqual(parseWindow(h('001fffff ffffffff 00000001')), { consumed: Number.MAX_SAFE_INTEGER, window: 1 });
    assert.deepEqual(parseWindow(h('00000001 00000001 ffffffff')), { consumed: 2 ** 32 + 1, window: 0xffffffff });
    for (const hi of ['00200000', '00200001', '80000000', 'ffffffff']) {
      assertProtocolError(() => parseWindow(h(`${hi} 00000000 00000000`)), { message: /WINDOW consumed counter beyond 2\^53/ });
    }
  });

  test('parseWindow inverts encodeWindow for every safe consumed value', () => {
    fc.assert(
      fc.property(fc.maxSafeNat(), fc.integer({ min: 0, max: 0xffffffff }), (consumed, window) => {
        const frame = nextOf(encodeWindow(1, 0, consumed, window));
        assert.ok(frame !== null);
        assert.deepEqual(parseWindow(frame.payload), { consumed, window });
      }),
      { numRuns: RUNS },
    );
  });

  test('parseResumedReceived: the u64 after consumed and window, up to 2^53-1, beyond is an error', () => {
    const entry = (received: string): Buffer => h(`00000000 00000001 00000002 ${received}`);
    assert.equal(parseResumedReceived(entry('00000000 00000000')), 0);
    assert.equal(parseResumedReceived(entry('00000000 ffffffff')), 0xffffffff);
    assert.equal(parseResumedReceived(entry('00000001 00000001')), 2 ** 32 + 1);
    assert.equal(parseResumedReceived(entry('001fffff ffffffff')), Number.MAX_SAFE_INTEGER);
    assert.deepEqual(parseWindow(entry('001fffff ffffffff')), { consumed: 1, window: 2 });
    for (const hi of ['00200000', '00200001', '80000000', 'ffffffff']) {
      assertProtocolError(() => parseResumedReceived(entry(`${hi} 00000000`)), {
        message: /WINDOW received counter beyond 2\^53/,
      });
    }
    // consumed is checked by parseWindow, on a 20-byte entry too.
    assertProtocolError(() => parseWindow(h('00200000 00000000 00000000 00000000 00000000')), {
      message: /WINDOW consumed counter beyond 2\^53/,
    });
  });

  test('parseResumedReceived and parseWindow invert encodeResumedWindow for every safe value', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 0xffffffff }),
        flagsArb(FrameType.WINDOW),
        fc.maxSafeNat(),
        fc.integer({ min: 0, max: 0xffffffff }),
        fc.maxSafeNat(),
        (streamId, flags, consumed, window, received) => {
          const frame = nextOf(encodeResumedWindow(streamId, flags, consumed, window, received));
          assert.ok(frame !== null);
          assert.equal(frame.type, FrameType.WINDOW);
          assert.equal(frame.flags, flags | Flag.RESUMED);
          assert.equal(frame.streamId, streamId);
          assert.deepEqual(parseWindow(frame.payload), { consumed, window });
          assert.equal(parseResumedReceived(frame.payload), received);
        },
      ),
      { numRuns: RUNS },
    );
  });

  test('parseOpenPort: port 0 is an error, 1..65535 pass', () => {
    assertProtocolError(() => parseOpenPort(h('0000')), { message: /OPEN for port 0/ });
    assert.equal(parseOpenPort(h('0001')), 1);
    assert.equal(parseOpenPort(h('ffff')), 65535);
  });

  test('parseCodeAndReason replaces control characters', () => {
    const payload = Buffer.concat([h('05'), Buffer.from('a\nb\u0000c\u007fd\te\r\u001b[31m')]);
    assert.deepEqual(parseCodeAndReason(payload), { code: 5, reason: 'a?b?c?d?e??[31m' });
    assert.deepEqual(parseCodeAndReason(h('ff')), { code: 255, reason: '' });
    // Printable non-ASCII text is kept; invalid UTF-8 becomes U+FFFD, not an exception.
    assert.deepEqual(parseCodeAndReason(Buffer.concat([h('00'), Buffer.from('né €😀')])), { code: 0, reason: 'né €😀' });
    assert.deepEqual(parseCodeAndReason(h('01 61 ff 62')), { code: 1, reason: 'a\ufffdb' });
  });

  test(
    'parseCodeAndReason replaces C1 control characters too (U+0080..U+009F)',
    () => {
      const payload = Buffer.concat([h('03'), Buffer.from('a\u0085b\u009b31mc\u0080')]);
      const { code, reason } = parseCodeAndReason(payload);
      assert.equal(code, 3);
      assert.doesNotMatch(reason, /\p{Cc}/u);
      assert.equal(reason, 'a?b?31mc?');
    },
  );

  test('parseCodeAndReason output never contains a C0 control or DEL', () => {
    fc.assert(
      fc.property(bufferArb(1, 300), (payload) => {
        const { code, reason } = parseCodeAndReason(payload);
        assert.equal(code, payload[0]);
        assert.doesNotMatch(reason, /[\u0000-\u001f\u007f]/);
      }),
      { numRuns: RUNS },
    );
  });
});

describe('reasonBytes', () => {
  test('up to 256 bytes is unchanged', () => {
    assert.equal(reasonBytes('').length, 0);
    assert.equal(reasonBytes('a'.repeat(256)).toString(), 'a'.repeat(256));
    assert.equal(hex(reasonBytes(`${'a'.repeat(254)}é`)), hex(Buffer.from(`${'a'.repeat(254)}é`)));
    assert.equal(hex(reasonBytes(`${'a'.repeat(252)}😀`)), hex(Buffer.from(`${'a'.repeat(252)}😀`)));
  });

  test('ASCII is cut at 256 bytes', () => {
    assert.equal(reasonBytes('a'.repeat(257)).toString(), 'a'.repeat(256));
    assert.equal(reasonBytes('b'.repeat(10000)).length, 256);
  });

  test('a multi-byte character across byte 256 is dropped whole', () => {
    // é is 2 bytes, € is 3, 😀 is 4: each straddles the 256-byte boundary here.
    assert.equal(reasonBytes(`${'a'.repeat(255)}é`).toString(), 'a'.repeat(255));
    assert.equal(reasonBytes(`${'a'.repeat(254)}€`).toString(), 'a'.repeat(254));
    assert.equal(reasonBytes(`${'a'.repeat(255)}€`).toString(), 'a'.repeat(255));
    assert.equal(reasonBytes(`${'a'.repeat(253)}😀`).toString(), 'a'.repeat(253));
    assert.equal(reasonBytes(`${'a'.repeat(254)}😀`).toString(), 'a'.repeat(254));
    assert.equal(reasonBytes(`${'a'.repeat(255)}😀`).toString(), 'a'.repeat(255));
    assert.equal(reasonBytes('€'.repeat(100)).toString(), '€'.repeat(85)); // 255 bytes
    assert.equal(reasonBytes('😀'.repeat(100)).toString(), '😀'.repeat(64)); // 256 bytes
  });

  test('a character ending exactly at byte 256 is kept', () => {
    assert.equal(reasonBytes(`${'a'.repeat(254)}éz`).toString(), `${'a'.repeat(254)}é`);
    assert.equal(reasonBytes(`${'a'.repeat(253)}€z`).toString(), `${'a'.repeat(253)}€`);
  });

  test('encodeReset / encodeGoAway use the truncated reason and a matching length', () => {
    const reason = `${'x'.repeat(255)}é and more`;
    const reset = encodeReset(1, 0, 3, reason);
    assert.equal(reset.readUInt32BE(6), 256);
    assert.equal(reset.length, HEADER_LENGTH + 256);
    const frame = nextOf(reset);
    assert.ok(frame !== null);
    assert.deepEqual(parseCodeAndReason(frame.payload), { code: 3, reason: 'x'.repeat(255) });
    const goaway = encodeGoAway(4, 'y'.repeat(400));
    assert.equal(goaway.readUInt32BE(6), 257);
    assert.equal(nextOf(goaway)?.payload.length, 257);
  });
});

// ---------------------------------------------------------------------------
// 6. Zero copy
// ---------------------------------------------------------------------------

describe('zero copy', () => {
  test('a DATA payload inside one chunk is a view of that chunk', () => {
    const payload = Buffer.from('zero-copy payload');
    const chunk = fresh(Buffer.concat([PREFACE, encodeDataHeader(9, 0, payload.length), payload, encodeAccept(9)]));
    const decoder = new FrameDecoder(LIMIT);
    decoder.push(chunk);
    const frame = decoder.next();
    assert.ok(frame !== null);
    assert.equal(frame.payload.buffer, chunk.buffer);
    assert.equal(frame.payload.byteOffset, chunk.byteOffset + PREFACE.length + HEADER_LENGTH);
    assert.equal(frame.payload.length, payload.length);
    // Writing through the chunk shows through the payload: it really is the same memory.
    chunk[PREFACE.length + HEADER_LENGTH] = 0x5a;
    assert.equal(frame.payload[0], 0x5a);
  });

  test('a DATA payload split over chunks is handed out as one view per chunk', () => {
    const a = fresh(Buffer.concat([encodeDataHeader(9, Flag.FIN, 10), Buffer.from('0123')]));
    const b = fresh(Buffer.from('456'));
    const c = fresh(Buffer.concat([Buffer.from('789'), encodePing(0, Buffer.alloc(8))]));
    const decoder = new FrameDecoder(NO_PREFACE);
    for (const chunk of [a, b, c]) decoder.push(chunk);
    const pieces = [decoder.next(), decoder.next(), decoder.next()];
    const owners = [a, b, c];
    pieces.forEach((piece, i) => {
      assert.ok(piece !== null);
      assert.equal(piece.payload.buffer, owners[i]?.buffer);
      assert.equal(piece.flags, i === 2 ? Flag.FIN : 0);
    });
    assert.deepEqual(
      pieces.map((p) => p?.payload.toString()),
      ['0123', '456', '789'],
    );
    assert.equal(decoder.next()?.type, FrameType.PING);
  });

  test('a DATA payload whose header straddles chunks is still a view of the payload chunk', () => {
    const head = encodeDataHeader(2, 0, 5);
    const a = fresh(head.subarray(0, 4));
    const b = fresh(Buffer.concat([head.subarray(4), Buffer.from('hello')]));
    const decoder = new FrameDecoder(NO_PREFACE);
    decoder.push(a);
    decoder.push(b);
    const frame = decoder.next();
    assert.ok(frame !== null);
    assert.equal(frame.payload.toString(), 'hello');
    assert.equal(frame.payload.buffer, b.buffer);
    assert.equal(frame.payload.byteOffset, b.byteOffset + 6);
  });

  test('a control payload straddling chunks is copied correctly', () => {
    const goaway = encodeGoAway(GoAwayCode.SHUTDOWN, 'straddling reason');
    const decoder = new FrameDecoder(NO_PREFACE);
    const chunks = splitAt(goaway, 12, 20);
    for (const chunk of chunks) decoder.push(chunk);
    const frame = decoder.next();
    assert.ok(frame !== null);
    assert.deepEqual(parseCodeAndReason(frame.payload), { code: 1, reason: 'straddling reason' });
    // Mutating the chunks afterwards must not change the (copied) payload.
    for (const chunk of chunks) chunk.fill(0);
    assert.deepEqual(parseCodeAndReason(frame.payload), { code: 1, reason: 'straddling reason' });
  });
});
