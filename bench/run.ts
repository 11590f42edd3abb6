#!/usr/bin/env node
/**
 * The side-by-side benchmark (npm run bench): direct, socat ×2, ssh -L, a bare
 * Node relay ×2, tcpipe and tcpipe with a secret, tcpipe over a WebSocket
 * (with and without a secret) and through squid, every relay as two separate
 * processes (three through squid), the load generator and the sinks in processes of their own.
 * Repetitions are interleaved (each starts the paths in a rotated order) and
 * reported as medians. See docs/BENCHMARKS.md.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ensurePeers } from './deps.js';
import { IpcClient } from './ipc.js';
import type { TargetApi, UserApi } from './messages.js';
import { USAGE, parseOptions, type BenchOptions } from './options.js';
import { pathStatus, writeOutputs, type Machine, type PathStatus } from './output.js';
import { planFor } from './plan.js';
import {
  ENTRY_HOST,
  PATH_LABELS,
  TARGET_HOST,
  freePortOnAll,
  isTcpipePath,
  startPath,
  type PathEnv,
  type PathId,
  type PathPorts,
  type RunningPath,
  type TcpipePathId,
} from './paths.js';
import { ProcessRegistry, cpuSeconds, hostBusySeconds, isRunning, logTail, setClockTicks } from './procs.js';
import type { Samples } from './report.js';
import { prepareSquid } from './squid.js';
import { prepareSsh } from './sshd.js';
import { summariseFile } from './profile-summary.js';
import { bulkOnce, runGroup, type Group, type Sample, type WorkloadContext } from './workloads.js';

const distRoot = join(dirname(fileURLToPath(import.meta.url)), '..');
const repoRoot = join(distRoot, '..');
const startedAt = Date.now();

function log(line: string): void {
  process.stderr.write(`[bench ${((Date.now() - startedAt) / 1000).toFixed(1).padStart(6)}s] ${line}\n`);
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

async function waitReady(user: IpcClient<UserApi>, run: RunningPath, timeoutMs = 20_000): Promise<void> {
  const start = Date.now();
  const deadline = start + timeoutMs;
  let last = '';
  for (let attempt = 1; ; attempt++) {
    for (const c of run.relays) {
      if (!isRunning(c)) throw new Error(`${c.name} exited:\n${logTail(c)}`);
    }
    try {
      await user.call('probe', run.entry);
      log(`${PATH_LABELS[run.id]} ready after ${Date.now() - start} ms (${attempt} probe${attempt > 1 ? 's' : ''})`);
      return;
    } catch (err) {
      last = err instanceof Error ? err.message : String(err);
    }
    if (Date.now() > deadline) throw new Error(`${run.id} not ready after ${timeoutMs} ms: ${last}`);
    await sleep(100);
  }
}

function machine(socat: string | null, ssh: string | null, squid: string | null): Machine {
  const pkg = JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8')) as { version?: string };
  let limit = '?';
  try {
    limit = execFileSync('bash', ['-c', 'ulimit -n 200000 2>/dev/null || ulimit -n "$(ulimit -Hn)"; ulimit -n'], { encoding: 'utf8' }).trim();
  } catch {
    // keep '?'
  }
  let commit = '?';
  try {
    commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: repoRoot, encoding: 'utf8' }).trim();
    if (execFileSync('git', ['status', '--porcelain', '--', 'src'], { cwd: repoRoot, encoding: 'utf8' }).trim() !== '') commit += '+dirty';
  } catch {
    // not a git checkout
  }
  return {
    commit,
    nproc: os.availableParallelism(),
    model: os.cpus()[0]?.model.trim() ?? '?',
    kernel: os.release(),
    node: process.version,
    tcpipe: pkg.version ?? '?',
    socat,
    ssh,
    squid,
    openFilesLimit: limit,
    loadAverageAtStart: os.loadavg(),
  };
}

function record(samples: Samples, id: PathId, values: Map<string, number>): void {
  const row = (samples[id] ??= {});
  for (const [key, value] of values) {
    if (!Number.isFinite(value)) continue;
    (row[key] ??= []).push(value);
  }
}

async function benchmark(
  o: BenchOptions,
  active: readonly PathId[],
  statuses: Map<PathId, PathStatus>,
  env: PathEnv,
  ports: ReadonlyMap<PathId, PathPorts>,
  ctx: WorkloadContext,
  foreignCpu: number[],
): Promise<Samples> {
  const samples: Samples = {};
  const groups: Group[][] = o.restartPerGroup ? o.groups.map((g) => [g]) : [[...o.groups]];
  for (let rep = 0; rep < o.reps; rep++) {
    for (const list of groups) {
      // Interleaved: each repetition starts the paths in a rotated order.
      const order = active.map((_, i) => active[(i + rep) % active.length] as PathId);
      for (const id of order) {
        const plan = planFor(id, o);
        const wanted = list.filter((g) => plan.groups.includes(g));
        const pathPorts = ports.get(id);
        if (wanted.length === 0 || pathPorts === undefined) continue;
        const label = `[${rep + 1}/${o.reps}] ${PATH_LABELS[id]}`;
        let run: RunningPath | null = null;
        const sample: Sample = { values: new Map(), notes: [] };
        const before = { at: Date.now(), host: hostBusySeconds(), bench: cpuSeconds([process.pid]) };
        try {
          run = await startPath(id, pathPorts, env);
          await waitReady(ctx.user, run);
          for (const group of wanted) await runGroup(group, { ...ctx, rep, log: (line) => log(`${label} ${line}`) }, run, sample, plan.perf);
        } catch (err) {
          const message = err instanceof Error ? err.message : String(err);
          log(`${label} ${wanted.join('+')} FAILED: ${message}`);
          statuses.get(id)?.errors.push(`repetition ${rep + 1}, ${wanted.join('+')}: ${message.split('\n')[0] ?? ''}`);
          for (const c of run?.relays ?? []) log(`${c.name} log:\n${logTail(c)}`);
        } finally {
          // Host CPU not used by the bench or its children, as a share of the machine.
          const seconds = (Date.now() - before.at) / 1000;
          const other = hostBusySeconds() - before.host - (cpuSeconds([process.pid]) - before.bench);
          foreignCpu.push(Math.max(0, other / (seconds * os.availableParallelism())));
          record(samples, id, sample.values);
          for (const text of sample.notes) statuses.get(id)?.notes.push(`repetition ${rep + 1}: ${text}`);
          await run?.stop();
        }
      }
    }
  }
  return samples;
}

async function profile(id: TcpipePathId, dir: string, o: BenchOptions, env: PathEnv, ports: PathPorts, ctx: WorkloadContext): Promise<void> {
  mkdirSync(dir, { recursive: true });
  const before = new Set(readdirSync(dir));
  const run = await startPath(id, ports, { ...env, tcpipeNodeFlags: ['--cpu-prof', `--cpu-prof-dir=${dir}`] });
  const roles = new Map(run.relays.map((c) => [String(c.pid), c.name]));
  try {
    await waitReady(ctx.user, run);
    if (o.profileWorkload === 'conn') {
      const conn = await ctx.user.call('connRate', { ...run.entry, workers: o.connWorkers, durationMs: 5000 });
      log(`profiled ${PATH_LABELS[id]} connections: ${Math.round(conn.connections / (conn.elapsedMs / 1000))}/s, ${conn.errors} errors`);
    } else {
      await bulkOnce(ctx, run, 1, Math.min(o.bulkBytes, 64 * 1024 * 1024));
      const r = await bulkOnce(ctx, run, 1, o.bulkBytes);
      if (r.failure !== null) throw new Error(r.failure);
      log(`profiled ${PATH_LABELS[id]} bulk, 1 stream, ${(o.bulkBytes / 1048576).toLocaleString('en-US')} MiB: ${r.gbps.toFixed(2)} Gbit/s, relay CPU ${(r.cpuPerGiB ?? 0).toFixed(2)} s/GiB`);
    }
  } finally {
    await run.stop();
  }
  await sleep(500);
  const files = readdirSync(dir).filter((f) => f.endsWith('.cpuprofile') && !before.has(f));
  for (const f of files) {
    const role = roles.get(f.split('.')[3] ?? '') ?? 'unknown process';
    process.stdout.write(`${summariseFile(join(dir, f), `${role} (${join(dir, f)})`)}\n\n`);
  }
  if (files.length === 0) log(`no .cpuprofile written in ${dir}`);
}

async function main(argv: readonly string[]): Promise<number> {
  let o: BenchOptions | 'help';
  try {
    o = parseOptions(argv);
  } catch (err) {
    process.stderr.write(`bench: ${err instanceof Error ? err.message : String(err)}\n${USAGE}\n`);
    return 2;
  }
  if (o === 'help') {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  const options = o;
  const tmp = mkdtempSync(join(os.tmpdir(), 'tcpipe-bench-'));
  const registry = new ProcessRegistry(tmp);
  let keepTmp = false;
  const atExit = (): void => registry.killAllSync();
  process.on('exit', atExit);
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      log(`${signal}: stopping every process the bench started`);
      void registry.stopAll().finally(() => {
        rmSync(tmp, { recursive: true, force: true });
        process.exit(signal === 'SIGINT' ? 130 : 143);
      });
    });
  }
  try {
    try {
      setClockTicks(Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()));
    } catch {
      // 100, the Linux default
    }
    const wants = (id: PathId): boolean => options.paths.includes(id);
    const peers = ensurePeers(options.install, log, { socat: wants('socat'), ssh: wants('ssh'), squid: wants('tcpipe-squid') });
    const statuses = new Map<PathId, PathStatus>();
    for (const id of options.paths) {
      const peer = id === 'socat' ? 'socat' : id === 'ssh' ? 'ssh' : id === 'tcpipe-squid' ? 'squid' : null;
      const missing = peer === null ? undefined : peers.missing[peer];
      statuses.set(id, pathStatus(id, missing ?? null));
      if (missing !== undefined) log(`skipping ${PATH_LABELS[id]}: ${missing}`);
    }
    const active = options.paths.filter((id) => statuses.get(id)?.skipped === null);
    const taken = new Set<number>();
    const ports = new Map<PathId, PathPorts>();
    for (const id of active) {
      const port = await freePortOnAll([ENTRY_HOST, TARGET_HOST], taken);
      const inner = await freePortOnAll([undefined], taken);
      ports.set(id, id === 'tcpipe-squid' ? { port, inner, proxy: await freePortOnAll(['127.0.0.1'], taken) } : { port, inner });
    }
    const cli = join(distRoot, 'src', 'cli', 'main.js');
    const secretFile = join(tmp, 'tcpipe.key');
    writeFileSync(secretFile, execFileSync(process.execPath, [cli, 'keygen'], { encoding: 'utf8' }), { mode: 0o600 });
    const sshPorts = ports.get('ssh');
    const ssh = sshPorts === undefined ? null : prepareSsh(tmp, '127.0.0.1', sshPorts.inner);
    const squidPort = ports.get('tcpipe-squid')?.proxy;
    const squid = squidPort === undefined ? null : prepareSquid(tmp, squidPort);
    const env: PathEnv = { registry, distRoot, ssh, squid, secretFile, tcpipeNodeFlags: [] };

    const app = join(distRoot, 'bench', 'app.js');
    const target = new IpcClient<TargetApi>(registry.spawn('app-target', process.execPath, [app, 'target'], { ipc: true }).proc, 'target app');
    const user = new IpcClient<UserApi>(registry.spawn('app-user', process.execPath, [app, 'user'], { ipc: true }).proc, 'user app');
    const user2 = new IpcClient<UserApi>(registry.spawn('app-user-2', process.execPath, [app, 'user'], { ipc: true }).proc, 'second user app');
    for (const id of active) {
      const p = ports.get(id);
      if (p !== undefined) await target.call('listen', { host: TARGET_HOST, port: p.port, slowBytesPerSecond: options.slowRate });
    }
    const ctx: WorkloadContext = { user, user2, target, options, rep: 0, log };

    if (options.profileDir !== null) {
      // The first tcpipe path that --paths names (the plaintext one by default).
      const id = active.find(isTcpipePath);
      const p = id === undefined ? undefined : ports.get(id);
      if (id === undefined || p === undefined) throw new Error('--profile needs one of the tcpipe paths');
      await profile(id, options.profileDir, options, env, p, ctx);
      return 0;
    }
    const m = machine(peers.socat, peers.ssh, peers.squid);
    log(`${options.mode} run: ${active.map((id) => PATH_LABELS[id]).join(', ')}; ${options.reps} repetition(s); logs in ${tmp}`);
    const foreignCpu: number[] = [];
    const samples = await benchmark(options, active, statuses, env, ports, ctx, foreignCpu);
    const { markdown } = writeOutputs(
      {
        startedAt: new Date(startedAt).toISOString(),
        seconds: (Date.now() - startedAt) / 1000,
        options,
        machine: m,
        paths: [...statuses.values()],
        samples,
        foreignCpu,
      },
      repoRoot,
    );
    process.stdout.write(`${markdown}\n`);
    log(`JSON: ${options.out}; chart: ${options.svg}${options.docs ? '; docs/BENCHMARKS.md updated' : ''}`);
    const failures = [...statuses.values()].filter((s) => s.errors.length > 0);
    keepTmp = failures.length > 0;
    if (keepTmp) log(`some runs failed; relay logs kept in ${tmp}`);
    return failures.length > 0 ? 1 : 0;
  } catch (err) {
    keepTmp = true;
    log(`failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)} (logs in ${tmp})`);
    return 1;
  } finally {
    await registry.stopAll();
    if (!keepTmp) rmSync(tmp, { recursive: true, force: true });
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`bench: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  },
);
