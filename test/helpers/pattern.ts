/**
 * The byte patterns the fault suite moves and checks, shared by the agents
 * (test/faults/agent.ts) on both ends of a relayed connection.
 *
 * Every stream carries its own pattern: byte i of the stream keyed `key` is
 * TABLE[(offset(key) + i) mod P], where TABLE is a fixed pseudo-random table
 * of P bytes (P prime, about 1 MiB) that every process derives from the same
 * seed. A byte from another stream, a duplicated or a reordered chunk lands
 * at an offset where the table holds something else, so every byte received
 * is checked without storing what was sent. Sending and checking are slices
 * of the table: no per-byte work in JavaScript.
 *
 * User -> target, a connection starts with a 20-byte header (magic, key,
 * reply size, flags, reset threshold) that tells the pattern target what to
 * do; the user's pattern bytes follow. Target -> user is the pattern of
 * `replyKey(key)`, without header.
 */
import { Buffer } from 'node:buffer';

/** Largest prime below 2^20. */
export const P = 1_048_573;
/** Largest slice taken at once (the table is extended by this much past P). */
export const MAX_SLICE = 1024 * 1024;

function buildTable(): Buffer {
  const table = Buffer.allocUnsafe(P + MAX_SLICE);
  let x = 0x2545f491;
  for (let i = 0; i < P; i++) {
    // xorshift32
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    table[i] = x & 0xff;
  }
  table.copy(table, P, 0, MAX_SLICE);
  return table;
}

const TABLE = buildTable();

export function offsetOf(key: number): number {
  // Knuth's multiplicative hash, spread over the table.
  return Number((BigInt(key >>> 0) * 2654435761n) % BigInt(P));
}

export function replyKey(key: number): number {
  return (key ^ 0x5bd1e995) >>> 0;
}

/** `length` bytes (at most MAX_SLICE) of the pattern `key` from stream offset `at` (a view, no copy). */
export function slice(key: number, at: number, length: number): Buffer {
  if (length > MAX_SLICE) throw new Error(`slice of ${length} bytes is above ${MAX_SLICE}`);
  const start = (offsetOf(key) + (at % P)) % P;
  return TABLE.subarray(start, start + length);
}

/** Bytes of `chunk` that differ from the pattern `key` at stream offset `at`. */
export function mismatches(key: number, at: number, chunk: Buffer): number {
  let bad = 0;
  for (let done = 0; done < chunk.length; done += MAX_SLICE) {
    const part = chunk.subarray(done, done + MAX_SLICE);
    const want = slice(key, at + done, part.length);
    if (part.equals(want)) continue;
    for (let i = 0; i < part.length; i++) if (part[i] !== want[i]) bad++;
  }
  return bad;
}

export const MAGIC = 0x54504631; // "TPF1"
export const HEADER_BYTES = 20;

export const Flags = Object.freeze({
  /** The target resets its connection once it has received `resetAt` bytes (and never sends its FIN). */
  TARGET_RESET: 1,
  /** Both sides send in small chunks every few milliseconds (streams stay in flight for a while). */
  PACED: 2,
  /** The target sends its FIN only after it has read the user's FIN (keeps the stream fully open). */
  TARGET_WAIT_EOF: 4,
});

export interface Header {
  readonly key: number;
  readonly replySize: number;
  readonly flags: number;
  readonly resetAt: number;
}

export function encodeHeader(h: Header): Buffer {
  const buf = Buffer.alloc(HEADER_BYTES);
  buf.writeUInt32BE(MAGIC, 0);
  buf.writeUInt32BE(h.key >>> 0, 4);
  buf.writeUInt32BE(h.replySize >>> 0, 8);
  buf.writeUInt32BE(h.flags >>> 0, 12);
  buf.writeUInt32BE(h.resetAt >>> 0, 16);
  return buf;
}

export function decodeHeader(buf: Buffer): Header | null {
  if (buf.length < HEADER_BYTES || buf.readUInt32BE(0) !== MAGIC) return null;
  return { key: buf.readUInt32BE(4), replySize: buf.readUInt32BE(8), flags: buf.readUInt32BE(12), resetAt: buf.readUInt32BE(16) };
}
