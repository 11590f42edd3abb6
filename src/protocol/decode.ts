/**
 * Frame decoding: `push(chunk)` then `next()` until it returns null.
 * Pure: no sockets, timers or logs. Malformed input throws ProtocolError;
 * "need more bytes" is a null, never an exception.
 *
 * Received chunks are kept in a list and never concatenated. DATA payloads
 * are handed out as views of the received chunks, split where the chunks
 * split (see Frame). Control payloads (at most MAX_CONTROL_PAYLOAD bytes) are
 * copied only when they straddle two chunks.
 */
import { Buffer } from 'node:buffer';
import { ProtocolError, ErrorCodes } from '../errors.js';
import {
  ALLOWED_FLAGS,
  Flag,
  FrameType,
  GoAwayCode,
  HEADER_LENGTH,
  MAX_CONTROL_PAYLOAD,
  MAX_DATAGRAM_PAYLOAD,
  MAX_FRAME_TYPE,
  MAX_REASON_BYTES,
  OPEN_LENGTH,
  OPEN_ORIGIN_LENGTH_V4,
  OPEN_ORIGIN_LENGTH_V6,
  OriginFamily,
  PREFACE,
  PREFACE_LENGTH,
  PROTOCOL_VERSION,
  RESUMED_WINDOW_LENGTH,
  type FrameTypeValue,
} from './constants.js';
import type { CodeAndReason, Frame, HelloParams, OpenRequest, Origin, WindowUpdate } from './frame.js';
import { ipv4Text, ipv6Text } from './ip.js';

const EMPTY = Buffer.alloc(0);

function protocolError(message: string, goAway: number = GoAwayCode.PROTOCOL_ERROR): ProtocolError {
  return new ProtocolError(goAway, message);
}

/** Exact payload lengths; -1 means variable (checked elsewhere). */
const FIXED_LENGTH: Readonly<Record<number, number>> = Object.freeze({
  [FrameType.HELLO]: -1,
  [FrameType.OPEN]: -1,
  [FrameType.ACCEPT]: 0,
  [FrameType.DATA]: -1,
  [FrameType.WINDOW]: -1,
  [FrameType.RESET]: -1,
  [FrameType.PING]: 8,
  [FrameType.GOAWAY]: -1,
  [FrameType.RESUME]: -1,
  [FrameType.FLOW_OPEN]: -1,
  [FrameType.DATAGRAM]: -1,
  [FrameType.FLOW_CLOSE]: -1,
});

const CONNECTION_FRAMES =
  (1 << FrameType.HELLO) | (1 << FrameType.PING) | (1 << FrameType.GOAWAY) | (1 << FrameType.RESUME);

export interface DecoderOptions {
  /** Largest DATA payload accepted; larger is a protocol error. */
  readonly maxDataPayload: number;
  /** Expect the 8-byte preface before the first frame (default true). */
  readonly expectPreface?: boolean;
}

export class FrameDecoder {
  private readonly chunks: Buffer[] = [];
  /** Read offset into chunks[0]. */
  private offset = 0;
  private buffered = 0;
  private needPreface: boolean;
  private maxDataPayload: number;
  /** Remaining payload bytes of the DATA frame being handed out. */
  private dataRemaining = 0;
  private dataStream = 0;
  private dataFlags = 0;
  private readonly scratch = Buffer.allocUnsafe(HEADER_LENGTH);
  /** Both HELLOs listed capability origin: OPEN may carry one (15 or 39 bytes). */
  private openOrigin = false;

  constructor(options: DecoderOptions) {
    this.maxDataPayload = options.maxDataPayload;
    this.needPreface = options.expectPreface ?? true;
  }

  /** Bytes received and not yet handed out. */
  get bufferedBytes(): number {
    return this.buffered;
  }

  /** The HELLO exchange may lower the DATA limit for the rest of the link. */
  setMaxDataPayload(limit: number): void {
    this.maxDataPayload = limit;
  }

