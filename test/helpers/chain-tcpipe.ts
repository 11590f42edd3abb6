/**
 * tcpipe's CLI inside the fault chain (chain.ts): run with the probe
 * (probe.ts) preloaded and its own descriptor limit, its output as lines,
 * and a leak baseline from the probe's counts. Killed (SIGKILL) by t.after
 * and by the topology's destroy; TCPIPE_FAULTS_LOGDIR=<dir> keeps each
 * process's output for a post-mortem.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { LINK_PORT, FWD_PORT, REV_PORT, type Chain, type Host } from './chain.js';
import { CLI_MAIN, NODE, childEnv } from './cli.js';
import { LINK_UP } from './logs.js';
import { MiB } from './net.js';
import type { Topology } from './netns.js';
import { trackOutput } from './output.js';
import { procStats, withUlimit, type ProcStats } from './proc.js';
import { pollUntil } from './wait.js';

const PROBE = new URL('./probe.js', import.meta.url).href;

/** What the preloaded probe (probe.ts) reports. */
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
  const [cmd, argv] = withUlimit(options.nofile ?? 65536, [NODE, '--expose-gc', '--import', PROBE, CLI_MAIN, ...args]);
  const child = topo.spawn(host, cmd, argv, { env: childEnv() });
  const pid = child.pid;
  if (pid === undefined) throw new Error(`cannot start tcpipe ${name}`);
  const lines = trackOutput(child, `tcpipe ${name}`, process.env.TCPIPE_TEST_LOG === '1' ? (l) => process.stderr.write(`[${name}] ${l}\n`) : undefined);
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
    waitFor: (regex, ms, from = 0) => lines.waitFor(regex, ms, from),
    since: (from) => lines.since(from),
    output: () => lines.lines.join('\n'),
    stats: () => procStats(pid),
    alive: () => child.exitCode === null && child.signalCode === null,
    probe: async (ms = 5000) => {
      const from = lines.length;
      const want = ++probeSeq;
      process.kill(pid, 'SIGUSR2');
      const line = await lines.waitFor(new RegExp(`^FAULTS-PROBE \\{"seq":${want},`), ms, from);
      return JSON.parse(line.slice('FAULTS-PROBE '.length)) as Probe;
    },
  };
  if (options.waitStarted ?? true) await proc.waitFor(/ tcpipe \S+ (server|client): /, 10_000);
  return proc;
}

export function serverArgs(chain: Chain, extra: readonly string[] = []): string[] {
  return ['-s', String(LINK_PORT), '-t', chain.usersForSrv, ...extra];
}

export function clientArgs(chain: Chain, extra: readonly string[] = []): string[] {
  return ['-c', `${chain.srvForCli}:${LINK_PORT}`, '-t', chain.targetsForCli, ...extra];
}

export interface ChainPairOptions {
  readonly serverArgs?: readonly string[];
  readonly clientArgs?: readonly string[];
  readonly serverNofile?: number;
  readonly clientNofile?: number;
}

/** tcpipe -s on srv. */
export function startChainServer(t: TestContext, chain: Chain, extra: readonly string[] = [], nofile?: number): Promise<TcpipeProc> {
  return startTcpipe(t, chain.topo, 'srv', 'server', serverArgs(chain, extra), nofile !== undefined ? { nofile } : {});
}

/** tcpipe -c on cli. */
export function startChainClient(t: TestContext, chain: Chain, extra: readonly string[] = [], nofile?: number): Promise<TcpipeProc> {
  return startTcpipe(t, chain.topo, 'cli', 'client', clientArgs(chain, extra), nofile !== undefined ? { nofile } : {});
}

/** Starts srv (server) then cli (client) and waits until both report the link up. */
export async function startChainPair(t: TestContext, chain: Chain, options: ChainPairOptions = {}): Promise<{ server: TcpipeProc; client: TcpipeProc }> {
  const server = await startChainServer(t, chain, options.serverArgs, options.serverNofile);
  const client = await startChainClient(t, chain, options.clientArgs, options.clientNofile);
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

/** Pair options for flows both ways (agent-driver.ts startFlowAgents): srv -p 31001, cli -p 31002. */
export const PAIR_BOTH_WAYS = { serverArgs: ['-p', String(FWD_PORT)], clientArgs: ['-p', String(REV_PORT)] } as const;

export function mib(bytes: number): number {
  return Math.round((bytes / MiB) * 10) / 10;
}

/** Sockets the probed process holds (its stdio pipes and the link included). */
export function socketHandles(p: Probe): number {
  return (p.handles.Socket ?? 0) + (p.handles.TLSSocket ?? 0);
}

/** Each process's handles, timers and heap (and RSS) once no stream socket is left: a leak baseline. */
export interface Baseline {
  readonly probes: readonly Probe[];
  readonly rss: readonly number[];
}

export async function quietBaseline(procs: readonly TcpipeProc[]): Promise<Baseline> {
  // Sockets close asynchronously after the last stream: wait until no stream socket is left.
  await pollUntil(() => Promise.all(procs.map((p) => p.probe())), (ps) => ps.every((p) => socketHandles(p) <= 3), 10_000, 'no stream sockets left', 200);
  // A heartbeat PING in flight holds its timeout timer until the answer (a few ms, longer while
  // the partner runs the probe's GC): of three probes in a row, each process's fewest timers count.
  let probes = await Promise.all(procs.map((p) => p.probe()));
  for (let round = 1; round < 3; round++) {
    const again = await Promise.all(procs.map((p) => p.probe()));
    probes = probes.map((p, i) => {
      const q = again[i];
      return q !== undefined && q.timers < p.timers ? q : p;
    });
  }
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
    assert.ok(socketHandles(a) <= socketHandles(b), `${p.name}: ${socketHandles(a)} sockets after, ${socketHandles(b)} before`);
    assert.ok(a.timers <= b.timers, `${p.name}: ${a.timers} live timers after, ${b.timers} before`);
    assert.ok(a.intervals <= b.intervals, `${p.name}: ${a.intervals} intervals after, ${b.intervals} before`);
    assert.ok(a.heapUsed <= b.heapUsed + slack.heap, `${p.name}: heap ${mib(a.heapUsed)} MiB after, ${mib(b.heapUsed)} MiB before`);
    assert.ok(rssA <= rssB + slack.rss, `${p.name}: RSS ${mib(rssA)} MiB after, ${mib(rssB)} MiB before`);
  }
}
