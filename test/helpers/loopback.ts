/**
 * Helpers for the loopback integration tests: targets (echo, hash, custom),
 * a `pair()` factory that starts a server and a client through the library,
 * a chaos relay that can blackhole or cut the link, user connections with
 * their fate recorded, captured logs, bounded waits on events, and the CLI
 * as a child process.
 *
 * One host plays every part, on three loopback addresses:
 *   link    127.0.0.1  (link listener and the client's dial; the chaos relay)
 *   entry   127.0.0.2:P (the entry side's -p)
 *   target  127.0.0.3:P (the exit side's -t 127.0.0.3: the same port number)
 * A target is bound on 127.0.0.3:0 first; 127.0.0.2:P is held by a
 * placeholder until the instance that listens there starts (retrying with
 * another port if it is taken). Every listener uses port 0 or a port a port-0
 * listener got.
 *
 * Every helper that opens something takes the TestContext and registers its
 * own cleanup with t.after, so a failing test still leaves nothing behind.
 * Nothing sleeps to wait for a state: waits are on events, each bounded.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { EventEmitter, once } from 'node:events';
import net from 'node:net';
import { dirname, join } from 'node:path';
import type { TestContext } from 'node:test';
import { fileURLToPath } from 'node:url';
import { StringDecoder } from 'node:string_decoder';
import v8 from 'node:v8';
import vm from 'node:vm';
import { startClient, startServer } from '../../src/index.js';
import type { ClientOptions, CommonOptions, Limits, ServerOptions, Tcpipe, TcpipeEvents } from '../../src/instance.js';
import { createLogger, type Logger, type LogLevel } from '../../src/log/logger.js';

export const LINK_HOST = '127.0.0.1';
export const ENTRY_HOST = '127.0.0.2';
export const TARGET_HOST = '127.0.0.3';

/** dist/test/helpers -> repository root (tests run from dist/). */
export const REPO_ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
export const CLI_MAIN = join(REPO_ROOT, 'dist', 'src', 'cli', 'main.js');

export const MiB = 1024 * 1024;

// ---------------------------------------------------------------------------
// Bounded waits
// ---------------------------------------------------------------------------

/** Rejects with `what` if `promise` does not settle within `ms`. */
export function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

type Listener = (...args: unknown[]) => void;

/** The first `name` event of `emitter` whose arguments pass `filter`, within `ms`. */
export function waitForEvent(
  emitter: EventEmitter,
  name: string,
  ms: number,
  filter: (...args: unknown[]) => boolean = () => true,
): Promise<unknown[]> {
  return handled(
    new Promise((resolve, reject) => {
      const listener: Listener = (...args) => {
        if (!filter(...args)) return;
        clearTimeout(timer);
        emitter.off(name, listener);
        resolve(args);
      };
      const timer = setTimeout(() => {
        emitter.off(name, listener);
        reject(new Error(`timed out after ${ms} ms waiting for '${name}'`));
      }, ms);
      emitter.on(name, listener);
    }),
  );
}

/**
 * Marks a promise as handled so that a wait set up in advance, and left
 * behind by a test that already failed, does not also fail the whole file
 * as an unhandled rejection. Whoever awaits it still gets the rejection.
 */
export function handled<T>(promise: Promise<T>): Promise<T> {
  promise.catch(() => undefined);
  return promise;
}

type Info<K extends keyof TcpipeEvents> = TcpipeEvents[K][0];

/** The next `name` event of a Tcpipe instance passing `filter`, within `ms`. */
export function nextEvent<K extends keyof TcpipeEvents>(
  instance: Tcpipe,
  name: K,
  ms: number,
  filter: (info: Info<K>) => boolean = () => true,
): Promise<Info<K>> {
  const role = roleOf(instance);
  return handled(
    waitForEvent(instance as unknown as EventEmitter, name, ms, (...args) => filter(args[0] as Info<K>)).then(
      ([info]) => info as Info<K>,
      (err: unknown) => {
        throw new Error(`${err instanceof Error ? err.message : String(err)} from the ${role}`);
      },
    ),
  );
}

