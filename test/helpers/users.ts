/**
 * User applications: connections whose fate (data, FIN, reset, close) is
 * recorded, payloads written with backpressure, and echo rounds that prove
 * both directions through a relay.
 */
import { createHash, randomBytes } from 'node:crypto';
import net from 'node:net';
import type { TestContext } from 'node:test';
import { withTimeout } from './wait.js';

export function sha256(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

/**
 * Writes `data` in random-sized chunks (1 B to 256 KiB), waiting for 'drain'
 * whenever write() returns false. Resolves when everything is handed to the
 * socket (not necessarily flushed); stops early if the socket dies.
 */
export async function writeInChunks(socket: net.Socket, data: Buffer, maxChunk = 256 * 1024): Promise<void> {
  let offset = 0;
  while (offset < data.length && !socket.destroyed) {
    const n = Math.min(data.length - offset, 1 + Math.floor(Math.random() * maxChunk));
    const ok = socket.write(data.subarray(offset, offset + n));
    offset += n;
    if (!ok) await writable(socket);
  }
}

/** Resolves when the socket can take more (drain) or is gone. */
export function writable(socket: net.Socket): Promise<void> {
  if (socket.destroyed) return Promise.resolve();
  return new Promise((resolve) => {
    const done = (): void => {
      socket.off('drain', done);
      socket.off('close', done);
      resolve();
    };
    socket.on('drain', done);
    socket.on('close', done);
  });
}

export interface CloseInfo {
  readonly hadError: boolean;
  readonly error: NodeJS.ErrnoException | null;
  /** performance.now() at 'close'. */
  readonly at: number;
  /** Whether the peer's FIN ('end') arrived before the close. */
  readonly ended: boolean;
}

export interface UserConn {
  readonly socket: net.Socket;
  /** Everything received, in order (unless `collect` was false). */
  readonly received: Buffer[];
  receivedBytes: number;
  /** Settles at 'close' (never rejects). */
  readonly closed: Promise<CloseInfo>;
  /** Rejects if the socket does not close within `ms`. */
  closedWithin(ms: number): Promise<CloseInfo>;
  /** `received` as one buffer. */
  data(): Buffer;
}

/** Follows a socket's fate from now on: data, 'end', errors and 'close'. */
export function track(socket: net.Socket, collect = true): UserConn {
  let error: NodeJS.ErrnoException | null = null;
  let ended = false;
  const received: Buffer[] = [];
  socket.on('error', (err: NodeJS.ErrnoException) => {
    error ??= err;
  });
  socket.on('end', () => {
    ended = true;
  });
  const conn: UserConn = {
    socket,
    received,
    receivedBytes: 0,
    closed: new Promise((resolve) => {
      socket.once('close', (hadError: boolean) => resolve({ hadError, error, at: performance.now(), ended }));
    }),
    closedWithin: (ms) => withTimeout(conn.closed, ms, `the socket to ${socket.remoteAddress ?? '?'}:${socket.remotePort ?? '?'} to close`),
    data: () => Buffer.concat(received),
  };
  socket.on('data', (chunk: Buffer) => {
    conn.receivedBytes += chunk.length;
    if (collect) received.push(chunk);
  });
  return conn;
}

/**
 * Starts connecting a user application to host:port (allowHalfOpen) and
 * returns at once: for connections the relay may reset before, or right
 * after, the handshake completes (the fate is in `closed`).
 */
export function dialUser(t: TestContext, host: string, port: number): UserConn {
  const socket = net.connect({ host, port, allowHalfOpen: true });
  t.after(() => {
    socket.destroy();
  });
  return track(socket);
}

/**
 * Connects a user application to host:port (allowHalfOpen); resolves once
 * connected, rejects with the socket error (e.g. ECONNREFUSED) otherwise.
 */
export function connectUser(t: TestContext, host: string, port: number, collect = true): Promise<UserConn> {
  const socket = net.connect({ host, port, allowHalfOpen: true });
  t.after(() => {
    socket.destroy();
  });
  const conn = track(socket, collect);
  return withTimeout(
    new Promise<UserConn>((resolve, reject) => {
      const onError = (err: Error): void => reject(err);
      socket.once('error', onError);
      socket.once('connect', () => {
        socket.off('error', onError);
        resolve(conn);
      });
    }),
    5000,
    `connect to ${host}:${port}`,
  );
}

/** A user connection to host:port through an echo target, proven end to end with one echoed line ('ping'). */
export async function liveUser(t: TestContext, host: string, port: number): Promise<UserConn> {
  const user = await connectUser(t, host, port);
  user.socket.write('ping\n');
  await withTimeout(
    new Promise<void>((resolve) => {
      const check = (): void => {
        if (!user.data().toString().startsWith('ping\n')) return;
        user.socket.off('data', check);
        resolve();
      };
      user.socket.on('data', check);
      check();
    }),
    5000,
    'the echo of ping',
  );
  return user;
}

/**
 * Sends `size` random bytes through host:port to an echo target, half-closes,
 * and checks the echo (bytes and hash) and the clean end. Returns the time taken.
 */
export async function echoRound(t: TestContext, host: string, port: number, size: number, timeoutMs = 5000): Promise<number> {
  const started = performance.now();
  const payload = randomBytes(size);
  const conn = await connectUser(t, host, port);
  void writeInChunks(conn.socket, payload).then(() => conn.socket.end());
  const info = await conn.closedWithin(timeoutMs).catch((err: unknown) => {
    throw new Error(`echo round through ${host}:${port}: ${err instanceof Error ? err.message : String(err)} (${conn.receivedBytes}/${size} bytes back)`);
  });
  const back = conn.data();
  if (info.error !== null) throw new Error(`echo round through ${host}:${port}: ${info.error.message} (${back.length}/${size} bytes back)`);
  if (!info.ended) throw new Error(`echo round through ${host}:${port}: closed without a FIN (${back.length}/${size} bytes back)`);
  if (back.length !== size || sha256(back) !== sha256(payload)) {
    throw new Error(`echo round through ${host}:${port}: ${back.length}/${size} bytes back, hash ${sha256(back) === sha256(payload) ? 'ok' : 'differs'}`);
  }
  return performance.now() - started;
}

export interface EchoAttempt {
  readonly ok: boolean;
  readonly ms: number;
  readonly detail: string;
}

/**
 * Like `echoRound`, for rounds that may fail (a refused or cut relay): never
 * throws, says what happened. `prefix` goes first (a marker to look for on
 * the wire).
 */
export function echoAttempt(host: string, port: number, size: number, timeoutMs = 5000, prefix?: Buffer): Promise<EchoAttempt> {
  const payload = prefix === undefined ? randomBytes(size) : Buffer.concat([prefix, randomBytes(size)]);
  const want = sha256(payload);
  const started = performance.now();
  return new Promise((resolve) => {
    const socket = net.connect({ host, port, allowHalfOpen: true });
    const hash = createHash('sha256');
    let received = 0;
    let done = false;
    const finish = (ok: boolean, detail: string): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.destroy();
      resolve({ ok, ms: performance.now() - started, detail });
    };
    const timer = setTimeout(() => finish(false, `timeout after ${timeoutMs} ms (${received}/${payload.length} bytes back)`), timeoutMs);
    socket.on('data', (chunk: Buffer) => {
      hash.update(chunk);
      received += chunk.length;
    });
    socket.on('end', () => {
      const got = hash.digest('hex');
      finish(got === want && received === payload.length, `received ${received}/${payload.length} bytes, hash ${got === want ? 'ok' : 'differs'}`);
    });
    socket.on('error', (err) => finish(false, `error ${err.message}`));
    socket.on('connect', () => socket.end(payload));
  });
}