  /** Both HELLOs listed capability origin: from now on OPEN may carry the user's origin. */
  acceptOpenOrigin(): void {
    this.openOrigin = true;
  }

  push(chunk: Buffer): void {
    if (chunk.length === 0) return;
    this.chunks.push(chunk);
    this.buffered += chunk.length;
  }

  next(): Frame | null {
    if (this.needPreface) {
      if (this.buffered < PREFACE_LENGTH) {
        this.checkPartialPreface();
        return null;
      }
      const preface = this.take(PREFACE_LENGTH);
      if (preface.compare(PREFACE, 0, PREFACE_LENGTH - 1, 0, PREFACE_LENGTH - 1) !== 0) {
        throw protocolError('not a tcpipe link: wrong preface');
      }
      if (preface[PREFACE_LENGTH - 1] !== PROTOCOL_VERSION) {
        throw protocolError(
          `unsupported protocol version ${preface[PREFACE_LENGTH - 1] ?? '?'} (this side speaks ${PROTOCOL_VERSION})`,
          GoAwayCode.UNSUPPORTED_VERSION,
        );
      }
      this.needPreface = false;
    }
    if (this.dataRemaining > 0) return this.nextDataPiece();
    if (this.buffered < HEADER_LENGTH) return null;

    const head = this.peekHeader();
    const type = head[0] ?? 0;
    const flags = head[1] ?? 0;
    const streamId = head.readUInt32BE(2);
    const length = head.readUInt32BE(6);
    this.validateHeader(type, flags, streamId, length);
    const frameType = type as FrameTypeValue;

    if (frameType === FrameType.DATA) {
      this.skip(HEADER_LENGTH);
      if (length === 0) return { type: frameType, flags, streamId, payload: EMPTY };
      this.dataRemaining = length;
      this.dataStream = streamId;
      this.dataFlags = flags;
      return this.buffered > 0 ? this.nextDataPiece() : null;
    }
    if (this.buffered < HEADER_LENGTH + length) return null;
    this.skip(HEADER_LENGTH);
    const payload = length === 0 ? EMPTY : this.take(length);
    return { type: frameType, flags, streamId, payload };
  }

  /** Fail fast on a wrong first byte rather than waiting for 8 bytes of garbage. */
  private checkPartialPreface(): void {
    let i = 0;
    for (const chunk of this.chunks) {
      for (let j = chunk === this.chunks[0] ? this.offset : 0; j < chunk.length && i < PREFACE_LENGTH - 1; j++, i++) {
        if (chunk[j] !== PREFACE[i]) throw protocolError('not a tcpipe link: wrong preface');
      }
    }
  }