/** Resolves once `count` events `name` (passing `filter`) have been seen from now on, within `ms`. */
export function eventCount<K extends keyof TcpipeEvents>(
  instance: Tcpipe,
  name: K,
  count: number,
  ms: number,
  filter: (info: Info<K>) => boolean = () => true,
): Promise<Info<K>[]> {
  const seen: Info<K>[] = [];
  const emitter = instance as unknown as EventEmitter;
  const role = roleOf(instance);
  return handled(
    new Promise((resolve, reject) => {
      const listener: Listener = (info) => {
        if (!filter(info as Info<K>)) return;
        seen.push(info as Info<K>);
        if (seen.length < count) return;
        clearTimeout(timer);
        emitter.off(name, listener);
        resolve(seen);
      };
      const timer = setTimeout(() => {
        emitter.off(name, listener);
        reject(new Error(`timed out after ${ms} ms waiting for ${count} '${name}' events from the ${role} (saw ${seen.length})`));
      }, ms);
      emitter.on(name, listener);
    }),
  );
}

/** Records every `name` event from now on (for "this never happened" checks). */
export function recordEvents<K extends keyof TcpipeEvents>(instance: Tcpipe, name: K): Info<K>[] {
  const seen: Info<K>[] = [];
  (instance as unknown as EventEmitter).on(name, (info: unknown) => seen.push(info as Info<K>));
  return seen;
}

function roleOf(instance: Tcpipe): string {
  return instance.status().role;
}

/**
 * Resolves with `progress()` once it has not changed over a whole `quietMs`
 * window; rejects after `maxMs`. Finds the point where a flow has stalled:
 * the quiet window is an observation, not a wait for a state.
 */
export function untilStalled(progress: () => number, quietMs: number, maxMs: number, what: string): Promise<number> {
  return new Promise((resolve, reject) => {
    let last = progress();
    const deadline = setTimeout(() => {
      clearInterval(check);
      reject(new Error(`timed out after ${maxMs} ms waiting for ${what} to stall (still moving at ${progress()})`));
    }, maxMs);
    const check = setInterval(() => {
      const now = progress();
      if (now !== last) {
        last = now;
        return;
      }
      clearInterval(check);
      clearTimeout(deadline);
      resolve(now);
    }, quietMs);
  });
}

// ---------------------------------------------------------------------------
// Logs
// ---------------------------------------------------------------------------

export interface LogCapture {
  readonly logger: Logger;
  readonly lines: string[];
  /** The first line (already written or to come) matching `regex`; rejects with the whole log after `ms`. */
  waitFor(regex: RegExp, ms: number): Promise<string>;
  has(regex: RegExp): boolean;
  text(): string;
}

/** A logger that keeps its lines (text format); TCPIPE_TEST_LOG=1 also prints them. */
export function captureLog(name: string, level: LogLevel = 'debug'): LogCapture {
  const lines: string[] = [];
  const events = new EventEmitter();
  const logger = createLogger({
    level,
    format: 'text',
    name,
    write: (line) => {
      const l = line.replace(/\n$/, '');
      lines.push(l);
      events.emit('line', l);
      if (process.env.TCPIPE_TEST_LOG === '1') process.stderr.write(line);
    },
  });
  const matches = (regex: RegExp, line: string): boolean => {
    regex.lastIndex = 0;
    return regex.test(line);
  };
  return {
    logger,
    lines,
    has: (regex) => lines.some((l) => matches(regex, l)),
    text: () => lines.join('\n'),
    async waitFor(regex, ms) {
      const past = lines.find((l) => matches(regex, l));
      if (past !== undefined) return past;
      try {
        const [line] = await waitForEvent(events, 'line', ms, (l) => matches(regex, l as string));
        return line as string;
      } catch {
        throw new Error(`timed out after ${ms} ms waiting for a log line matching ${String(regex)}; log:\n${lines.join('\n')}`);
      }
    },
  };
}

// ---------------------------------------------------------------------------
// Targets
// ---------------------------------------------------------------------------

