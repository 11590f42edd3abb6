/**
 * The fault suite's kit: a four-host chain of network namespaces, the tcpipe
 * CLI run inside them (with test/faults/probe.ts preloaded and its own file
 * descriptor limit), agents (test/faults/agent.ts) that play users, targets
 * and a fake partner, and readings of a process's descriptors and memory.
 *
 *   users 10.231.1.1 <-> 10.231.1.2 srv 10.231.2.1 <-> 10.231.2.2 cli 10.231.3.1 <-> 10.231.3.2 targets
 *
 * No host forwards: users reach targets only through the pair. `srv` runs
 * `tcpipe -s LINK_PORT -p ... -t <users>` and `cli` runs
 * `tcpipe -c srv:LINK_PORT -t <targets> [-p ...]`, so a connection from
 * users to srv:P reaches targets:P, and one from targets to cli:P reaches
 * users:P. Ephemeral ports are 32768..60999 (fixed ports stay below) and
 * TIME_WAIT sockets are reused, so tens of thousands of short connections fit.
 *
 * Every wait is bounded; nothing sleeps to wait for a state.
 */
import { mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { spawnSync, type ChildProcess } from 'node:child_process';
import type { TestContext } from 'node:test';
import { StringDecoder } from 'node:string_decoder';
import assert from 'node:assert/strict';
import { createTopology, netnsAvailable, type Availability, type Topology } from '../helpers/netns.js';

export const NODE = process.execPath;
export const MAIN = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));
export const AGENT = fileURLToPath(new URL('./agent.js', import.meta.url));
export const PROBE = new URL('./probe.js', import.meta.url).href;

export const HOSTS = ['users', 'srv', 'cli', 'targets'] as const;
export type Host = (typeof HOSTS)[number];

export const LINK_PORT = 30000;
export const MiB = 1024 * 1024;
export const KiB = 1024;

let availability: Promise<Availability> | null = null;

/** Root, `ip netns` and iptables inside a namespace; cached. */
export function faultsAvailable(): Promise<Availability> {
  availability ??= netnsAvailable({ need: ['iptables'] });
  return availability;
}

export function skipReason(a: Availability): string | false {
  return a.ok ? false : `fault injection needs network namespaces and iptables as root: ${a.reason}`;
}

/**
 * Wraps argv so that it runs with `ulimit -n nofile`, or with the hard limit
 * when that is lower and cannot be raised (no CAP_SYS_RESOURCE): see
 * `hardNofile()`.
 */
export function withUlimit(nofile: number, argv: readonly string[]): [string, string[]] {
  const [cmd, ...rest] = argv;
  if (cmd === undefined) throw new Error('withUlimit: empty argv');
  const n = String(Math.floor(nofile));
  return ['bash', ['-c', `ulimit -n ${n} 2>/dev/null || ulimit -n "$(ulimit -Hn)" || exit 111; exec "$0" "$@"`, cmd, ...rest]];
}

let hardLimit: number | null = null;

