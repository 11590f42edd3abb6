/**
 * What the LAN and WAN benches' application processes share (app-user.ts,
 * app-target.ts, wan/apps.ts): connecting, waiting for an answer or a close,
 * writing as fast as a socket takes bytes, listening, and waiting on a
 * condition the sockets' events change.
 */
import net from 'node:net';
import { nowUs, type Endpoint } from './messages.js';

/** One buffer, written again and again: the generator allocates nothing per write. */
export const CHUNK = Buffer.alloc(256 * 1024, 0x5a);
/** The one-byte answer of a target (a stream is open, a CONNECT or IDLE answered). */
export const ONE = Buffer.from([0x2e]);

export function connect(ep: Endpoint, timeoutMs = 10_000): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: ep.host, port: ep.port, noDelay: true });
    const timer = setTimeout(() => fail(new Error(`connect to ${ep.host}:${ep.port}: timeout`)), timeoutMs);
    const fail = (err: Error): void => {
      clearTimeout(timer);
      socket.destroy();
      reject(err);
    };
    socket.once('error', fail);
    socket.once('connect', () => {
      clearTimeout(timer);
      socket.off('error', fail);
      socket.on('error', () => undefined);
      resolve(socket);
    });
  });
}

/** Waits for `n` bytes, or fails on close or after `timeoutMs`. */
export function receive(socket: net.Socket, n: number, timeoutMs = 10_000): Promise<void> {
  return new Promise((resolve, reject) => {
    let got = 0;
    const done = (err: Error | null): void => {
      clearTimeout(timer);
      socket.off('data', onData);
      socket.off('close', onClose);
      if (err === null) resolve();
      else reject(err);
    };
    const onData = (chunk: Buffer): void => {
      got += chunk.length;
      if (got >= n) done(null);
    };
    const onClose = (): void => done(new Error('closed before the answer'));
    const timer = setTimeout(() => done(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
    socket.on('data', onData);
    socket.once('close', onClose);
  });
}

/** Resolves true once the socket has closed, false (and destroys it) after `timeoutMs`. */
export function closed(socket: net.Socket, timeoutMs = 10_000): Promise<boolean> {
  return new Promise((resolve) => {
    if (socket.closed) return resolve(true);
    const timer = setTimeout(() => {
      socket.destroy();
      resolve(false);
    }, Math.max(0, timeoutMs));
    socket.once('close', () => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}

/** A background writer's brake: `stopped` ends it, `wake` interrupts its wait for 'drain'. */
export interface Stop {
  stopped: boolean;
  wake?: () => void;
}

/** Resolves on 'drain' (true), or on close, stop or `untilUs` (false). */
function drained(socket: net.Socket, untilUs: number, stop: Stop | null): Promise<boolean> {
  return new Promise((resolve) => {
    const done = (value: boolean): void => {
      clearTimeout(timer);
      socket.off('drain', onDrain);
      socket.off('close', onClose);
      if (stop !== null) delete stop.wake;
      resolve(value);
    };
    const onDrain = (): void => done(true);
    const onClose = (): void => done(false);
    const timer = untilUs === Infinity ? undefined : setTimeout(() => done(false), Math.max(0, (untilUs - nowUs()) / 1000));
    socket.once('drain', onDrain);
    socket.once('close', onClose);
    if (stop !== null) stop.wake = () => done(false);
  });
}

/**
 * Writes `total` bytes as fast as the socket takes them; stops early at `untilUs`
 * or on `stop`. Returns the bytes handed to write() and those the kernel took.
 */
export async function pump(socket: net.Socket, total: number, untilUs = Infinity, stop: Stop | null = null): Promise<{ handed: number; took: number }> {
  let handed = 0;
  while (handed < total && !socket.destroyed && nowUs() < untilUs && stop?.stopped !== true) {
    const n = Math.min(total - handed, CHUNK.length);
    handed += n;
    if (!socket.write(n === CHUNK.length ? CHUNK : CHUNK.subarray(0, n))) await drained(socket, untilUs, stop);
  }
  return { handed, took: handed - socket.writableLength };
}

/** A stream that writes without pause until stopped (the bulk beside a latency test). */
export class BackgroundStream {
  private readonly stop: Stop = { stopped: false };
  private readonly startAt = nowUs();
  private readonly pumping: Promise<{ handed: number; took: number }>;

  constructor(readonly socket: net.Socket) {
    this.pumping = pump(socket, Number.MAX_SAFE_INTEGER, Infinity, this.stop);
  }

  /** Stops writing: the bytes the kernel took and over how long (ms). The socket is left to the caller. */
  async halt(): Promise<{ bytes: number; ms: number }> {
    this.stop.stopped = true;
    this.stop.wake?.();
    const { took } = await this.pumping;
    return { bytes: took, ms: (nowUs() - this.startAt) / 1000 };
  }
}

/** Listens on host:port (a deep backlog: the connection workloads open hundreds at once). */
export function listenOn(host: string, port: number, onSocket: (socket: net.Socket) => void): Promise<net.Server> {
  return new Promise((resolve, reject) => {
    const server = net.createServer({ noDelay: true }, onSocket);
    server.once('error', reject);
    server.listen({ host, port, backlog: 4096 }, () => {
      server.off('error', reject);
      resolve(server);
    });
  });
}

/**
 * A target's side of a connection: its first byte names the workload (the
 * mode); `handle` gets it and the rest of the first chunk. The socket stays
 * in flowing mode, so what no handler takes is dropped.
 */
export function byMode(socket: net.Socket, handle: (mode: number | undefined, rest: Buffer) => void): void {
  socket.once('data', (first: Buffer) => handle(first[0], first.subarray(1)));
  socket.on('data', () => undefined);
}

/** Echoes everything from now on, `rest` (already read) first. */
export function echo(socket: net.Socket, rest: Buffer): void {
  socket.on('data', (chunk: Buffer) => socket.write(chunk));
  if (rest.length > 0) socket.write(rest);
}

/** The counter of `port` in `counters`, made by `fresh` on first use. */
export function counterOf<T>(counters: Map<number, T>, port: number, fresh: () => T): T {
  let counter = counters.get(port);
  if (counter === undefined) {
    counter = fresh();
    counters.set(port, counter);
  }
  return counter;
}

type Waiter = { done: () => boolean; resolve: () => void };

/** Waits on conditions that socket events change: `until(cond)` resolves once `wake()` finds it true (or at the timeout). */
export class Conditions {
  private waiters: Waiter[] = [];

  until(done: () => boolean, timeoutMs: number): Promise<void> {
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

  wake(): void {
    if (this.waiters.length === 0) return;
    const ready = this.waiters.filter((w) => w.done());
    if (ready.length === 0) return;
    this.waiters = this.waiters.filter((w) => !ready.includes(w));
    for (const w of ready) w.resolve();
  }
}
