/**
 * Processes: readings from /proc (descriptors, resident memory), this
 * process's retained buffers, descriptor limits for children, and a bounded
 * stop.
 */
import { spawnSync, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import v8 from 'node:v8';
import vm from 'node:vm';
import { eventWithin } from './wait.js';

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

/** Open descriptors of `pid`. */
export function openFds(pid: number): number {
  return readdirSync(`/proc/${pid}/fd`).length;
}

export interface ProcStats {
  readonly fds: number;
  /** Bytes (NaN when the process is gone). */
  readonly rss: number;
}

/** Open descriptors and resident memory of `pid`, from /proc. */
export function procStats(pid: number): ProcStats {
  return { fds: openFds(pid), rss: (rssKiB(pid) ?? Number.NaN) * 1024 };
}

let gcFunction: (() => void) | null = null;

/**
 * Bytes held in ArrayBuffers (every Buffer) of this process after a full
 * garbage collection: what is really retained, not garbage waiting to be collected.
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

function exited(child: ChildProcess): boolean {
  return child.exitCode !== null || child.signalCode !== null;
}

/** Waits (bounded) for a child to exit; resolves false on timeout. */
export function waitExit(child: ChildProcess, timeoutMs: number): Promise<boolean> {
  return exited(child) ? Promise.resolve(true) : eventWithin(child, 'exit', timeoutMs);
}

/** SIGTERM (or `signal`), then SIGKILL if the process is still there after `graceMs`. */
export async function stopProcess(child: ChildProcess, graceMs = 3000, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  if (exited(child)) return;
  child.kill(signal);
  if (await waitExit(child, graceMs)) return;
  child.kill('SIGKILL');
  if (!(await waitExit(child, 3000))) throw new Error(`process ${String(child.pid)} did not exit after SIGKILL`);
}