/** The hard limit on open files children can get (`ulimit -Hn`, unless it can be raised). */
export function hardNofile(): number {
  if (hardLimit !== null) return hardLimit;
  const r = spawnSync('bash', ['-c', 'ulimit -n 1048576 2>/dev/null; ulimit -Hn'], { encoding: 'utf8' });
  const n = Number(r.stdout.trim());
  hardLimit = r.stdout.trim() === 'unlimited' ? 1048576 : Number.isFinite(n) && n > 0 ? n : 1024;
  return hardLimit;
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

// ---------------------------------------------------------------------------
// The chain
// ---------------------------------------------------------------------------

export interface Chain {
  readonly topo: Topology<Host>;
  /** srv's address as users see it (users dial srv:P). */
  readonly srvForUsers: string;
  /** srv's address as cli sees it (the link). */
  readonly srvForCli: string;
  /** cli's address as targets see it (targets dial cli:P in the reverse direction). */
  readonly cliForTargets: string;
  /** The users host as srv sees it (srv's -t). */
  readonly usersForSrv: string;
  /** The targets host as cli sees it (cli's -t). */
  readonly targetsForCli: string;
}

export async function createChain(t: TestContext): Promise<Chain> {
  const topo = await createTopology({ hosts: HOSTS, forwarding: false, portRange: [32768, 60999] });
  t.after(() => topo.destroy());
  for (const h of HOSTS) await topo.execOk(h, 'sysctl', ['-q', '-w', 'net.ipv4.tcp_tw_reuse=1']);
  return {
    topo,
    srvForUsers: topo.addr('srv', 'users'),
    srvForCli: topo.addr('srv', 'cli'),
    cliForTargets: topo.addr('cli', 'targets'),
    usersForSrv: topo.addr('users', 'srv'),
    targetsForCli: topo.addr('targets', 'cli'),
  };
}

// ---------------------------------------------------------------------------
// Output lines
// ---------------------------------------------------------------------------

class Lines {
  readonly lines: string[] = [];
  private readonly listeners = new Set<(line: string, index: number) => void>();
  private exited = false;
  private readonly exitListeners = new Set<() => void>();

  constructor(child: ChildProcess, onLine?: (line: string) => void) {
    for (const stream of [child.stdout, child.stderr]) {
      if (stream === null) continue;
      const decoder = new StringDecoder('utf8');
      let partial = '';
      const push = (text: string): void => {
        const parts = (partial + text).split('\n');
        partial = parts.pop() ?? '';
        for (const line of parts) {
          const index = this.lines.push(line) - 1;
          onLine?.(line);
          for (const l of [...this.listeners]) l(line, index);
        }
      };
      stream.on('data', (chunk: Buffer) => push(decoder.write(chunk)));
      stream.on('end', () => push(decoder.end() + '\n'));
    }
    child.once('close', () => {
      this.exited = true;
      for (const l of [...this.exitListeners]) l();
    });
  }

  get length(): number {
    return this.lines.length;
  }

  /** The first line at index >= from matching `regex`, within `ms`. */
  waitFor(regex: RegExp, ms: number, from: number, what: string): Promise<string> {
    const test = (line: string): boolean => {
      regex.lastIndex = 0;
      return regex.test(line);
    };
    for (let i = from; i < this.lines.length; i++) {
      const line = this.lines[i];
      if (line !== undefined && test(line)) return Promise.resolve(line);
    }
    return new Promise((resolve, reject) => {
      const cleanup = (): void => {
        clearTimeout(timer);
        this.listeners.delete(onLine);
        this.exitListeners.delete(onExit);
      };
      const onLine = (line: string, index: number): void => {
        if (index < from || !test(line)) return;
        cleanup();
        resolve(line);
      };
      const tail = (): string => this.lines.slice(-40).join('\n');
      const onExit = (): void => {
        cleanup();
        reject(new Error(`${what} exited without a line matching ${String(regex)}; last output:\n${tail()}`));
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(new Error(`timed out after ${ms} ms waiting for ${what} to print a line matching ${String(regex)}; last output:\n${tail()}`));
      }, ms);
      this.listeners.add(onLine);
      this.exitListeners.add(onExit);
      if (this.exited) onExit();
    });
  }

  since(from: number): string[] {
    return this.lines.slice(from);
  }
}

/** Wall-clock time (ms) of a tcpipe text log line, from its ISO timestamp. */
export function lineTime(line: string): number {
  const m = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z) /.exec(line);
  if (m?.[1] === undefined) throw new Error(`no timestamp in log line: ${line}`);
  return Date.parse(m[1]);
}

// ---------------------------------------------------------------------------
// Process readings
// ---------------------------------------------------------------------------

export interface ProcStats {
  readonly fds: number;
  readonly rss: number;
}

/** Open descriptors and resident memory of `pid`, from /proc. */
export function procStats(pid: number): ProcStats {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const m = /^VmRSS:\s+(\d+) kB/m.exec(status);
  return { fds: readdirSync(`/proc/${pid}/fd`).length, rss: Number(m?.[1] ?? NaN) * 1024 };
}

export interface Probe {
  readonly seq: number;
  readonly timers: number;
  readonly intervals: number;
  readonly handles: Readonly<Record<string, number>>;
  readonly heapUsed: number;
  readonly arrayBuffers: number;
  readonly rss: number;
  readonly fds: number;
}

// ---------------------------------------------------------------------------
// tcpipe
// ---------------------------------------------------------------------------

export interface TcpipeProc {
  readonly name: string;
  readonly child: ChildProcess;
  readonly pid: number;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Index of the next output line (for waits on what comes after now). */
  mark(): number;
  /** The first output line at or after `from` (default 0) matching `regex`, within `ms`. */
  waitFor(regex: RegExp, ms: number, from?: number): Promise<string>;
  since(from: number): string[];
  output(): string;
  stats(): ProcStats;
  /** Asks the preloaded probe for its counts (after a full GC), within `ms`. */
  probe(ms?: number): Promise<Probe>;
  alive(): boolean;
}

