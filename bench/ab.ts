#!/usr/bin/env node
/**
 * A/B of two tcpipe builds on the bench's workloads, interleaved: each
 * repetition runs every (path, build) pair in a rotated order, on freshly
 * started relays, so that the load other work puts on a shared host falls on
 * both builds alike. Prints medians and B ÷ A.
 *
 *   node dist/bench/ab.js --builds base=/tmp/base/dist,new=dist --paths tcpipe,tcpipe-secret \
 *        --workloads bulk1,bulk8,rtt,conn --reps 5 --size 512
 *
 * `--builds name=dir,...`: dist roots (holding src/cli/main.js), the first the baseline. Also
 * counts the relays' read and write system calls (/proc/<pid>/io) per GiB.
 */
import { readFileSync } from 'node:fs';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execFileSync } from 'node:child_process';
import { parseArgs } from 'node:util';
import { IpcClient } from './ipc.js';
import type { TargetApi, UserApi } from './messages.js';
import { parseOptions } from './options.js';
import { ENTRY_HOST, TARGET_HOST, freePortOnAll, startPath, type PathId, type PathPorts, type RunningPath } from './paths.js';
import { ProcessRegistry, cpuSeconds, processTree } from './procs.js';
import { percentile } from './stats.js';
import { bulkOnce, type WorkloadContext } from './workloads.js';

const here = join(dirname(fileURLToPath(import.meta.url)));
const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

const { values } = parseArgs({
  options: {
    builds: { type: 'string' },
    paths: { type: 'string', default: 'tcpipe' },
    workloads: { type: 'string', default: 'bulk1,bulk8,rtt,conn' },
    reps: { type: 'string', default: '3' },
    size: { type: 'string', default: '512' },
    'conn-ms': { type: 'string', default: '2500' },
    /** Run the relays under node --cpu-prof, profiles in this directory. */
    'cpu-prof': { type: 'string' },
  },
  strict: true,
});

/** name=distRoot pairs; the first is the baseline the others are compared with. */
const builds = new Map(
  (values.builds ?? `this=${join(here, '..')}`).split(',').map((pair): [string, string] => {
    const at = pair.indexOf('=');
    return at < 0 ? [pair, resolve(pair)] : [pair.slice(0, at), resolve(pair.slice(at + 1))];
  }),
);
const names = [...builds.keys()];
const paths = (values.paths ?? 'tcpipe').split(',') as PathId[];
const workloads = new Set((values.workloads ?? '').split(','));
const reps = Number(values.reps);
const bytes = Number(values.size) * MiB;
const connMs = Number(values['conn-ms']);
const profileDir = values['cpu-prof'];
const profileFlags = profileDir === undefined ? [] : ['--cpu-prof', `--cpu-prof-dir=${resolve(profileDir)}`];

function ioCounts(roots: readonly number[]): { r: number; w: number } {
  let r = 0;
  let w = 0;
  for (const p of processTree(roots)) {
    try {
      const text = readFileSync(`/proc/${p.pid}/io`, 'utf8');
      r += Number(/syscr: (\d+)/.exec(text)?.[1] ?? 0);
      w += Number(/syscw: (\d+)/.exec(text)?.[1] ?? 0);
    } catch {
      // gone
    }
  }
  return { r, w };
}

function log(line: string): void {
  process.stderr.write(`[ab] ${line}\n`);
}

