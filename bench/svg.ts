/**
 * The scaling chart, written by hand as SVG (no dependency): aggregate
 * throughput (linear) and RTT p50 (logarithmic) against the number of
 * parallel streams, one line per path.
 */
import { PATH_COLORS, axisTitles, dashOf, esc, legendEntry, panelFrame, svgDocument, xGridLine, yGridLine } from './chart.js';
import { PATH_LABELS, type PathId } from './paths.js';
import type { Medians } from './report.js';

const W = 1000;
const H = 470;
const PANEL_W = 400;
const PANEL_H = 280;
const TOP = 84;
const LEFTS = [70, 570] as const;

interface Series {
  readonly id: PathId;
  readonly points: readonly { x: number; y: number }[];
}

function niceMax(v: number): number {
  if (!(v > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

function series(medians: Medians, paths: readonly PathId[], levels: readonly number[], key: (n: number) => string): Series[] {
  return paths.map((id) => ({
    id,
    points: levels
      .map((n) => ({ x: n, y: medians[id]?.[key(n)] ?? Number.NaN }))
      .filter((p): p is { x: number; y: number } => p.y !== null && Number.isFinite(p.y) && p.y > 0),
  }));
}

function panel(left: number, title: string, unit: string, data: readonly Series[], levels: readonly number[], log: boolean): string[] {
  const out: string[] = [];
  const xs = levels.map((n) => Math.log2(n));
  const x0 = Math.min(...xs);
  const x1 = Math.max(...xs);
  const px = (n: number): number => left + (x1 === x0 ? PANEL_W / 2 : ((Math.log2(n) - x0) / (x1 - x0)) * PANEL_W);
  const values = data.flatMap((s) => s.points.map((p) => p.y));
  let py: (v: number) => number;
  let ticks: number[];
  if (log) {
    const lo = 10 ** Math.floor(Math.log10(Math.min(...values, 10)));
    const hi = 10 ** Math.ceil(Math.log10(Math.max(...values, 100)));
    py = (v) => TOP + PANEL_H - ((Math.log10(v) - Math.log10(lo)) / (Math.log10(hi) - Math.log10(lo))) * PANEL_H;
    ticks = [];
    for (let t = lo; t <= hi * 1.0001; t *= 10) ticks.push(t);
  } else {
    const hi = niceMax(Math.max(...values, 0));
    py = (v) => TOP + PANEL_H - (v / hi) * PANEL_H;
    ticks = [0, 0.25, 0.5, 0.75, 1].map((f) => f * hi);
  }
  out.push(...panelFrame(left, TOP, PANEL_W, PANEL_H, title));
  for (const t of ticks) {
    const label = t >= 1000 ? `${(t / 1000).toLocaleString('en-US')}k` : t.toLocaleString('en-US', { maximumFractionDigits: 2 });
    out.push(...yGridLine(left, PANEL_W, py(t).toFixed(1), label));
  }
  for (const n of levels) out.push(...xGridLine(px(n).toFixed(1), TOP, PANEL_H, String(n)));
  out.push(...axisTitles(left, TOP, PANEL_W, PANEL_H, 'parallel streams', unit));
  for (const s of data) {
    if (s.points.length === 0) continue;
    const d = s.points.map((p, i) => `${i === 0 ? 'M' : 'L'}${px(p.x).toFixed(1)},${py(p.y).toFixed(1)}`).join(' ');
    out.push(`<path d="${d}" fill="none" stroke="${PATH_COLORS[s.id]}" stroke-width="2"${dashOf(s.id)}/>`);
    for (const p of s.points) out.push(`<circle cx="${px(p.x).toFixed(1)}" cy="${py(p.y).toFixed(1)}" r="3" fill="${PATH_COLORS[s.id]}"/>`);
  }
  return out;
}

export function streamsChart(medians: Medians, paths: readonly PathId[], levels: readonly number[], subtitle: string): string {
  // Without a relay, throughput is several times any relay's: drawn, it would flatten every other line.
  const relays = paths.filter((p) => p !== 'direct');
  const tput = series(medians, relays, levels, (n) => `scale_gbps_${n}`);
  const direct = series(medians, paths.includes('direct') ? ['direct'] : [], levels, (n) => `scale_gbps_${n}`)[0];
  const rtt = series(medians, paths, levels, (n) => `scale_rtt_p50_us_${n}`);
  const body: string[] = [
    ...panel(LEFTS[0], 'Aggregate throughput (higher is better)', 'Gbit/s', tput, levels, false),
    ...panel(LEFTS[1], 'RTT p50, 64 B ping-pong on each stream (lower is better)', 'µs (log scale)', rtt, levels, true),
  ];
  if (direct !== undefined && direct.points.length > 0) {
    const text = direct.points.map((p) => `${p.y.toFixed(1)}`).join(', ');
    body.push(`<text x="${LEFTS[0] + PANEL_W / 2}" y="${TOP + PANEL_H + 52}" text-anchor="middle" fill="#555">direct (no relay, not drawn): ${esc(text)} Gbit/s</text>`);
  }
  // The legend names the paths drawn (those that ran the scaling curves): one row of up to five, two rows beyond.
  const drawn = paths.filter((id) => [...tput, ...rtt].some((s) => s.id === id && s.points.length > 0));
  const perRow = drawn.length > 6 ? 5 : Math.max(1, drawn.length);
  const rows = Math.ceil(drawn.length / perRow);
  const step = W / (perRow + 1);
  drawn.forEach((id, i) => {
    const x = step * ((i % perRow) + 0.5) + 20;
    const legendY = H - 22 - (rows - 1 - Math.floor(i / perRow)) * 18;
    body.push(...legendEntry(x, legendY, id, PATH_LABELS[id]));
  });
  return svgDocument(W, H, 'tcpipe and its peers against the number of parallel streams', subtitle, body);
}
