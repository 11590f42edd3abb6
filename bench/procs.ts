/**
 * Child processes of the bench, and what /proc says about them.
 *
 * Every child is spawned through `bash -c 'ulimit -n ...; exec ...'` (so its
 * file descriptor limit is raised as far as the hard limit lets it), in its
 * own process group, with its output in a log file. The registry kills every
 * child and its descendants on stop, on SIGINT/SIGTERM and at exit.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';

/** Raise the open files limit as far as allowed, then become the command. */
const ULIMIT = 'ulimit -n 200000 2>/dev/null || ulimit -n "$(ulimit -Hn)"; exec "$0" "$@"';

export interface Child {
  readonly name: string;
  readonly proc: ChildProcess;
  readonly pid: number;
  readonly logPath: string;
}

export class ProcessRegistry {
  private readonly children = new Set<Child>();

  constructor(private readonly logDir: string) {}

  spawn(name: string, command: string, args: readonly string[], options: { ipc?: boolean; env?: NodeJS.ProcessEnv } = {}): Child {
    const logPath = join(this.logDir, `${name}.log`);
    const fd = openSync(logPath, 'a');
    const stdio: ('ignore' | 'ipc' | number)[] = ['ignore', fd, fd];
    if (options.ipc === true) stdio.push('ipc');
    let proc: ChildProcess;
    try {
      proc = spawn('bash', ['-c', ULIMIT, command, ...args], { detached: true, stdio, env: options.env ?? process.env });
    } finally {
      closeSync(fd);
    }
    const pid = proc.pid;
    if (pid === undefined) throw new Error(`cannot start ${name} (${command})`);
    const child: Child = { name, proc, pid, logPath };
    this.children.add(child);
    proc.on('error', () => undefined);
    proc.on('exit', () => this.children.delete(child));
    return child;
  }

  /** SIGTERM to the child, its process group and every descendant; SIGKILL after `graceMs`. */
  async stop(child: Child, graceMs = 3000): Promise<void> {
    const family = descendants([child.pid]);
    signalAll(child.pid, family, 'SIGTERM');
    if (isRunning(child)) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, graceMs);
        child.proc.once('exit', () => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
    // Whatever is left (a fork that ignored SIGTERM, a child of a child): SIGKILL.
    signalAll(child.pid, family.filter((pid) => readStat(pid) !== null), 'SIGKILL');
    this.children.delete(child);
  }

  async stopAll(): Promise<void> {
    await Promise.all([...this.children].map((c) => this.stop(c, 2000)));
  }

  /** At exit: no time left to be polite. */
  killAllSync(): void {
    for (const child of this.children) signalAll(child.pid, descendants([child.pid]), 'SIGKILL');
    this.children.clear();
  }
}

export function isRunning(child: Child): boolean {
  return child.proc.exitCode === null && child.proc.signalCode === null;
}

