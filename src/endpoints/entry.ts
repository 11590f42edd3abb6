/**
 * The entry side: listening ports for user applications. Each accepted
 * connection becomes a stream to the partner, which connects to its target
 * on the same port. Without a partner the connection is reset at once.
 * With onePerPort (the seed's exact behaviour) a port stops listening while
 * its connection is open.
 */
import net from 'node:net';
import type { Clock } from '../clock.js';
import { ErrorCodes, TcpipeError, errorMessage } from '../errors.js';
import type { Logger } from '../log/logger.js';
import type { Session } from '../mux/session.js';
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
}

export interface EntryHooks extends PipeEvents {
  currentSession(): Session | null;
  onRefused(port: number, peer: string, reason: string, session: Session | null): void;
  onPipe(pipe: StreamPipe, peer: string): void;
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
    const peer = remoteAddress(socket);
    socket.on('error', () => undefined); // the pipe reports errors once it exists
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
    const stream = session.openStream(spec.port);
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