export interface Target {
  readonly server: net.Server;
  /** The port on 127.0.0.3, also reserved on 127.0.0.2 until `releaseEntry`. */
  readonly port: number;
  /** Connections accepted so far, in order. */
  readonly sockets: net.Socket[];
  /** Emits 'connection' (socket) for each accepted connection. */
  readonly events: EventEmitter;
  /** The next accepted connection (or the n-th overall, if already accepted), within `ms`. */
  connection(index: number, ms: number): Promise<net.Socket>;
  /** Frees 127.0.0.2:port for the entry listener (idempotent). */
  releaseEntry(): void;
  /** Stops listening and destroys its connections. */
  close(): Promise<void>;
}

/**
 * A target on 127.0.0.3:P (P from port 0) such that 127.0.0.2:P is free; a
 * placeholder holds 127.0.0.2:P until `releaseEntry()`. Up to 20 tries.
 */
export async function startTarget(t: TestContext, onConnection: (socket: net.Socket) => void): Promise<Target> {
  for (let attempt = 0; attempt < 20; attempt++) {
    const sockets: net.Socket[] = [];
    const events = new EventEmitter();
    const server = net.createServer({ allowHalfOpen: true }, (socket) => {
      sockets.push(socket);
      socket.on('error', () => undefined);
      onConnection(socket);
      events.emit('connection', socket);
    });
    await listen(server, TARGET_HOST, 0);
    const port = (server.address() as net.AddressInfo).port;
    const placeholder = net.createServer();
    const reserved = await listen(placeholder, ENTRY_HOST, port).then(
      () => true,
      () => false,
    );
    if (!reserved) {
      server.close();
      continue;
    }
    let closed = false;
    const target: Target = {
      server,
      port,
      sockets,
      events,
      connection: async (index, ms) => {
        const have = sockets[index];
        if (have !== undefined) return have;
        await waitForEvent(events, 'connection', ms, () => sockets.length > index).catch(() => {
          throw new Error(`timed out after ${ms} ms waiting for connection #${index + 1} to the target on port ${port}`);
        });
        return sockets[index] as net.Socket;
      },
      releaseEntry: () => {
        if (placeholder.listening) placeholder.close();
      },
      close: () => {
        target.releaseEntry();
        for (const s of sockets) s.destroy();
        if (closed) return Promise.resolve();
        closed = true;
        return new Promise<void>((resolve) => server.close(() => resolve()));
      },
    };
    t.after(() => target.close());
    return target;
  }
  throw new Error('no port free on both 127.0.0.2 and 127.0.0.3 after 20 tries');
}

function listen(server: net.Server, host: string, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error): void => reject(err);
    server.once('error', onError);
    server.listen({ host, port }, () => {
      server.off('error', onError);
      resolve();
    });
  });
}

/** Echoes everything; half-closes after the user does. */
export function startEchoTarget(t: TestContext): Promise<Target> {
  return startTarget(t, (socket) => socket.pipe(socket));
}

/**
 * A port whose target is not listening: 127.0.0.3:P closed, 127.0.0.2:P
 * reserved for the entry listener (release it before starting the instance).
 */
export async function startDeadTarget(t: TestContext): Promise<Target> {
  const target = await startTarget(t, (socket) => socket.destroy());
  await new Promise<void>((resolve) => target.server.close(() => resolve()));
  return target;
}

export interface HashRecord {
  /** The 4-byte id the user sent first (-1 until read). */
  id: number;
  receivedBytes: number;
  receivedHash: string;
  sentBytes: number;
  sentHash: string;
  /** Read to EOF and finished writing. */
  done: boolean;
}

export interface HashTarget extends Target {
  /** By the id each user sends in its first 4 bytes. */
  readonly records: Map<number, HashRecord>;
  /** Resolves once `count` connections have read to EOF and finished writing, within `ms`. */
  allDone(count: number, ms: number): Promise<void>;
}

/**
 * Reads to EOF, hashing what it receives (the first 4 bytes are the user's
 * id, included in the hash), while it writes `size()` random bytes in random
 * chunks (respecting backpressure), then half-closes. Both at once.
 */
