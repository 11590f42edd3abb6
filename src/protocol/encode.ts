/**
 * Frame encoding. Every function returns fresh bytes and touches no socket:
 * the caller writes the header and any DATA payload together (cork or writev)
 * so the payload itself is never copied, except a small DATA frame that goes
 * out alone (encodeSmallData), where one copy is cheaper than a writev.
 */
import { Buffer } from 'node:buffer';
import {
  Flag,
  FrameType,
  HEADER_LENGTH,
  MAX_REASON_BYTES,
  OriginFamily,
  RESUMED_WINDOW_LENGTH,
  type FrameTypeValue,
} from './constants.js';
import type { Origin } from './frame.js';
import { addressBytes } from './proxy-header.js';

function header(type: FrameTypeValue, flags: number, streamId: number, length: number, extra = 0): Buffer {
  const buf = Buffer.allocUnsafe(HEADER_LENGTH + extra);
  buf[0] = type;
  buf[1] = flags;
  buf.writeUInt32BE(streamId, 2);
  buf.writeUInt32BE(length, 6);
  return buf;
}

/** Header of a DATA frame; the payload follows it in the same write. */
export function encodeDataHeader(streamId: number, flags: number, length: number): Buffer {
  return header(FrameType.DATA, flags, streamId, length);
}

/** A whole DATA frame in one buffer: for a small payload that is written alone (a copy of a few hundred bytes costs less than the second write or a writev). */
export function encodeSmallData(streamId: number, flags: number, payload: Buffer): Buffer {
  const buf = header(FrameType.DATA, flags, streamId, payload.length, payload.length);
  payload.copy(buf, HEADER_LENGTH);
  return buf;
}

export function encodeOpen(streamId: number, flags: number, port: number): Buffer {
  const buf = header(FrameType.OPEN, flags, streamId, 2, 2);
  buf.writeUInt16BE(port, HEADER_LENGTH);
  return buf;
}

/**
 * OPEN with the user's origin after the port (capability origin; send it only
 * when both HELLOs listed it): family u8, source address, destination
 * address (4 or 16 bytes each), source port u16, destination port u16. An
 * origin whose addresses are not of its family is left out (a plain OPEN).
 */
export function encodeOpenWithOrigin(streamId: number, flags: number, port: number, origin: Origin | null): Buffer {
  const source = origin === null ? null : addressBytes(origin.family, origin.sourceAddress);
  const destination = origin === null ? null : addressBytes(origin.family, origin.destinationAddress);
  if (origin === null || source === null || destination === null) return encodeOpen(streamId, flags, port);
  const length = 2 + 1 + source.length * 2 + 4;
  const buf = header(FrameType.OPEN, flags, streamId, length, length);
  let at = HEADER_LENGTH;
  buf.writeUInt16BE(port, at);
  const dgram = origin.transport === 'dgram';
  buf[at + 2] = origin.family === 4 ? (dgram ? OriginFamily.UDP4 : OriginFamily.TCP4) : dgram ? OriginFamily.UDP6 : OriginFamily.TCP6;
  at += 3;
  source.copy(buf, at);
  destination.copy(buf, at + source.length);
  at += source.length * 2;
  buf.writeUInt16BE(origin.sourcePort & 0xffff, at);
  buf.writeUInt16BE(origin.destinationPort & 0xffff, at + 2);
  return buf;
}

/** ACCEPT always comes from the exit side, so it always carries LOCAL. */
export function encodeAccept(streamId: number): Buffer {
  return header(FrameType.ACCEPT, Flag.LOCAL, streamId, 0);
}

/** `consumed` may exceed 2^32: it is written as a u64 (hi, lo). */
export function encodeWindow(streamId: number, flags: number, consumed: number, window: number): Buffer {
  const buf = header(FrameType.WINDOW, flags, streamId, 12, 12);
  buf.writeUInt32BE(Math.floor(consumed / 0x1_0000_0000), HEADER_LENGTH);
  buf.writeUInt32BE(consumed >>> 0, HEADER_LENGTH + 4);
  buf.writeUInt32BE(window, HEADER_LENGTH + 8);
  return buf;
}

/** A resumed link's stream entry: WINDOW with RESUMED, plus the bytes received so far. */
export function encodeResumedWindow(streamId: number, flags: number, consumed: number, window: number, received: number): Buffer {
  const buf = header(FrameType.WINDOW, flags | Flag.RESUMED, streamId, RESUMED_WINDOW_LENGTH, RESUMED_WINDOW_LENGTH);
  writeU64(buf, HEADER_LENGTH, consumed);
  buf.writeUInt32BE(window, HEADER_LENGTH + 8);
  writeU64(buf, HEADER_LENGTH + 12, received);
  return buf;
}

/** RESUME: a kind byte, then the kind's fields (see ResumeKind). */
export function encodeResume(kind: number, body: Buffer = EMPTY): Buffer {
  const buf = header(FrameType.RESUME, 0, 0, 1 + body.length, 1 + body.length);
  buf[HEADER_LENGTH] = kind;
  body.copy(buf, HEADER_LENGTH + 1);
  return buf;
}

function writeU64(buf: Buffer, at: number, value: number): void {
  buf.writeUInt32BE(Math.floor(value / 0x1_0000_0000), at);
  buf.writeUInt32BE(value >>> 0, at + 4);
}

const EMPTY = Buffer.alloc(0);

/** Truncates a reason to MAX_REASON_BYTES without splitting a UTF-8 sequence. */
export function reasonBytes(reason: string): Buffer {
  const bytes = Buffer.from(reason, 'utf8');
  if (bytes.length <= MAX_REASON_BYTES) return bytes;
  let end = MAX_REASON_BYTES;
  while (end > 0 && ((bytes[end] ?? 0) & 0xc0) === 0x80) end--;
  return bytes.subarray(0, end);
}

function codeAndReason(type: FrameTypeValue, flags: number, streamId: number, code: number, reason: string): Buffer {
  const text = reasonBytes(reason);
  const buf = header(type, flags, streamId, 1 + text.length, 1 + text.length);
  buf[HEADER_LENGTH] = code;
  text.copy(buf, HEADER_LENGTH + 1);
  return buf;
}

export function encodeReset(streamId: number, flags: number, code: number, reason: string): Buffer {
  return codeAndReason(FrameType.RESET, flags, streamId, code, reason);
}

export function encodeGoAway(code: number, reason: string): Buffer {
  return codeAndReason(FrameType.GOAWAY, 0, 0, code, reason);
}

/** `opaque` is 8 bytes; a shorter one is padded with zeros, never with stale memory. */
export function encodePing(flags: number, opaque: Buffer): Buffer {
  const buf = header(FrameType.PING, flags, 0, 8, 8);
  buf.fill(0, HEADER_LENGTH);
  opaque.copy(buf, HEADER_LENGTH, 0, 8);
  return buf;
}

/** HELLO parameters are TLVs: key u16, length u16, value. */
export function encodeHello(params: ReadonlyMap<number, Buffer>): Buffer {
  let length = 0;
  for (const value of params.values()) length += 4 + value.length;
  const buf = header(FrameType.HELLO, 0, 0, length, length);
  let at = HEADER_LENGTH;
  for (const [key, value] of params) {
    buf.writeUInt16BE(key, at);
    buf.writeUInt16BE(value.length, at + 2);
    value.copy(buf, at + 4);
    at += 4 + value.length;
  }
  return buf;
}

export function u32(value: number): Buffer {
  const buf = Buffer.allocUnsafe(4);
  buf.writeUInt32BE(value, 0);
  return buf;
}

export function u8(value: number): Buffer {
  return Buffer.from([value]);
}
