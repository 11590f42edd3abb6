/**
 * The WAN bench's application processes, each inside its namespace:
 *   node dist/bench/wan/apps.js user   the load generator, in A (the entry side)
 *   node dist/bench/wan/apps.js sink   the targets, in B (listening on 0.0.0.0)
 * They take requests from the bench over the IPC channel (bench/ipc.ts); see
 * bench/wan/api.ts. Never inside a relay.
 */
import net from 'node:net';
import { serve, type Handlers } from '../ipc.js';
import { BackgroundStream, Conditions, byMode, closed, connect, counterOf, echo, listenOn, pump, receive, ONE } from '../sockets.js';
import { WanMode, nowUs, type BulkCount, type SinkApi, type UserApi } from './api.js';

class UserApp {
  private ping: net.Socket | null = null;
  private background: BackgroundStream | null = null;
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
      this.background = new BackgroundStream(socket);
      return null;
    },

    bulkStop: async () => {
      const b = this.background;
      if (b === null) throw new Error('no bulk stream is running');
      this.background = null;
      const { bytes, ms } = await b.halt();
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

class SinkApp {
  private readonly counters = new Map<number, Counter>();
  private readonly conditions = new Conditions();
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
      await this.conditions.until(() => c.ended >= args.streams, Math.max(0, (args.untilUs - nowUs()) / 1000));
      return { ...c };
    },
    waitOpen: async (args) => {
      await this.conditions.until(() => this.open <= args.open, args.timeoutMs);
      return { open: this.open };
    },
  };

  private async listen(port: number): Promise<void> {
    await listenOn('0.0.0.0', port, (socket) => this.accept(socket, port));
  }

  private counter(port: number): Counter {
    return counterOf(this.counters, port, () => ({ ended: 0, bytes: 0, firstAt: 0, lastAt: 0 }));
  }

  private accept(socket: net.Socket, port: number): void {
    this.open++;
    socket.on('error', () => undefined);
    socket.on('close', () => {
      this.open--;
      this.conditions.wake();
    });
    byMode(socket, (mode, rest) => {
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
            this.conditions.wake();
          });
          return;
        }
        case WanMode.ECHO:
          echo(socket, rest);
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
  }
}

const role = process.argv[2];
if (role === 'user') serve<UserApi>(new UserApp().handlers);
else if (role === 'sink') serve<SinkApi>(new SinkApp().handlers);
else {
  process.stderr.write('usage: node dist/bench/wan/apps.js user|sink (spawned by the WAN bench)\n');
  process.exitCode = 2;
}
