/**
 * The WAN bench's record (the JSON), its markdown tables, the ratios of tcpipe
 * to direct TCP and to ssh -L, and the targets of the issue checked one by one.
 */
import type { DelayStats, Profile, QueueCounters } from './emulation.js';
import { WAN_LABELS, type WanPathId } from './paths.js';
import { median } from '../stats.js';
import type { PathResult } from './workloads.js';

export interface EmulationCheck {
  /** TCP connect times through the emulated path (SYN, SYN-ACK), ms. */
  readonly connectMs: readonly number[];
  readonly connectMedianMs: number;
  /** Helper counters at the end of the profile (a: delays B→A, b: delays A→B). */
  readonly helper: { readonly a: DelayStats | null; readonly b: DelayStats | null };
  readonly queue: { readonly a: QueueCounters | null; readonly b: QueueCounters | null };
  readonly qdisc: { readonly a: string; readonly b: string };
}

export interface ProfileRecord {
  readonly profile: Profile;
  readonly emulation: EmulationCheck | null;
  /** The path's own RTT: 64-byte ping-pong on idle direct TCP, p50 (the configured RTT if direct did not run). */
  readonly baseRttMs: number;
  readonly paths: readonly PathResult[];
  readonly seconds: number;
  readonly error: string | null;
}

export interface Machine {
  readonly nproc: number;
  readonly model: string;
  readonly kernel: string;
  readonly node: string;
  readonly ssh: string;
  readonly commit: string;
  readonly loadAverageAtStart: readonly number[];
}

export interface TargetCheck {
  readonly profile: string;
  readonly path: string;
  readonly target: string;
  readonly value: string;
  readonly met: boolean | null;
}

export interface WanRecord {
  readonly startedAt: string;
  readonly seconds: number;
  readonly mode: string;
  readonly machine: Machine;
  readonly settings: Readonly<Record<string, string | number | boolean>>;
  readonly profiles: readonly ProfileRecord[];
  readonly targets: readonly TargetCheck[];
}

const TCPIPE_PATHS: readonly WanPathId[] = ['tcpipe', 'tcpipe-secret'];
/** The session's receive budget (src/config/defaults.ts receiveBudget). */
export const SESSION_BUDGET_MIB = 64;

function find(p: ProfileRecord, id: WanPathId): PathResult | undefined {
  return p.paths.find((r) => r.id === id);
}

const f = (v: number | null | undefined, digits = 2): string => (v === null || v === undefined || !Number.isFinite(v) ? '–' : v.toFixed(digits));
const ratio = (a: number | null | undefined, b: number | null | undefined): number | null =>
  a === null || a === undefined || b === null || b === undefined || !(b > 0) || !Number.isFinite(a) ? null : a / b;
const fx = (r: number | null): string => (r === null ? '–' : `${r.toFixed(2)}×`);

