/**
 * The WAN bench's workloads on one running path: new streams, bulk (1 and 8
 * streams), interactive ping-pong beside a bulk stream, and the relays' memory
 * and CPU. Each returns plain figures for the JSON; bench/wan/report.ts turns
 * them into tables.
 */
import { readFileSync } from 'node:fs';
import os from 'node:os';
import type { IpcClient } from '../ipc.js';
import { cpuSeconds } from '../procs.js';
import { median, percentile } from '../stats.js';
import { nowUs, type SinkApi, type UserApi } from './api.js';
import { OtherWork } from './other-work.js';
import type { Profile } from './emulation.js';
import type { WanOptions } from './options.js';
import { PATH_PORT, rssOf, type RunningPath, type WanPathId } from './paths.js';

export interface BulkResult {
  readonly streams: number;
  /** Bytes the sink received (by the cap, when capped). */
  readonly bytes: number;
  readonly seconds: number;
  readonly gbps: number;
  /** The transfer did not finish within the cap: `bytes` is what arrived by then. */
  readonly capped: boolean;
  readonly failed: number;
  readonly error: string;
  /** CPU seconds of the relay processes on each side during the transfer. */
  readonly cpuEntryS: number;
  readonly cpuExitS: number;
  /** Share of the machine's CPU time that was busy during the transfer (all processes, both cores). */
  readonly machineBusyPct: number;
}

export interface InteractiveResult {
  /** Ping-pong on an idle path. */
  readonly idleSamples: number;
  readonly idleP50Ms: number;
  /**
   * The first ping after the bulk stream ran alone through the warm-up: it waits for whatever
   * the bulk left queued in the send buffers (a keystroke after a download started).
   */
  readonly firstMs: number;
  /** Ping-pong beside one bulk stream of the same path, after that first ping. */
  readonly samples: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly maxMs: number;
  /** Diagnose mode only: each loaded ping, when it was sent (nowUs) and its round trip in ms. */
  readonly pings?: readonly { readonly at: number; readonly ms: number }[];
  /** What the bulk stream beside it moved (from its start, warm-up included). */
  readonly bulkGbps: number;
}

export interface NewStreamsResult {
  readonly count: number;
  readonly failed: number;
  readonly error: string;
  readonly medianMs: number;
  readonly maxMs: number;
  /** From the first connect() to the last answer. */
  readonly elapsedMs: number;
}

export interface MemoryResult {
  readonly entryIdleMiB: number;
  readonly exitIdleMiB: number;
  readonly entryPeakMiB: number;
  readonly exitPeakMiB: number;
}

export interface PathResult {
  readonly id: WanPathId;
  /** The host's 1-minute load average as the path started: other work on the host shows here. */
  readonly load1: number;
  /** CPU used by user-space processes outside the bench, in cores, over the path's workloads (bench/wan/other-work.ts). */
  otherCores: number;
  error: string | null;
  newStreams: NewStreamsResult | null;
  bulk1: BulkResult | null;
  bulk8: BulkResult | null;
  interactive: InteractiveResult | null;
  memory: MemoryResult | null;
}

