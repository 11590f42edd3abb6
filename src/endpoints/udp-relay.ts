/**
 * UDP flows over the link (docs/PROTOCOL.md, "Datagrams (capability 2)"):
 * the one place that knows the current session, whether both sides speak
 * udp, the flow table and the counters. The entry ports (udp-entry.ts) and
 * the exit sockets (udp-exit.ts) send through it; the session hands it every
 * datagram frame (SessionHooks.onDatagramFrame).
 *
 * A datagram the link cannot take now is dropped and counted, never queued:
 * late is worse than lost for DNS, voice or a VPN.
 */
import type { Clock } from '../clock.js';
import { ProtocolError } from '../errors.js';
import type { Logger } from '../log/logger.js';
import type { Session } from '../mux/session.js';
import { Capability, Flag, FlowCloseCode, FrameType, GoAwayCode } from '../protocol/constants.js';
import { encodeDatagram, encodeFlowClose, parseFlowOpen } from '../protocol/datagram.js';
import { parseCodeAndReason } from '../protocol/decode.js';
import type { Frame } from '../protocol/frame.js';
import type { HelloInfo } from '../protocol/hello.js';
import { FlowTable, type FlowEndCause, type TimedFlow } from './udp-flows.js';

/** Why a datagram was dropped (the `reason` label of tcpipe_udp_dropped_total). */
export const UDP_DROP_REASONS = ['no-link', 'held', 'congested', 'no-flow', 'too-large', 'queue-full', 'refused'] as const;
export type UdpDropReason = (typeof UDP_DROP_REASONS)[number];

/** Names of FLOW_CLOSE codes, for log lines. */
const CLOSE_NAMES: Readonly<Record<number, string>> = Object.freeze({
  [FlowCloseCode.IDLE]: 'idle',
  [FlowCloseCode.TARGET_REFUSED]: 'target refused',
  [FlowCloseCode.TARGET_UNREACHABLE]: 'target unreachable',
  [FlowCloseCode.NOT_ALLOWED]: 'not allowed',
  [FlowCloseCode.LIMIT]: 'flow limit',
  [FlowCloseCode.SHUTDOWN]: 'shutdown',
  [FlowCloseCode.NO_FLOW]: 'no such flow',
  [FlowCloseCode.INTERNAL]: 'internal',
});

/** A drop reason is logged at most once per this many ms, with the count since. */
const DROP_LOG_INTERVAL_MS = 10_000;

export interface UdpSettings {
  readonly maxFlows: number;
  readonly idleMs: number;
}

/** One flow, entry or exit, as the relay keeps it. */
export interface UdpFlow extends TimedFlow {
  /** id*2 on the entry side, id*2+1 on the exit side: the two sides' ids never meet. */
  readonly key: number;
  readonly id: number;
  readonly side: 'entry' | 'exit';
  /** The port the flow came in on (entry) or was opened for (exit). */
  readonly port: number;
  /** The user's address (entry; exit when FLOW_OPEN carried it). */
  readonly peer: string;
  readonly openedAt: number;
  /** Datagrams and bytes from the partner to the local socket, and from it to the partner. */
  datagramsIn: number;
  datagramsOut: number;
  bytesIn: number;
  bytesOut: number;
  /** Releases the flow's local resources (its socket on the exit side, its address on the entry side). */
  dispose(): void;
}

export interface UdpFlowInfo {
  readonly id: number;
  readonly port: number;
  readonly side: 'entry' | 'exit';
  readonly peer: string;
  readonly ageMs: number;
  readonly idleMs: number;
  readonly datagramsIn: number;
  readonly datagramsOut: number;
  readonly bytesIn: number;
  readonly bytesOut: number;
}

export interface UdpStats {
  readonly flows: number;
  readonly flowsTotal: number;
  /** From the partner (in) and to the partner (out). */
  readonly datagramsIn: number;
  readonly datagramsOut: number;
  readonly bytesIn: number;
  readonly bytesOut: number;
  readonly dropped: Readonly<Record<UdpDropReason, number>>;
}

/** What the exit side does with the partner's flows (udp-exit.ts). */
export interface UdpExitHandler {
  open(id: number, port: number, origin: string | null): void;
  forward(flow: UdpFlow, datagram: Buffer): void;
}

/** What the entry side does with the replies (udp-entry.ts). */
export interface UdpEntryHandler {
  reply(flow: UdpFlow, datagram: Buffer): void;
}

export class UdpRelay {
  private session: Session | null = null;
  private negotiated = false;
  private readonly table: FlowTable<UdpFlow>;
  private nextFlowId = 1;
  private flowsTotal = 0;
  private datagramsIn = 0;
  private datagramsOut = 0;
  private bytesIn = 0;
  private bytesOut = 0;
  private readonly dropped = Object.fromEntries(UDP_DROP_REASONS.map((r) => [r, 0])) as Record<UdpDropReason, number>;
  private readonly dropLoggedAt = new Map<UdpDropReason, { at: number; count: number }>();
  exit: UdpExitHandler | null = null;
  entry: UdpEntryHandler | null = null;

