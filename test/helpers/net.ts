/**
 * Loopback addresses and ports. One host plays every part, on three
 * loopback addresses:
 *   link    127.0.0.1   (link listener and the client's dial; relays)
 *   entry   127.0.0.2:P (the entry side's -p)
 *   target  127.0.0.3:P (the exit side's -t 127.0.0.3: the same port number)
 * Other sources (127.0.0.50 and up, 127.1.x.y) play attackers: a server's
 * penalty box blocks a source after a failed attempt. Every listener uses
 * port 0 or a port a port-0 listener got (the CLI, which takes no port 0,
 * gets one above 61000).
 */
import { once } from 'node:events';
import net from 'node:net';
import { eventWithin, withTimeout } from './wait.js';

export const LINK_HOST = '127.0.0.1';
export const ENTRY_HOST = '127.0.0.2';
export const TARGET_HOST = '127.0.0.3';

export const KiB = 1024;
export const MiB = 1024 * 1024;

/** Listens on host:port (every address when `host` is undefined); rejects with the listen error (EADDRINUSE...). */
export function listen(server: net.Server, host: string | undefined, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error): void => reject(err);
    server.once('error', onError);
    server.listen(host === undefined ? { port } : { host, port }, () => {
      server.off('error', onError);
      resolve();
    });
  });
}

/** Whether host:port (every address when `host` is undefined) can be listened on right now. */
export function portFree(host: string | undefined, port: number): Promise<boolean> {
  const probe = net.createServer();
  return listen(probe, host, port).then(
    () => new Promise<boolean>((resolve) => probe.close(() => resolve(true))),
    () => false,
  );
}

/** A port that was free on `host` a moment ago (from port 0). */
export async function freePort(host: string = LINK_HOST): Promise<number> {
  const server = net.createServer();
  await listen(server, host, 0);
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** A port above 61000 (outside the ephemeral range) free on every address a moment ago: for the CLI's link port. */
export async function freeHighPort(): Promise<number> {
  for (let attempt = 0; attempt < 20; attempt++) {
    const port = 61001 + Math.floor(Math.random() * (65535 - 61001));
    if (await portFree('0.0.0.0', port)) return port;
  }
  throw new Error('no free port above 61000 after 20 tries');
}

/** Two ends of one loopback TCP connection (errors are the test's to observe through close). */
export async function socketPair(): Promise<[net.Socket, net.Socket]> {
  const server = net.createServer();
  await listen(server, LINK_HOST, 0);
  const port = (server.address() as net.AddressInfo).port;
  const accepted = once(server, 'connection') as Promise<[net.Socket]>;
  const a = net.connect(port, LINK_HOST);
  await once(a, 'connect');
  const [b] = await accepted;
  server.close();
  a.on('error', () => undefined);
  b.on('error', () => undefined);
  return [a, b];
}

export interface RawConnection {
  readonly socket: net.Socket;
  /** Everything the server sent. */
  readonly received: Buffer[];
  /** Resolves with the time (ms since connect) the server closed, or null after `ms`. */
  closedWithin(ms: number): Promise<number | null>;
  readonly connectedAt: number;
  closedAt: number | null;
}

/** A plain connection to host:port from `localAddress` (a chosen source), recording what the server sends. */
export async function rawConnect(host: string, port: number, localAddress: string, timeoutMs = 3000): Promise<RawConnection> {
  const socket = net.connect({ host, port, localAddress });
  socket.on('error', () => undefined);
  const received: Buffer[] = [];
  socket.on('data', (chunk: Buffer) => received.push(chunk));
  await withTimeout(once(socket, 'connect'), timeoutMs, `connect ${host}:${port} from ${localAddress}`);
  const conn: RawConnection = {
    socket,
    received,
    connectedAt: performance.now(),
    closedAt: null,
    async closedWithin(ms: number) {
      if (conn.closedAt === null && !(await eventWithin(socket, 'close', ms))) return null;
      return (conn.closedAt ?? performance.now()) - conn.connectedAt;
    },
  };
  socket.once('close', () => {
    conn.closedAt = performance.now();
  });
  return conn;
}