export interface Ctx {
  readonly user: IpcClient<UserApi>;
  readonly sink: IpcClient<SinkApi>;
  readonly options: WanOptions;
  readonly profile: Profile;
  readonly log: (line: string) => void;
  /** Called every `sampleEveryMs` while a bulk transfer or the interactive test runs (the diagnose mode's ss sampler). */
  readonly sampler?: { everyMs: number; sample: (phase: string) => void };
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

function cpuTotals(): { busy: number; total: number } {
  const line = readFileSync('/proc/stat', 'utf8').split('\n')[0] ?? '';
  const f = line.trim().split(/\s+/).slice(1).map(Number);
  const total = f.reduce((a, b) => a + b, 0);
  const idle = (f[3] ?? 0) + (f[4] ?? 0);
  return { busy: total - idle, total };
}

/** Runs `fn` while calling the sampler every few hundred ms (diagnose mode only). */
async function sampled<T>(ctx: Ctx, phase: string, fn: () => Promise<T>): Promise<T> {
  const s = ctx.sampler;
  if (s === undefined) return fn();
  s.sample(phase);
  const timer = setInterval(() => s.sample(phase), s.everyMs);
  try {
    return await fn();
  } finally {
    clearInterval(timer);
    s.sample(phase);
  }
}

export async function waitReady(ctx: Ctx, path: RunningPath, timeoutMs = 20_000): Promise<number> {
  const start = Date.now();
  let last = '';
  for (;;) {
    try {
      await ctx.user.call('probe', { ...path.entry, timeoutMs: 5000 });
      return Date.now() - start;
    } catch (err) {
      last = err instanceof Error ? err.message : String(err);
    }
    if (Date.now() - start > timeoutMs) throw new Error(`${path.id} not ready after ${timeoutMs} ms: ${last}`);
    await sleep(200);
  }
}

export async function bulk(ctx: Ctx, path: RunningPath, streams: number): Promise<BulkResult> {
  const port = PATH_PORT[path.id];
  await ctx.sink.call('bulkReset', { port });
  const opened = await ctx.user.call('bulkOpen', { ...path.entry, streams });
  const roots = { entry: path.entrySide.map((c) => c.pid), exit: path.exitSide.map((c) => c.pid) };
  const cpu0 = { entry: cpuSeconds(roots.entry), exit: cpuSeconds(roots.exit), machine: cpuTotals() };
  const untilUs = nowUs() + ctx.options.capMs * 1000;
  const [sent, got] = await sampled(ctx, `bulk${streams}`, () =>
    Promise.all([
      ctx.user.call('bulkSend', { bytes: ctx.options.bulkBytes, untilUs }),
      ctx.sink.call('bulkWait', { port, streams: opened.opened, untilUs }),
    ]),
  );
  const machine = cpuTotals();
  const cpuEntryS = cpuSeconds(roots.entry) - cpu0.entry;
  const cpuExitS = cpuSeconds(roots.exit) - cpu0.exit;
  // Nothing of this transfer may linger into the next workload.
  await ctx.sink.call('waitOpen', { open: 0, timeoutMs: 15_000 });
  const seconds = got.lastAt > sent.startAt ? (got.lastAt - sent.startAt) / 1e6 : Number.NaN;
  const capped = got.ended < streams || sent.aborted > 0;
  const failed = opened.failed + sent.failed;
  return {
    streams,
    bytes: got.bytes,
    seconds,
    gbps: Number.isFinite(seconds) && seconds > 0 ? (got.bytes * 8) / seconds / 1e9 : 0,
    capped,
    failed,
    error: opened.firstError || sent.firstError,
    cpuEntryS,
    cpuExitS,
    machineBusyPct: machine.total > cpu0.machine.total ? (100 * (machine.busy - cpu0.machine.busy)) / (machine.total - cpu0.machine.total) : 0,
  };
}

export async function interactive(ctx: Ctx, path: RunningPath): Promise<InteractiveResult> {
  const rtt = ctx.profile.rttMs;
  const o = ctx.options;
  const idleMs = Math.max(o.idleMinMs, 10 * rtt);
  const warmupMs = Math.max(o.warmupMinMs, 10 * rtt);
  const loadMs = Math.min(o.loadMaxMs, Math.max(o.loadMinMs, 100 * rtt));
  await ctx.user.call('pingOpen', path.entry);
  try {
    const idle = await ctx.user.call('pingRun', { size: 64, durationMs: idleMs, warmup: 2, minSamples: 5 });
    return await sampled(ctx, 'interactive', async () => {
      await ctx.user.call('bulkStart', path.entry);
      let bg: { bytes: number; ms: number } | null = null;
      try {
        await sleep(warmupMs);
        const first = await ctx.user.call('pingRun', { size: 64, durationMs: 0, warmup: 0, minSamples: 1 });
        const loaded = await ctx.user.call('pingRun', { size: 64, durationMs: loadMs, warmup: 0, minSamples: 10 });
        bg = await ctx.user.call('bulkStop', null);
        const ms = (v: number): number => v / 1000;
        return {
          idleSamples: idle.samples.length,
          idleP50Ms: ms(percentile(idle.samples, 50)),
          firstMs: ms(first.samples[0] ?? Number.NaN),
          samples: loaded.samples.length,
          p50Ms: ms(percentile(loaded.samples, 50)),
          p99Ms: ms(percentile(loaded.samples, 99)),
          maxMs: ms(Math.max(...loaded.samples)),
          bulkGbps: bg.ms > 0 ? (bg.bytes * 8) / (bg.ms / 1000) / 1e9 : 0,
          ...(ctx.sampler === undefined ? {} : { pings: loaded.samples.map((us, i) => ({ at: loaded.sentAt[i] ?? Number.NaN, ms: ms(us) })) }),
        };
      } finally {
        if (bg === null) await ctx.user.call('bulkStop', null).catch(() => null);
      }
    });
  } finally {
    await ctx.user.call('pingClose', null).catch(() => null);
    await ctx.sink.call('waitOpen', { open: 0, timeoutMs: 15_000 });
  }
}

export async function newStreams(ctx: Ctx, path: RunningPath): Promise<NewStreamsResult> {
  const r = await ctx.user.call('newStreams', { ...path.entry, count: ctx.options.newStreams, timeoutMs: 30_000 });
  await ctx.sink.call('waitOpen', { open: 0, timeoutMs: 15_000 });
  return {
    count: ctx.options.newStreams,
    failed: r.failed,
    error: r.firstError,
    medianMs: (median(r.times) ?? Number.NaN) / 1000,
    maxMs: r.times.length > 0 ? Math.max(...r.times) / 1000 : Number.NaN,
    elapsedMs: r.elapsedUs / 1000,
  };
}

/** Every workload on one path, in a fixed order; an error stops the path but keeps what was measured. */
export async function measurePath(ctx: Ctx, path: RunningPath): Promise<PathResult> {
  const other = new OtherWork();
  const result: PathResult = { id: path.id, load1: os.loadavg()[0] ?? 0, otherCores: 0, error: null, newStreams: null, bulk1: null, bulk8: null, interactive: null, memory: null };
  const idle = { entry: rssOf(path.entrySide), exit: rssOf(path.exitSide) };
  const step = async <T>(name: string, fn: () => Promise<T>): Promise<T> => {
    const t0 = Date.now();
    const value = await fn();
    ctx.log(`  ${path.id} ${name}: ${JSON.stringify(value, (_k, v: unknown) => (typeof v === 'number' ? Math.round(v * 1000) / 1000 : v))} (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
    return value;
  };
  try {
    result.newStreams = await step('new streams', () => newStreams(ctx, path));
    result.bulk1 = await step('bulk 1 stream', () => bulk(ctx, path, 1));
    result.bulk8 = await step('bulk 8 streams', () => bulk(ctx, path, 8));
    result.interactive = await step('interactive', () => interactive(ctx, path));
  } catch (err) {
    result.error = err instanceof Error ? err.message : String(err);
    ctx.log(`  ${path.id}: ${result.error}`);
  }
  result.otherCores = other.stop();
  if (path.entrySide.length + path.exitSide.length > 0) {
    const peak = { entry: rssOf(path.entrySide), exit: rssOf(path.exitSide) };
    result.memory = {
      entryIdleMiB: idle.entry.rssKiB / 1024,
      exitIdleMiB: idle.exit.rssKiB / 1024,
      entryPeakMiB: peak.entry.peakKiB / 1024,
      exitPeakMiB: peak.exit.peakKiB / 1024,
    };
  }
  return result;
}