  constructor(
    settings: UdpSettings,
    private readonly clock: Clock,
    private readonly logger: Logger,
  ) {
    this.table = new FlowTable<UdpFlow>(settings.maxFlows, settings.idleMs, clock, (flow, cause) => this.tableEnded(flow, cause));
  }

  // ---- the session ---------------------------------------------------

  /** A link is up: a new session (flows of an older one end), or the same one resumed (flows carry on). */
  sessionUp(session: Session, peer: HelloInfo): void {
    if (this.session !== session) this.closeAll(FlowCloseCode.SHUTDOWN, 'new session', false);
    this.session = session;
    this.negotiated = (peer.capabilities ?? []).includes(Capability.UDP);
  }

  sessionDown(session: Session): void {
    if (this.session !== session) return;
    this.session = null;
    this.closeAll(FlowCloseCode.SHUTDOWN, 'link lost', false);
  }

  /** Stops everything: flows end, the partner is told if the link is still up. */
  stop(): void {
    this.closeAll(FlowCloseCode.SHUTDOWN, 'shutting down', true);
  }

  /** Every datagram frame the session receives (SessionHooks.onDatagramFrame). */
  handleFrame(frame: Frame): void {
    if (!this.negotiated) {
      throw new ProtocolError(GoAwayCode.PROTOCOL_ERROR, `frame type ${frame.type} on a link without capability udp`);
    }
    const fromExit = (frame.flags & Flag.LOCAL) !== 0;
    switch (frame.type) {
      case FrameType.FLOW_OPEN: {
        const { port, origin } = parseFlowOpen(frame.payload);
        const existing = this.table.get(frame.streamId * 2 + 1);
        if (existing !== undefined) this.closeFlow(existing, FlowCloseCode.SHUTDOWN, 'replaced by a new FLOW_OPEN', false);
        const peer = origin === null ? null : origin.address.includes(':') ? `[${origin.address}]:${origin.port}` : `${origin.address}:${origin.port}`;
        this.exit?.open(frame.streamId, port, peer);
        return;
      }
      case FrameType.DATAGRAM: {
        const flow = this.table.get(frame.streamId * 2 + (fromExit ? 0 : 1));
        const length = frame.payload.length;
        this.datagramsIn++;
        this.bytesIn += length;
        if (flow === undefined) {
          this.drop('no-flow', `a datagram for flow ${frame.streamId}, which this side does not hold`);
          // The exit side tells the entry side, which opens a new flow for the user's next datagram.
          if (!fromExit) this.send(encodeFlowClose(frame.streamId, Flag.LOCAL, FlowCloseCode.NO_FLOW, 'no such flow'));
          return;
        }
        flow.datagramsIn++;
        flow.bytesIn += length;
        this.table.touch(flow.key, flow);
        if (fromExit) this.entry?.reply(flow, frame.payload);
        else this.exit?.forward(flow, frame.payload);
        return;
      }
      case FrameType.FLOW_CLOSE: {
        const flow = this.table.get(frame.streamId * 2 + (fromExit ? 0 : 1));
        if (flow === undefined) return;
        const { code, reason } = parseCodeAndReason(frame.payload);
        this.closeFlow(flow, code, `the partner ended it: ${reason || CLOSE_NAMES[code] || `code ${code}`}`, false);
        return;
      }
    }
  }

  // ---- flows -----------------------------------------------------------

  /** Why a datagram cannot go to the partner now, or null when it can. */
  linkBlocked(): UdpDropReason | null {
    const session = this.session;
    if (session === null || session.isEnded || !this.negotiated) return 'no-link';
    if (session.state !== 'live') return 'held';
    return null;
  }

  /** A fresh entry flow id (1..2^32-1, skipping ids still in use after a wrap). */
  allocateId(): number {
    for (;;) {
      const id = this.nextFlowId;
      this.nextFlowId = id >= 0xffffffff ? 1 : id + 1;
      if (!this.table.has(id * 2)) return id;
    }
  }

  /** A new flow joins the table (at the cap, the one idle longest ends first). */
  add(flow: UdpFlow, target: string): void {
    this.table.add(flow.key, flow);
    this.flowsTotal++;
    const where = flow.side === 'entry' ? `from ${flow.peer}` : `${flow.peer !== '' ? `from ${flow.peer} ` : ''}to ${target}`;
    this.logger.debug('flow_open', `flow ${flow.id} open on port ${flow.port}/udp (${flow.side}, ${where})`, {
      flow: flow.id,
      port: flow.port,
      side: flow.side,
      peer: flow.peer || undefined,
      target: target || undefined,
    });
  }