export function targetChecks(profiles: readonly ProfileRecord[]): TargetCheck[] {
  const out: TargetCheck[] = [];
  for (const p of profiles) {
    const direct = find(p, 'direct');
    const ssh = find(p, 'ssh');
    const rtt = p.baseRttMs;
    for (const id of TCPIPE_PATHS) {
      const r = find(p, id);
      if (r === undefined) continue;
      const label = WAN_LABELS[id];
      const add = (target: string, value: string, met: boolean | null): void => {
        out.push({ profile: p.profile.label, path: label, target, value, met });
      };
      for (const [key, n] of [['bulk1', 1], ['bulk8', 8]] as const) {
        const x = r[key]?.gbps;
        const d = ratio(x, direct?.bulk1?.gbps);
        add(`${n} stream${n > 1 ? 's' : ''} ≥ 0.9× one direct TCP connection`, `${f(x)} Gbit/s = ${fx(d)}`, d === null ? null : d >= 0.9);
        if (p.profile.rttMs >= 50) {
          const s = ratio(x, ssh?.[key]?.gbps);
          add(`${n} stream${n > 1 ? 's' : ''} ≥ 2.5× ssh -L`, `${fx(s)} (ssh ${f(ssh?.[key]?.gbps)} Gbit/s)`, s === null ? null : s >= 2.5);
        }
      }
      const i = r.interactive;
      add('interactive p99 ≤ path RTT + 10 ms under a bulk stream', i === null ? '–' : `p99 ${f(i.p99Ms, 1)} ms = RTT + ${f(i.p99Ms - rtt, 1)} ms`, i === null ? null : i.p99Ms <= rtt + 10);
      const n = r.newStreams;
      const sshMedian = ssh?.newStreams?.medianMs;
      add(
        `${n?.count ?? 100} new streams each within ~1 RTT (max ≤ 1.25 RTT), ahead of ssh -L`,
        n === null ? '–' : `median ${f(n.medianMs / rtt)} RTT, max ${f(n.maxMs / rtt)} RTT (ssh median ${f(sshMedian === undefined ? null : sshMedian / rtt)} RTT)`,
        n === null ? null : n.failed === 0 && n.maxMs <= 1.25 * rtt && (sshMedian === undefined || n.medianMs < sshMedian),
      );
      const m = r.memory;
      const growth = m === null ? null : Math.max(m.entryPeakMiB - m.entryIdleMiB, m.exitPeakMiB - m.exitIdleMiB);
      add(
        `peak RSS − idle RSS ≤ ${SESSION_BUDGET_MIB} MiB session budget, each end`,
        m === null ? '–' : `entry ${f(m.entryIdleMiB, 0)} → ${f(m.entryPeakMiB, 0)} MiB, exit ${f(m.exitIdleMiB, 0)} → ${f(m.exitPeakMiB, 0)} MiB`,
        growth === null ? null : growth <= SESSION_BUDGET_MIB,
      );
    }
  }
  return out;
}

function cell(r: PathResult | undefined, fn: (r: PathResult) => string): string {
  if (r === undefined) return '–';
  if (r.error !== null && r.bulk1 === null) return 'error';
  return fn(r);
}

function gb(b: { gbps: number; capped: boolean } | null): string {
  if (b === null) return '–';
  return `${b.gbps.toFixed(3)}${b.capped ? '*' : ''}`;
}

export function throughputTable(profiles: readonly ProfileRecord[]): string[] {
  const lines = [
    '| path | RTT | 1 stream Gbit/s | ×direct | ×ssh -L | 8 streams Gbit/s | ×direct (1 conn) | ×direct (8 conns) | ×ssh -L (8) | CPU s/GB entry + exit (1 stream) |',
    '|---|---|---:|---:|---:|---:|---:|---:|---:|---:|',
  ];
  for (const p of profiles) {
    const direct = find(p, 'direct');
    const ssh = find(p, 'ssh');
    for (const r of p.paths) {
      const id = r.id;
      const relay = id !== 'direct';
      const cpu = r.bulk1 !== null && relay && r.bulk1.bytes > 0 ? `${f((r.bulk1.cpuEntryS / r.bulk1.bytes) * 1e9)} + ${f((r.bulk1.cpuExitS / r.bulk1.bytes) * 1e9)}` : '–';
      lines.push(
        `| ${WAN_LABELS[id]} | ${p.profile.label} | ${cell(r, (x) => gb(x.bulk1))} | ${relay ? fx(ratio(r.bulk1?.gbps, direct?.bulk1?.gbps)) : ''} | ${id === 'tcpipe' || id === 'tcpipe-secret' ? fx(ratio(r.bulk1?.gbps, ssh?.bulk1?.gbps)) : ''} | ${cell(r, (x) => gb(x.bulk8))} | ${fx(ratio(r.bulk8?.gbps, direct?.bulk1?.gbps))} | ${relay ? fx(ratio(r.bulk8?.gbps, direct?.bulk8?.gbps)) : ''} | ${id === 'tcpipe' || id === 'tcpipe-secret' ? fx(ratio(r.bulk8?.gbps, ssh?.bulk8?.gbps)) : ''} | ${cpu} |`,
      );
    }
  }
  return lines;
}