export function logTail(child: Child, lines = 15): string {
  try {
    return readFileSync(child.logPath, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '';
  }
}

/** Polls the child's log until `pattern` shows (a start-up line); false after `timeoutMs` or if it exits. */
export async function waitForLog(child: Child, pattern: RegExp, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline && isRunning(child)) {
    try {
      if (pattern.test(readFileSync(child.logPath, 'utf8'))) return true;
    } catch {
      // not written yet
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return false;
}

function signalAll(leader: number, pids: readonly number[], signal: NodeJS.Signals): void {
  const send = (pid: number): void => {
    try {
      process.kill(pid, signal);
    } catch {
      // already gone
    }
  };
  send(-leader);
  for (const pid of pids) send(pid);
}

// ---- /proc ---------------------------------------------------------------

export interface ProcStat {
  readonly pid: number;
  readonly ppid: number;
  /** utime + stime + cutime + cstime, in clock ticks: reaped children count in their parent. */
  readonly ticks: number;
}

export function readStat(pid: number): ProcStat | null {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return null;
  }
  // Fields after "(comm) ": the name may hold spaces and parentheses.
  const f = text.slice(text.lastIndexOf(')') + 2).split(' ');
  const field = (n: number): number => Number(f[n - 3] ?? 0);
  return { pid, ppid: field(4), ticks: field(14) + field(15) + field(16) + field(17) };
}

function allStats(): ProcStat[] {
  const out: ProcStat[] = [];
  for (const name of readdirSync('/proc')) {
    const c = name.charCodeAt(0);
    if (c < 48 || c > 57) continue;
    const stat = readStat(Number(name));
    if (stat !== null) out.push(stat);
  }
  return out;
}

/** The roots and every process below them. */
export function processTree(roots: readonly number[], stats: readonly ProcStat[] = allStats()): ProcStat[] {
  const byParent = new Map<number, ProcStat[]>();
  const byPid = new Map<number, ProcStat>();
  for (const s of stats) {
    byPid.set(s.pid, s);
    const list = byParent.get(s.ppid);
    if (list === undefined) byParent.set(s.ppid, [s]);
    else list.push(s);
  }
  const out: ProcStat[] = [];
  const queue = roots.map((pid) => byPid.get(pid)).filter((s): s is ProcStat => s !== undefined);
  for (let i = 0; i < queue.length; i++) {
    const s = queue[i] as ProcStat;
    out.push(s);
    for (const child of byParent.get(s.pid) ?? []) queue.push(child);
  }
  return out;
}

function descendants(roots: readonly number[]): number[] {
  const rootSet = new Set(roots);
  return processTree(roots)
    .map((s) => s.pid)
    .filter((pid) => !rootSet.has(pid));
}

let clockTicks = 100;
/** Reads CLK_TCK once (getconf); /proc/<pid>/stat counts CPU time in these ticks. */
export function setClockTicks(ticks: number): void {
  if (Number.isFinite(ticks) && ticks > 0) clockTicks = ticks;
}

/** CPU seconds used so far by the roots and their descendants (live and reaped). */
export function cpuSeconds(roots: readonly number[]): number {
  let ticks = 0;
  for (const s of processTree(roots)) ticks += s.ticks;
  return ticks / clockTicks;
}

/** CPU seconds the whole host has been busy (all cores: /proc/stat minus idle and iowait). */
export function hostBusySeconds(): number {
  const line = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0] ?? '';
  const [user = 0, nice = 0, system = 0, , , irq = 0, softirq = 0, steal = 0] = line.trim().split(/\s+/).slice(1).map(Number);
  return (user + nice + system + irq + softirq + steal) / clockTicks;
}

export interface Memory {
  /** Sum of RSS over the processes, KiB (shared pages counted in each). */
  readonly rssKiB: number;
  /** Sum of PSS, KiB (shared pages divided among their users). */
  readonly pssKiB: number;
  readonly processes: number;
}

export function memory(roots: readonly number[]): Memory {
  const { sums, processes } = sumKiB(roots, 'smaps_rollup', ['Rss', 'Pss']);
  return { rssKiB: sums[0] ?? 0, pssKiB: sums[1] ?? 0, processes };
}

/**
 * Sums the kB `fields` of /proc/<pid>/<file> over the processes of `roots`
 * and their descendants. A process that has exited meanwhile (or a zombie),
 * lacks a field, or fails `keep` is left out.
 */
export function sumKiB(roots: readonly number[], file: string, fields: readonly string[], keep: (text: string) => boolean = () => true): { sums: number[]; processes: number } {
  const sums = fields.map(() => 0);
  let processes = 0;
  for (const s of processTree(roots)) {
    let text: string;
    try {
      text = readFileSync(`/proc/${s.pid}/${file}`, 'utf8');
    } catch {
      continue;
    }
    const values = fields.map((f) => new RegExp(`^${f}:\\s+(\\d+) kB`, 'm').exec(text)?.[1]);
    if (values.some((v) => v === undefined) || !keep(text)) continue;
    values.forEach((v, i) => (sums[i] = (sums[i] ?? 0) + Number(v)));
    processes++;
  }
  return { sums, processes };
}