export interface TcpipeOptions {
  /** `ulimit -n` of the process (default 65536). */
  readonly nofile?: number;
  /** Wait for the start-up line (default true). */
  readonly waitStarted?: boolean;
}

/** Runs the tcpipe CLI inside `host`; killed (SIGKILL) by t.after and by the topology's destroy. */
export async function startTcpipe(
  t: TestContext,
  topo: Topology<Host>,
  host: Host,
  name: string,
  args: readonly string[],
  options: TcpipeOptions = {},
): Promise<TcpipeProc> {
  const env = { ...process.env };
  delete env.TCPIPE_SECRET;
  delete env.HTTPS_PROXY;
  delete env.HTTP_PROXY;
  delete env.ALL_PROXY;
  delete env.NODE_OPTIONS;
  const [cmd, argv] = withUlimit(options.nofile ?? 65536, [NODE, '--expose-gc', '--import', PROBE, MAIN, ...args]);
  const child = topo.spawn(host, cmd, argv, { env });
  const pid = child.pid;
  if (pid === undefined) throw new Error(`cannot start tcpipe ${name}`);
  const lines = new Lines(child, process.env.TCPIPE_TEST_LOG === '1' ? (l) => process.stderr.write(`[${name}] ${l}\n`) : undefined);
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve({ code: child.exitCode, signal: child.signalCode });
    child.once('exit', (code, signal) => resolve({ code, signal }));
  });
  t.after(async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await exited;
    // TCPIPE_FAULTS_LOGDIR=<dir> keeps each process's output for a post-mortem.
    const dir = process.env.TCPIPE_FAULTS_LOGDIR;
    if (dir !== undefined && dir !== '') {
      mkdirSync(dir, { recursive: true });
      writeFileSync(join(dir, `${t.name.replace(/[^A-Za-z0-9]+/g, '_').slice(0, 60)}-${name}-${pid}.log`), lines.lines.join('\n') + '\n');
    }
  });
  let probeSeq = 0;
  const proc: TcpipeProc = {
    name,
    child,
    pid,
    exited,
    mark: () => lines.length,
    waitFor: (regex, ms, from = 0) => lines.waitFor(regex, ms, from, `tcpipe ${name}`),
    since: (from) => lines.since(from),
    output: () => lines.lines.join('\n'),
    stats: () => procStats(pid),
    alive: () => child.exitCode === null && child.signalCode === null,
    probe: async (ms = 5000) => {
      const from = lines.length;
      const want = ++probeSeq;
      process.kill(pid, 'SIGUSR2');
      const line = await lines.waitFor(new RegExp(`^FAULTS-PROBE \\{"seq":${want},`), ms, from, `tcpipe ${name} (probe)`);
      return JSON.parse(line.slice('FAULTS-PROBE '.length)) as Probe;
    },
  };
  if (options.waitStarted ?? true) await proc.waitFor(/ tcpipe \S+ (server|client): /, 10_000);
  return proc;
}

export const LINK_UP = /INFO .*link up with /;
export const LINK_DOWN = /INFO .*link down with /;

export function serverArgs(chain: Chain, extra: readonly string[] = []): string[] {
  return ['-s', String(LINK_PORT), '-t', chain.usersForSrv, ...extra];
}

export function clientArgs(chain: Chain, extra: readonly string[] = []): string[] {
  return ['-c', `${chain.srvForCli}:${LINK_PORT}`, '-t', chain.targetsForCli, ...extra];
}

export interface PairOptions {
  readonly serverArgs?: readonly string[];
  readonly clientArgs?: readonly string[];
  readonly serverNofile?: number;
  readonly clientNofile?: number;
}

export function startServer(t: TestContext, chain: Chain, extra: readonly string[] = [], nofile?: number): Promise<TcpipeProc> {
  return startTcpipe(t, chain.topo, 'srv', 'server', serverArgs(chain, extra), nofile !== undefined ? { nofile } : {});
}

export function startClient(t: TestContext, chain: Chain, extra: readonly string[] = [], nofile?: number): Promise<TcpipeProc> {
  return startTcpipe(t, chain.topo, 'cli', 'client', clientArgs(chain, extra), nofile !== undefined ? { nofile } : {});
}