export function latencyTable(profiles: readonly ProfileRecord[]): string[] {
  const lines = [
    '| path | RTT | ping idle p50 ms | first ping after bulk alone ms | under bulk p50 / p99 ms | p99 − path RTT ms | bulk beside it Gbit/s | new streams median / max ms | in path RTTs | peak RSS entry / exit MiB (idle) |',
    '|---|---|---:|---:|---:|---:|---:|---:|---:|---:|',
  ];
  for (const p of profiles) {
    for (const r of p.paths) {
      const id = r.id;
      const i = r.interactive;
      const n = r.newStreams;
      const m = r.memory;
      lines.push(
        `| ${WAN_LABELS[id]} | ${p.profile.label} | ${i === null ? '–' : f(i.idleP50Ms, 1)} | ${i === null ? '–' : f(i.firstMs, 1)} | ${i === null ? '–' : `${f(i.p50Ms, 1)} / ${f(i.p99Ms, 1)}`} | ${i === null ? '–' : f(i.p99Ms - p.baseRttMs, 1)} | ${i === null ? '–' : f(i.bulkGbps, 3)} | ${n === null ? '–' : `${f(n.medianMs, 1)} / ${f(n.maxMs, 1)}${n.failed > 0 ? ` (${n.failed} failed)` : ''}`} | ${n === null ? '–' : `${f(n.medianMs / p.baseRttMs)} / ${f(n.maxMs / p.baseRttMs)}`} | ${m === null ? '–' : `${f(m.entryPeakMiB, 0)} / ${f(m.exitPeakMiB, 0)} (${f(m.entryIdleMiB, 0)} / ${f(m.exitIdleMiB, 0)})`} |`,
      );
    }
  }
  return lines;
}

export function emulationTable(profiles: readonly ProfileRecord[]): string[] {
  const lines = [
    '| profile | TCP connect ms (median of 5) | direct ping p50 ms | direct 1 stream Gbit/s | packets delayed A→B / B→A | lost | held at most (A→B) | release late: mean / max µs | kernel queue drops |',
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|',
  ];
  for (const p of profiles) {
    const e = p.emulation;
    if (e === null) continue;
    const b = e.helper.b;
    const a = e.helper.a;
    const late = (s: DelayStats | null): string => (s === null ? '–' : `${f(s.lateMeanUs, 0)} / ${f(s.lateMaxUs, 0)}`);
    const drops = [e.queue.a, e.queue.b].reduce((s, q) => s + (q === null ? 0 : q.queueDropped + q.userDropped), 0);
    lines.push(
      `| ${p.profile.label} | ${f(e.connectMedianMs)} | ${f(find(p, 'direct')?.interactive?.idleP50Ms)} | ${gb(find(p, 'direct')?.bulk1 ?? null)} | ${b?.packets.toLocaleString('en-US') ?? '–'} / ${a?.packets.toLocaleString('en-US') ?? '–'} | ${(b?.lost ?? 0) + (a?.lost ?? 0)} | ${b === null ? '–' : `${(b.maxHeldBytes / 1e6).toFixed(1)} MB in ${b.maxHeld.toLocaleString('en-US')} packets`} | ${late(b)}, ${late(a)} | ${drops} |`,
    );
  }
  return lines;
}

/** TCP payload that fits in 1 Gbit/s of 1,514-byte frames (1,448 bytes of payload each). */
export const PAYLOAD_CEILING_GBPS = 1448 / 1514;

