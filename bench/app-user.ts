/**
 * The user applications (the load generator): they connect to a path's entry
 * and drive one workload per request. Runs in its own process, never in a relay.
 */
import net from 'node:net';
import { Mode, nowUs, type UserApi } from './messages.js';
import type { Handlers } from './ipc.js';
import { BackgroundStream, closed, connect, pump, receive } from './sockets.js';

/** Ping-pong of `size` bytes until `untilUs`; pushes each round trip (µs) after the warm-up. */
function pingPong(socket: net.Socket, size: number, warmup: number, untilUs: number, samples: number[], first: Buffer | null): Promise<void> {
  return new Promise((resolve) => {
    const message = Buffer.alloc(size, 0x61);
    let pending = 0;
    let sentAt = 0;
    let count = 0;
    const send = (prefix: Buffer | null): void => {
      pending = size;
      sentAt = nowUs();
      socket.write(prefix === null ? message : Buffer.concat([prefix, message]));
    };
    const finish = (): void => {
      socket.off('data', onData);
      socket.end();
      resolve();
    };
    const onData = (chunk: Buffer): void => {
      pending -= chunk.length;
      if (pending > 0) return;
      const now = nowUs();
      if (count++ >= warmup) samples.push(now - sentAt);
      // At least one recorded round trip per stream, however slow the path.
      if (now < untilUs || count <= warmup) send(null);
      else finish();
    };
    socket.on('data', onData);
    socket.once('close', () => {
      socket.off('data', onData);
      resolve();
    });
    send(first);
  });
}

const MODE_BYTE = (mode: number): Buffer => Buffer.from([mode]);

/**
 * Connections opened at once. A burst of 512 connects overflows a listen
 * backlog of 128 (socat's, as the issue sets it): the kernel then drops
 * handshakes and streams fail for a reason that is not the relay's.
 */
const CONNECT_CONCURRENCY = 64;

/** Runs at most `limit` tasks at a time. */
class Pool {
  private active = 0;
  private readonly queue: (() => void)[] = [];
  constructor(private readonly limit: number) {}

  async run<T>(task: () => Promise<T>): Promise<T> {
    if (this.active >= this.limit) await new Promise<void>((resolve) => this.queue.push(resolve));
    this.active++;
    try {
      return await task();
    } finally {
      this.active--;
      this.queue.shift()?.();
    }
  }
}

export class UserApp {
  private readonly held = new Set<net.Socket>();
  private stream: BackgroundStream | null = null;

  readonly handlers: Handlers<UserApi> = {
    probe: async (ep) => {
      const socket = await connect(ep, 2000);
      try {
        socket.write(Buffer.from([Mode.ECHO, 0x2a]));
        await receive(socket, 1, 2000);
      } finally {
        socket.destroy();
      }
      return null;
    },

    bulk: async (args) => {
      const startAt = nowUs();
      const per = Math.floor(args.bytes / args.streams);
      let failed = 0;
      let firstError = '';
      const opening = new Pool(CONNECT_CONCURRENCY);
      const streams = Array.from({ length: args.streams }, async (_, i) => {
        try {
          const socket = await opening.run(async () => {
            const s = await connect(args);
            s.write(MODE_BYTE(Mode.BULK));
            await receive(s, 1);
            return s;
          });
          let error: Error | null = null;
          socket.once('error', (err) => (error = err));
          await pump(socket, i === 0 ? args.bytes - per * (args.streams - 1) : per);
          socket.end();
          await closed(socket, 600_000);
          if (error !== null) throw error;
        } catch (err) {
          failed++;
          if (firstError === '') firstError = err instanceof Error ? err.message : String(err);
        }
      });
      await Promise.all(streams);
      return { startAt, writtenAt: nowUs(), failed, firstError };
    },

    rtt: async (args) => {
      const opening = new Pool(CONNECT_CONCURRENCY);
      const sockets = await Promise.all(Array.from({ length: args.streams }, () => opening.run(() => connect(args))));
      const samples: number[] = [];
      const untilUs = nowUs() + args.durationMs * 1000;
      await Promise.all(sockets.map((s) => pingPong(s, args.size, args.warmup, untilUs, samples, MODE_BYTE(Mode.ECHO))));
      await Promise.all(sockets.map((s) => closed(s)));
      return { samples };
    },

    connRate: async (args) => {
      const startAt = nowUs();
      const untilUs = startAt + args.durationMs * 1000;
      let connections = 0;
      let errors = 0;
      let lastAt = startAt;
      const worker = async (): Promise<void> => {
        while (nowUs() < untilUs) {
          try {
            const socket = await connect(args, 5000);
            socket.write(MODE_BYTE(Mode.CONNECT));
            await receive(socket, 1, 5000);
            socket.end();
            await closed(socket, 5000);
            connections++;
          } catch {
            errors++;
          }
          lastAt = nowUs();
        }
      };
      await Promise.all(Array.from({ length: args.workers }, worker));
      return { connections, errors, elapsedMs: (lastAt - startAt) / 1000 };
    },

    idleOpen: async (args) => {
      const startAt = nowUs();
      let next = 0;
      let opened = 0;
      let failed = 0;
      let firstError = '';
      const worker = async (): Promise<void> => {
        while (next < args.count) {
          next++;
          try {
            const socket = await connect(args);
            socket.write(MODE_BYTE(Mode.IDLE));
            await receive(socket, 1);
            this.held.add(socket);
            socket.once('close', () => this.held.delete(socket));
            opened++;
          } catch (err) {
            failed++;
            if (firstError === '') firstError = err instanceof Error ? err.message : String(err);
          }
        }
      };
      await Promise.all(Array.from({ length: Math.min(args.concurrency, args.count) }, worker));
      return { opened, failed, held: this.held.size, elapsedMs: (nowUs() - startAt) / 1000, firstError };
    },

    idleClose: async () => {
      const sockets = [...this.held];
      for (const s of sockets) s.end();
      await Promise.all(sockets.map((s) => closed(s)));
      return { closed: sockets.length };
    },

    slow: async (args) => {
      const untilUs = nowUs() + args.durationMs * 1000;
      const socket = await connect(args);
      socket.write(MODE_BYTE(Mode.SLOW));
      const { took: written } = await pump(socket, args.bytes, untilUs);
      // A relay that buffers everything lets the writer finish early: hold the
      // connection until the deadline so its memory is still seen.
      const left = (untilUs - nowUs()) / 1000;
      if (left > 0) await new Promise((resolve) => setTimeout(resolve, left));
      socket.destroy();
      return { written };
    },

    bulkStart: async (args) => {
      if (this.stream !== null) throw new Error('a bulk stream is already running');
      const socket = await connect(args);
      socket.write(MODE_BYTE(Mode.DISCARD));
      this.stream = new BackgroundStream(socket);
      return null;
    },

    bulkStop: async () => {
      const s = this.stream;
      if (s === null) throw new Error('no bulk stream is running');
      this.stream = null;
      const { bytes, ms } = await s.halt();
      s.socket.end();
      await closed(s.socket);
      return { bytes, ms };
    },
  };
}
