/**
 * The entry side of UDP: a socket per `/udp` port. Each user address (source
 * IP and port) is one flow; its first datagram opens the flow on the partner
 * (FLOW_OPEN), and the partner's replies for it go back to that address only.
 * Without a link that speaks udp, a datagram is dropped and counted: no flow
 * state is kept for a user the partner cannot serve.
 */
import dgram from 'node:dgram';
import type { AddressInfo } from 'node:net';
import type { Clock } from '../clock.js';
import { ErrorCodes, TcpipeError, errorMessage } from '../errors.js';
import type { Logger } from '../log/logger.js';
import { encodeFlowOpen } from '../protocol/datagram.js';
import { formatAddress } from '../link/transport.js';
import type { UdpEntryHandler, UdpFlow, UdpRelay } from './udp-relay.js';

export interface UdpListenSpec {
  readonly port: number;
  /** Bind address; undefined: every interface (IPv6 and IPv4). */
  readonly host?: string;
}

/**
 * A reply is dropped (queue-full) while the socket's send queue holds this
 * many datagrams or bytes: the kernel took none of them yet, and what waits
 * behind them would be late.
 */
export const SOCKET_QUEUE_DATAGRAMS = 64;
export const SOCKET_QUEUE_BYTES = 256 * 1024;
/**
 * Receive buffer asked of every UDP socket: a burst that arrives while the
 * event loop is busy waits here instead of being lost. The kernel caps it at
 * net.core.rmem_max (208 KiB by default on Linux; raise it for fast flows).
 */
export const SOCKET_RECEIVE_BUFFER = 4 * 1024 * 1024;

/** Asks for SOCKET_RECEIVE_BUFFER; the kernel's cap applies, and a refusal is no error. */
export function enlargeReceiveBuffer(socket: dgram.Socket): void {
  try {
    socket.setRecvBufferSize(SOCKET_RECEIVE_BUFFER);
  } catch {
    // best effort
  }
}

interface EntryFlow extends UdpFlow {
  readonly address: string;
  readonly userPort: number;
  readonly listener: PortListener;
}

interface PortListener {
  readonly spec: UdpListenSpec;
  readonly socket: dgram.Socket;
  /** The bound port (the spec's, or the one port 0 got). */
  port: number;
  readonly flows: Map<string, EntryFlow>;
}

/** The send queue of a dgram socket is full (see SOCKET_QUEUE_DATAGRAMS). */
export function socketQueueFull(socket: dgram.Socket): boolean {
  return socket.getSendQueueCount() >= SOCKET_QUEUE_DATAGRAMS || socket.getSendQueueSize() >= SOCKET_QUEUE_BYTES;
}

export class UdpEntryPorts implements UdpEntryHandler {
  private readonly listeners: PortListener[] = [];

  constructor(
    private readonly specs: readonly UdpListenSpec[],
    private readonly relay: UdpRelay,
    private readonly clock: Clock,
    private readonly logger: Logger,
  ) {
    relay.entry = this;
  }

  /** Binds every /udp port; rejects (closing what was bound) if one cannot be bound. */
  async listen(): Promise<void> {
    try {
      for (const spec of this.specs) this.listeners.push(await this.bind(spec));
    } catch (err) {
      this.stop();
      throw err;
    }
  }

  addresses(): AddressInfo[] {
    return this.listeners.map((l) => l.socket.address());
  }

  stop(): void {
    for (const l of this.listeners.splice(0)) {
      l.socket.close();
    }
  }

  reply(flow: UdpFlow, datagram: Buffer): void {
    const entryFlow = flow as EntryFlow;
    const { socket } = entryFlow.listener;
    if (socketQueueFull(socket)) {
      this.relay.drop('queue-full', `the socket of port ${flow.port}/udp has a full send queue`);
      return;
    }
    socket.send(datagram, entryFlow.userPort, entryFlow.address, (err) => {
      if (err) this.relay.drop(err.message.includes('EMSGSIZE') ? 'too-large' : 'refused', `reply to ${flow.peer}: ${errorMessage(err)}`);
    });
  }

  private bind(spec: UdpListenSpec): Promise<PortListener> {
    const host = spec.host?.replace(/^\[|\]$/g, '');
    const v6 = host === undefined || host.includes(':');
    const socket = dgram.createSocket({ type: v6 ? 'udp6' : 'udp4', ipv6Only: false });
    return new Promise((resolve, reject) => {
      const onError = (err: Error): void => {
        socket.close();
        if (host === undefined && (err as NodeJS.ErrnoException).code === 'EAFNOSUPPORT') {
          // No IPv6 on this host: every interface is every IPv4 one.
          this.bind({ ...spec, host: '0.0.0.0' }).then(resolve, reject);
          return;
        }
        reject(new TcpipeError(ErrorCodes.LISTEN, `cannot listen on ${formatAddress(spec.host ?? '*', spec.port)}/udp: ${errorMessage(err)}`));
      };
      socket.once('error', onError);
      socket.bind({ port: spec.port, ...(host !== undefined ? { address: host } : {}) }, () => {
        socket.off('error', onError);
        enlargeReceiveBuffer(socket);
        const listener: PortListener = { spec, socket, port: socket.address().port, flows: new Map() };
        socket.on('message', (msg, rinfo) => this.fromUser(listener, msg, rinfo));
        socket.on('error', (err) => this.logger.warn('udp_error', `port ${listener.port}/udp: ${errorMessage(err)}`, { port: listener.port }));
        resolve(listener);
      });
    });
  }

  private fromUser(listener: PortListener, datagram: Buffer, rinfo: dgram.RemoteInfo): void {
    const key = `${rinfo.address}|${rinfo.port}`;
    let flow = listener.flows.get(key);
    if (flow === undefined) {
      const blocked = this.relay.linkBlocked();
      if (blocked !== null) {
        this.relay.drop(blocked, `a datagram on port ${listener.port}/udp and no link with capability udp to carry it`);
        return;
      }
      const id = this.relay.allocateId();
      const address = rinfo.address.replace(/^::ffff:(?=\d+\.)/i, '');
      if (!this.relay.send(encodeFlowOpen(id, listener.port, { address, port: rinfo.port }))) return;
      const created: EntryFlow = {
        key: id * 2,
        id,
        side: 'entry',
        port: listener.port,
        peer: formatAddress(address, rinfo.port),
        openedAt: this.clock.now(),
        lastActiveAt: 0,
        datagramsIn: 0,
        datagramsOut: 0,
        bytesIn: 0,
        bytesOut: 0,
        address: rinfo.address,
        userPort: rinfo.port,
        listener,
        dispose: () => {
          if (listener.flows.get(key) === created) listener.flows.delete(key);
        },
      };
      listener.flows.set(key, created);
      this.relay.add(created, '');
      flow = created;
    }
    this.relay.sendDatagram(flow, datagram);
  }
}
