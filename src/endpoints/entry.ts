/**
 * The entry side: listening ports for user applications. Each accepted
 * connection becomes a stream to the partner, which connects to its target
 * on the same port. Without a partner the connection is reset at once.
 * With onePerPort (the seed's exact behaviour) a port stops listening while
 * its connection is open. With acceptProxyProtocol each connection must
 * first bring a load balancer's PROXY header (origin.ts): the user is who it
 * names. Without it, the user's bytes are never read as a header.
 */
import net from 'node:net';
import type { Clock } from '../clock.js';
import { ErrorCodes, TcpipeError, errorMessage } from '../errors.js';
import type { Logger } from '../log/logger.js';
import type { Session } from '../mux/session.js';
import type { Origin } from '../protocol/frame.js';
import { originPeer, readProxyHeader, socketOrigin } from './origin.js';
import { StreamPipe, type PipeEvents } from './pipe.js';
import { formatAddress, remoteAddress, tuneSocket } from '../link/transport.js';

export interface ListenSpec {
  readonly port: number;
  /** Bind address; undefined means every interface. */
  readonly host?: string;
  /** 'udp' ports are UDP entry ports (udp-entry.ts), not this module's; default 'tcp'. */
  readonly protocol?: 'tcp' | 'udp';
}

export interface EntryOptions {
  readonly listen: readonly ListenSpec[];
  readonly onePerPort: boolean;
  readonly keepAliveMs: number;
  /** --accept-proxy-protocol: every connection starts with a PROXY header (v1 or v2). */
  readonly acceptProxyProtocol?: boolean;
  /** Time for that header to arrive whole. */
  readonly proxyHeaderTimeoutMs?: number;
}

export interface EntryHooks extends PipeEvents {
  currentSession(): Session | null;
  onRefused(port: number, peer: string, reason: string, session: Session | null): void;
  onPipe(pipe: StreamPipe, peer: string): void;
  /** Both HELLOs of this session listed capability origin: OPEN carries the user's addresses. */
  carriesOrigin(session: Session): boolean;
  /** --accept-proxy-protocol: a connection without a valid PROXY header was closed. */
  onBadProxyHeader(port: number, peer: string, reason: string): void;
}

interface PortListener {
  readonly spec: ListenSpec;
  server: net.Server;
  active: number;
  listening: boolean;
}

export class EntryPorts {
  private readonly listeners: PortListener[] = [];
  private stopped = false;
  /** Connections still reading their PROXY header: closed by stop(). */
  private readonly awaitingHeader = new Set<net.Socket>();

  constructor(
    private readonly options: EntryOptions,
    private readonly hooks: EntryHooks,
    private readonly clock: Clock,
    private readonly logger: Logger,
  ) {}

  /** Binds every port; rejects (closing what was bound) if one cannot be bound. */
  async listen(): Promise<void> {
    try {
      for (const spec of this.options.listen) {
        const entry: PortListener = { spec, server: this.createServer(spec), active: 0, listening: false };
        this.listeners.push(entry);
        await this.bind(entry);
      }
    } catch (err) {
      this.stop();
      throw err;
    }
  }

  /** Actual bound ports, in the order given (port 0 resolves to a real port). */
  addresses(): net.AddressInfo[] {
    return this.listeners.map((l) => l.server.address()).filter((a): a is net.AddressInfo => a !== null && typeof a === 'object');
  }

  stop(): void {
    this.stopped = true;
    for (const l of this.listeners) if (l.listening) l.server.close();
    for (const socket of this.awaitingHeader) socket.destroy();
    this.awaitingHeader.clear();
  }