/** Starts srv (server) then cli (client) and waits until both report the link up. */
export async function startPair(t: TestContext, chain: Chain, options: PairOptions = {}): Promise<{ server: TcpipeProc; client: TcpipeProc }> {
  const server = await startServer(t, chain, options.serverArgs, options.serverNofile);
  const client = await startClient(t, chain, options.clientArgs, options.clientNofile);
  await Promise.all([server.waitFor(LINK_UP, 10_000), client.waitFor(LINK_UP, 10_000)]);
  return { server, client };
}

/**
 * The delay (ms) the client announced in its last "retrying in Xs" line after
 * line `from` and before its next link-up line, or -1 if none.
 */
export function lastRetryDelay(client: TcpipeProc, from: number): number {
  let last = -1;
  for (const line of client.since(from)) {
    if (LINK_UP.test(line)) break;
    const m = /retrying in (\d+(?:\.\d+)?)s/.exec(line);
    if (m?.[1] !== undefined) last = Number(m[1]) * 1000;
  }
  return last;
}

// ---------------------------------------------------------------------------
// Agents
// ---------------------------------------------------------------------------

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

export interface Agent {
  readonly host: Host;
  readonly pid: number;
  call<T>(op: string, args: Record<string, Json>, timeoutMs: number): Promise<T>;
}

export interface LoadSummary {
  started: number;
  finished: number;
  ready: number;
  open: number;
  sent: number;
  accepted: number;
  recv: number;
  bad: number;
  clean: number;
  errors: Record<string, number>;
  elapsedMs: number;
  records?: UserRecord[];
}

export interface UserRecord {
  key: number;
  size: number;
  replySize: number;
  flags: number;
  userReset: boolean;
  sent: number;
  accepted: number;
  recv: number;
  bad: number;
  sawEnd: boolean;
  err: string | null;
  connected: boolean;
  didReset: boolean;
  connectMs: number;
  readyMs: number;
  ms: number;
  closedAt: number;
  endUnprobed: boolean;
}

export interface TargetRecord {
  key: number;
  recv: number;
  bad: number;
  sent: number;
  replySize: number;
  flags: number;
  resetAt: number;
  sawEnd: boolean;
  err: string | null;
  didReset: boolean;
  closed: boolean;
  closedAt: number;
  endUnprobed: boolean;
}

export interface TargetStats {
  accepted: number;
  ends: number;
  open: number;
  recvBytes: number;
  streams: number;
  bad: number;
  records?: TargetRecord[];
}

export interface PingStats {
  n: number;
  error: string | null;
  p50: number;
  p90: number;
  p99: number;
  max: number;
}

export interface ConnectFate {
  connected: boolean;
  closed: boolean;
  err: string | null;
  sawEnd: boolean;
  recv: number;
  ms: number;
}

/** Starts an agent in `host` (with `ulimit -n nofile`); stopped by t.after. */
export async function startAgent(t: TestContext, topo: Topology<Host>, host: Host, nofile = 200_000): Promise<Agent> {
  const [cmd, argv] = withUlimit(nofile, [NODE, AGENT]);
  const child = topo.spawn(host, cmd, argv);
  const pending = new Map<number, { resolve: (v: Json) => void; reject: (e: Error) => void }>();
  let nextId = 1;
  let exited = false;
  const diagnostics: string[] = [];
  const ready = new Promise<number>((resolve, reject) => {
    pending.set(0, { resolve: (v) => resolve(typeof v === 'object' && v !== null && !Array.isArray(v) ? Number(v.pid) : -1), reject });
  });
  new Lines(child, (line) => {
    if (!line.startsWith('@@ ')) {
      if (line.trim() !== '') diagnostics.push(line);
      if (diagnostics.length > 50) diagnostics.shift();
      return;
    }
    const msg = JSON.parse(line.slice(3)) as { id: number; ok: boolean; result?: Json; error?: string };
    const p = pending.get(msg.id);
    if (p === undefined) return;
    pending.delete(msg.id);
    if (msg.ok) p.resolve(msg.result ?? null);
    else p.reject(new Error(`agent on ${host}: ${msg.error ?? 'failed'}`));
  });
  child.once('exit', (code, signal) => {
    exited = true;
    for (const p of pending.values()) {
      p.reject(new Error(`agent on ${host} exited (${String(code)}, ${String(signal)}): ${diagnostics.join('\n')}`));
    }
    pending.clear();
  });
  t.after(() => {
    child.stdin?.end();
    if (!exited) child.kill('SIGKILL');
  });
  const pid = await withDeadline(ready, 10_000, `agent on ${host} to start`);
  return {
    host,
    pid,
    call: <T>(op: string, args: Record<string, Json>, timeoutMs: number): Promise<T> => {
      if (exited) return Promise.reject(new Error(`agent on ${host} has exited: ${diagnostics.join('\n')}`));
      const id = nextId++;
      const answer = new Promise<Json>((resolve, reject) => pending.set(id, { resolve, reject }));
      child.stdin?.write(JSON.stringify({ id, op, args }) + '\n');
      return withDeadline(answer, timeoutMs, `agent on ${host}: ${op}`).then((v) => v as unknown as T);
    },
  };
}