export async function startHashTarget(t: TestContext, size: () => number): Promise<HashTarget> {
  const records = new Map<number, HashRecord>();
  const target: Target = await startTarget(t, (socket) => {
    const record: HashRecord = { id: -1, receivedBytes: 0, receivedHash: '', sentBytes: 0, sentHash: '', done: false };
    const hash = createHash('sha256');
    let head = Buffer.alloc(0);
    let readDone = false;
    let writeDone = false;
    const finish = (): void => {
      if (!readDone || !writeDone) return;
      record.done = true;
      socket.destroy();
      target.events.emit('done', record);
    };
    socket.on('data', (chunk: Buffer) => {
      hash.update(chunk);
      record.receivedBytes += chunk.length;
      if (record.id < 0) {
        head = Buffer.concat([head, chunk]);
        if (head.length >= 4) {
          record.id = head.readUInt32BE(0);
          records.set(record.id, record);
        }
      }
    });
    socket.on('end', () => {
      record.receivedHash = hash.digest('hex');
      readDone = true;
      finish();
    });
    const payload = randomBytes(size());
    record.sentBytes = payload.length;
    record.sentHash = sha256(payload);
    void writeInChunks(socket, payload).then(() => {
      socket.end(() => {
        writeDone = true;
        finish();
      });
    });
  });
  const doneCount = (): number => [...records.values()].filter((r) => r.done).length;
  const allDone = async (count: number, ms: number): Promise<void> => {
    if (doneCount() >= count) return;
    await waitForEvent(target.events, 'done', ms, () => doneCount() >= count).catch(() => {
      throw new Error(`timed out after ${ms} ms: ${doneCount()} of ${count} connections done at the target on port ${target.port}`);
    });
  };
  return Object.assign(target, { records, allDone });
}

// ---------------------------------------------------------------------------
// Data
// ---------------------------------------------------------------------------

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
    if (!ok) {
      await new Promise<void>((resolve) => {
        const done = (): void => {
          socket.off('drain', done);
          socket.off('close', done);
          resolve();
        };
        socket.on('drain', done);
        socket.on('close', done);
      });
    }
  }
}

// ---------------------------------------------------------------------------
// User connections
// ---------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------
// The pair
// ---------------------------------------------------------------------------

/** Fast limits for tests: quick reconnects and partner checks. */
export const TEST_LIMITS: Partial<Limits> = Object.freeze({
  backoffMinMs: 50,
  backoffMaxMs: 400,
  backoffResetAfterMs: 1000,
  partnerCheckTimeoutMs: 500,
  shutdownGraceMs: 500,
});

type Tunables = Pick<CommonOptions, 'heartbeatSeconds' | 'onePerPort' | 'limits' | 'allow'>;

export interface PairOptions {
  /** The server listens on 127.0.0.2:port for each; the client relays them to 127.0.0.3:port. */
  readonly serverPorts?: readonly Target[];
  /** The client listens on 127.0.0.2:port for each; the server relays them to 127.0.0.3:port. */
  readonly clientPorts?: readonly Target[];
  /** Both sides (limits are merged over TEST_LIMITS). Default heartbeat: 5 s. */
  readonly common?: Tunables;
  readonly server?: Tunables;
  readonly client?: Tunables;
  /** Dial the server through a chaos relay (pair.relay). */
  readonly viaRelay?: boolean;
  /** Fixed link port (default 0). */
  readonly linkPort?: number;
}

export interface Pair {
  readonly server: Tcpipe;
  readonly client: Tcpipe;
  readonly serverLog: LogCapture;
  readonly clientLog: LogCapture;
  readonly relay: ChaosRelay | null;
  readonly linkPort: number;
  /** Stops both (idempotent); also run by t.after. */
  stop(): Promise<void>;
}

