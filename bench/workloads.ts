/**
 * The workloads, grouped as they are run on one freshly started path:
 *   perf    RTT, bulk 1 and 8 streams (with relay CPU per GiB), connection
 *           rate (with relay CPU per connection), then (unless its scope is
 *           'core') fairness and the scaling curves;
 *   memory  relay RSS and PSS idle, then with 1,000 and 10,000 idle streams;
 *   slow    relay memory while a target reads at 1 MB/s and the user sends.
 * Which path runs what is plan.ts's business. Each returns plain numbers keyed
 * by metric (see report.ts for their meaning).
 */
import type { IpcClient } from './ipc.js';
import type { TargetApi, UserApi } from './messages.js';
import type { BenchOptions } from './options.js';
import type { RunningPath } from './paths.js';
import { cpuSeconds, memory, type Memory } from './procs.js';
import { percentile } from './stats.js';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
/** The RTT probes carry 64-byte messages, as the issue asks. */
const PING_SIZE = 64;
/** Round trips per stream not recorded (the first carries the stream's set-up). */
const WARMUP = 10;

export type Group = 'perf' | 'memory' | 'slow';

/** How much of the perf group runs: all of it, or only RTT, bulk 1 and 8 streams and connections. */
export type PerfScope = 'full' | 'core';

/** What one group measured on one path: numbers by metric, and notes on what could not be measured. */
export interface Sample {
  readonly values: Map<string, number>;
  readonly notes: string[];
}

