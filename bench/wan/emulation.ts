/**
 * The emulated wide-area path of the WAN bench: two network namespaces joined
 * by a veth pair, each direction shaped by a tbf qdisc on its sender's veth,
 * and delayed by RTT/2 (and optionally dropped at random) on arrival by
 * bench/wan/delay.c, which holds the packets an iptables NFQUEUE rule hands it.
 *
 *   ns A (entry side, load generator)              ns B (exit side, sinks)
 *   10.233.0.1 ─ tbf 1 Gbit/s ─▶ veth ══════════▶ veth ─▶ NFQUEUE: held RTT/2 ─▶ B's stack
 *   A's stack ◀─ held RTT/2 :NFQUEUE ◀─ veth ◀══════════ veth ◀─ tbf 1 Gbit/s ─ 10.233.0.2
 *
 * The delay sits on the receiving side (raw PREROUTING) on purpose: a packet
 * held on the sender's side would still be charged to the sending socket, and
 * TCP small queues would throttle the sender to a few MB per delay.
 *
 * Everything lives inside the two namespaces (rules, qdiscs, the veth pair),
 * so deleting them removes it all; `cleanupSync` does that even from an exit
 * or signal handler.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { pollUntil } from '../../test/helpers/wait.js';
import { waitForLog, type Child, type ProcessRegistry } from '../procs.js';

export interface Profile {
  /** Short name used in the JSON and the tables: rtt20, rtt50, rtt200, rtt50-loss. */
  readonly id: string;
  readonly label: string;
  readonly rttMs: number;
  /** Per-packet loss in each direction, percent. */
  readonly lossPct: number;
  readonly rateMbit: number;
}

export const PROFILES: readonly Profile[] = [
  { id: 'rtt20', label: '20 ms', rttMs: 20, lossPct: 0, rateMbit: 1000 },
  { id: 'rtt50', label: '50 ms', rttMs: 50, lossPct: 0, rateMbit: 1000 },
  { id: 'rtt200', label: '200 ms', rttMs: 200, lossPct: 0, rateMbit: 1000 },
  { id: 'rtt50-loss', label: '50 ms, 0.5% loss', rttMs: 50, lossPct: 0.5, rateMbit: 1000 },
];

export const ADDR_A = '10.233.0.1';
export const ADDR_B = '10.233.0.2';

/** Socket buffer maxima inside both namespaces: 64 MiB, above the 25 MB of a 1 Gbit/s × 200 ms path. */
export const TCP_RMEM = '4096 131072 67108864';
export const TCP_WMEM = '4096 16384 67108864';
/** The bottleneck queue of each direction (tbf limit): about 33 ms at 1 Gbit/s. */
export const TBF_LIMIT_BYTES = 4 * 1024 * 1024;
/** tbf bucket: above the largest GSO packet (64 KiB), so that tbf never splits one. */
export const TBF_BURST_BYTES = 128 * 1024;
/** Packets the kernel may hold for one helper: far above 1 Gbit/s × 100 ms of wire-sized packets (8,300). */
export const QUEUE_MAXLEN = 1 << 20;

/** Counters printed by the delay helper (bench/wan/delay.c). */
export interface DelayStats {
  readonly packets: number;
  readonly bytes: number;
  readonly lost: number;
  readonly overflow: number;
  readonly verdicts: number;
  readonly held: number;
  readonly maxHeld: number;
  readonly maxHeldBytes: number;
  readonly lateMeanUs: number;
  readonly lateMaxUs: number;
  readonly lateOver1ms: number;
  readonly lateOver5ms: number;
  readonly cpuSeconds: number;
}

/** The kernel's view of one NFQUEUE (/proc/net/netfilter/nfnetlink_queue inside the namespace). */
export interface QueueCounters {
  readonly queued: number;
  /** Packets dropped because the queue was full. */
  readonly queueDropped: number;
  /** Packets dropped because the helper's socket buffer was full. */
  readonly userDropped: number;
  readonly idSequence: number;
}