function tunables(common: Tunables | undefined, own: Tunables | undefined): Tunables {
  const heartbeatSeconds = own?.heartbeatSeconds ?? common?.heartbeatSeconds ?? 5;
  const onePerPort = own?.onePerPort ?? common?.onePerPort;
  const allow = own?.allow ?? common?.allow;
  return {
    heartbeatSeconds,
    limits: { ...TEST_LIMITS, ...common?.limits, ...own?.limits },
    ...(onePerPort !== undefined ? { onePerPort } : {}),
    ...(allow !== undefined ? { allow } : {}),
  };
}

export function entrySpecs(targets: readonly Target[] | undefined): { host: string; port: number }[] {
  return (targets ?? []).map((target) => {
    target.releaseEntry();
    return { host: ENTRY_HOST, port: target.port };
  });
}

/** Starts a server (in-process) with captured logs; stopped by t.after. */
export async function startTestServer(
  t: TestContext,
  options: { ports?: readonly Target[]; port?: number; name?: string } & Tunables,
): Promise<{ server: Tcpipe; log: LogCapture }> {
  const log = captureLog(options.name ?? 'server');
  const { ports, port, name: _name, ...rest } = options;
  const server = await startServer({
    port: port ?? 0,
    host: LINK_HOST,
    ports: entrySpecs(ports),
    target: TARGET_HOST,
    logger: log.logger,
    ...tunables(rest, undefined),
  } satisfies ServerOptions);
  t.after(() => server.stop());
  return { server, log };
}

/** Starts a client (in-process) dialing host:port with captured logs; stopped by t.after. */
export async function startTestClient(
  t: TestContext,
  options: { host?: string; port: number; ports?: readonly Target[]; name?: string } & Tunables,
): Promise<{ client: Tcpipe; log: LogCapture }> {
  const log = captureLog(options.name ?? 'client');
  const { ports, port, host, name: _name, ...rest } = options;
  const client = await startClient({
    host: host ?? LINK_HOST,
    port,
    proxy: null,
    ports: entrySpecs(ports),
    target: TARGET_HOST,
    logger: log.logger,
    ...tunables(rest, undefined),
  } satisfies ClientOptions);
  t.after(() => client.stop());
  return { client, log };
}

/** A server and a client, linked (both have seen link-up), cleaned up by t.after. */
export async function pair(t: TestContext, options: PairOptions = {}): Promise<Pair> {
  const serverLog = captureLog('server');
  const clientLog = captureLog('client');
  const server = await startServer({
    port: options.linkPort ?? 0,
    host: LINK_HOST,
    ports: entrySpecs(options.serverPorts),
    target: TARGET_HOST,
    logger: serverLog.logger,
    ...tunables(options.common, options.server),
  });
  t.after(() => server.stop());
  const linkPort = server.linkAddress?.port;
  if (linkPort === undefined) throw new Error('the server has no link address');
  const relay = options.viaRelay === true ? await startChaosRelay(t, LINK_HOST, linkPort) : null;
  const serverUp = nextEvent(server, 'link-up', 5000);
  const client = await startClient({
    host: LINK_HOST,
    port: relay?.port ?? linkPort,
    proxy: null,
    ports: entrySpecs(options.clientPorts),
    target: TARGET_HOST,
    logger: clientLog.logger,
    ...tunables(options.common, options.client),
  });
  t.after(() => client.stop());
  const clientUp = client.linkUp ? Promise.resolve() : nextEvent(client, 'link-up', 5000);
  await Promise.all([serverUp, clientUp]);
  return {
    server,
    client,
    serverLog,
    clientLog,
    relay,
    linkPort,
    stop: async () => {
      await Promise.all([client.stop(), server.stop()]);
    },
  };
}

/** The entry address of the i-th port of an instance. */
export function entryOf(instance: Tcpipe, i = 0): { host: string; port: number } {
  const address = instance.entryAddresses[i];
  if (address === undefined) throw new Error(`no entry port #${i}`);
  return { host: address.address, port: address.port };
}

// ---------------------------------------------------------------------------
// Chaos relay
// ---------------------------------------------------------------------------

