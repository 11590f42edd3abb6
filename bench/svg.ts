/**
 * The scaling chart, written by hand as SVG (no dependency): aggregate
 * throughput (linear) and RTT p50 (logarithmic) against the number of
 * parallel streams, one line per path.
 */
import { PATH_LABELS, type PathId } from './paths.js';
import type { Medians } from './report.js';

const COLORS: Readonly<Record<PathId, string>> = {
  direct: '#7f7f7f',
  socat: '#1f77b4',
  ssh: '#ff7f0e',
  'node-relay': '#2ca02c',
  tcpipe: '#d62728',
  'tcpipe-secret': '#9467bd',
  'tcpipe-ws': '#e377c2',
  'tcpipe-ws-secret': '#8c564b',
  'tcpipe-ws-c2s': '#bcbd22',
  'tcpipe-squid': '#17becf',
  'tcpipe-resume': '#aec7e8',
};

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

function esc(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
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
  out.push(`<text x="${left + PANEL_W / 2}" y="${TOP - 14}" text-anchor="middle" font-weight="bold">${esc(title)}</text>`);
  out.push(`<rect x="${left}" y="${TOP}" width="${PANEL_W}" height="${PANEL_H}" fill="none" stroke="#999"/>`);
  for (const t of ticks) {
    const y = py(t).toFixed(1);
    const label = t >= 1000 ? `${(t / 1000).toLocaleString('en-US')}k` : t.toLocaleString('en-US', { maximumFractionDigits: 2 });
    out.push(`<line x1="${left}" y1="${y}" x2="${left + PANEL_W}" y2="${y}" stroke="#e5e5e5"/>`);
    out.push(`<text x="${left - 6}" y="${y}" text-anchor="end" dominant-baseline="middle">${label}</text>`);
  }
  for (const n of levels) {
    const x = px(n).toFixed(1);
    out.push(`<line x1="${x}" y1="${TOP}" x2="${x}" y2="${TOP + PANEL_H}" stroke="#f0f0f0"/>`);
    out.push(`<text x="${x}" y="${TOP + PANEL_H + 16}" text-anchor="middle">${n}</text>`);
  }
  out.push(`<text x="${left + PANEL_W / 2}" y="${TOP + PANEL_H + 34}" text-anchor="middle">parallel streams</text>`);
  out.push(
    `<text transform="translate(${left - 50} ${TOP + PANEL_H / 2}) rotate(-90)" text-anchor="middle">${esc(unit)}</text>`,
  );
  for (const s of data) {
    if (s.points.length === 0) continue;
    const d = s.points.map((p, i) => `${i === 0 ? 'M' : 'L'}${px(p.x).toFixed(1)},${py(p.y).toFixed(1)}`).join(' ');
    const dash = s.id === 'tcpipe-secret' ? ' stroke-dasharray="6 3"' : '';
    out.push(`<path d="${d}" fill="none" stroke="${COLORS[s.id]}" stroke-width="2"${dash}/>`);
    for (const p of s.points) out.push(`<circle cx="${px(p.x).toFixed(1)}" cy="${py(p.y).toFixed(1)}" r="3" fill="${COLORS[s.id]}"/>`);
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
    `<rect width="${W}" height="${H}" fill="#fff"/>`,
    `<text x="${W / 2}" y="22" text-anchor="middle" font-size="15" font-weight="bold">tcpipe and its peers against the number of parallel streams</text>`,
    `<text x="${W / 2}" y="42" text-anchor="middle" fill="#555">${esc(subtitle)}</text>`,
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
    const dash = id === 'tcpipe-secret' || id === 'tcpipe-ws-secret' ? ' stroke-dasharray="6 3"' : '';
    body.push(`<line x1="${x}" y1="${legendY}" x2="${x + 24}" y2="${legendY}" stroke="${COLORS[id]}" stroke-width="3"${dash}/>`);
    body.push(`<text x="${x + 30}" y="${legendY}" dominant-baseline="middle">${esc(PATH_LABELS[id])}</text>`);
  });
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`,
    ...body.map((l) => `  ${l}`),
    '</svg>',
    '',
  ].join('\n');
}
