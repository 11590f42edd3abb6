/**
 * The test's side of the fault agent (agent/main.ts): starts one in a
 * namespace of the chain and calls its operations; flows both ways through
 * the pair (users -> srv:31001 -> targets, targets -> cli:31002 -> users)
 * and the shapes of what the agent reports.
 */
import assert from 'node:assert/strict';
import type { TestContext } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { Json } from './agent/common.js';
import type { UserRecord } from './agent/loads.js';
import type { TargetRecord } from './agent/targets.js';
import { FWD_PORT, REV_PORT, type Chain, type Host } from './chain.js';
import { NODE } from './cli.js';
import type { Topology } from './netns.js';
import { Flags } from './pattern.js';
import { trackOutput } from './output.js';
import { withUlimit } from './proc.js';
import { pollUntil, withTimeout } from './wait.js';

export type { Json, TargetRecord, UserRecord };

const AGENT = fileURLToPath(new URL('./agent/main.js', import.meta.url));

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
  trackOutput(child, `agent on ${host}`, (line) => {
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
  const pid = await withTimeout(ready, 10_000, `agent on ${host} to start`);
  return {
    host,
    pid,
    call: <T>(op: string, args: Record<string, Json>, timeoutMs: number): Promise<T> => {
      if (exited) return Promise.reject(new Error(`agent on ${host} has exited: ${diagnostics.join('\n')}`));
      const id = nextId++;
      const answer = new Promise<Json>((resolve, reject) => pending.set(id, { resolve, reject }));
      child.stdin?.write(JSON.stringify({ id, op, args }) + '\n');
      return withTimeout(answer, timeoutMs, `agent on ${host}: ${op}`).then((v) => v as T);
    },
  };
}

export interface Flows {
  readonly users: Agent;
  readonly targets: Agent;
}

/** One agent per host named, in order, started at once. */
export function startAgents<const T extends readonly Host[]>(t: TestContext, topo: Topology<Host>, hosts: T): Promise<{ -readonly [K in keyof T]: Agent }> {
  return Promise.all(hosts.map((host) => startAgent(t, topo, host))) as Promise<{ -readonly [K in keyof T]: Agent }>;
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

/** Starts load `id` both ways: users -> srv:31001 (`${id}-fwd`) and targets -> cli:31002 (`${id}-rev`). */
export async function startLoads(flows: Flows, chain: Chain, id: string, args: Record<string, Json>): Promise<void> {
  const keyBase = typeof args.keyBase === 'number' ? args.keyBase : 1;
  await Promise.all([
    flows.users.call('load-start', { ...args, id: `${id}-fwd`, host: chain.srvForUsers, port: FWD_PORT, keyBase }, 5000),
    flows.targets.call('load-start', { ...args, id: `${id}-rev`, host: chain.cliForTargets, port: REV_PORT, keyBase: keyBase + 0x1000000 }, 5000),
  ]);
}

/**
 * Starts `streams` paced pattern streams each way (256 MiB each way per
 * stream, far more than a scenario lets through) and waits until every one
 * reached its target and bytes came back both ways: load `id` in flight.
 */
export async function startPacedLoads(flows: Flows, chain: Chain, id: string, streams: number): Promise<void> {
  await startLoads(flows, chain, id, {
    count: streams,
    concurrency: streams,
    sizeMin: 256 * 1024 * 1024,
    replyMin: 256 * 1024 * 1024,
    flags: Flags.PACED,
    timeoutMs: 60_000,
  });
  await pollUntil(
    async () => ({ targets: await targetStats(flows), loads: await loadStats(flows, id) }),
    (v) => v.targets.fwd.streams === streams && v.targets.rev.streams === streams && v.loads.fwd.recv > 0 && v.loads.rev.recv > 0,
    10_000,
    `all ${streams} streams of ${id} in flight`,
  );
}

/** Four 256 KiB streams each way (load `id`, keys from `keyBase`) arrive intact and end cleanly: the link relays. */
export async function assertRelaysBothWays(flows: Flows, chain: Chain, id: string, keyBase: number): Promise<void> {
  await startLoads(flows, chain, id, { count: 4, concurrency: 4, sizeMin: 256 * 1024, replyMin: 256 * 1024, keyBase });
  const done = await waitLoads(flows, id, 15_000);
  for (const l of [done.fwd, done.rev]) {
    assert.deepEqual(l.errors, {});
    assert.equal(l.clean, 4);
    assert.equal(l.bad, 0);
  }
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