export interface ChaosRelay {
  readonly port: number;
  /** Connections accepted so far. */
  readonly connections: number;
  /** Stops forwarding in both directions, on open and future connections, without closing anything: bytes are read and dropped, closes ignored. */
  blackhole(): void;
  /** Resets every open connection (both sides). */
  cut(): void;
  close(): Promise<void>;
}

/** A TCP relay on 127.0.0.1:0 to host:port, with backpressure, until told otherwise. */
export async function startChaosRelay(t: TestContext, host: string, port: number): Promise<ChaosRelay> {
  const open = new Set<net.Socket>();
  let blackholed = false;
  let connections = 0;
  const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: true }, (downstream) => {
    connections++;
    const upstream = net.connect({ host, port, allowHalfOpen: true });
    const both = [downstream, upstream] as const;
    for (const s of both) {
      open.add(s);
      s.on('close', () => open.delete(s));
      s.on('error', () => undefined);
    }
    const forward = (from: net.Socket, to: net.Socket): void => {
      from.on('data', (chunk: Buffer) => {
        if (blackholed) return;
        if (!to.write(chunk)) {
          from.pause();
          to.once('drain', () => {
            if (!blackholed) from.resume();
          });
        }
      });
      from.on('end', () => {
        if (!blackholed) to.end();
      });
      from.on('close', () => {
        if (!blackholed) to.destroy();
      });
    };
    forward(downstream, upstream);
    forward(upstream, downstream);
    upstream.once('connect', () => downstream.resume());
  });
  await listen(server, LINK_HOST, 0);
  const relay: ChaosRelay = {
    port: (server.address() as net.AddressInfo).port,
    get connections() {
      return connections;
    },
    blackhole: () => {
      blackholed = true;
      // Keep reading (and dropping) so that nothing backs up into the kernel either.
      for (const s of open) s.resume();
    },
    cut: () => {
      for (const s of [...open]) s.resetAndDestroy();
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of [...open]) s.destroy();
        server.close(() => resolve());
      }),
  };
  t.after(() => relay.close());
  return relay;
}

// ---------------------------------------------------------------------------
// Ports
// ---------------------------------------------------------------------------

/** A port that was free on `host` a moment ago (from port 0); for the CLI, which refuses port 0. */
export async function freePort(host: string = LINK_HOST): Promise<number> {
  const server = net.createServer();
  await listen(server, host, 0);
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

// ---------------------------------------------------------------------------
// The CLI as a child process
// ---------------------------------------------------------------------------

export interface CliChild {
  readonly child: ChildProcess;
  readonly lines: string[];
  /** The first output line (past or future) matching `regex`; rejects after `ms` or when the child exits without it. */
  waitFor(regex: RegExp, ms: number): Promise<string>;
  /** Settles when the child has exited and its output is read. */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null; at: number }>;
  output(): string;
}