/** Rejects with `what` if `promise` does not settle within `ms`. */
export function withDeadline<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/**
 * Polls `read` every `intervalMs` until `done(value)` holds; rejects after
 * `ms` with the last value. For states only a reading can show (a process's
 * descriptor count, say).
 */
export async function pollUntil<T>(read: () => T | Promise<T>, done: (value: T) => boolean, ms: number, what: string, intervalMs = 100): Promise<T> {
  const deadline = Date.now() + ms;
  let last = await read();
  while (!done(last)) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}; last reading ${JSON.stringify(last)}`);
    await delay(intervalMs);
    last = await read();
  }
  return last;
}

export function mib(bytes: number): number {
  return Math.round((bytes / MiB) * 10) / 10;
}

function sockets(p: Probe): number {
  return (p.handles.Socket ?? 0) + (p.handles.TLSSocket ?? 0);
}

/** Each process's handles, timers and heap (and RSS) once no stream socket is left: a leak baseline. */
export interface Baseline {
  readonly probes: readonly Probe[];
  readonly rss: readonly number[];
}

export async function quietBaseline(procs: readonly TcpipeProc[]): Promise<Baseline> {
  // Sockets close asynchronously after the last stream: wait until no stream socket is left.
  await pollUntil(() => Promise.all(procs.map((p) => p.probe())), (ps) => ps.every((p) => sockets(p) <= 3), 10_000, 'no stream sockets left', 200);
  const probes = await Promise.all(procs.map((p) => p.probe()));
  return { probes, rss: procs.map((p) => p.stats().rss) };
}

/** Records both baselines as figures and asserts that nothing grew beyond the slack. */
export function assertBackToBaseline(
  s: { figure(name: string, value: number | string | boolean): void },
  procs: readonly TcpipeProc[],
  before: Baseline,
  after: Baseline,
  slack: { readonly heap: number; readonly rss: number },
): void {
  for (const [i, p] of procs.entries()) {
    const b = before.probes[i];
    const a = after.probes[i];
    if (b === undefined || a === undefined) throw new Error('missing probe');
    const rssB = before.rss[i] ?? 0;
    const rssA = after.rss[i] ?? 0;
    s.figure(`${p.name} fds before/after`, `${b.fds}/${a.fds}`);
    s.figure(`${p.name} timers before/after`, `${b.timers}/${a.timers}`);
    s.figure(`${p.name} heap MiB before/after`, `${mib(b.heapUsed)}/${mib(a.heapUsed)}`);
    s.figure(`${p.name} RSS MiB before/after`, `${mib(rssB)}/${mib(rssA)}`);
    assert.ok(a.fds <= b.fds, `${p.name}: ${a.fds} descriptors after, ${b.fds} before`);
    assert.ok(sockets(a) <= sockets(b), `${p.name}: ${sockets(a)} sockets after, ${sockets(b)} before`);
    assert.ok(a.timers <= b.timers, `${p.name}: ${a.timers} live timers after, ${b.timers} before`);
    assert.ok(a.intervals <= b.intervals, `${p.name}: ${a.intervals} intervals after, ${b.intervals} before`);
    assert.ok(a.heapUsed <= b.heapUsed + slack.heap, `${p.name}: heap ${mib(a.heapUsed)} MiB after, ${mib(b.heapUsed)} MiB before`);
    assert.ok(rssA <= rssB + slack.rss, `${p.name}: RSS ${mib(rssA)} MiB after, ${mib(rssB)} MiB before`);
  }
}

/** Blocks new inbound TCP on `host` except from its own loopback (the target host's firewall of scenario 1). */
export async function firewallNoInbound(topo: Topology<Host>, host: Host): Promise<void> {
  await topo.iptables(host, ['-A', 'INPUT', '-i', 'lo', '-j', 'ACCEPT']);
  await topo.iptables(host, ['-A', 'INPUT', '-m', 'conntrack', '--ctstate', 'ESTABLISHED,RELATED', '-j', 'ACCEPT']);
  await topo.iptables(host, ['-A', 'INPUT', '-p', 'tcp', '-m', 'conntrack', '--ctstate', 'NEW', '-j', 'DROP']);
}

// ---------------------------------------------------------------------------
// Flows both ways
// ---------------------------------------------------------------------------

/** Entry port on srv (users -> targets) and on cli (targets -> users). */
export const FWD_PORT = 31001;
export const REV_PORT = 31002;

export interface Flows {
  readonly users: Agent;
  readonly targets: Agent;
}

/** Agents on users and targets, each also a pattern target (targets:31001, users:31002). */
export async function startFlowAgents(t: TestContext, chain: Chain): Promise<Flows> {
  const [users, targets] = await Promise.all([startAgent(t, chain.topo, 'users'), startAgent(t, chain.topo, 'targets')]);
  await Promise.all([
    targets.call('listen', { port: FWD_PORT, mode: 'pattern' }, 5000),
    users.call('listen', { port: REV_PORT, mode: 'pattern' }, 5000),
  ]);
  return { users, targets };
}

export const PAIR_BOTH_WAYS = { serverArgs: ['-p', String(FWD_PORT)], clientArgs: ['-p', String(REV_PORT)] } as const;

/** Starts load `id` both ways: users -> srv:31001 (`${id}-fwd`) and targets -> cli:31002 (`${id}-rev`). */
export async function startLoads(flows: Flows, chain: Chain, id: string, args: Record<string, Json>): Promise<void> {
  const keyBase = typeof args.keyBase === 'number' ? args.keyBase : 1;
  await Promise.all([
    flows.users.call('load-start', { ...args, id: `${id}-fwd`, host: chain.srvForUsers, port: FWD_PORT, keyBase }, 5000),
    flows.targets.call('load-start', { ...args, id: `${id}-rev`, host: chain.cliForTargets, port: REV_PORT, keyBase: keyBase + 0x1000000 }, 5000),
  ]);
}

export interface BothWays<T> {
  readonly fwd: T;
  readonly rev: T;
}

export async function waitLoads(flows: Flows, id: string, timeoutMs: number, extra: Record<string, Json> = {}): Promise<BothWays<LoadSummary>> {
  const [fwd, rev] = await Promise.all([
    flows.users.call<LoadSummary>('load-wait', { ...extra, id: `${id}-fwd`, timeoutMs }, timeoutMs + 5000),
    flows.targets.call<LoadSummary>('load-wait', { ...extra, id: `${id}-rev`, timeoutMs }, timeoutMs + 5000),
  ]);
  return { fwd, rev };
}

export async function loadStats(flows: Flows, id: string): Promise<BothWays<LoadSummary>> {
  const [fwd, rev] = await Promise.all([
    flows.users.call<LoadSummary>('load-stats', { id: `${id}-fwd` }, 5000),
    flows.targets.call<LoadSummary>('load-stats', { id: `${id}-rev` }, 5000),
  ]);
  return { fwd, rev };
}

/**
 * Until both pattern targets have no connection open (a user is done once its
 * kernel took its last bytes; its target finishes reading a little later).
 */
export async function targetsQuiet(flows: Flows, ms = 15_000): Promise<void> {
  await pollUntil(() => targetStats(flows), (v) => v.fwd.open === 0 && v.rev.open === 0, ms, 'the targets to finish their connections');
}

/** Target-side records: fwd streams end at targets:31001, rev streams at users:31002. */
export async function targetStats(flows: Flows, extra: Record<string, Json> = {}): Promise<BothWays<TargetStats>> {
  const [fwd, rev] = await Promise.all([
    flows.targets.call<TargetStats>('target-stats', { ...extra, port: FWD_PORT }, 10_000),
    flows.users.call<TargetStats>('target-stats', { ...extra, port: REV_PORT }, 10_000),
  ]);
  return { fwd, rev };
}

export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN;
}
