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

interface BulkCounter {
  streams: number;
  bytes: number;
  firstAt: number;
  lastAt: number;
}

type Waiter = { done: () => boolean; resolve: () => void };

const ONE = Buffer.from([0x2e]);

export class TargetApp {
  private readonly servers = new Map<number, net.Server>();
  private readonly counters = new Map<number, BulkCounter>();
  private waiters: Waiter[] = [];
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
      await this.until(() => counter.streams >= args.streams, args.timeoutMs);
      return { ...counter };
    },
    stats: () => Promise.resolve({ open: this.open, slowBytes: this.slowBytes }),
    dropSlow: () => {
      for (const s of this.slowSockets) s.destroy();
      this.slowSockets.clear();
      return Promise.resolve(null);
    },
    waitOpen: async (args) => {
      await this.until(() => this.open <= args.open, args.timeoutMs);
      return { open: this.open };
    },
  };

  private listen(host: string, port: number, slowRate: number): Promise<{ port: number }> {
    return new Promise((resolve, reject) => {
      const server = net.createServer({ noDelay: true }, (socket) => this.accept(socket, port, slowRate));
      server.once('error', reject);
      server.listen({ host, port, backlog: 4096 }, () => {
        server.off('error', reject);
        this.servers.set(port, server);
        resolve({ port });
      });
    });
  }

  private counter(port: number): BulkCounter {
    let counter = this.counters.get(port);
    if (counter === undefined) {
      counter = { streams: 0, bytes: 0, firstAt: 0, lastAt: 0 };
      this.counters.set(port, counter);
    }
    return counter;
  }

  private until(done: () => boolean, timeoutMs: number): Promise<void> {
    if (done()) return Promise.resolve();
    return new Promise((resolve) => {
      const waiter: Waiter = {
        done,
        resolve: () => {
          clearTimeout(timer);
          resolve();
        },
      };
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== waiter);
        resolve();
      }, timeoutMs);
      this.waiters.push(waiter);
    });
  }

  private wake(): void {
    if (this.waiters.length === 0) return;
    const ready = this.waiters.filter((w) => w.done());
    if (ready.length === 0) return;
    this.waiters = this.waiters.filter((w) => !ready.includes(w));
    for (const w of ready) w.resolve();
  }

  private accept(socket: net.Socket, port: number, slowRate: number): void {
    this.open++;
    socket.on('error', () => undefined);
    socket.on('close', () => {
      // A socket handed to the discarder is counted until the discarder reports it closed.
      if (this.handedOff.has(socket)) return;
      this.open--;
      this.wake();
    });
    socket.once('data', (first: Buffer) => {
      const mode = first[0];
      const rest = first.subarray(1);
      switch (mode) {
        case Mode.BULK:
          return this.bulk(socket, port, rest);
        case Mode.DISCARD:
          return this.handOff(socket);
        case Mode.ECHO:
          socket.on('data', (chunk: Buffer) => socket.write(chunk));
          if (rest.length > 0) socket.write(rest);
          return undefined;
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
    // Flowing mode for every connection: discards what no mode handler takes.
    socket.on('data', () => undefined);
  }

  private handOff(socket: net.Socket): void {
    socket.pause();
    if (this.discarder === null) {
      const helper = fork(fileURLToPath(new URL('./app.js', import.meta.url)), ['discard'], { stdio: 'inherit' });
      helper.on('message', () => {
        this.open--;
        this.wake();
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
      this.wake();
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
