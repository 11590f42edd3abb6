/**
 * CPU used by other work on the host while the WAN bench measures: user-space
 * processes outside the bench's own process tree, sampled every half second
 * (utime + stime of each live process, a new one counted from zero). Kernel
 * threads, which also carry the bench's own packets, are left out, and so is
 * the CPU of reaped children (cutime): an orphan reaped by init would
 * otherwise land its whole life's CPU in one sample. A process that lives
 * less than half a second between two samples is missed: the figure is a
 * lower bound. On a shared 2-core machine it says which rows another job
 * disturbed.
 */
import { readFileSync, readdirSync } from 'node:fs';
import { processTree } from '../procs.js';

/** Linux's USER_HZ (CLK_TCK) on every architecture the bench runs on. */
const TICKS_PER_SECOND = 100;
const SAMPLE_MS = 500;

/** utime + stime of every user-space process outside the bench, by pid. */
function sample(): Map<number, number> {
  const mine = new Set(processTree([process.pid]).map((s) => s.pid));
  const out = new Map<number, number>();
  for (const name of readdirSync('/proc')) {
    const c = name.charCodeAt(0);
    if (c < 48 || c > 57) continue;
    const pid = Number(name);
    if (mine.has(pid)) continue;
    let text: string;
    try {
      text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    } catch {
      continue;
    }
    // Fields after "(comm) ": state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime ...
    const f = text.slice(text.lastIndexOf(')') + 2).split(' ');
    const ppid = Number(f[1] ?? 0);
    const flags = Number(f[6] ?? 0);
    // PF_KTHREAD (0x00200000), or a child of kthreadd.
    if ((flags & 0x00200000) !== 0 || ppid === 2 || pid === 2) continue;
    out.set(pid, Number(f[11] ?? 0) + Number(f[12] ?? 0));
  }
  return out;
}

export class OtherWork {
  private last = sample();
  private ticks = 0;
  private readonly startedAt = Date.now();
  private readonly timer: NodeJS.Timeout;

  constructor() {
    this.timer = setInterval(() => this.take(), SAMPLE_MS);
    this.timer.unref();
  }

  private take(): void {
    const now = sample();
    for (const [pid, t] of now) this.ticks += Math.max(0, t - (this.last.get(pid) ?? 0));
    this.last = now;
  }

  /** Stops sampling; returns the cores' worth of CPU other processes used since the start. */
  stop(): number {
    clearInterval(this.timer);
    this.take();
    const seconds = (Date.now() - this.startedAt) / 1000;
    return seconds > 0 ? this.ticks / TICKS_PER_SECOND / seconds : 0;
  }
}

/** Waits (up to `maxMs`) until other work uses less than `cores` over one second; returns the last reading. */
export async function waitQuiet(cores: number, maxMs: number, log: (line: string) => void): Promise<number> {
  const deadline = Date.now() + maxMs;
  let logged = false;
  for (;;) {
    const meter = new OtherWork();
    await new Promise((resolve) => setTimeout(resolve, 1000));
    const used = meter.stop();
    if (used < cores || Date.now() >= deadline) {
      if (logged || used >= cores) log(`  other work on the host: ${used.toFixed(2)} cores${used >= cores ? ' (still busy, measuring anyway)' : ''}`);
      return used;
    }
    if (!logged) log(`  other work on the host uses ${used.toFixed(2)} cores: waiting up to ${Math.round(maxMs / 1000)} s for it to calm down`);
    logged = true;
  }
}
