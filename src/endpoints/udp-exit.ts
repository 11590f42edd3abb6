/**
 * The exit side of UDP: one socket per flow, connected to the flow's target,
 * so that the kernel hands each flow only its own target's replies and an
 * ICMP port unreachable shows as an error on that flow's socket (ECONNREFUSED
 * on the next receive), which ends the flow rather than leaking it.
 */
import dgram from 'node:dgram';
import { lookup } from 'node:dns/promises';
import type { Clock } from '../clock.js';
import { errorMessage } from '../errors.js';
import type { Logger } from '../log/logger.js';
import { Flag, FlowCloseCode } from '../protocol/constants.js';
import { encodeFlowClose } from '../protocol/datagram.js';
import { formatAddress } from '../link/transport.js';
import type { RouteTable } from './routes.js';
import { enlargeReceiveBuffer, socketQueueFull } from './udp-entry.js';
import type { UdpExitHandler, UdpFlow, UdpRelay } from './udp-relay.js';

/**
 * Datagrams kept for a flow whose socket is still connecting (the target's
 * name being looked up). The entry side sends the first datagram right behind
 * FLOW_OPEN; without this queue every flow's first datagram (a DNS query, a
 * WireGuard handshake) would be lost. Beyond it, drop.
 */
export const CONNECTING_QUEUE_DATAGRAMS = 8;

interface ExitFlow extends UdpFlow {
  /** host:port, for log lines. */
  target: string;
  /** Set once connected: datagrams before that wait in `pending`. */
  socket: dgram.Socket | null;
  /** Datagrams that came before the socket was connected (at most CONNECTING_QUEUE_DATAGRAMS). */
  pending: Buffer[] | null;
  closed: boolean;
}

/** Refusals of one port are logged at most once per this many ms. */
const REFUSAL_LOG_INTERVAL_MS = 10_000;

export class UdpExitDialer implements UdpExitHandler {
  private readonly refusalsLogged = new Map<number, { at: number; count: number }>();

  constructor(
    private routes: RouteTable,
    private readonly relay: UdpRelay,
    private readonly clock: Clock,
    private readonly logger: Logger,
  ) {
    relay.exit = this;
  }

  setRoutes(routes: RouteTable): void {
    this.routes = routes;
  }

  get routeTable(): RouteTable {
    return this.routes;
  }

  open(id: number, port: number, origin: string | null): void {
    const decision = this.routes.resolve(port);
    if (!decision.ok) {
      const reason = `udp: ${decision.reason}`;
      this.logRefusal(id, port, reason);
      this.relay.send(encodeFlowClose(id, Flag.LOCAL, FlowCloseCode.NOT_ALLOWED, reason));
      return;
    }
    const { host, port: targetPort } = decision.route;
    const flow: ExitFlow = {
      key: id * 2 + 1,
      id,
      side: 'exit',
      port,
      peer: origin ?? '',
      openedAt: this.clock.now(),
      lastActiveAt: 0,
      datagramsIn: 0,
      datagramsOut: 0,
      bytesIn: 0,
      bytesOut: 0,
      target: '',
      socket: null,
      pending: [],
      closed: false,
      dispose: () => {
        flow.closed = true;
        flow.pending = null;
        flow.socket = null;
      },
    };
    const target = formatAddress(host, targetPort);
    this.relay.add(flow, target);
    this.connect(flow, host, targetPort, target).catch((err: unknown) => {
      if (flow.closed) return;
      this.logger.warn('flow_failed', `flow ${id} on port ${port}/udp: cannot reach ${target}: ${errorMessage(err)}`, { flow: id, port, target });
      this.relay.closeFlow(flow, FlowCloseCode.TARGET_UNREACHABLE, `cannot reach ${target}: ${errorMessage(err)}`, true);
    });
  }

  /**
   * A user that keeps sending to a refused port opens a flow per datagram:
   * the first refusal per port is logged, then one line per 10 s with the count.
   */
  private logRefusal(id: number, port: number, reason: string): void {
    const now = this.clock.now();
    const last = this.refusalsLogged.get(port);
    if (last !== undefined && now - last.at < REFUSAL_LOG_INTERVAL_MS) {
      last.count++;
      return;
    }
    const more = last !== undefined && last.count > 0 ? ` (and ${last.count} more flows refused on this port since the last line)` : '';
    this.refusalsLogged.set(port, { at: now, count: 0 });
    this.logger.warn('flow_refused', `refused flow ${id} for port ${port}/udp from the partner: ${reason}${more}`, { flow: id, port, reason });
  }

  forward(flow: UdpFlow, datagram: Buffer): void {
    const exitFlow = flow as ExitFlow;
    const { socket } = exitFlow;
    if (socket === null) {
      const pending = exitFlow.pending;
      if (pending === null || pending.length >= CONNECTING_QUEUE_DATAGRAMS) {
        this.relay.drop('queue-full', `flow ${flow.id} is still connecting to its target`);
        return;
      }
      // The link's chunk is not reused, but a copy keeps a small datagram from pinning a large chunk.
      pending.push(Buffer.from(datagram));
      return;
    }
    this.sendToTarget(exitFlow, socket, datagram);
  }

  private async connect(flow: ExitFlow, host: string, port: number, target: string): Promise<void> {
    flow.target = target;
    const { address, family } = await lookup(host.replace(/^\[|\]$/g, ''));
    if (flow.closed) return;
    const socket = dgram.createSocket(family === 6 ? 'udp6' : 'udp4');
    // Closed with the flow, even while connecting.
    const dispose = flow.dispose;
    flow.dispose = () => {
      dispose();
      try {
        socket.close();
      } catch {
        // closed already
      }
    };
    socket.on('message', (msg) => {
      if (!flow.closed) this.relay.sendDatagram(flow, msg);
    });
    socket.on('error', (err) => this.socketError(flow, err, target));
    await new Promise<void>((resolve, reject) => {
      socket.once('error', reject);
      socket.connect(port, address, () => {
        socket.off('error', reject);
        resolve();
      });
    });
    if (flow.closed) return;
    enlargeReceiveBuffer(socket);
    flow.socket = socket;
    const pending = flow.pending ?? [];
    flow.pending = null;
    for (const datagram of pending) this.sendToTarget(flow, socket, datagram);
  }

  /**
   * An error on the flow's socket: ICMP port unreachable shows as ECONNREFUSED
   * on the next receive or send, whichever comes first (so sends take a callback).
   */
  private socketError(flow: ExitFlow, err: Error, target: string): void {
    if (flow.closed) return;
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EMSGSIZE') {
      // Larger than the path to the target takes: this datagram is lost, the flow is not.
      this.relay.drop('too-large', `flow ${flow.id}: ${target} cannot take the datagram: ${errorMessage(err)}`);
      return;
    }
    const refused = code === 'ECONNREFUSED';
    const reason = refused ? `${target} refused (ICMP port unreachable)` : `${target}: ${errorMessage(err)}`;
    this.logger.warn('flow_failed', `flow ${flow.id} on port ${flow.port}/udp: ${reason}`, { flow: flow.id, port: flow.port, target });
    this.relay.closeFlow(flow, refused ? FlowCloseCode.TARGET_REFUSED : FlowCloseCode.INTERNAL, reason, true);
  }

  private sendToTarget(flow: ExitFlow, socket: dgram.Socket, datagram: Buffer): void {
    if (socketQueueFull(socket)) {
      this.relay.drop('queue-full', `flow ${flow.id}: the target socket has a full send queue`);
      return;
    }
    socket.send(datagram, (err) => {
      if (err) this.socketError(flow, err, flow.target);
    });
  }
}
