/**
 * The kit as a client, on one link per check: dialing (past the peer's
 * penalty box), the handshake, and the two shapes most checks take (a
 * violation after a good handshake, a refusal instead of one).
 */
import crypto from 'node:crypto';
import { Flag, FrameType, PREFACE } from '../src/protocol/constants.js';
import { parseCodeAndReason } from '../src/protocol/decode.js';
import { encodePing } from '../src/protocol/encode.js';
import type { HelloInfo } from '../src/protocol/hello.js';
import type { ResumeIdentity } from '../src/link/resume-auth.js';
import { goAwayWith, passIf, type Check, type Outcome } from './check.js';
import { describe, dial, kitHello, type Endpoint, type KitHello, type RawLink, readPeerHello } from './wire.js';

export interface ClientContext {
  readonly endpoint: Endpoint;
  /** A port the peer relays to an echo server, or null (stream checks are skipped). */
  readonly echoPort: number | null;
  /** A /udp port the peer relays to a UDP echo server, or null (the datagram echo is skipped). */
  readonly udpEchoPort: number | null;
  readonly timeoutMs: number;
  /** Set by the resumption checks: the session the kit holds. */
  resume: { identity: ResumeIdentity } | null;
}

export interface Up {
  readonly link: RawLink;
  readonly peer: HelloInfo;
  readonly rawHello: Buffer;
}

const PENALTY_WAITS_MS = [1100, 2100, 4100, 8100];

/** Dials and sends `bytes`; a link closed before any byte may be the peer's penalty box: waits and retries. */
export async function dialSending(ctx: ClientContext, bytes: Buffer): Promise<RawLink | string> {
  for (let attempt = 0; ; attempt++) {
    const dialed = await dial(ctx.endpoint, ctx.timeoutMs);
    if ('error' in dialed) return `cannot dial: ${dialed.error}`;
    const { link } = dialed;
    link.send(bytes);
    const first = await link.next(ctx.timeoutMs, () => true).then((seen) => {
      // Put back what was read: the caller reads it again.
      return seen;
    });
    const wait = PENALTY_WAITS_MS[attempt];
    if (first.kind === 'closed' && link.bytesIn === 0 && wait !== undefined) {
      link.destroy();
      await new Promise((resolve) => setTimeout(resolve, wait));
      continue;
    }
    pending.set(link, first);
    return link;
  }
}

/** The first thing a freshly dialed link saw (dialSending had to look to tell the penalty box apart). */
const pending = new WeakMap<RawLink, Awaited<ReturnType<RawLink['next']>>>();

export async function firstSeen(link: RawLink, ms: number): Promise<Awaited<ReturnType<RawLink['next']>>> {
  const seen = pending.get(link);
  if (seen !== undefined) {
    pending.delete(link);
    return seen;
  }
  return link.next(ms);
}

/** Preface and HELLO both ways; the peer's HELLO as tcpipe reads it. */
export async function handshake(ctx: ClientContext, hello: Partial<KitHello> = {}): Promise<Up | string> {
  const link = await dialSending(ctx, Buffer.concat([PREFACE, kitHello({ role: 0, ...hello })]));
  if (typeof link === 'string') return link;
  const seen = await firstSeen(link, ctx.timeoutMs);
  const read = readPeerHello(seen);
  if ('error' in read) {
    link.destroy();
    return read.error;
  }
  return { link, peer: read.hello, rawHello: read.frame.payload };
}

/** A clean session: the peer's penalty box forgets the kit's earlier failures. */
export async function cleanSession(ctx: ClientContext): Promise<void> {
  const up = await handshake(ctx);
  if (typeof up === 'string') return;
  await pingAnswered(up.link, ctx.timeoutMs);
  await closeAndWait(up.link, ctx.timeoutMs);
}

export async function closeAndWait(link: RawLink, ms: number): Promise<void> {
  link.close();
  await link.closed(ms);
}

export async function pingAnswered(link: RawLink, ms: number): Promise<Outcome> {
  const opaque = crypto.randomBytes(8);
  link.send(encodePing(0, opaque));
  const seen = await link.next(ms, (f) => f.type === FrameType.PING && (f.flags & Flag.ACK) !== 0 && f.payload.equals(opaque));
  return passIf(seen.kind === 'frame', seen.kind === 'frame' ? 'answered with ACK and the same bytes' : describe(seen));
}

/** After a good handshake, sends `bytes` and expects GOAWAY `code`. */
export function violation(id: string, section: string, must: string, code: number, bytes: (up: Up, port: number) => Buffer | null, needsEcho = false): Check<ClientContext> {
  return {
    id,
    section,
    must,
    async run(ctx) {
      if (needsEcho && ctx.echoPort === null) return { skip: 'needs --echo-port' };
      const up = await handshake(ctx);
      if (typeof up === 'string') return passIf(false, `no session: ${up}`);
      const out = bytes(up, ctx.echoPort ?? 9);
      if (out === null) {
        up.link.destroy();
        return { skip: 'not applicable to this peer' };
      }
      up.link.send(out);
      const outcome = goAwayWith(await up.link.goAway(ctx.timeoutMs), code);
      up.link.destroy();
      return outcome;
    },
  };
}

/** Sends `bytes` instead of a good handshake; expects the preface then GOAWAY `code`. Cleans the penalty box after. */
export function refusal(id: string, section: string, must: string, code: number, bytes: Buffer): Check<ClientContext> {
  return {
    id,
    section,
    must,
    async run(ctx) {
      const link = await dialSending(ctx, bytes);
      if (typeof link === 'string') return passIf(false, link);
      const first = await firstSeen(link, ctx.timeoutMs);
      const prefaced = link.firstBytes.length > 0 && Buffer.concat(link.firstBytes).subarray(0, 8).equals(PREFACE);
      let outcome: Outcome;
      if (first.kind === 'frame' && first.frame.type === FrameType.GOAWAY) {
        const { code: got } = parseCodeAndReason(first.frame.payload);
        outcome = passIf(prefaced && got === code, `${prefaced ? 'preface, then ' : 'no preface, '}${describe(first)}`);
      } else outcome = passIf(false, describe(first));
      link.destroy();
      await cleanSession(ctx);
      return outcome;
    },
  };
}

export const hello = (h: Partial<KitHello>): Buffer => Buffer.concat([PREFACE, kitHello({ role: 0, ...h })]);
export const frame = (type: number, flags: number, stream: number, payload: Buffer = Buffer.alloc(0)): Buffer => {
  const head = Buffer.alloc(10);
  head[0] = type;
  head[1] = flags;
  head.writeUInt32BE(stream, 2);
  head.writeUInt32BE(payload.length, 6);
  return Buffer.concat([head, payload]);
};