async function main(): Promise<void> {
  const tmp = mkdtempSync(join(os.tmpdir(), 'tcpipe-ab-'));
  const registry = new ProcessRegistry(tmp);
  process.on('exit', () => registry.killAllSync());
  process.once('SIGINT', () => {
    registry.killAllSync();
    process.exit(130);
  });
  try {
    const options = parseOptions(['--size', String(bytes / MiB), '--no-install', '--no-docs']);
    if (options === 'help') return;
    const secretFile = join(tmp, 'tcpipe.key');
    execFileSync('bash', ['-c', `node ${join(here, '..', 'src', 'cli', 'main.js')} keygen > ${secretFile}; chmod 600 ${secretFile}`]);
    const app = join(here, 'app.js');
    const target = new IpcClient<TargetApi>(registry.spawn('app-target', process.execPath, [app, 'target'], { ipc: true }).proc, 'target');
    const user = new IpcClient<UserApi>(registry.spawn('app-user', process.execPath, [app, 'user'], { ipc: true }).proc, 'user');
    const ctx: WorkloadContext = { user, user2: user, target, options, rep: 0, log };
    const taken = new Set<number>();
    const ports = new Map<string, PathPorts>();
    const runs: { path: PathId; build: string }[] = [];
    for (const path of paths) {
      for (const build of names) {
        const p = { port: await freePortOnAll([ENTRY_HOST, TARGET_HOST], taken), inner: await freePortOnAll([undefined], taken) };
        ports.set(`${path}/${build}`, p);
        await target.call('listen', { host: TARGET_HOST, port: p.port, slowBytesPerSecond: 1_000_000 });
        runs.push({ path, build });
      }
    }
    const samples = new Map<string, number[]>();
    const add = (key: string, v: number): void => {
      if (!Number.isFinite(v)) return;
      const list = samples.get(key) ?? [];
      list.push(v);
      samples.set(key, list);
    };
    for (let rep = 0; rep < reps; rep++) {
      const order = runs.map((_, i) => runs[(i + rep) % runs.length] as (typeof runs)[number]);
      for (const { path, build } of order) {
        const key = `${path}/${build}`;
        const p = ports.get(key);
        if (p === undefined) continue;
        const run: RunningPath = await startPath(path, p, { registry, distRoot: builds.get(build) ?? '', ssh: null, squid: null, secretFile, tcpipeNodeFlags: profileFlags });
        try {
          for (let i = 0; ; i++) {
            try {
              await user.call('probe', run.entry);
              break;
            } catch (err) {
              if (i > 100) throw err;
              await new Promise((r) => setTimeout(r, 100));
            }
          }
          const roots = run.relays.map((c) => c.pid);
          await user.call('rtt', { ...run.entry, streams: 1, durationMs: 200, size: 64, warmup: 10 });
          await bulkOnce(ctx, run, 1, Math.min(bytes, 64 * MiB));
          if (workloads.has('rtt')) {
            const r = await user.call('rtt', { ...run.entry, streams: 1, durationMs: 1000, size: 64, warmup: 10 });
            add(`${path} rtt_p50_us/${build}`, percentile(r.samples, 50));
            add(`${path} rtt_p99_us/${build}`, percentile(r.samples, 99));
          }
          for (const streams of [1, 8]) {
            if (!workloads.has(`bulk${streams}`)) continue;
            const io0 = ioCounts(roots);
            const [e0, x0] = roots.map((r) => ioCounts([r]));
            const res = await bulkOnce(ctx, run, streams, bytes);
            const io1 = ioCounts(roots);
            const [e1, x1] = roots.map((r) => ioCounts([r]));
            if (res.failure !== null) {
              log(`${key} bulk${streams} FAILED ${res.failure}`);
              continue;
            }
            add(`${path} bulk${streams}_gbps/${build}`, res.gbps);
            if (res.cpuPerGiB !== null) add(`${path} bulk${streams}_cpu_s_gib/${build}`, res.cpuPerGiB);
            const g = bytes / GiB;
            if (e0 && e1 && x0 && x1) {
              add(`${path} bulk${streams}_entry_writes_k_gib/${build}`, (e1.w - e0.w) / g / 1000);
              add(`${path} bulk${streams}_exit_writes_k_gib/${build}`, (x1.w - x0.w) / g / 1000);
            }
            void io0;
            void io1;
            log(`${rep + 1} ${key} bulk${streams} ${res.gbps.toFixed(2)} Gbit/s cpu ${res.cpuPerGiB?.toFixed(2)} s/GiB`);
          }
          if (workloads.has('conn')) {
            const cpu0 = cpuSeconds(roots);
            const [e0, x0] = roots.map((r) => ioCounts([r]));
            const c = await user.call('connRate', { ...run.entry, workers: 8, durationMs: connMs });
            const cpu1 = cpuSeconds(roots);
            const [e1, x1] = roots.map((r) => ioCounts([r]));
            await target.call('waitOpen', { open: 0, timeoutMs: 10_000 });
            add(`${path} conn_per_s/${build}`, c.connections / (c.elapsedMs / 1000));
            add(`${path} conn_cpu_us/${build}`, ((cpu1 - cpu0) * 1e6) / Math.max(1, c.connections));
            if (e0 && e1 && x0 && x1) {
              add(`${path} conn_entry_writes/${build}`, (e1.w - e0.w) / Math.max(1, c.connections));
              add(`${path} conn_exit_writes/${build}`, (x1.w - x0.w) / Math.max(1, c.connections));
            }
            log(`${rep + 1} ${key} conn ${(c.connections / (c.elapsedMs / 1000)).toFixed(0)}/s errors ${c.errors}`);
          }
        } finally {
          await run.stop();
        }
      }
    }
    const metrics = [...new Set([...samples.keys()].map((k) => k.slice(0, k.lastIndexOf('/'))))];
    const median = (list: number[] | undefined): number => (list === undefined || list.length === 0 ? Number.NaN : percentile(list, 50));
    const f = (x: number): string => (Math.abs(x) >= 100 ? x.toFixed(0) : x.toFixed(2));
    const others = names.slice(1);
    const lines = [
      `| metric | ${names.join(' | ')} | ${others.map((n) => `${n} ÷ ${names[0] ?? ''}`).join(' | ')} | samples |`,
      `|---|${names.map(() => '---:').join('|')}|${others.map(() => '---:').join('|')}|---|`,
    ];
    for (const m of metrics) {
      const med = names.map((n) => median(samples.get(`${m}/${n}`)));
      const base = med[0] ?? Number.NaN;
      const all = names.map((n) => `${n}: ${(samples.get(`${m}/${n}`) ?? []).map(f).join(' ')}`).join('; ');
      lines.push(`| ${m} | ${med.map(f).join(' | ')} | ${med.slice(1).map((v) => (v / base).toFixed(2)).join(' | ')} | ${all} |`);
    }
    process.stdout.write(`${names.map((n) => `${n} = ${builds.get(n) ?? ''}`).join('\n')}\n${lines.join('\n')}\n`);
  } finally {
    await registry.stopAll();
    rmSync(tmp, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`ab: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exitCode = 1;
});