export interface Side {
  readonly name: 'a' | 'b';
  readonly ns: string;
  readonly veth: string;
  readonly addr: string;
  helper: Child | null;
}

const created = new Set<string>();
const sh = (cmd: string, args: readonly string[], timeoutMs = 10_000): string =>
  execFileSync(cmd, args, { encoding: 'utf8', timeout: timeoutMs, stdio: ['ignore', 'pipe', 'pipe'] });
const inNs = (ns: string, cmd: string, args: readonly string[], timeoutMs?: number): string =>
  sh('ip', ['netns', 'exec', ns, cmd, ...args], timeoutMs);

const NS_PREFIX = 'tpwan';

/** Names of this process's namespaces: tpwan<pid base 36>-<profile>-a|b. */
function nsName(profile: Profile, side: 'a' | 'b'): string {
  return `${NS_PREFIX}${process.pid.toString(36)}-${profile.id}-${side}`;
}

function pidsIn(ns: string): number[] {
  const r = spawnSync('ip', ['netns', 'pids', ns], { encoding: 'utf8' });
  return (r.stdout ?? '')
    .split(/\s+/)
    .filter((s) => /^\d+$/.test(s))
    .map(Number);
}

function deleteNamespace(ns: string): void {
  for (const pid of pidsIn(ns)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone
    }
  }
  // A process killed a moment ago may still hold the namespace: try a few times.
  for (let i = 0; i < 20; i++) {
    if (spawnSync('ip', ['netns', 'del', ns], { stdio: 'ignore' }).status === 0) break;
    if (!spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' }).stdout.split('\n').some((l) => l.split(' ')[0] === ns)) break;
    spawnSync('sleep', ['0.05']);
  }
  created.delete(ns);
}

/** Kills everything in this process's namespaces and deletes them (synchronous: safe in exit and signal handlers). */
export function cleanupSync(): void {
  for (const ns of [...created]) deleteNamespace(ns);
}

/** Deletes namespaces left by an earlier run that was killed (its pid no longer exists). */
export function sweepStale(log: (line: string) => void): void {
  const list = spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' }).stdout ?? '';
  for (const line of list.split('\n')) {
    const ns = line.split(' ')[0] ?? '';
    const m = new RegExp(`^${NS_PREFIX}([0-9a-z]+)-`).exec(ns);
    const pid36 = m?.[1];
    if (pid36 === undefined) continue;
    const pid = parseInt(pid36, 36);
    if (pid === process.pid) continue;
    let alive = true;
    try {
      process.kill(pid, 0);
    } catch (err) {
      alive = (err as NodeJS.ErrnoException).code === 'EPERM';
    }
    if (alive) continue;
    log(`removing namespace ${ns} left by an earlier run (pid ${pid})`);
    deleteNamespace(ns);
  }
}

export interface EmulatedLink {
  readonly profile: Profile;
  readonly a: Side;
  readonly b: Side;
  /** Counters of both helpers (SIGUSR1, then their latest JSON line). */
  helperStats(): Promise<{ a: DelayStats | null; b: DelayStats | null }>;
  queueCounters(): { a: QueueCounters | null; b: QueueCounters | null };
  /** `tc -s qdisc` of both veths: the shaper's sent bytes, drops and overlimits. */
  qdiscStats(): { a: string; b: string };
  destroy(): Promise<void>;
}

export interface BuildOptions {
  readonly registry: ProcessRegistry;
  readonly delayBinary: string;
  /** SCHED_FIFO for the delay helpers: they are the network and should not wait for a time slice. */
  readonly realtime: boolean;
  /** Extra `key=value` sysctls for both namespaces. */
  readonly sysctls: readonly string[];
  readonly log: (line: string) => void;
}

function lastStats(child: Child): DelayStats | null {
  let text = '';
  try {
    text = readFileSync(child.logPath, 'utf8');
  } catch {
    return null;
  }
  const lines = text.split('\n').filter((l) => l.startsWith('{'));
  const last = lines[lines.length - 1];
  if (last === undefined) return null;
  try {
    return JSON.parse(last) as DelayStats;
  } catch {
    return null;
  }
}