  private createServer(spec: ListenSpec): net.Server {
    const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: true });
    server.on('connection', (socket) => this.handleConnection(socket, spec));
    // Errors while binding are reported by bind(); this one is for a listener that was up.
    server.on('error', (err) => {
      if (server.listening) this.logger.error('listen_error', `port ${spec.port}: ${errorMessage(err)}`, { port: spec.port });
    });
    return server;
  }

  private bind(entry: PortListener): Promise<void> {
    const { spec } = entry;
    return new Promise((resolve, reject) => {
      const onError = (err: Error): void => {
        reject(new TcpipeError(ErrorCodes.LISTEN, `cannot listen on ${formatAddress(spec.host ?? '*', spec.port)}: ${errorMessage(err)}`));
      };
      entry.server.once('error', onError);
      const options: net.ListenOptions = { port: spec.port };
      if (spec.host !== undefined) options.host = spec.host;
      entry.server.listen(options, () => {
        entry.server.off('error', onError);
        entry.listening = true;
        resolve();
      });
    });
  }

  private handleConnection(socket: net.Socket, spec: ListenSpec): void {
    socket.on('error', () => undefined); // the pipe reports errors once it exists
    if (this.options.acceptProxyProtocol !== true) {
      this.openStreamFor(socket, spec, socketOrigin(socket), remoteAddress(socket));
      return;
    }
    const sender = remoteAddress(socket); // the load balancer
    this.awaitingHeader.add(socket);
    readProxyHeader(socket, this.options.proxyHeaderTimeoutMs ?? 5000, this.clock, (outcome) => {
      this.awaitingHeader.delete(socket);
      if (!outcome.ok || this.stopped) {
        if (!outcome.ok) this.hooks.onBadProxyHeader(spec.port, sender, outcome.reason);
        socket.destroy();
        return;
      }
      const { header } = outcome;
      // LOCAL: the balancer's own connection (a health check): relayed with no origin, so the
      // target gets LOCAL (v2) or UNKNOWN (v1) in turn. UNKNOWN and AF_UNSPEC: the connection's own.
      const origin = header.command === 'local' ? null : (header.addresses ?? socketOrigin(socket));
      this.openStreamFor(socket, spec, origin, origin !== null ? originPeer(origin) : sender);
    });
  }

  /** Opens the stream for a user connection (paused until its pipe starts); `peer` names the user in logs and status. */
  private openStreamFor(socket: net.Socket, spec: ListenSpec, origin: Origin | null, peer: string): void {
    const session = this.hooks.currentSession();
    if (session === null || session.isEnded) {
      this.refuse(socket, spec.port, peer, 'no partner connected', null);
      return;
    }
    tuneSocket(socket, this.options.keepAliveMs);
    const listener = this.listeners.find((l) => l.spec === spec);
    const events: PipeEvents = {
      onClosed: (pipe, reason) => {
        if (listener !== undefined) this.release(listener);
        this.hooks.onClosed(pipe, reason);
      },
    };
    const stream = session.openStream(spec.port, this.hooks.carriesOrigin(session) ? origin : null);
    if (stream === null) {
      this.refuse(socket, spec.port, peer, 'the link cannot take another stream', session);
      return;
    }
    const pipe = new StreamPipe(socket, stream, events);
    if (listener !== undefined) this.hold(listener);
    this.hooks.onPipe(pipe, peer);
    pipe.start();
  }

  private refuse(socket: net.Socket, port: number, peer: string, reason: string, session: Session | null): void {
    this.hooks.onRefused(port, peer, reason, session);
    socket.resetAndDestroy();
  }

  /** onePerPort: stop accepting on this port while its connection is open. */
  private hold(listener: PortListener): void {
    listener.active++;
    if (this.options.onePerPort && listener.listening) {
      listener.listening = false;
      listener.server.close();
    }
  }

  private release(listener: PortListener): void {
    listener.active--;
    this.relisten(listener);
  }

  private relisten(listener: PortListener): void {
    if (!this.options.onePerPort || this.stopped || listener.listening || listener.active > 0) return;
    listener.server = this.createServer(listener.spec);
    this.bind(listener).catch((err: unknown) => {
      this.logger.error('listen_error', `${errorMessage(err)}; retrying in 1s`, { port: listener.spec.port });
      this.clock.setTimer(1000, () => this.relisten(listener));
    });
  }
}
