/**
 * The one TCP relay of the tests (a middlebox between two ends): it forwards
 * both ways with backpressure and half-closes, records what each connection
 * carried, and on command misbehaves as a network does: blackholes
 * (forwards nothing, closes nothing), cuts (resets both sides) or drops
 * (a FIN each way, nothing forwarded after). It can dial out from a chosen
 * source address, so a server sees that source.
 *
 * Loopback tests use `startChaosRelay(t, ...)`; the fault agent runs one
 * inside a network namespace with `createRelay(...)`.
 */
import { EventEmitter } from 'node:events';
import net from 'node:net';
import type { TestContext } from 'node:test';
import { LINK_HOST, listen } from './net.js';
import { withTimeout } from './wait.js';

export interface RelayOptions {
  /** Where the relay listens (default 127.0.0.1:0). */
  readonly listenHost?: string;
  readonly listenPort?: number;
  /** The source address of its upstream connections (default: the system's choice). */
  readonly localAddress?: string;
  /** Bytes recorded per connection and direction (default 64 KiB). */
  readonly recordBytes?: number;
}

export interface RelayConnection {
  readonly id: number;
  /** The upstream connection was made (bytes could flow). */
  upstreamConnected: boolean;
  /** Date.now() when the upstream connection was made, or -1. */
  connectedAt: number;
  /** The first bytes sent towards the upstream ('up') and back ('down'), up to `recordBytes` each. */
  readonly up: Buffer[];
  readonly down: Buffer[];
  /** All bytes the downstream side sent. */
  upBytes: number;
  closed: boolean;
}

export interface ChaosRelay {
  readonly port: number;
  /** Connections accepted so far. */
  readonly connections: number;
  readonly conns: readonly RelayConnection[];
  /** What every connection recorded in `direction`, in order of connection. */
  recorded(direction: 'up' | 'down'): Buffer;
  /** Resolves once `n` connections have been accepted in all; rejects after `ms`. */
  waitForConnections(n: number, ms: number): Promise<void>;
  /** Stops forwarding in both directions, on open and future connections, without closing anything: bytes are read and dropped, closes ignored. */
  blackhole(): void;
  /** Resets every open connection (both sides); returns how many. */
  cut(): number;
  /** Stops forwarding on every open connection and closes both sides orderly (a FIN each way, no goodbye from either end); returns how many. */
  drop(): number;
  close(): Promise<void>;
}

/** A relay to host:port (see RelayOptions); closed by its caller. */
export async function createRelay(host: string, port: number, options: RelayOptions = {}): Promise<ChaosRelay> {
  const recordBytes = options.recordBytes ?? 64 * 1024;
  const conns: RelayConnection[] = [];
  const open = new Set<net.Socket>();
  const live = new Set<{ readonly sockets: readonly [net.Socket, net.Socket]; forwarding: boolean }>();
  const events = new EventEmitter();
  let blackholed = false;

  const record = (into: Buffer[], recorded: number, chunk: Buffer): number => {
    if (recorded >= recordBytes) return recorded;
    const part = Buffer.from(chunk.subarray(0, recordBytes - recorded));
    into.push(part);
    return recorded + part.length;
  };

  const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: true }, (downstream) => {
    const conn: RelayConnection = { id: conns.length + 1, upstreamConnected: false, connectedAt: -1, up: [], down: [], upBytes: 0, closed: false };
    conns.push(conn);
    events.emit('connection');
    const upstream = net.connect({ host, port, allowHalfOpen: true, ...(options.localAddress !== undefined ? { localAddress: options.localAddress } : {}) });
    const entry = { sockets: [downstream, upstream] as const, forwarding: true };
    live.add(entry);
    for (const s of entry.sockets) {
      open.add(s);
      s.on('close', () => open.delete(s));
      s.on('error', () => undefined);
    }
    const flowing = (): boolean => entry.forwarding && !blackholed;
    let upRecorded = 0;
    let downRecorded = 0;
    const forward = (from: net.Socket, to: net.Socket, onChunk: (chunk: Buffer) => void): void => {
      from.on('data', (chunk: Buffer) => {
        onChunk(chunk);
        if (!flowing()) return;
        if (!to.write(chunk)) {
          from.pause();
          to.once('drain', () => {
            if (flowing()) from.resume();
          });
        }
      });
      from.on('end', () => {
        if (flowing()) to.end();
      });
      from.on('close', () => {
        if (!blackholed) to.destroy();
      });
    };
    forward(downstream, upstream, (chunk) => {
      conn.upBytes += chunk.length;
      upRecorded = record(conn.up, upRecorded, chunk);
    });
    forward(upstream, downstream, (chunk) => {
      downRecorded = record(conn.down, downRecorded, chunk);
    });
    downstream.once('close', () => {
      conn.closed = true;
      live.delete(entry);
    });
    upstream.once('connect', () => {
      conn.upstreamConnected = true;
      conn.connectedAt = Date.now();
      upstream.setNoDelay(true);
      downstream.setNoDelay(true);
      downstream.resume();
    });
  });
  await listen(server, options.listenHost ?? LINK_HOST, options.listenPort ?? 0);

  const relay: ChaosRelay = {
    port: (server.address() as net.AddressInfo).port,
    get connections() {
      return conns.length;
    },
    conns,
    recorded: (direction) => Buffer.concat(conns.flatMap((c) => c[direction])),
    waitForConnections: (n, ms) =>
      withTimeout(
        new Promise<void>((resolve) => {
          const check = (): void => {
            if (conns.length < n) return;
            events.off('connection', check);
            resolve();
          };
          events.on('connection', check);
          check();
        }),
        ms,
        `${n} connections through the relay (got ${conns.length})`,
      ),
    blackhole: () => {
      blackholed = true;
      // Keep reading (and dropping) so that nothing backs up into the kernel either.
      for (const s of open) s.resume();
    },
    cut: () => {
      const n = live.size;
      for (const s of [...open]) s.resetAndDestroy();
      return n;
    },
    drop: () => {
      const n = live.size;
      for (const entry of [...live]) {
        entry.forwarding = false;
        for (const s of entry.sockets) {
          // Read and discard what either end still sends; closed for good after a moment.
          s.resume();
          s.end();
        }
        setTimeout(() => {
          for (const s of entry.sockets) s.destroy();
        }, 2000).unref();
      }
      return n;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of [...open]) s.destroy();
        server.close(() => resolve());
      }),
  };
  return relay;
}

/** A relay on 127.0.0.1:0 to host:port, with backpressure, until told otherwise; closed by t.after. */
export async function startChaosRelay(t: TestContext, host: string, port: number, options: RelayOptions = {}): Promise<ChaosRelay> {
  const relay = await createRelay(host, port, options);
  t.after(() => relay.close());
  return relay;
}