  private validateHeader(type: number, flags: number, streamId: number, length: number): void {
    if (type === 0 || type > MAX_FRAME_TYPE) throw protocolError(`unknown frame type 0x${type.toString(16)}`);
    const allowed = ALLOWED_FLAGS[type] ?? 0;
    if ((flags & ~allowed) !== 0) throw protocolError(`frame type ${type}: bad flags 0x${flags.toString(16)}`);
    const connectionFrame = (CONNECTION_FRAMES & (1 << type)) !== 0;
    if (connectionFrame && streamId !== 0) throw protocolError(`frame type ${type} must have stream id 0`);
    if (!connectionFrame && streamId === 0) throw protocolError(`frame type ${type} needs a stream id`);
    if (type === FrameType.DATA) {
      if (length > this.maxDataPayload) {
        throw new ProtocolError(
          GoAwayCode.LIMIT_EXCEEDED,
          `DATA frame of ${length} bytes exceeds the limit of ${this.maxDataPayload}`,
          ErrorCodes.FRAME_TOO_LARGE,
        );
      }
      return;
    }
    if (type === FrameType.DATAGRAM) {
      // A datagram arrives whole (frame boundary = datagram boundary), so it is bounded on its own.
      if (length > MAX_DATAGRAM_PAYLOAD) {
        throw new ProtocolError(
          GoAwayCode.LIMIT_EXCEEDED,
          `DATAGRAM of ${length} bytes exceeds the limit of ${MAX_DATAGRAM_PAYLOAD}`,
          ErrorCodes.FRAME_TOO_LARGE,
        );
      }
      return;
    }
    if (length > MAX_CONTROL_PAYLOAD) {
      throw new ProtocolError(
        GoAwayCode.LIMIT_EXCEEDED,
        `control frame of ${length} bytes exceeds the limit of ${MAX_CONTROL_PAYLOAD}`,
        ErrorCodes.FRAME_TOO_LARGE,
      );
    }
    const fixed = FIXED_LENGTH[type] ?? -1;
    if (fixed >= 0 && length !== fixed) throw protocolError(`frame type ${type} must carry ${fixed} bytes, not ${length}`);
    if (type === FrameType.OPEN && length !== OPEN_LENGTH) {
      const withOrigin = this.openOrigin && (length === OPEN_ORIGIN_LENGTH_V4 || length === OPEN_ORIGIN_LENGTH_V6);
      if (!withOrigin) {
        throw protocolError(
          this.openOrigin
            ? `OPEN must carry ${OPEN_LENGTH}, ${OPEN_ORIGIN_LENGTH_V4} or ${OPEN_ORIGIN_LENGTH_V6} bytes, not ${length}`
            : `frame type ${type} must carry ${OPEN_LENGTH} bytes, not ${length}`,
        );
      }
    }
    if (type === FrameType.WINDOW) {
      const expected = (flags & Flag.RESUMED) !== 0 ? RESUMED_WINDOW_LENGTH : 12;
      if (length !== expected) throw protocolError(`WINDOW must carry ${expected} bytes, not ${length}`);
    }
    if (type === FrameType.RESUME && length < 1) throw protocolError('RESUME without a kind');
    if ((type === FrameType.RESET || type === FrameType.GOAWAY || type === FrameType.FLOW_CLOSE) && (length < 1 || length > 1 + MAX_REASON_BYTES)) {
      throw protocolError(`frame type ${type}: bad length ${length}`);
    }
  }

  private nextDataPiece(): Frame | null {
    if (this.buffered === 0) return null;
    const first = this.chunks[0] as Buffer;
    const available = first.length - this.offset;
    const size = available < this.dataRemaining ? available : this.dataRemaining;
    const payload = first.subarray(this.offset, this.offset + size);
    this.skip(size);
    this.dataRemaining -= size;
    const flags = this.dataRemaining === 0 ? this.dataFlags : this.dataFlags & ~Flag.FIN;
    return { type: FrameType.DATA, flags, streamId: this.dataStream, payload };
  }

  /** The next HEADER_LENGTH bytes, without consuming them. */
  private peekHeader(): Buffer {
    const first = this.chunks[0] as Buffer;
    if (first.length - this.offset >= HEADER_LENGTH) return first.subarray(this.offset, this.offset + HEADER_LENGTH);
    let filled = 0;
    let index = 0;
    let from = this.offset;
    while (filled < HEADER_LENGTH) {
      const chunk = this.chunks[index++] as Buffer;
      const n = Math.min(chunk.length - from, HEADER_LENGTH - filled);
      chunk.copy(this.scratch, filled, from, from + n);
      filled += n;
      from = 0;
    }
    return this.scratch;
  }

  /** Consumes `length` bytes: a view when they lie in one chunk, else a copy. */
  private take(length: number): Buffer {
    const first = this.chunks[0] as Buffer;
    if (first.length - this.offset >= length) {
      const view = first.subarray(this.offset, this.offset + length);
      this.skip(length);
      return view;
    }
    const out = Buffer.allocUnsafe(length);
    let filled = 0;
    while (filled < length) {
      const chunk = this.chunks[0] as Buffer;
      const n = Math.min(chunk.length - this.offset, length - filled);
      chunk.copy(out, filled, this.offset, this.offset + n);
      filled += n;
      this.skip(n);
    }
    return out;
  }