  /** Sends one datagram of the flow to the partner; false (counted) when it was dropped. */
  sendDatagram(flow: UdpFlow, datagram: Buffer): boolean {
    const sent = this.send(encodeDatagram(flow.id, flow.side === 'exit' ? Flag.LOCAL : 0, datagram));
    if (!sent) return false;
    flow.datagramsOut++;
    flow.bytesOut += datagram.length;
    this.datagramsOut++;
    this.bytesOut += datagram.length;
    this.table.touch(flow.key, flow);
    return true;
  }

  /** Writes a frame now or drops it (counted by why); true when written. */
  send(frame: Buffer): boolean {
    const blocked = this.linkBlocked();
    if (blocked !== null) {
      this.drop(blocked, blocked === 'held' ? 'the link is held for resumption' : 'no link with capability udp');
      return false;
    }
    if (this.session?.sendDatagramFrame(frame) !== true) {
      this.drop('congested', 'the link is congested');
      return false;
    }
    return true;
  }

  get(key: number): UdpFlow | undefined {
    return this.table.get(key);
  }

  /**
   * Ends a flow: its resources go, the partner is told unless it told us
   * (or the link is gone), and -v logs it.
   */
  closeFlow(flow: UdpFlow, code: number, reason: string, tellPartner: boolean): void {
    // Once only: a flow that left the table has ended already.
    if (this.table.get(flow.key) !== flow) return;
    this.table.delete(flow.key);
    this.ended(flow, code, reason, tellPartner);
  }

  /** Counts a dropped datagram; the first of each reason (then one per 10 s) is logged with the count. */
  drop(reason: UdpDropReason, detail: string): void {
    this.dropped[reason]++;
    const now = this.clock.now();
    const last = this.dropLoggedAt.get(reason);
    if (last !== undefined && now - last.at < DROP_LOG_INTERVAL_MS) {
      last.count++;
      return;
    }
    const since = last === undefined ? '' : ` (${last.count + 1} ${reason} drops in the last ${Math.round((now - last.at) / 1000)}s)`;
    this.dropLoggedAt.set(reason, { at: now, count: 0 });
    this.logger.warn('udp_dropped', `dropped a datagram (${reason}): ${detail}${since}`, { reason, total: this.dropped[reason] });
  }

  stats(): UdpStats {
    return {
      flows: this.table.size,
      flowsTotal: this.flowsTotal,
      datagramsIn: this.datagramsIn,
      datagramsOut: this.datagramsOut,
      bytesIn: this.bytesIn,
      bytesOut: this.bytesOut,
      dropped: { ...this.dropped },
    };
  }

  flows(): UdpFlowInfo[] {
    const now = this.clock.now();
    return [...this.table.values()].map((f) => ({
      id: f.id,
      port: f.port,
      side: f.side,
      peer: f.peer,
      ageMs: now - f.openedAt,
      idleMs: now - f.lastActiveAt,
      datagramsIn: f.datagramsIn,
      datagramsOut: f.datagramsOut,
      bytesIn: f.bytesIn,
      bytesOut: f.bytesOut,
    }));
  }

  private tableEnded(flow: UdpFlow, cause: FlowEndCause): void {
    if (cause === 'idle') this.ended(flow, FlowCloseCode.IDLE, 'idle', true);
    else this.ended(flow, FlowCloseCode.LIMIT, 'the flow limit (--udp-max-flows) was reached and this flow was idle longest', true);
  }

  private ended(flow: UdpFlow, code: number, reason: string, tellPartner: boolean): void {
    flow.dispose();
    if (tellPartner && this.linkBlocked() === null) {
      this.session?.sendDatagramFrame(encodeFlowClose(flow.id, flow.side === 'exit' ? Flag.LOCAL : 0, code, reason));
    }
    const seconds = ((this.clock.now() - flow.openedAt) / 1000).toFixed(2);
    this.logger.debug(
      'flow_close',
      `flow ${flow.id} closed on port ${flow.port}/udp after ${seconds}s: ${flow.datagramsIn} datagrams (${flow.bytesIn} B) in, ${flow.datagramsOut} (${flow.bytesOut} B) out (${reason})`,
      {
        flow: flow.id,
        port: flow.port,
        side: flow.side,
        peer: flow.peer || undefined,
        datagrams_in: flow.datagramsIn,
        datagrams_out: flow.datagramsOut,
        bytes_in: flow.bytesIn,
        bytes_out: flow.bytesOut,
        reason,
      },
    );
  }

  private closeAll(code: number, reason: string, tellPartner: boolean): void {
    for (const flow of this.table.clear()) this.ended(flow, code, reason, tellPartner);
    this.nextFlowId = 1;
  }
}
