/**
 * Small helpers for the security, capture and fuzz tests: captured loggers,
 * loopback targets on the entry/target address trick, raw sockets from chosen
 * source addresses, a counting TCP forwarder, and the CLI as a child process.
 *
 * Loopback layout (one host playing both):
 *   link      127.0.0.1 (the legitimate client dials from 127.0.0.1)
 *   entry     127.0.0.2:P   (the entry side's -p)
 *   target    127.0.0.3:P   (the exit side's -t 127.0.0.3)
 *   attackers 127.0.0.50 and up, 127.1.x.y, ... (other sources: the PenaltyBox
 *             of a server blocks a source after a failed attempt)
 * Every listener uses port 0 (or the port a port-0 listener got).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { EventEmitter, once } from 'node:events';
import { readdirSync, readFileSync } from 'node:fs';
import net from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createLogger, type Logger, type LogLevel } from '../../src/log/logger.js';
import { outputOf, trackOutput, waitForLine } from './netns.js';

export const ENTRY_HOST = '127.0.0.2';
export const TARGET_HOST = '127.0.0.3';

/** dist/test/helpers -> repository root (works from dist/ only, where tests run). */
export const REPO_ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
export const CLI_MAIN = join(REPO_ROOT, 'dist', 'src', 'cli', 'main.js');

// ---------------------------------------------------------------------------
// Time
// ---------------------------------------------------------------------------