export interface WorkloadContext {
  readonly user: IpcClient<UserApi>;
  /** A second load generator: the saturating stream of the fairness test, so it does not share the pinger's event loop. */
  readonly user2: IpcClient<UserApi>;
  readonly target: IpcClient<TargetApi>;
  readonly options: BenchOptions;
  /** Repetition, from 0: the largest idle-stream level is measured in the first only. */
  readonly rep: number;
  readonly log: (line: string) => void;
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
const pids = (run: RunningPath): number[] => run.relays.map((c) => c.pid);

/** Runs one group; what it measured before a failure stays in `sample`. */
export async function runGroup(group: Group, ctx: WorkloadContext, run: RunningPath, sample: Sample, scope: PerfScope): Promise<void> {
  if (group === 'perf') {
    await perfCore(ctx, run, sample);
    if (scope === 'full') await perfExtras(ctx, run, sample);
  } else if (group === 'memory') await idleMemory(ctx, run, sample.values);
  else await slowReader(ctx, run, sample.values);
}

/** RTT, bulk 1 and 8 streams, connection rate: what every path runs. */
async function perfCore(ctx: WorkloadContext, run: RunningPath, sample: Sample): Promise<void> {
  const out = sample.values;
  const o = ctx.options;
  // Warm-up: JIT and socket buffers of every process on the path.
  await ctx.user.call('rtt', { ...run.entry, streams: 1, durationMs: Math.min(200, o.rttMs), size: PING_SIZE, warmup: WARMUP });
  await bulkOnce(ctx, run, 1, Math.min(o.bulkBytes, 64 * MiB));

  const rtt = await ctx.user.call('rtt', { ...run.entry, streams: 1, durationMs: o.rttMs, size: PING_SIZE, warmup: WARMUP });
  out.set('rtt_p50_us', percentile(rtt.samples, 50));
  out.set('rtt_p99_us', percentile(rtt.samples, 99));
  ctx.log(`rtt p50 ${fmt(percentile(rtt.samples, 50))} µs p99 ${fmt(percentile(rtt.samples, 99))} µs (${rtt.samples.length} round trips)`);

  for (const streams of [1, 8]) {
    const r = await bulkOnce(ctx, run, streams, o.bulkBytes);
    if (r.failure !== null) {
      note(ctx, sample, `bulk ${streams}: ${r.failure}`);
      continue;
    }
    out.set(`bulk${streams}_gbps`, r.gbps);
    if (r.cpuPerGiB !== null) out.set(streams === 1 ? 'cpu_s_per_gib' : 'cpu_s_per_gib_8', r.cpuPerGiB);
    ctx.log(`bulk ${streams} stream(s): ${r.gbps.toFixed(2)} Gbit/s${r.cpuPerGiB === null ? '' : `, relay CPU ${r.cpuPerGiB.toFixed(2)} s/GiB`}`);
  }

  const cpu0 = cpuSeconds(pids(run));
  const conn = await ctx.user.call('connRate', { ...run.entry, workers: o.connWorkers, durationMs: o.connMs });
  const cpu1 = cpuSeconds(pids(run));
  await ctx.target.call('waitOpen', { open: 0, timeoutMs: 10_000 });
  out.set('conn_per_s', conn.connections / (conn.elapsedMs / 1000));
  out.set('conn_errors', conn.errors);
  if (run.relays.length > 0 && conn.connections > 0) out.set('cpu_us_per_conn', ((cpu1 - cpu0) * 1e6) / conn.connections);
  ctx.log(`connections: ${fmt(conn.connections / (conn.elapsedMs / 1000))}/s, ${conn.errors} errors`);
}

/** Fairness and the scaling curves, on a path whose perfCore just ran (the curve reuses its bulk and RTT figures). */
async function perfExtras(ctx: WorkloadContext, run: RunningPath, sample: Sample): Promise<void> {
  const out = sample.values;
  const o = ctx.options;
  // Fairness: one stream saturates (from the second generator), another ping-pongs beside it.
  await ctx.user2.call('bulkStart', run.entry);
  let fair: { samples: number[] };
  try {
    await sleep(o.fairWarmupMs);
    fair = await ctx.user.call('rtt', { ...run.entry, streams: 1, durationMs: o.fairMs, size: PING_SIZE, warmup: 2 });
  } finally {
    const bulkRun = await ctx.user2.call('bulkStop', null);
    out.set('fair_bulk_gbps', (bulkRun.bytes * 8) / (bulkRun.ms / 1000) / 1e9);
  }
  out.set('fair_p50_us', percentile(fair.samples, 50));
  out.set('fair_p99_us', percentile(fair.samples, 99));
  ctx.log(`fairness: RTT p50 ${fmt(percentile(fair.samples, 50))} µs, p99 ${fmt(percentile(fair.samples, 99))} µs beside a ${(out.get('fair_bulk_gbps') ?? 0).toFixed(2)} Gbit/s stream`);
  await ctx.target.call('waitOpen', { open: 0, timeoutMs: 10_000 });

  for (const n of o.scaleLevels) {
    if (n === 1 || n === 8) {
      // The bulk runs above are these points of the curve.
      out.set(`scale_gbps_${n}`, out.get(`bulk${n}_gbps`) ?? Number.NaN);
    } else {
      const r = await bulkOnce(ctx, run, n, o.scaleBytes);
      if (r.failure === null) out.set(`scale_gbps_${n}`, r.gbps);
      else note(ctx, sample, `bulk ${n}: ${r.failure}`);
    }
    if (n === 1) {
      out.set('scale_rtt_p50_us_1', out.get('rtt_p50_us') ?? Number.NaN);
      out.set('scale_rtt_p99_us_1', out.get('rtt_p99_us') ?? Number.NaN);
    } else {
      const r = await ctx.user.call('rtt', { ...run.entry, streams: n, durationMs: o.scaleRttMs, size: PING_SIZE, warmup: WARMUP });
      out.set(`scale_rtt_p50_us_${n}`, percentile(r.samples, 50));
      out.set(`scale_rtt_p99_us_${n}`, percentile(r.samples, 99));
    }
    ctx.log(`${n} streams: ${(out.get(`scale_gbps_${n}`) ?? 0).toFixed(2)} Gbit/s, RTT p50 ${fmt(out.get(`scale_rtt_p50_us_${n}`) ?? 0)} µs`);
  }
}

export interface BulkResult {
  readonly gbps: number;
  readonly cpuPerGiB: number | null;
  /** Why the transfer does not count (streams failed, bytes missing at the sink); null when it does. */
  readonly failure: string | null;
}

/** One bulk transfer of `bytes` over `streams` streams: throughput at the sink, relay CPU per GiB. */
export async function bulkOnce(ctx: WorkloadContext, run: RunningPath, streams: number, bytes: number): Promise<BulkResult> {
  const port = run.entry.port;
  await ctx.target.call('bulkReset', { port });
  const cpu0 = cpuSeconds(pids(run));
  const sent = await ctx.user.call('bulk', { ...run.entry, streams, bytes });
  const got = await ctx.target.call('bulkWait', { port, streams: streams - sent.failed, timeoutMs: 30_000 });
  const cpu1 = cpuSeconds(pids(run));
  const seconds = (got.lastAt - sent.startAt) / 1e6;
  const cpuPerGiB = run.relays.length > 0 ? (cpu1 - cpu0) / (bytes / GiB) : null;
  let failure: string | null = null;
  if (sent.failed > 0) failure = `${sent.failed} of ${streams} streams failed (${sent.firstError})`;
  else if (got.streams < streams || got.bytes !== bytes) failure = `the sink got ${got.bytes} of ${bytes} bytes, ${got.streams} of ${streams} streams ended`;
  return { gbps: (bytes * 8) / seconds / 1e9, cpuPerGiB, failure };
}

function note(ctx: WorkloadContext, sample: Sample, text: string): void {
  ctx.log(`NOT MEASURED: ${text}`);
  sample.notes.push(text);
}

async function idleMemory(ctx: WorkloadContext, run: RunningPath, out: Map<string, number>): Promise<void> {
  const roots = pids(run);
  await sleep(ctx.options.settleMs);
  const idle = memory(roots);
  out.set('mem_idle_rss_mib', idle.rssKiB / 1024);
  out.set('mem_idle_pss_mib', idle.pssKiB / 1024);
  let held = 0;
  const levels = ctx.options.idleCounts;
  try {
    // The largest level takes a minute through ssh (each new channel costs it a pass over all): once per run.
    for (const count of ctx.rep === 0 ? levels : levels.slice(0, -1)) {
      const r = await ctx.user.call('idleOpen', { ...run.entry, count: count - held, concurrency: ctx.options.idleConcurrency });
      held = r.held;
      if (r.failed > 0) ctx.log(`${r.failed} of ${count} idle streams failed (first: ${r.firstError})`);
      await sleep(ctx.options.settleMs);
      const m = memory(roots);
      out.set(`mem_${count}_rss_mib`, m.rssKiB / 1024);
      out.set(`mem_${count}_pss_mib`, m.pssKiB / 1024);
      out.set(`idle_held_${count}`, held);
      if (held > 0) out.set(`stream_kib_${count}`, (m.pssKiB - idle.pssKiB) / held);
      ctx.log(
        `${held} idle streams (${(r.elapsedMs / 1000).toFixed(1)} s to open): RSS ${mib(m)} MiB, PSS ${(m.pssKiB / 1024).toFixed(1)} MiB in ${m.processes} processes, ` +
          `${((m.pssKiB - idle.pssKiB) / Math.max(1, held)).toFixed(1)} KiB per stream`,
      );
    }
  } finally {
    await ctx.user.call('idleClose', null);
    await ctx.target.call('waitOpen', { open: 0, timeoutMs: 30_000 });
  }
}

async function slowReader(ctx: WorkloadContext, run: RunningPath, out: Map<string, number>): Promise<void> {
  const roots = pids(run);
  const o = ctx.options;
  const base = memory(roots);
  // `filled`: RSS once the path is full (after the first second, or a third of a shorter run);
  // a relay whose memory is flat stops growing there.
  const seen: { peak: Memory; last: Memory; filled: Memory | null } = { peak: base, last: base, filled: null };
  const fillMs = Math.min(1000, o.slowMs / 3);
  const startedAt = Date.now();
  const timer = setInterval(() => {
    const m = memory(roots);
    seen.last = m;
    if (m.rssKiB > seen.peak.rssKiB) seen.peak = m;
    if (seen.filled === null && Date.now() - startedAt >= fillMs) seen.filled = m;
  }, 100);
  const before = await ctx.target.call('stats', null);
  let written: number;
  try {
    written = (await ctx.user.call('slow', { ...run.entry, bytes: o.slowBytes, durationMs: o.slowMs })).written;
  } finally {
    clearInterval(timer);
  }
  const after = await ctx.target.call('stats', null);
  await ctx.target.call('dropSlow', null);
  const read = after.slowBytes - before.slowBytes;
  out.set('slow_base_rss_mib', base.rssKiB / 1024);
  const { peak, last, filled } = seen;
  out.set('slow_peak_rss_mib', peak.rssKiB / 1024);
  out.set('slow_growth_mib', (peak.rssKiB - base.rssKiB) / 1024);
  if (filled !== null) out.set('slow_late_growth_mib', (last.rssKiB - filled.rssKiB) / 1024);
  out.set('slow_inflight_mib', (written - read) / MiB);
  out.set('slow_read_mib', read / MiB);
  ctx.log(
    `slow reader: RSS ${mib(base)} → peak ${mib(peak)} MiB; user handed ${(written / MiB).toFixed(1)} MiB, ` +
      `target read ${(read / MiB).toFixed(1)} MiB in ${(o.slowMs / 1000).toFixed(1)} s`,
  );
  await ctx.target.call('waitOpen', { open: 0, timeoutMs: 30_000 });
}

function mib(m: Memory): string {
  return (m.rssKiB / 1024).toFixed(1);
}

function fmt(n: number): string {
  return Number.isFinite(n) ? Math.round(n).toLocaleString('en-US') : '–';
}
