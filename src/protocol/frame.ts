import type { FrameTypeValue } from './constants.js';
import type { ProxyAddresses } from './proxy-header.js';

/**
 * One decoded frame. DATA frames may arrive split: the decoder hands out a
 * DATA payload in pieces as bytes arrive (never copying them), each piece a
 * DATA frame of its own; FIN is set only on the last piece. A receiver treats
 * them exactly like DATA frames sent separately.
 */
export interface Frame {
  readonly type: FrameTypeValue;
  readonly flags: number;
  readonly streamId: number;
  readonly payload: Buffer;
}

export interface WindowUpdate {
  /** Total bytes of this stream the receiver has consumed (delivered onward). */
  readonly consumed: number;
  /** Bytes the sender may send beyond `consumed`. */
  readonly window: number;
}

export interface CodeAndReason {
  readonly code: number;
  readonly reason: string;
}

export type HelloParams = ReadonlyMap<number, Buffer>;

/**
 * The user's connection as the entry side saw it (capability origin): its
 * source, and the address it connected to. Behind a load balancer that sends
 * a PROXY header, the addresses that header named.
 */
export type Origin = ProxyAddresses;

/** An OPEN's payload: the port, and the origin when it carries one. */
export interface OpenRequest {
  readonly port: number;
  readonly origin: Origin | null;
}