function readQueue(ns: string): QueueCounters | null {
  let text = '';
  try {
    text = inNs(ns, 'cat', ['/proc/net/netfilter/nfnetlink_queue']);
  } catch {
    return null;
  }
  // queue_num portid queue_total copy_mode copy_range queue_dropped user_dropped id_sequence 1
  const f = text.trim().split('\n')[0]?.trim().split(/\s+/).map(Number);
  if (f === undefined || f.length < 8) return null;
  return { queued: f[2] ?? 0, queueDropped: f[5] ?? 0, userDropped: f[6] ?? 0, idSequence: f[7] ?? 0 };
}

export async function buildLink(profile: Profile, o: BuildOptions): Promise<EmulatedLink> {
  const tag = process.pid.toString(36);
  const a: Side = { name: 'a', ns: nsName(profile, 'a'), veth: `wan${tag}a`.slice(0, 15), addr: ADDR_A, helper: null };
  const b: Side = { name: 'b', ns: nsName(profile, 'b'), veth: `wan${tag}b`.slice(0, 15), addr: ADDR_B, helper: null };
  const destroy = async (): Promise<void> => {
    for (const side of [a, b]) {
      if (side.helper !== null) await o.registry.stop(side.helper, 2000);
      side.helper = null;
    }
    for (const side of [a, b]) deleteNamespace(side.ns);
  };
  try {
    for (const side of [a, b]) {
      created.add(side.ns);
      sh('ip', ['netns', 'add', side.ns]);
      sh('ip', ['-n', side.ns, 'link', 'set', 'lo', 'up']);
      // Listening ports of the bench stay below the ephemeral range.
      inNs(side.ns, 'sysctl', ['-q', '-w', 'net.ipv4.ip_local_port_range=20000 60999']);
      inNs(side.ns, 'sysctl', ['-q', '-w', `net.ipv4.tcp_rmem=${TCP_RMEM}`]);
      inNs(side.ns, 'sysctl', ['-q', '-w', `net.ipv4.tcp_wmem=${TCP_WMEM}`]);
      for (const kv of o.sysctls) inNs(side.ns, 'sysctl', ['-q', '-w', kv]);
    }
    sh('ip', ['link', 'add', a.veth, 'netns', a.ns, 'type', 'veth', 'peer', 'name', b.veth, 'netns', b.ns]);
    for (const side of [a, b]) {
      sh('ip', ['-n', side.ns, 'addr', 'add', `${side.addr}/24`, 'dev', side.veth]);
      sh('ip', ['-n', side.ns, 'link', 'set', side.veth, 'up']);
      // Egress shaping: the bottleneck of this direction.
      sh('tc', [
        '-n', side.ns, 'qdisc', 'add', 'dev', side.veth, 'root', 'tbf',
        'rate', `${profile.rateMbit}mbit`, 'burst', String(TBF_BURST_BYTES), 'limit', String(TBF_LIMIT_BYTES),
      ]);
      // Ingress delay: every packet that arrives on the veth goes through the helper.
      inNs(side.ns, 'iptables', ['-t', 'raw', '-A', 'PREROUTING', '-i', side.veth, '-j', 'NFQUEUE', '--queue-num', '0']);
    }
    const halfUs = Math.round((profile.rttMs * 1000) / 2);
    const lossPpm = Math.round(profile.lossPct * 10_000);
    for (const side of [a, b]) {
      const args = ['-q', '0', '-d', String(halfUs), '-m', String(QUEUE_MAXLEN), '-s', String(side.name === 'a' ? 0x5eed_a : 0x5eed_b)];
      // Loss is per wire-sized packet: then the kernel must split GSO trains before queueing.
      if (lossPpm > 0) args.push('-l', String(lossPpm));
      else args.push('-g');
      const command = o.realtime ? ['chrt', '-f', '50', o.delayBinary, ...args] : [o.delayBinary, ...args];
      side.helper = o.registry.spawn(`delay-${profile.id}-${side.name}`, 'ip', ['netns', 'exec', side.ns, ...command]);
      if (!(await waitForLog(side.helper, /^ready /m, 5000))) {
        throw new Error(`the delay helper did not start in ${side.ns}: ${readFileSync(side.helper.logPath, 'utf8').trim()}`);
      }
    }
  } catch (err) {
    await destroy();
    throw err;
  }
  return {
    profile,
    a,
    b,
    helperStats: async () => {
      for (const side of [a, b]) {
        if (side.helper !== null) {
          try {
            process.kill(side.helper.pid, 'SIGUSR1');
          } catch {
            // gone
          }
        }
      }
      await new Promise((resolve) => setTimeout(resolve, 150));
      return {
        a: a.helper === null ? null : lastStats(a.helper),
        b: b.helper === null ? null : lastStats(b.helper),
      };
    },
    queueCounters: () => ({ a: readQueue(a.ns), b: readQueue(b.ns) }),
    qdiscStats: () => ({
      a: sh('tc', ['-n', a.ns, '-s', 'qdisc', 'show', 'dev', a.veth]).trim(),
      b: sh('tc', ['-n', b.ns, '-s', 'qdisc', 'show', 'dev', b.veth]).trim(),
    }),
    destroy,
  };
}

