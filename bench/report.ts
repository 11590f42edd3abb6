/**
 * From samples to what the bench prints and saves: the metrics and their
 * units, medians over repetitions, the markdown tables, the ratios of tcpipe
 * to each peer, and the issue's targets with a verdict each.
 */
import type { BenchOptions } from './options.js';
import { PATH_LABELS, isTransportPath, type PathId } from './paths.js';
import { median } from './stats.js';

export interface MetricDef {
  readonly key: string;
  readonly label: string;
  readonly unit: string;
  readonly digits: number;
  /** Which way is better, for the ratios. */
  readonly better: 'higher' | 'lower' | 'none';
}

/** Samples per path per metric, one per repetition. */
export type Samples = Partial<Record<PathId, Record<string, number[]>>>;
export type Medians = Partial<Record<PathId, Record<string, number | null>>>;

const count = (n: number): string => n.toLocaleString('en-US');

export function metricDefs(o: BenchOptions): MetricDef[] {
  const m = (key: string, label: string, unit: string, digits: number, better: MetricDef['better']): MetricDef => ({ key, label, unit, digits, better });
  const defs: MetricDef[] = [
    m('bulk1_gbps', 'Bulk, 1 stream', 'Gbit/s', 2, 'higher'),
    m('bulk8_gbps', 'Bulk, 8 streams', 'Gbit/s', 2, 'higher'),
    m('rtt_p50_us', 'RTT 64 B, p50', 'µs', 0, 'lower'),
    m('rtt_p99_us', 'RTT 64 B, p99', 'µs', 0, 'lower'),
    m('rtt_added_p50_us', 'Added RTT p50 (path − direct)', 'µs', 0, 'lower'),
    m('conn_per_s', `Connection setup (${o.connWorkers} workers)`, 'conn/s', 0, 'higher'),
    m('cpu_us_per_conn', 'Relay CPU per connection', 'µs', 0, 'lower'),
    m('cpu_s_per_gib', 'Relay CPU per GiB, 1 stream', 's', 2, 'lower'),
    m('cpu_s_per_gib_8', 'Relay CPU per GiB, 8 streams', 's', 2, 'lower'),
    m('mem_idle_rss_mib', 'Relay RSS, idle', 'MiB', 1, 'lower'),
    m('mem_idle_pss_mib', 'Relay PSS, idle', 'MiB', 1, 'lower'),
  ];
  for (const n of o.idleCounts) {
    defs.push(m(`mem_${n}_rss_mib`, `Relay RSS, ${count(n)} idle streams`, 'MiB', 1, 'lower'));
    defs.push(m(`mem_${n}_pss_mib`, `Relay PSS, ${count(n)} idle streams`, 'MiB', 1, 'lower'));
  }
  const most = o.idleCounts[o.idleCounts.length - 1] ?? 0;
  defs.push(
    m(`stream_kib_${most}`, `PSS per idle stream (at ${count(most)})`, 'KiB', 1, 'lower'),
    m(`idle_held_${most}`, `Idle streams held (of ${count(most)})`, '', 0, 'none'),
    m('fair_p50_us', 'Fairness: RTT p50 beside a bulk stream', 'µs', 0, 'lower'),
    m('fair_p99_us', 'Fairness: RTT p99 beside a bulk stream', 'µs', 0, 'lower'),
    m('fair_bulk_gbps', 'Fairness: the bulk stream', 'Gbit/s', 2, 'higher'),
    m('slow_base_rss_mib', 'Slow reader: relay RSS before', 'MiB', 1, 'lower'),
    m('slow_peak_rss_mib', 'Slow reader: relay RSS peak', 'MiB', 1, 'lower'),
    m('slow_growth_mib', 'Slow reader: RSS growth', 'MiB', 1, 'lower'),
    m('slow_late_growth_mib', 'Slow reader: RSS growth after the first second', 'MiB', 1, 'lower'),
    m('slow_inflight_mib', 'Slow reader: bytes held in the path', 'MiB', 1, 'lower'),
  );
  for (const n of o.scaleLevels) defs.push(m(`scale_gbps_${n}`, `Throughput, ${count(n)} streams`, 'Gbit/s', 2, 'higher'));
  for (const n of o.scaleLevels) defs.push(m(`scale_rtt_p50_us_${n}`, `RTT p50, ${count(n)} streams`, 'µs', 0, 'lower'));
  for (const n of o.scaleLevels) defs.push(m(`scale_rtt_p99_us_${n}`, `RTT p99, ${count(n)} streams`, 'µs', 0, 'lower'));
  return defs;
}

