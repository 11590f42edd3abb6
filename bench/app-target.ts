/**
 * The target applications (the "sinks") behind every path: one server per
 * path on 127.0.0.3:P. The first byte of a connection picks what it does
 * (see Mode in messages.ts). Runs in its own process, never in a relay.
 */
import { fork, type ChildProcess } from 'node:child_process';
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import { Mode, nowUs, type TargetApi } from './messages.js';
import type { Handlers } from './ipc.js';
import { Conditions, byMode, counterOf, echo, listenOn, ONE } from './sockets.js';

interface BulkCounter {
  streams: number;
  bytes: number;
  firstAt: number;
  lastAt: number;
}

export class TargetApp {
  private readonly servers = new Map<number, net.Server>();
  private readonly counters = new Map<number, BulkCounter>();
  private readonly conditions = new Conditions();
  private open = 0;
  private slowBytes = 0;
  private readonly slowSockets = new Set<net.Socket>();
  /**
   * The DISCARD streams (the saturating one of the fairness test) are read in a
   * helper process, so that the echo answering the pings beside them does not
   * wait behind their reads in this event loop: what is measured is the path.
   */
  private discarder: ChildProcess | null = null;
  private readonly handedOff = new WeakSet<net.Socket>();

  readonly handlers: Handlers<TargetApi> = {
    listen: (args) => this.listen(args.host, args.port, args.slowBytesPerSecond),
    bulkReset: (args) => {
      this.counters.set(args.port, { streams: 0, bytes: 0, firstAt: 0, lastAt: 0 });
      return Promise.resolve(null);
    },
    bulkWait: async (args) => {
      const counter = this.counter(args.port);
      await this.conditions.until(() => counter.streams >= args.streams, args.timeoutMs);
      return { ...counter };
    },
    stats: () => Promise.resolve({ open: this.open, slowBytes: this.slowBytes }),
    dropSlow: () => {
      for (const s of this.slowSockets) s.destroy();
      this.slowSockets.clear();
      return Promise.resolve(null);
    },
    waitOpen: async (args) => {
      await this.conditions.until(() => this.open <= args.open, args.timeoutMs);
      return { open: this.open };
    },
  };

  private async listen(host: string, port: number, slowRate: number): Promise<{ port: number }> {
    this.servers.set(port, await listenOn(host, port, (socket) => this.accept(socket, port, slowRate)));
    return { port };
  }

  private counter(port: number): BulkCounter {
    return counterOf(this.counters, port, () => ({ streams: 0, bytes: 0, firstAt: 0, lastAt: 0 }));
  }

  private accept(socket: net.Socket, port: number, slowRate: number): void {
    this.open++;
    socket.on('error', () => undefined);
    socket.on('close', () => {
      // A socket handed to the discarder is counted until the discarder reports it closed.
      if (this.handedOff.has(socket)) return;
      this.open--;
      this.conditions.wake();
    });
    byMode(socket, (mode, rest) => {
      switch (mode) {
        case Mode.BULK:
          return this.bulk(socket, port, rest);
        case Mode.DISCARD:
          return this.handOff(socket);
        case Mode.ECHO:
          return echo(socket, rest);
        case Mode.CONNECT:
        case Mode.IDLE:
          socket.write(ONE);
          return undefined;
        case Mode.SLOW:
          return this.slow(socket, slowRate, rest.length);
        default:
          socket.destroy();
          return undefined;
      }
    });
  }

  private handOff(socket: net.Socket): void {
    socket.pause();
    if (this.discarder === null) {
      const helper = fork(fileURLToPath(new URL('./app.js', import.meta.url)), ['discard'], { stdio: 'inherit' });
      helper.on('message', () => {
        this.open--;
        this.conditions.wake();
      });
      helper.on('exit', () => (this.discarder = null));
      this.discarder = helper;
    }
    this.handedOff.add(socket);
    this.discarder.send('discard', socket);
  }

  private bulk(socket: net.Socket, port: number, rest: Buffer): void {
    const counter = this.counter(port);
    // The answer tells the user that the stream reached the sink: only then does it send.
    socket.write(ONE);
    const count = (n: number): void => {
      if (counter.firstAt === 0) counter.firstAt = nowUs();
      counter.bytes += n;
    };
    if (rest.length > 0) count(rest.length);
    socket.on('data', (chunk: Buffer) => count(chunk.length));
    socket.on('end', () => {
      counter.streams++;
      counter.lastAt = nowUs();
      this.conditions.wake();
    });
  }

  /** Reads at `rate` bytes per second: pauses whenever it is ahead of the schedule. */
  private slow(socket: net.Socket, rate: number, already: number): void {
    const startedAt = nowUs();
    this.slowSockets.add(socket);
    socket.once('close', () => this.slowSockets.delete(socket));
    let received = already;
    this.slowBytes += already;
    socket.on('data', (chunk: Buffer) => {
      received += chunk.length;
      this.slowBytes += chunk.length;
      const dueAt = startedAt + (received / rate) * 1e6;
      const ahead = dueAt - nowUs();
      if (ahead > 1000) {
        socket.pause();
        setTimeout(() => socket.resume(), ahead / 1000);
      }
    });
  }
}

/** The helper of TargetApp: reads and drops every socket it is handed. */
export function runDiscarder(): void {
  process.on('message', (_message: unknown, handle: unknown) => {
    if (!(handle instanceof net.Socket)) return;
    handle.on('error', () => undefined);
    handle.on('data', () => undefined);
    handle.on('close', () => process.send?.('closed'));
    handle.resume();
  });
  process.on('disconnect', () => process.exit(0));
}
