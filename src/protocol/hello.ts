/** The HELLO frame's parameters as a typed record, and their validation (pure). */
import { GoAwayCode, HelloKey, MAX_DATA_PAYLOAD_LIMIT } from './constants.js';
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
}

/** "A receiver rejects an initial-window below 1,024 or a max-frame outside 1,024..1 MiB." */
export const MIN_WINDOW = 1024;
export const MIN_FRAME = 1024;

export function encodeHelloInfo(info: HelloInfo): Buffer {
  const params = new Map<number, Buffer>([
    [HelloKey.ROLE, u8(info.role === 'client' ? 0 : 1)],
    [HelloKey.INITIAL_WINDOW, u32(info.initialWindow)],
    [HelloKey.MAX_FRAME, u32(info.maxFramePayload)],
    [HelloKey.MAX_STREAMS, u32(info.maxStreams)],
    [HelloKey.HEARTBEAT_MS, u32(info.heartbeatMs)],
    [HelloKey.SOFTWARE, Buffer.from(info.software.slice(0, 64), 'utf8')],
  ]);
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
  const heartbeatMs = helloU32(params, HelloKey.HEARTBEAT_MS, 0);
  const software = (params.get(HelloKey.SOFTWARE)?.toString('utf8') ?? '').replace(/[^\x20-\x7e]/g, '?');
  return { role: role === 0 ? 'client' : 'server', initialWindow, maxFramePayload, maxStreams, heartbeatMs, software };
}