/** Rejects with `what` if `promise` does not settle within `ms`. */
export function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Resolves after `ms`: used only to bound an observation window, never to wait for a state. */
export function windowOf(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

// ---------------------------------------------------------------------------
// Logs
// ---------------------------------------------------------------------------

export interface LogCapture {
  readonly logger: Logger;
  readonly lines: string[];
  /** Resolves with the first line (past or future) matching `regex`; rejects with all lines on timeout. */
  waitFor(regex: RegExp, timeoutMs: number, what?: string): Promise<string>;
  count(regex: RegExp): number;
  text(): string;
}

export function captureLog(level: LogLevel = 'debug', name?: string): LogCapture {
  const lines: string[] = [];
  const waiters = new Set<(line: string) => void>();
  const logger = createLogger({
    level,
    format: 'text',
    ...(name !== undefined ? { name } : {}),
    write: (line) => {
      const l = line.replace(/\n$/, '');
      lines.push(l);
      for (const w of [...waiters]) w(l);
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
    waitFor(regex, timeoutMs, what) {
      const past = lines.find((l) => matches(regex, l));
      if (past !== undefined) return Promise.resolve(past);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          waiters.delete(onLine);
          reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what ?? String(regex)}; log:\n${lines.join('\n')}`));
        }, timeoutMs);
        const onLine = (line: string): void => {
          if (!matches(regex, line)) return;
          clearTimeout(timer);
          waiters.delete(onLine);
          resolve(line);
        };
        waiters.add(onLine);
      });
    },
    count: (regex) => lines.filter((l) => matches(regex, l)).length,
    text: () => lines.join('\n'),
  };
}

export function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

// ---------------------------------------------------------------------------
// Targets and user connections
// ---------------------------------------------------------------------------

export interface Target {
  readonly server: net.Server;
  readonly port: number;
  /** Connections the target accepted so far. */
  accepted: number;
  close(): Promise<void>;
}

/** An echo server on 127.0.0.3:P where P is also free on 127.0.0.2 (for the entry listener). */
export async function startEchoTarget(): Promise<Target> {
  for (let attempt = 0; attempt < 20; attempt++) {
    const sockets = new Set<net.Socket>();
    const target: { accepted: number } = { accepted: 0 };
    const server = net.createServer({ allowHalfOpen: true }, (socket) => {
      target.accepted++;
      sockets.add(socket);
      socket.on('close', () => sockets.delete(socket));
      socket.on('error', () => undefined);
      socket.pipe(socket);
    });
    server.listen(0, TARGET_HOST);
    await once(server, 'listening');
    const port = (server.address() as net.AddressInfo).port;
    if (await portFree(ENTRY_HOST, port)) {
      return Object.assign(target, {
        server,
        port,
        close: () =>
          new Promise<void>((resolve) => {
            for (const s of sockets) s.destroy();
            server.close(() => resolve());
          }),
      });
    }
    server.close();
  }
  throw new Error('no port free on both 127.0.0.2 and 127.0.0.3');
}

function portFree(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const probe = net.createServer();
    probe.once('error', () => resolve(false));
    probe.listen(port, host, () => probe.close(() => resolve(true)));
  });
}

export interface RoundResult {
  readonly ok: boolean;
  readonly ms: number;
  readonly detail: string;
}

/**
 * Sends `size` random bytes (plus an optional marker) to host:port, half-closes,
 * reads everything back from the echo target and compares: proves both directions.
 */
export function echoRound(host: string, port: number, size: number, timeoutMs = 5000, prefix?: Buffer): Promise<RoundResult> {
  const payload = prefix === undefined ? randomBytes(size) : Buffer.concat([prefix, randomBytes(size)]);
  const want = createHash('sha256').update(payload).digest('hex');
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

// ---------------------------------------------------------------------------
// Raw sockets from chosen source addresses
// ---------------------------------------------------------------------------

export interface RawConnection {
  readonly socket: net.Socket;
  /** Everything the server sent. */
  readonly received: Buffer[];
  /** Resolves with the time (ms since connect) the server closed, or null after `ms`. */
  closedWithin(ms: number): Promise<number | null>;
  readonly connectedAt: number;
  closedAt: number | null;
}

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
    closedWithin(ms: number) {
      if (conn.closedAt !== null) return Promise.resolve(conn.closedAt - conn.connectedAt);
      return new Promise((resolve) => {
        const timer = setTimeout(() => {
          socket.off('close', onClose);
          resolve(null);
        }, ms);
        const onClose = (): void => {
          clearTimeout(timer);
          resolve((conn.closedAt ?? performance.now()) - conn.connectedAt);
        };
        socket.once('close', onClose);
      });
    },
  };
  socket.once('close', () => {
    conn.closedAt = performance.now();
  });
  return conn;
}

// ---------------------------------------------------------------------------
// A counting, recording TCP forwarder: lets an in-process client dial from a chosen source
// ---------------------------------------------------------------------------

export interface Forwarder {
  readonly port: number;
  /** Connections accepted (one per dial attempt of the client behind it). */
  connections: number;
  /** Bytes client -> server and server -> client, concatenated per direction (bounded). */
  readonly up: Buffer[];
  readonly down: Buffer[];
  /** Resolves once `n` connections have been accepted in all; rejects after `timeoutMs`. */
  waitForConnections(n: number, timeoutMs: number): Promise<void>;
  close(): Promise<void>;
}

/**
 * Listens on 127.0.0.1:0; each connection is forwarded to host:port from
 * `localAddress`, so the server sees that source. Records up to `recordLimit`
 * bytes each way.
 */
export async function startForwarder(host: string, port: number, localAddress: string, recordLimit = 4 * 1024 * 1024): Promise<Forwarder> {
  const sockets = new Set<net.Socket>();
  let upBytes = 0;
  let downBytes = 0;
  const state: { connections: number; up: Buffer[]; down: Buffer[] } = { connections: 0, up: [], down: [] };
  const events = new EventEmitter();
  const server = net.createServer({ allowHalfOpen: true }, (client) => {
    state.connections++;
    events.emit('connection');
    const upstream = net.connect({ host, port, localAddress, allowHalfOpen: true });
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      s.on('error', () => {
        client.destroy();
        upstream.destroy();
      });
    }
    client.on('data', (chunk: Buffer) => {
      if (upBytes < recordLimit) {
        state.up.push(chunk);
        upBytes += chunk.length;
      }
    });
    upstream.on('data', (chunk: Buffer) => {
      if (downBytes < recordLimit) {
        state.down.push(chunk);
        downBytes += chunk.length;
      }
    });
    client.pipe(upstream);
    upstream.pipe(client);
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return Object.assign(state, {
    port: (server.address() as net.AddressInfo).port,
    waitForConnections: (n: number, timeoutMs: number) =>
      withTimeout(
        new Promise<void>((resolve) => {
          const check = (): void => {
            if (state.connections < n) return;
            events.off('connection', check);
            resolve();
          };
          events.on('connection', check);
          check();
        }),
        timeoutMs,
        `${n} connections through the forwarder (got ${state.connections})`,
      ),
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  });
}

// ---------------------------------------------------------------------------
// The CLI as a child process
// ---------------------------------------------------------------------------

export interface CliChild {
  readonly child: ChildProcess;
  waitFor(regex: RegExp, timeoutMs: number): Promise<string>;
  output(): string;
  /** SIGTERM, then SIGKILL after `ms`; resolves with the exit code (null when killed). */
  stop(ms?: number): Promise<number | null>;
  exited(): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

const PROXY_VARIABLES = ['http_proxy', 'HTTP_PROXY', 'https_proxy', 'HTTPS_PROXY', 'all_proxy', 'ALL_PROXY', 'no_proxy', 'NO_PROXY'];

/** The test's environment for a CLI child: no inherited secret or proxy, plus `env`. */
export function childEnv(env: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const out: NodeJS.ProcessEnv = { ...process.env };
  delete out.TCPIPE_SECRET;
  for (const name of PROXY_VARIABLES) delete out[name];
  return { ...out, ...env };
}

export function startCli(args: readonly string[], env: NodeJS.ProcessEnv = {}): CliChild {
  const child = spawn(process.execPath, [CLI_MAIN, ...args], { env: childEnv(env), stdio: ['ignore', 'pipe', 'pipe'] });
  trackOutput(child);
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once('close', (code, signal) => resolve({ code, signal }));
  });
  return {
    child,
    waitFor: (regex, timeoutMs) => waitForLine(child, regex, timeoutMs),
    output: () => outputOf(child),
    exited: () => exit,
    async stop(ms = 3000) {
      if (child.exitCode !== null || child.signalCode !== null) return (await exit).code;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), ms);
      const result = await exit;
      clearTimeout(timer);
      return result.code;
    },
  };
}

/**
 * Starts a CLI server (`-s PORT` + args) on a free port above 61000 (outside
 * the ephemeral range; the CLI takes no port 0). Retries another port when the
 * one picked is taken meanwhile. Resolves once the server logged its start.
 */
export async function startCliServer(args: readonly string[], env: NodeJS.ProcessEnv = {}): Promise<{ cli: CliChild; port: number }> {
  let last = '';
  for (let attempt = 0; attempt < 10; attempt++) {
    const port = 61001 + Math.floor(Math.random() * (65535 - 61001));
    if (!(await portFree('0.0.0.0', port))) continue;
    const cli = startCli(['-s', String(port), ...args], env);
    try {
      await cli.waitFor(/server: link port \d+/, 8000);
      return { cli, port };
    } catch (err) {
      await cli.stop();
      last = cli.output();
      if (!/cannot listen|EADDRINUSE/.test(last)) throw err;
    }
  }
  throw new Error(`no free link port for the CLI server; last output:\n${last}`);
}

/** Runs the CLI to completion; resolves with its exit code and output. */
export async function runCli(
  args: readonly string[],
  env: NodeJS.ProcessEnv = {},
  timeoutMs = 10_000,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, [CLI_MAIN, ...args], { env: childEnv(env), stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  const [code] = (await once(child, 'close')) as [number | null];
  clearTimeout(timer);
  return { code, stdout, stderr };
}

// ---------------------------------------------------------------------------
// /proc
// ---------------------------------------------------------------------------

/** Resident set size in KiB; null once the process is gone (or a zombie). */
export function rssKiB(pid: number): number | null {
  let status: string;
  try {
    status = readFileSync(`/proc/${pid}/status`, 'utf8');
  } catch {
    return null;
  }
  const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(status);
  return m === null ? null : Number(m[1]);
}

export function openFds(pid: number): number {
  return readdirSync(`/proc/${pid}/fd`).length;
}