/** Runs `node dist/src/cli/main.js ...args`; SIGKILLed by t.after if still running. */
export function spawnCli(t: TestContext, args: readonly string[]): CliChild {
  const env: NodeJS.ProcessEnv = { ...process.env };
  delete env.TCPIPE_SECRET;
  delete env.HTTP_PROXY;
  delete env.HTTPS_PROXY;
  delete env.ALL_PROXY;
  delete env.http_proxy;
  delete env.https_proxy;
  delete env.all_proxy;
  const child = spawn(process.execPath, [CLI_MAIN, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  const lines: string[] = [];
  const events = new EventEmitter();
  for (const stream of [child.stdout, child.stderr]) {
    const decoder = new StringDecoder('utf8');
    let partial = '';
    const push = (text: string): void => {
      const parts = (partial + text).split('\n');
      partial = parts.pop() ?? '';
      for (const line of parts) {
        lines.push(line);
        events.emit('line', line);
        if (process.env.TCPIPE_TEST_LOG === '1') process.stderr.write(`[cli ${child.pid ?? '?'}] ${line}\n`);
      }
    };
    stream.on('data', (chunk: Buffer) => push(decoder.write(chunk)));
    stream.on('end', () => push(decoder.end() + '\n'));
  }
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; at: number }>((resolve) => {
    child.once('close', (code: number | null, signal: NodeJS.Signals | null) => {
      events.emit('exit');
      resolve({ code, signal, at: performance.now() });
    });
  });
  t.after(async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await exited;
  });
  const matches = (regex: RegExp, line: string): boolean => {
    regex.lastIndex = 0;
    return regex.test(line);
  };
  return {
    child,
    lines,
    exited,
    output: () => lines.join('\n'),
    waitFor: (regex, ms) => {
      const past = lines.find((l) => matches(regex, l));
      if (past !== undefined) return Promise.resolve(past);
      return new Promise((resolve, reject) => {
        const fail = (why: string): void => {
          cleanup();
          reject(new Error(`${why} waiting for a line matching ${String(regex)} from the CLI (${args.join(' ')}); output:\n${lines.join('\n')}`));
        };
        const onLine = (line: string): void => {
          if (!matches(regex, line)) return;
          cleanup();
          resolve(line);
        };
        const onExit = (): void => fail('the process exited');
        const timer = setTimeout(() => fail(`timed out after ${ms} ms`), ms);
        const cleanup = (): void => {
          clearTimeout(timer);
          events.off('line', onLine);
          events.off('exit', onExit);
        };
        events.on('line', onLine);
        events.on('exit', onExit);
        if (child.exitCode !== null || child.signalCode !== null) onExit();
      });
    },
  };
}

// ---------------------------------------------------------------------------
// Memory
// ---------------------------------------------------------------------------

let gcFunction: (() => void) | null = null;

/**
 * Bytes held in ArrayBuffers (every Buffer) after a full garbage collection:
 * what is really retained, not garbage waiting to be collected.
 */
export async function retainedBufferBytes(): Promise<number> {
  if (gcFunction === null) {
    v8.setFlagsFromString('--expose-gc');
    gcFunction = vm.runInNewContext('gc') as () => void;
  }
  // A collection in the caller's tick can still see its temporaries, and V8
  // sweeps ArrayBuffers concurrently: collect until the figure settles.
  let last = Infinity;
  for (let i = 0; i < 10; i++) {
    await new Promise<void>((resolve) => setImmediate(resolve));
    gcFunction();
    await new Promise<void>((resolve) => setImmediate(resolve));
    const now = process.memoryUsage().arrayBuffers;
    if (now >= last) return now;
    last = now;
  }
  return last;
}

/**
 * Waits for `instance` to see link-up with a CLI partner; fails early, with
 * the CLI's output, if the child exits first or the wait times out.
 */
export async function linkUpWith(instance: Tcpipe, cli: CliChild, ms: number): Promise<void> {
  const up = nextEvent(instance, 'link-up', ms);
  const exited = handled(
    cli.exited.then((e) => {
      throw new Error(`the CLI exited (code ${String(e.code)}, signal ${String(e.signal)}) before the link came up`);
    }),
  );
  try {
    await Promise.race([up, exited]);
  } catch (err) {
    throw new Error(`${err instanceof Error ? err.message : String(err)}; CLI output:\n${cli.output()}`);
  }
}

/** Asserts that `ms` is under `limit`, and reports the measure as a test diagnostic. */
export function assertWithin(t: TestContext, ms: number, limit: number, what: string): void {
  t.diagnostic(`${what}: ${ms.toFixed(0)} ms (limit ${limit} ms)`);
  if (!(ms < limit)) throw new Error(`${what} took ${ms.toFixed(0)} ms (limit ${limit} ms)`);
}

/** Two ends of one loopback TCP connection (errors are the test's to observe through close). */
export async function socketPair(): Promise<[net.Socket, net.Socket]> {
  const server = net.createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as net.AddressInfo).port;
  const accepted = once(server, 'connection') as Promise<[net.Socket]>;
  const a = net.connect(port, '127.0.0.1');
  await once(a, 'connect');
  const [b] = await accepted;
  server.close();
  a.on('error', () => undefined);
  b.on('error', () => undefined);
  return [a, b];
}
