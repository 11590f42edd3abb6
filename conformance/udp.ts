/**
 * The kit's side of capability udp (docs/PROTOCOL.md, "Datagrams (capability
 * 2)"), shared by both roles: a flow through the peer to a UDP echo target,
 * and a DATAGRAM for a flow the peer never saw. The kit is the flow's entry
 * side, so the peer, as exit side, sets LOCAL on what it sends back.
 */
import crypto from 'node:crypto';
import { Flag, FlowCloseCode, FrameType } from '../src/protocol/constants.js';
import { parseCodeAndReason } from '../src/protocol/decode.js';
import { encodePing } from '../src/protocol/encode.js';
import { encodeDatagram, encodeFlowClose, encodeFlowOpen } from '../src/protocol/datagram.js';
import type { HelloInfo } from '../src/protocol/hello.js';
import { passIf, type Outcome } from './check.js';
import { describe, type RawLink } from './wire.js';

export const CAPABILITY_ORIGIN = 1;
export const CAPABILITY_UDP = 2;

export function lists(peer: HelloInfo, capability: number): boolean {
  return (peer.capabilities ?? []).includes(capability);
}

/** The link still answers a PING: it was kept. */
export async function linkKept(link: RawLink, ms: number): Promise<boolean> {
  const opaque = crypto.randomBytes(8);
  link.send(encodePing(0, opaque));
  const seen = await link.next(ms, (f) => (f.type === FrameType.PING && (f.flags & Flag.ACK) !== 0 && f.payload.equals(opaque)) || f.type === FrameType.GOAWAY);
  return seen.kind === 'frame' && seen.frame.type === FrameType.PING;
}

/**
 * FLOW_OPEN to `port` with the kit's first datagram right behind it, then
 * more: each must come back whole (a zero-length one too) on the same flow,
 * with LOCAL. UDP may lose a datagram, so each is sent up to three times;
 * the report says which needed it.
 */
export async function udpEcho(link: RawLink, port: number, timeoutMs: number, flowId = 1): Promise<Outcome> {
  const datagrams = [crypto.randomBytes(32), Buffer.alloc(0), crypto.randomBytes(1200)];
  link.send(encodeFlowOpen(flowId, port, { address: '192.0.2.7', port: 40000 }));
  const notes: string[] = [];
  // A late answer to an earlier try is not the next datagram's answer.
  const earlier = new Set<string>();
  const wanted = (f: { type: number; streamId: number; payload: Buffer }): boolean =>
    f.type === FrameType.GOAWAY || (f.streamId === flowId && !(f.type === FrameType.DATAGRAM && earlier.has(f.payload.toString('hex'))));
  for (const [i, datagram] of datagrams.entries()) {
    let back = false;
    for (let attempt = 0; attempt < 3 && !back; attempt++) {
      link.send(encodeDatagram(flowId, 0, datagram));
      const seen = await link.next(Math.min(timeoutMs, 1500), wanted);
      if (seen.kind !== 'frame' && seen.kind !== 'timeout') return passIf(false, `datagram ${i + 1}: then ${describe(seen)}`);
      if (seen.kind === 'timeout') continue;
      const f = seen.frame;
      if (f.type === FrameType.GOAWAY || f.type === FrameType.FLOW_CLOSE) return passIf(false, `datagram ${i + 1}: ${describeFlowFrame(seen.frame)}`);
      if (f.type !== FrameType.DATAGRAM) return passIf(false, `datagram ${i + 1}: ${describe(seen)}`);
      if ((f.flags & Flag.LOCAL) === 0) return passIf(false, `datagram ${i + 1} came back without LOCAL`);
      if (!f.payload.equals(datagram)) return passIf(false, `datagram ${i + 1} of ${datagram.length} bytes came back as ${f.payload.length} bytes${f.payload.length === datagram.length ? ', different' : ''}`);
      back = true;
      earlier.add(datagram.toString('hex'));
      if (attempt > 0) notes.push(`datagram ${i + 1} after ${attempt + 1} tries`);
    }
    if (!back) return passIf(false, `datagram ${i + 1} of ${datagram.length} bytes: no answer after 3 tries${notes.length > 0 ? ` (${notes.join(', ')})` : ''}`);
  }
  link.send(encodeFlowClose(flowId, 0, FlowCloseCode.IDLE, 'conformance: flow done'));
  const kept = await linkKept(link, timeoutMs);
  return passIf(kept, `${datagrams.length} datagrams (32, 0 and 1200 bytes) echoed whole with LOCAL${notes.length > 0 ? ` (${notes.join(', ')})` : ', the first one sent right behind FLOW_OPEN'}; FLOW_CLOSE taken, link ${kept ? 'kept' : 'gone'}`);
}

/** A DATAGRAM for a flow never opened: FLOW_CLOSE no-flow (with LOCAL) for that flow, and the link kept. */
export async function unknownFlow(link: RawLink, timeoutMs: number, flowId = 77): Promise<Outcome> {
  link.send(encodeDatagram(flowId, 0, Buffer.from('conformance: no such flow')));
  const seen = await link.next(timeoutMs, (f) => f.streamId === flowId || f.type === FrameType.GOAWAY);
  const closed = seen.kind === 'frame' && seen.frame.type === FrameType.FLOW_CLOSE && (seen.frame.flags & Flag.LOCAL) !== 0 && parseCodeAndReason(seen.frame.payload).code === FlowCloseCode.NO_FLOW;
  const kept = closed && (await linkKept(link, timeoutMs));
  const saw = seen.kind === 'frame' ? describeFlowFrame(seen.frame) : describe(seen);
  return passIf(closed && kept, `${saw}; link ${kept ? 'kept' : closed ? 'gone' : 'not checked'}`);
}

function describeFlowFrame(f: { type: number; flags: number; streamId: number; payload: Buffer }): string {
  if (f.type === FrameType.FLOW_CLOSE || f.type === FrameType.GOAWAY) {
    const { code, reason } = parseCodeAndReason(f.payload);
    return `${f.type === FrameType.GOAWAY ? 'GOAWAY' : `FLOW_CLOSE flow ${f.streamId}${(f.flags & Flag.LOCAL) !== 0 ? ' (LOCAL)' : ''}`} code ${code} "${reason.slice(0, 100)}"`;
  }
  return `frame type ${f.type} flags 0x${f.flags.toString(16)} flow ${f.streamId} (${f.payload.length} bytes)`;
}