/** The two checks of the emulation the issue asks for, in words. */
function verification(profiles: readonly ProfileRecord[]): string[] {
  const out: string[] = [];
  const rtts = profiles
    .filter((p) => p.emulation !== null)
    .map((p) => `${f(p.emulation?.connectMedianMs)} ms for ${p.profile.rttMs} ms`);
  if (rtts.length > 0) out.push(`TCP connect time through the emulation (SYN to SYN-ACK): ${rtts.join(', ')}.`);
  const p20 = profiles.find((p) => p.profile.rttMs === 20 && p.profile.lossPct === 0);
  const d = p20 === undefined ? undefined : find(p20, 'direct')?.bulk1;
  if (d !== undefined && d !== null) {
    const share = d.gbps / PAYLOAD_CEILING_GBPS;
    out.push(
      `One direct TCP connection at 20 ms: ${d.gbps.toFixed(3)} Gbit/s, ${(100 * share).toFixed(0)}% of the ${PAYLOAD_CEILING_GBPS.toFixed(3)} Gbit/s of payload a 1 Gbit/s link carries (ramp-up from the connection's first byte included)${share >= 0.85 ? '' : ' — **below 85%: the emulation or the machine limits the rate, read the other figures with care**'}.`,
    );
  }
  return out;
}

export function targetsTable(checks: readonly TargetCheck[]): string[] {
  const lines = ['| RTT | path | target | measured | met |', '|---|---|---|---|:---:|'];
  for (const c of checks) lines.push(`| ${c.profile} | ${c.path} | ${c.target} | ${c.value} | ${c.met === null ? '?' : c.met ? 'yes' : '**no**'} |`);
  return lines;
}

export function markdown(record: WanRecord): string {
  const m = record.machine;
  const s = record.settings;
  const met = record.targets.filter((t) => t.met === true).length;
  const loads = record.profiles.flatMap((p) => p.paths.map((r) => r.load1));
  const busy = record.profiles.flatMap((p) => p.paths.filter((r) => r.otherCores > 0.25).map((r) => `${WAN_LABELS[r.id]} at ${p.profile.label} (${r.otherCores.toFixed(2)} cores)`));
  const other = record.profiles.flatMap((p) => p.paths.map((r) => r.otherCores));
  return [
    `Run of ${record.startedAt} (${record.mode}, ${Math.round(record.seconds)} s), tcpipe at ${m.commit}. Machine: ${m.nproc} × ${m.model}, Linux ${m.kernel}, Node ${m.node}, ${m.ssh}; load average at start ${m.loadAverageAtStart.map((x) => x.toFixed(2)).join(' ')}, as each path started median ${(median(loads) ?? 0).toFixed(1)}, max ${Math.max(0, ...loads).toFixed(1)}; CPU taken by processes outside the bench while a path ran: median ${(median(other) ?? 0).toFixed(2)}, max ${Math.max(0, ...other).toFixed(2)} cores.`,
    ...(busy.length > 0 ? [`**Other work on the host** took more than a quarter of a core during: ${busy.join(', ')}; those rows are suspect.`] : []),
    `Bulk: ${Number(s['bulkMiB']).toLocaleString('en-US')} MiB per transfer (8 streams share it), stopped after ${Number(s['capSeconds'])} s (* = stopped: the figure is what arrived by then). New streams: ${String(s['newStreams'])} at once. One run per profile, so read differences under ~5% as noise.`,
    '',
    '**The emulation** (checked every run):',
    '',
    ...emulationTable(record.profiles),
    '',
    ...verification(record.profiles),
    '',
    '**Throughput** (Gbit/s of payload at the sink; the shaped rate of 1 Gbit/s carries at most 0.956 Gbit/s of TCP payload in 1,500-byte packets):',
    '',
    ...throughputTable(record.profiles),
    '',
    '**Latency, new streams and memory** (*path RTT* = idle direct TCP ping-pong p50 in the same profile):',
    '',
    ...latencyTable(record.profiles),
    '',
    `**Targets**: ${met} of ${record.targets.length} met.`,
    '',
    ...targetsTable(record.targets),
    '',
    ...record.profiles.flatMap((p) => [
      ...(p.error !== null ? [`Profile ${p.profile.label} failed: ${p.error}`] : []),
      ...p.paths.filter((r) => r.error !== null).map((r) => `Error on ${WAN_LABELS[r.id]} at ${p.profile.label}: ${r.error ?? ''}`),
    ]),
  ].join('\n');
}