/**
 * Adds the added RTT: path − direct of the same repetition, or of the medians
 * when a repetition is missing on either side (the pairs would not match).
 */
export function deriveAddedRtt(samples: Samples): void {
  const direct = samples.direct?.['rtt_p50_us'];
  if (direct === undefined) return;
  for (const metrics of Object.values(samples)) {
    const own = metrics['rtt_p50_us'];
    if (own === undefined) continue;
    const d = median(direct);
    const o = median(own);
    metrics['rtt_added_p50_us'] =
      own.length === direct.length ? own.map((v, i) => v - (direct[i] ?? Number.NaN)) : d !== null && o !== null ? [o - d] : [];
  }
}

export function mediansOf(samples: Samples): Medians {
  const out: Medians = {};
  for (const [id, metrics] of Object.entries(samples) as [PathId, Record<string, number[]>][]) {
    const row: Record<string, number | null> = {};
    for (const [key, values] of Object.entries(metrics)) row[key] = median(values);
    out[id] = row;
  }
  return out;
}

export function format(value: number | null | undefined, digits: number): string {
  if (value === null || value === undefined || !Number.isFinite(value)) return '–';
  return value.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

export function resultsTable(defs: readonly MetricDef[], medians: Medians, paths: readonly PathId[]): string {
  const head = `| metric | unit | ${paths.map((p) => PATH_LABELS[p]).join(' | ')} |`;
  const rule = `|---|---|${paths.map(() => '---:').join('|')}|`;
  const rows = defs.map((d) => `| ${d.label} | ${d.unit} | ${paths.map((p) => format(medians[p]?.[d.key], d.digits)).join(' | ')} |`);
  return [head, rule, ...rows].join('\n');
}

const RATIO_KEYS = ['bulk1_gbps', 'bulk8_gbps', 'rtt_added_p50_us', 'rtt_p99_us', 'conn_per_s', 'cpu_s_per_gib', 'cpu_us_per_conn', 'fair_p99_us', 'slow_peak_rss_mib'];

export interface Ratio {
  readonly subject: PathId;
  readonly peer: PathId;
  readonly key: string;
  readonly ratio: number | null;
}

/** Each transport and the link it is compared with: the same security over plain TCP. */
export const TRANSPORT_BASELINES: readonly { readonly subject: PathId; readonly peer: PathId }[] = [
  { subject: 'tcpipe-ws', peer: 'tcpipe' },
  { subject: 'tcpipe-ws-secret', peer: 'tcpipe-secret' },
  { subject: 'tcpipe-ws-c2s', peer: 'tcpipe' },
  { subject: 'tcpipe-squid', peer: 'tcpipe' },
  { subject: 'tcpipe-resume', peer: 'tcpipe' },
];

const TRANSPORT_RATIO_KEYS = ['bulk1_gbps', 'bulk8_gbps', 'rtt_p50_us', 'rtt_p99_us', 'rtt_added_p50_us', 'conn_per_s', 'cpu_s_per_gib', 'cpu_s_per_gib_8', 'cpu_us_per_conn', 'fair_p99_us'];

function ratioOf(medians: Medians, subject: PathId, peer: PathId, key: string): Ratio {
  const a = medians[subject]?.[key];
  const b = medians[peer]?.[key];
  const ratio = a !== null && a !== undefined && b !== null && b !== undefined && b !== 0 ? a / b : null;
  return { subject, peer, key, ratio };
}

export function ratios(defs: readonly MetricDef[], medians: Medians, paths: readonly PathId[]): Ratio[] {
  const out: Ratio[] = [];
  const most = defs.find((d) => d.key.startsWith('stream_kib_'))?.key;
  const keys = most === undefined ? RATIO_KEYS : [...RATIO_KEYS, most];
  for (const subject of ['tcpipe', 'tcpipe-secret'] as const) {
    if (!paths.includes(subject)) continue;
    for (const peer of paths) {
      if (peer === subject || isTransportPath(peer)) continue;
      for (const key of keys) out.push(ratioOf(medians, subject, peer, key));
    }
  }
  for (const { subject, peer } of TRANSPORT_BASELINES) {
    if (!paths.includes(subject) || !paths.includes(peer)) continue;
    for (const key of TRANSPORT_RATIO_KEYS) out.push(ratioOf(medians, subject, peer, key));
  }
  return out;
}

/** The WebSocket and squid paths ÷ the plain link with the same security, one column each. */
export function transportRatioTable(defs: readonly MetricDef[], list: readonly Ratio[]): string {
  const pairs = TRANSPORT_BASELINES.filter((b) => list.some((r) => r.subject === b.subject && r.peer === b.peer && r.ratio !== null));
  if (pairs.length === 0) return '';
  const lines = [
    'tcpipe\'s other transports ÷ the plain TCP link with the same security (medians; for "higher" metrics above 1 is better, for "lower" below 1 is better):',
    '',
    `| metric | better | ${pairs.map((b) => `${PATH_LABELS[b.subject]} ÷ ${PATH_LABELS[b.peer]}`).join(' | ')} |`,
    `|---|---|${pairs.map(() => '---:').join('|')}|`,
  ];
  for (const key of TRANSPORT_RATIO_KEYS) {
    const def = defs.find((d) => d.key === key);
    if (def === undefined) continue;
    const values = pairs.map((b) => list.find((x) => x.subject === b.subject && x.peer === b.peer && x.key === key)?.ratio ?? null);
    // A metric these paths did not run (fairness, unless --all-workloads) gets no row.
    if (values.every((r) => r === null)) continue;
    const cells = values.map((r) => (r === null ? '–' : `${r.toFixed(2)}×`));
    lines.push(`| ${def.label} | ${def.better} | ${cells.join(' | ')} |`);
  }
  lines.push('');
  return lines.join('\n');
}

export function ratioTables(defs: readonly MetricDef[], list: readonly Ratio[], paths: readonly PathId[]): string {
  const parts: string[] = [];
  for (const subject of ['tcpipe', 'tcpipe-secret'] as const) {
    const mine = list.filter((r) => r.subject === subject && !isTransportPath(r.peer));
    if (mine.length === 0) continue;
    const peers = paths.filter((p) => p !== subject && !isTransportPath(p) && mine.some((r) => r.peer === p && r.ratio !== null));
    const keys = [...new Set(mine.map((r) => r.key))];
    parts.push(`${PATH_LABELS[subject]} ÷ peer (medians; for "higher" metrics above 1 is better, for "lower" below 1 is better):`, '');
    parts.push(`| metric | better | ${peers.map((p) => PATH_LABELS[p]).join(' | ')} |`, `|---|---|${peers.map(() => '---:').join('|')}|`);
    for (const key of keys) {
      const def = defs.find((d) => d.key === key);
      if (def === undefined) continue;
      const cells = peers.map((p) => {
        const r = mine.find((x) => x.peer === p && x.key === key)?.ratio;
        return r === null || r === undefined ? '–' : `${r.toFixed(2)}×`;
      });
      parts.push(`| ${def.label} | ${def.better} | ${cells.join(' | ')} |`);
    }
    parts.push('');
  }
  return parts.join('\n');
}

export interface TargetCheck {
  readonly name: string;
  readonly measured: string;
  readonly target: string;
  /** null when a figure it needs is missing. */
  readonly pass: boolean | null;
}

export function targetChecks(medians: Medians, o: BenchOptions): TargetCheck[] {
  const v = (p: PathId, key: string): number | null => {
    const x = medians[p]?.[key];
    return x === undefined || x === null || !Number.isFinite(x) ? null : x;
  };
  const checks: TargetCheck[] = [];
  const ratio = (name: string, a: PathId, b: PathId, key: string, min: number): void => {
    const x = v(a, key);
    const y = v(b, key);
    const r = x !== null && y !== null && y > 0 ? x / y : null;
    checks.push({ name, measured: r === null ? '–' : `${r.toFixed(2)}×`, target: `≥ ${Number.isInteger(min * 10) ? min.toFixed(1) : min.toFixed(2)}×`, pass: r === null ? null : r >= min });
  };
  const atMost = (name: string, x: number | null, limit: number | null, unit: string, digits = 0): void => {
    checks.push({
      name,
      measured: x === null ? '–' : `${format(x, digits)} ${unit}`,
      target: limit === null ? '–' : `≤ ${format(limit, digits)} ${unit}`,
      pass: x === null || limit === null ? null : x <= limit,
    });
  };
  const measured = (a: PathId, b: PathId, key: string): string => {
    const x = v(a, key);
    const y = v(b, key);
    return x === null || y === null ? '' : ` (${format(x, 2)} ÷ ${format(y, 2)} Gbit/s)`;
  };
  ratio('plaintext bulk, 1 stream ÷ Node relay', 'tcpipe', 'node-relay', 'bulk1_gbps', 1.0);
  ratio('plaintext bulk, 8 streams ÷ Node relay', 'tcpipe', 'node-relay', 'bulk8_gbps', 1.0);
  ratio('encrypted bulk, 1 stream ÷ ssh -L', 'tcpipe-secret', 'ssh', 'bulk1_gbps', 1.2);
  ratio('encrypted bulk, 8 streams ÷ ssh -L', 'tcpipe-secret', 'ssh', 'bulk8_gbps', 1.2);
  atMost('plaintext added RTT p50 vs Node relay', v('tcpipe', 'rtt_added_p50_us'), v('node-relay', 'rtt_added_p50_us'), 'µs');
  atMost('encrypted added RTT p50 vs ssh -L', v('tcpipe-secret', 'rtt_added_p50_us'), v('ssh', 'rtt_added_p50_us'), 'µs');
  ratio('plaintext conn/s ÷ ssh -L', 'tcpipe', 'ssh', 'conn_per_s', 1.3);
  ratio('encrypted conn/s ÷ ssh -L', 'tcpipe-secret', 'ssh', 'conn_per_s', 1.3);
  const most = o.idleCounts[o.idleCounts.length - 1] ?? 0;
  atMost('plaintext memory per idle stream, both ends', v('tcpipe', `stream_kib_${most}`), 20, 'KiB', 1);
  atMost('encrypted memory per idle stream, both ends', v('tcpipe-secret', `stream_kib_${most}`), 20, 'KiB', 1);
  atMost('plaintext fairness RTT p99', v('tcpipe', 'fair_p99_us'), 2000, 'µs');
  atMost('encrypted fairness RTT p99', v('tcpipe-secret', 'fair_p99_us'), 2000, 'µs');
  // "Flat": once the path is full (after the first second), the relays' RSS no longer grows
  // while the user keeps offering data to a 1 MB/s reader.
  atMost(`plaintext slow reader: RSS growth after the first second (${count(o.slowBytes / 1048576)} MiB offered)`, v('tcpipe', 'slow_late_growth_mib'), 2, 'MiB', 1);
  atMost(`encrypted slow reader: RSS growth after the first second (${count(o.slowBytes / 1048576)} MiB offered)`, v('tcpipe-secret', 'slow_late_growth_mib'), 2, 'MiB', 1);
  atMost('plaintext CPU per GiB vs Node relay (1 stream)', v('tcpipe', 'cpu_s_per_gib'), v('node-relay', 'cpu_s_per_gib'), 's', 2);
  atMost('plaintext CPU per GiB vs Node relay (8 streams)', v('tcpipe', 'cpu_s_per_gib_8'), v('node-relay', 'cpu_s_per_gib_8'), 's', 2);
  // The WebSocket transport must not cost the link more than a fifth of its throughput.
  // Both ways: server → client (the paths' usual direction) and client → server, whose
  // messages the client must mask.
  for (const [id, way] of [['tcpipe-ws', 'server → client'], ['tcpipe-ws-c2s', 'client → server, masked']] as const) {
    for (const [streams, key] of [[1, 'bulk1_gbps'], [8, 'bulk8_gbps']] as const) {
      ratio(`WebSocket link (${way}) bulk, ${streams} stream${streams === 1 ? '' : 's'} ÷ plain link${measured(id, 'tcpipe', key)}`, id, 'tcpipe', key, 0.8);
    }
  }
  // Stream resumption keeps unacknowledged bytes and acknowledges FINs: on a healthy link it may
  // cost at most 5% of the throughput.
  for (const [streams, key] of [[1, 'bulk1_gbps'], [8, 'bulk8_gbps']] as const) {
    ratio(`--resume on a healthy link, bulk ${streams} stream${streams === 1 ? '' : 's'} ÷ resume off${measured('tcpipe-resume', 'tcpipe', key)}`, 'tcpipe-resume', 'tcpipe', key, 0.95);
  }
  return checks;
}

export function targetsTable(checks: readonly TargetCheck[]): string {
  const verdict = (p: boolean | null): string => (p === null ? 'not measured' : p ? 'met' : '**missed**');
  return ['| target | measured | goal | verdict |', '|---|---:|---:|---|', ...checks.map((c) => `| ${c.name} | ${c.measured} | ${c.target} | ${verdict(c.pass)} |`)].join('\n');
}