/**
 * TCP connect times from the bench's side of A to a listener in B: one SYN and
 * one SYN-ACK through the emulation, that is the path's RTT. Runs a tiny Node
 * script inside A (the bench process itself lives outside the namespaces).
 */
export function connectTimesMs(link: EmulatedLink, port: number, count: number): number[] {
  const script = `
const net = require('node:net');
(async () => {
  const out = [];
  for (let i = 0; i < ${count}; i++) {
    const t0 = process.hrtime.bigint();
    await new Promise((resolve, reject) => {
      const s = net.connect({ host: '${ADDR_B}', port: ${port} }, () => { out.push(Number(process.hrtime.bigint() - t0) / 1e6); s.destroy(); resolve(); });
      s.once('error', reject);
    });
    await new Promise((r) => setTimeout(r, 20));
  }
  process.stdout.write(JSON.stringify(out));
})().catch((e) => { process.stderr.write(String(e)); process.exit(1); });`;
  const text = inNs(link.a.ns, process.execPath, ['-e', script], 30_000);
  const parsed: unknown = JSON.parse(text);
  if (!Array.isArray(parsed)) throw new Error(`connect times: unexpected output ${text}`);
  return parsed.map(Number);
}

/** True when the build tools and headers the helper needs are present. */
export function helperBuildable(): { gcc: boolean; headers: boolean; iptables: boolean } {
  const has = (c: string): boolean => spawnSync('bash', ['-c', `command -v ${c}`], { stdio: 'ignore' }).status === 0;
  return {
    gcc: has('gcc'),
    headers: existsSync('/usr/include/libnetfilter_queue/libnetfilter_queue.h'),
    iptables: has('iptables'),
  };
}

/** Compiles bench/wan/delay.c into `out`; throws with gcc's messages on failure. */
export function compileHelper(source: string, out: string): void {
  const r = spawnSync('gcc', ['-O2', '-Wall', '-Wextra', '-o', out, source, '-lnetfilter_queue', '-lnfnetlink'], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`gcc failed:\n${r.stderr}`);
}

/** Resolves once something listens on host:port, probed from inside namespace `ns`. */
export async function waitTcp(ns: string, host: string, port: number, timeoutMs: number): Promise<void> {
  const accepts = (): boolean => spawnSync('ip', ['netns', 'exec', ns, 'bash', '-c', `exec 3<>/dev/tcp/${host}/${port}`], { stdio: 'ignore', timeout: 5000 }).status === 0;
  await pollUntil(accepts, (ok) => ok, timeoutMs, `a listener on ${host}:${port} in ${ns}`, 100);
}