  private skip(length: number): void {
    this.buffered -= length;
    this.offset += length;
    while (this.chunks.length > 0 && this.offset >= (this.chunks[0] as Buffer).length) {
      this.offset -= (this.chunks[0] as Buffer).length;
      this.chunks.shift();
    }
  }
}

export function parseOpenPort(payload: Buffer): number {
  const port = payload.readUInt16BE(0);
  if (port === 0) throw protocolError('OPEN for port 0');
  return port;
}

/** An OPEN's port and, with capability origin, the user's origin (the decoder checked the length). */
export function parseOpen(payload: Buffer): OpenRequest {
  const port = parseOpenPort(payload);
  if (payload.length === OPEN_LENGTH) return { port, origin: null };
  return { port, origin: parseOrigin(payload.subarray(OPEN_LENGTH)) };
}

function parseOrigin(bytes: Buffer): Origin {
  const family = bytes[0] ?? 0;
  const four = family === OriginFamily.TCP4 || family === OriginFamily.UDP4;
  const six = family === OriginFamily.TCP6 || family === OriginFamily.UDP6;
  const size = four ? 4 : 16;
  if ((!four && !six) || bytes.length !== 1 + size * 2 + 4) {
    throw protocolError(`OPEN: origin family 0x${family.toString(16).padStart(2, '0')} with ${bytes.length} bytes`);
  }
  const text = four ? ipv4Text : ipv6Text;
  return {
    family: four ? 4 : 6,
    transport: family === OriginFamily.UDP4 || family === OriginFamily.UDP6 ? 'dgram' : 'stream',
    sourceAddress: text(bytes.subarray(1, 1 + size)),
    destinationAddress: text(bytes.subarray(1 + size, 1 + size * 2)),
    sourcePort: bytes.readUInt16BE(1 + size * 2),
    destinationPort: bytes.readUInt16BE(3 + size * 2),
  };
}

export function parseWindow(payload: Buffer): WindowUpdate {
  return { consumed: readU64(payload, 0, 'consumed'), window: payload.readUInt32BE(8) };
}

/** The `received` counter of a RESUMED WINDOW (after consumed and window). */
export function parseResumedReceived(payload: Buffer): number {
  return readU64(payload, 12, 'received');
}

function readU64(payload: Buffer, at: number, name: string): number {
  const hi = payload.readUInt32BE(at);
  if (hi >= 0x20_0000) throw protocolError(`WINDOW ${name} counter beyond 2^53`);
  return hi * 0x1_0000_0000 + payload.readUInt32BE(at + 4);
}

export function parseCodeAndReason(payload: Buffer): CodeAndReason {
  const reason = payload.toString('utf8', 1).replace(/[\u0000-\u001f\u007f-\u009f]/g, '?');
  return { code: payload[0] ?? 0, reason };
}

/** HELLO TLVs: key u16, length u16, value. A key may appear once. */
export function parseHello(payload: Buffer): HelloParams {
  const params = new Map<number, Buffer>();
  let at = 0;
  while (at < payload.length) {
    if (payload.length - at < 4) throw protocolError('HELLO: truncated parameter');
    const key = payload.readUInt16BE(at);
    const length = payload.readUInt16BE(at + 2);
    if (payload.length - at - 4 < length) throw protocolError('HELLO: truncated parameter');
    if (params.has(key)) throw protocolError(`HELLO: parameter ${key} repeated`);
    params.set(key, payload.subarray(at + 4, at + 4 + length));
    at += 4 + length;
  }
  return params;
}

export function helloU32(params: HelloParams, key: number, fallback: number): number {
  const value = params.get(key);
  if (value === undefined) return fallback;
  if (value.length !== 4) throw protocolError(`HELLO: parameter ${key} must be 4 bytes`);
  return value.readUInt32BE(0);
}

export function helloU8(params: HelloParams, key: number, fallback: number): number {
  const value = params.get(key);
  if (value === undefined) return fallback;
  if (value.length !== 1) throw protocolError(`HELLO: parameter ${key} must be 1 byte`);
  return value[0] ?? fallback;
}
