/** The HELLO frame's parameters as a typed record, and their validation (pure). */
import { CAPABILITY_NAMES, GoAwayCode, HelloKey, MAX_DATA_PAYLOAD_LIMIT } from './constants.js';
import { encodeHello, u32, u8 } from './encode.js';
import { helloU32, helloU8 } from './decode.js';
import type { HelloParams } from './frame.js';
import { ProtocolError } from '../errors.js';

export type Role = 'client' | 'server';

export interface HelloInfo {
  readonly role: Role;
  readonly initialWindow: number;
  readonly maxFramePayload: number;
  readonly maxStreams: number;
  readonly heartbeatMs: number;
  readonly software: string;
  /** How long the sender holds streams when the link drops (ms); 0: it does not resume. */
  readonly resumeGraceMs?: number;
  /** The sender's X25519 public key for this link (32 bytes), when it resumes. */
  readonly keyShare?: Buffer | null;
  /** Client only: the session it holds and asks to resume (16 bytes). */
  readonly sessionId?: Buffer | null;
  /** Capability ids the sender speaks (HELLO key 10), ascending; empty when absent. */
  readonly capabilities?: readonly number[];
}

/** A capability this side's configuration needs of its partner, and the option that needs it (for the log line). */
export interface CapabilityRequirement {
  readonly capability: number;
  readonly neededBy: string;
}

export const KEY_SHARE_LENGTH = 32;
export const SESSION_ID_LENGTH = 16;

/** "A receiver rejects an initial-window below 1,024 or a max-frame outside 1,024..1 MiB." */
export const MIN_WINDOW = 1024;
export const MIN_FRAME = 1024;
/** "A heartbeat of 1..299 ms is taken as 300 ms; 0 or absent: the sender has no preference." */
export const MIN_HEARTBEAT_MS = 300;
/** "software: at most 64 bytes; a receiver shows at most the first 64 bytes." */
export const MAX_SOFTWARE_BYTES = 64;

/** The first 64 bytes of `software`, never splitting a UTF-8 sequence. */
function softwareBytes(software: string): Buffer {
  const bytes = Buffer.from(software, 'utf8');
  if (bytes.length <= MAX_SOFTWARE_BYTES) return bytes;
  let end = MAX_SOFTWARE_BYTES;
  while (end > 0 && ((bytes[end] ?? 0) & 0xc0) === 0x80) end--;
  return bytes.subarray(0, end);
}

export function encodeHelloInfo(info: HelloInfo): Buffer {
  const params = new Map<number, Buffer>([
    [HelloKey.ROLE, u8(info.role === 'client' ? 0 : 1)],
    [HelloKey.INITIAL_WINDOW, u32(info.initialWindow)],
    [HelloKey.MAX_FRAME, u32(info.maxFramePayload)],
    [HelloKey.MAX_STREAMS, u32(info.maxStreams)],
    [HelloKey.HEARTBEAT_MS, u32(info.heartbeatMs)],
    [HelloKey.SOFTWARE, softwareBytes(info.software)],
  ]);
  const capabilities = info.capabilities ?? [];
  if (capabilities.length > 0) {
    const list = Buffer.allocUnsafe(capabilities.length * 2);
    capabilities.forEach((id, i) => list.writeUInt16BE(id, i * 2));
    params.set(HelloKey.CAPABILITIES, list);
  }
  const grace = info.resumeGraceMs ?? 0;
  if (grace > 0 && info.keyShare) {
    params.set(HelloKey.RESUME_GRACE_MS, u32(grace));
    params.set(HelloKey.KEY_SHARE, info.keyShare);
    if (info.sessionId) params.set(HelloKey.SESSION_ID, info.sessionId);
  }
  return encodeHello(params);
}

export function decodeHelloInfo(params: HelloParams): HelloInfo {
  const fail = (message: string): never => {
    throw new ProtocolError(GoAwayCode.PROTOCOL_ERROR, `HELLO: ${message}`);
  };
  const role = helloU8(params, HelloKey.ROLE, 255);
  if (role > 1) fail('missing or bad role');
  const initialWindow = helloU32(params, HelloKey.INITIAL_WINDOW, 0);
  if (initialWindow < MIN_WINDOW) fail(`initial window ${initialWindow} below ${MIN_WINDOW}`);
  const maxFramePayload = helloU32(params, HelloKey.MAX_FRAME, 0);
  if (maxFramePayload < MIN_FRAME || maxFramePayload > MAX_DATA_PAYLOAD_LIMIT) fail(`max frame ${maxFramePayload} out of range`);
  const maxStreams = helloU32(params, HelloKey.MAX_STREAMS, 0);
  if (maxStreams < 1) fail('max streams must be at least 1');
  const announcedHeartbeat = helloU32(params, HelloKey.HEARTBEAT_MS, 0);
  const heartbeatMs = announcedHeartbeat > 0 && announcedHeartbeat < MIN_HEARTBEAT_MS ? MIN_HEARTBEAT_MS : announcedHeartbeat;
  // A longer software string is accepted (it is only for logs) and shown cut.
  const software = (params.get(HelloKey.SOFTWARE)?.subarray(0, MAX_SOFTWARE_BYTES).toString('utf8') ?? '').replace(/[^\x20-\x7e]/g, '?');
  let resumeGraceMs = helloU32(params, HelloKey.RESUME_GRACE_MS, 0);
  const keyShare = params.get(HelloKey.KEY_SHARE) ?? null;
  const sessionId = params.get(HelloKey.SESSION_ID) ?? null;
  if (resumeGraceMs > 0 && keyShare?.length !== KEY_SHARE_LENGTH) fail('resume without a 32-byte key share');
  if (sessionId !== null && sessionId.length !== SESSION_ID_LENGTH) fail('session id must be 16 bytes');
  if (keyShare === null) resumeGraceMs = 0;
  const list = params.get(HelloKey.CAPABILITIES);
  if (list !== undefined && list.length % 2 !== 0) fail('capabilities must be a list of u16');
  const capabilities: number[] = [];
  if (list !== undefined) for (let i = 0; i < list.length; i += 2) capabilities.push(list.readUInt16BE(i));
  return {
    role: role === 0 ? 'client' : 'server',
    initialWindow,
    maxFramePayload,
    maxStreams,
    heartbeatMs,
    software,
    resumeGraceMs,
    keyShare: resumeGraceMs > 0 ? Buffer.from(keyShare ?? []) : null,
    sessionId: resumeGraceMs > 0 && sessionId !== null ? Buffer.from(sessionId) : null,
    capabilities,
  };
}

/** Both HELLOs announced the capability: the feature may be used on this link. */
export function bothSpeak(capability: number, ours: readonly number[], peer: HelloInfo): boolean {
  return ours.includes(capability) && (peer.capabilities ?? []).includes(capability);
}

/**
 * The first requirement of this side that the partner's HELLO does not meet,
 * as the one-line reason both sides log; null when all are met.
 */
export function unmetRequirement(required: readonly CapabilityRequirement[], peer: HelloInfo): string | null {
  const offered = peer.capabilities ?? [];
  for (const { capability, neededBy } of required) {
    if (!offered.includes(capability)) {
      const name = CAPABILITY_NAMES[capability] ?? `#${capability}`;
      return `the partner (${peer.software || 'unknown software'}) lacks capability '${name}', which ${neededBy} needs: upgrade it or drop the option`;
    }
  }
  return null;
}
