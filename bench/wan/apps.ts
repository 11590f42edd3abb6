/**
 * The WAN bench's application processes, each inside its namespace:
 *   node dist/bench/wan/apps.js user   the load generator, in A (the entry side)
 *   node dist/bench/wan/apps.js sink   the targets, in B (listening on 0.0.0.0)
 * They take requests from the bench over the IPC channel (bench/ipc.ts); see
 * bench/wan/api.ts. Never inside a relay.
 */
import net from 'node:net';
import { serve, type Handlers } from '../ipc.js';
import { WanMode, nowUs, type BulkCount, type Endpoint, type SinkApi, type UserApi } from './api.js';

/** One buffer, written again and again: the generator allocates nothing per write. */
const CHUNK = Buffer.alloc(256 * 1024, 0x5a);
const ONE = Buffer.from([0x2e]);

function connect(ep: Endpoint, timeoutMs: number): Promise<net.Socket> {
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
function receive(socket: net.Socket, n: number, timeoutMs: number): Promise<void> {
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

function closed(socket: net.Socket, timeoutMs: number): Promise<boolean> {
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

interface Stop {
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
async function pump(socket: net.Socket, total: number, untilUs: number, stop: Stop | null): Promise<{ handed: number; took: number }> {
  let handed = 0;
  while (handed < total && !socket.destroyed && nowUs() < untilUs && stop?.stopped !== true) {
    const n = Math.min(total - handed, CHUNK.length);
    handed += n;
    if (!socket.write(n === CHUNK.length ? CHUNK : CHUNK.subarray(0, n))) await drained(socket, untilUs, stop);
  }
  return { handed, took: handed - socket.writableLength };
}

interface Background {
  readonly socket: net.Socket;
  readonly stop: Stop;
  readonly startAt: number;
  readonly pumping: Promise<{ handed: number; took: number }>;
}

class UserApp {
  private ping: net.Socket | null = null;
  private background: Background | null = null;
  private bulkSockets: net.Socket[] = [];

  readonly handlers: Handlers<UserApi> = {
    probe: async (args) => {
      const socket = await connect(args, args.timeoutMs);
      try {
        socket.write(Buffer.from([WanMode.ECHO, 0x2a]));
        await receive(socket, 1, args.timeoutMs);
      } finally {
        socket.destroy();
      }
      return null;
    },

    bulkOpen: async (args) => {
      if (this.bulkSockets.length > 0) throw new Error('bulk streams are already open');
      let failed = 0;
      let firstError = '';
      const opened = await Promise.all(
        Array.from({ length: args.streams }, async () => {
          try {
            const s = await connect(args, 20_000);
            s.write(Buffer.from([WanMode.BULK]));
            await receive(s, 1, 20_000);
            return s;
          } catch (err) {
            failed++;
            if (firstError === '') firstError = err instanceof Error ? err.message : String(err);
            return null;
          }
        }),
      );
      this.bulkSockets = opened.filter((s): s is net.Socket => s !== null);
      return { opened: this.bulkSockets.length, failed, firstError };
    },

    bulkSend: async (args) => {
      const sockets = this.bulkSockets;
      this.bulkSockets = [];
      if (sockets.length === 0) throw new Error('no bulk streams are open');
      let failed = 0;
      let firstError = '';
      let completed = 0;
      let aborted = 0;
      const per = Math.floor(args.bytes / sockets.length);
      const startAt = nowUs();
      await Promise.all(
        sockets.map(async (socket, i) => {
          let error: Error | null = null;
          socket.once('error', (err) => (error = err));
          const total = i === 0 ? args.bytes - per * (sockets.length - 1) : per;
          const { handed } = await pump(socket, total, args.untilUs, null);
          if (handed < total || socket.destroyed) {
            // Out of time: what the sink counted by the deadline is the measure.
            aborted++;
            socket.destroy();
            return;
          }
          socket.end();
          // The sink ends its side once it has every byte.
          if (!(await closed(socket, Math.max(0, (args.untilUs - nowUs()) / 1000) + 2000))) {
            aborted++;
            return;
          }
          if (error !== null) {
            failed++;
            if (firstError === '') firstError = (error as Error).message;
          } else completed++;
        }),
      );
      return { startAt, completed, aborted, failed, firstError };
    },

    pingOpen: async (args) => {
      if (this.ping !== null) throw new Error('an interactive connection is already open');
      const socket = await connect(args, 20_000);
      socket.write(Buffer.from([WanMode.ECHO]));
      this.ping = socket;
      return null;
    },

    pingRun: (args) => {
      const socket = this.ping;
      if (socket === null) return Promise.reject(new Error('no interactive connection'));
      return new Promise((resolve, reject) => {
        const message = Buffer.alloc(args.size, 0x61);
        const samples: number[] = [];
        const sentAts: number[] = [];
        const untilUs = nowUs() + args.durationMs * 1000;
        let pending = 0;
        let sentAt = 0;
        let count = 0;
        const send = (): void => {
          pending = args.size;
          sentAt = nowUs();
          socket.write(message);
        };
        const finish = (err: Error | null): void => {
          socket.off('data', onData);
          socket.off('close', onClose);
          if (err !== null) reject(err);
          else resolve({ samples, sentAt: sentAts });
        };
        const onData = (chunk: Buffer): void => {
          pending -= chunk.length;
          if (pending > 0) return;
          const now = nowUs();
          if (count++ >= args.warmup) {
            samples.push(now - sentAt);
            sentAts.push(sentAt);
          }
          if (now < untilUs || samples.length < args.minSamples) send();
          else finish(null);
        };
        const onClose = (): void => finish(new Error('the interactive connection closed'));
        socket.on('data', onData);
        socket.once('close', onClose);
        send();
      });
    },

    pingClose: async () => {
      const socket = this.ping;
      this.ping = null;
      if (socket !== null) {
        socket.end();
        await closed(socket, 5000);
      }
      return null;
    },

    bulkStart: async (args) => {
      if (this.background !== null) throw new Error('a bulk stream is already running');
      const socket = await connect(args, 20_000);
      socket.write(Buffer.from([WanMode.DISCARD]));
      const stop: Stop = { stopped: false };
      this.background = { socket, stop, startAt: nowUs(), pumping: pump(socket, Number.MAX_SAFE_INTEGER, Infinity, stop) };
      return null;
    },

    bulkStop: async () => {
      const b = this.background;
      if (b === null) throw new Error('no bulk stream is running');
      this.background = null;
      b.stop.stopped = true;
      b.stop.wake?.();
      const { took: bytes } = await b.pumping;
      const ms = (nowUs() - b.startAt) / 1000;
      // Whatever is still queued along the path is of no interest: reset, do not wait for it.
      b.socket.destroy();
      return { bytes, ms };
    },

    newStreams: async (args) => {
      const startAt = nowUs();
      const times: number[] = [];
      let failed = 0;
      let firstError = '';
      const sockets: net.Socket[] = [];
      await Promise.all(
        Array.from({ length: args.count }, async () => {
          const t0 = nowUs();
          try {
            const s = await connect(args, args.timeoutMs);
            sockets.push(s);
            s.write(Buffer.from([WanMode.ONE]));
            await receive(s, 1, args.timeoutMs);
            times.push(nowUs() - t0);
          } catch (err) {
            failed++;
            if (firstError === '') firstError = err instanceof Error ? err.message : String(err);
          }
        }),
      );
      const elapsedUs = nowUs() - startAt;
      for (const s of sockets) s.end();
      await Promise.all(sockets.map((s) => closed(s, 5000)));
      return { times, failed, firstError, elapsedUs };
    },
  };
}

interface Counter {
  ended: number;
  bytes: number;
  firstAt: number;
  lastAt: number;
}

type Waiter = { done: () => boolean; resolve: () => void };

class SinkApp {
  private readonly counters = new Map<number, Counter>();
  private waiters: Waiter[] = [];
  private open = 0;

  readonly handlers: Handlers<SinkApi> = {
    listen: async (args) => {
      for (const port of args.ports) await this.listen(port);
      return null;
    },
    bulkReset: (args) => {
      this.counters.set(args.port, { ended: 0, bytes: 0, firstAt: 0, lastAt: 0 });
      return Promise.resolve(null);
    },
    bulkWait: async (args): Promise<BulkCount> => {
      const c = this.counter(args.port);
      await this.until(() => c.ended >= args.streams, Math.max(0, (args.untilUs - nowUs()) / 1000));
      return { ...c };
    },
    waitOpen: async (args) => {
      await this.until(() => this.open <= args.open, args.timeoutMs);
      return { open: this.open };
    },
  };

  private listen(port: number): Promise<void> {
    return new Promise((resolve, reject) => {
      const server = net.createServer({ noDelay: true }, (socket) => this.accept(socket, port));
      server.once('error', reject);
      server.listen({ host: '0.0.0.0', port, backlog: 4096 }, () => {
        server.off('error', reject);
        resolve();
      });
    });
  }

  private counter(port: number): Counter {
    let c = this.counters.get(port);
    if (c === undefined) {
      c = { ended: 0, bytes: 0, firstAt: 0, lastAt: 0 };
      this.counters.set(port, c);
    }
    return c;
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

  private accept(socket: net.Socket, port: number): void {
    this.open++;
    socket.on('error', () => undefined);
    socket.on('close', () => {
      this.open--;
      this.wake();
    });
    socket.once('data', (first: Buffer) => {
      const mode = first[0];
      const rest = first.subarray(1);
      switch (mode) {
        case WanMode.BULK: {
          const c = this.counter(port);
          socket.write(ONE);
          const count = (n: number): void => {
            const now = nowUs();
            if (c.firstAt === 0) c.firstAt = now;
            c.bytes += n;
            c.lastAt = now;
          };
          if (rest.length > 0) count(rest.length);
          socket.on('data', (chunk: Buffer) => count(chunk.length));
          socket.on('end', () => {
            c.ended++;
            socket.end();
            this.wake();
          });
          return;
        }
        case WanMode.ECHO:
          socket.on('data', (chunk: Buffer) => socket.write(chunk));
          if (rest.length > 0) socket.write(rest);
          socket.on('end', () => socket.end());
          return;
        case WanMode.ONE:
          socket.write(ONE);
          socket.on('end', () => socket.end());
          return;
        case WanMode.DISCARD:
          socket.on('end', () => socket.end());
          return;
        default:
          socket.destroy();
      }
    });
    // Flowing mode for every connection: what no mode handler takes is dropped.
    socket.on('data', () => undefined);
  }
}

const role = process.argv[2];
if (role === 'user') serve<UserApi>(new UserApp().handlers);
else if (role === 'sink') serve<SinkApi>(new SinkApp().handlers);
else {
  process.stderr.write('usage: node dist/bench/wan/apps.js user|sink (spawned by the WAN bench)\n');
  process.exitCode = 2;
}
