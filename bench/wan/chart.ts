/**
 * The WAN chart, written by hand as SVG (no dependency): throughput against
 * the path's RTT for each path, one panel for 1 stream and one for 8 streams.
 * Lines join the lossless profiles; the 0.5% loss profile is drawn as hollow
 * markers at its RTT.
 */
import { PATH_COLORS, axisTitles, dashOf, esc, legendEntry, panelFrame, svgDocument, xGridLine, yGridLine } from '../chart.js';
import { WAN_LABELS, type WanPathId } from './paths.js';
import type { ProfileRecord } from './report.js';

const W = 1000;
const H = 500;
const PANEL_W = 390;
const PANEL_H = 300;
const TOP = 80;
const LEFTS = [80, 570] as const;
/** TCP payload that fits in 1 Gbit/s of 1,514-byte frames (1,448 bytes of payload each). */
const PAYLOAD_CEILING = (1000 * 1448) / 1514 / 1000;

interface Point {
  readonly rtt: number;
  readonly gbps: number;
  readonly loss: boolean;
}

function points(profiles: readonly ProfileRecord[], id: WanPathId, key: 'bulk1' | 'bulk8'): Point[] {
  const out: Point[] = [];
  for (const p of profiles) {
    const r = p.paths.find((x) => x.id === id)?.[key];
    if (r === null || r === undefined || !(r.gbps > 0)) continue;
    out.push({ rtt: p.profile.rttMs, gbps: r.gbps, loss: p.profile.lossPct > 0 });
  }
  return out.sort((a, b) => a.rtt - b.rtt);
}

function panel(left: number, title: string, profiles: readonly ProfileRecord[], paths: readonly WanPathId[], key: 'bulk1' | 'bulk8', yMax: number): string[] {
  const out: string[] = [];
  const rtts = [...new Set(profiles.map((p) => p.profile.rttMs))].sort((a, b) => a - b);
  const lo = Math.log10(Math.max(1, (rtts[0] ?? 20) / 1.6));
  const hi = Math.log10((rtts[rtts.length - 1] ?? 200) * 1.6);
  const px = (rtt: number): number => left + ((Math.log10(rtt) - lo) / (hi - lo)) * PANEL_W;
  const py = (v: number): number => TOP + PANEL_H - (v / yMax) * PANEL_H;
  out.push(...panelFrame(left, TOP, PANEL_W, PANEL_H, title));
  for (let i = 0; i <= 5; i++) {
    const v = (yMax * i) / 5;
    out.push(...yGridLine(left, PANEL_W, py(v).toFixed(1), v.toFixed(1)));
  }
  for (const r of rtts) out.push(...xGridLine(px(r).toFixed(1), TOP, PANEL_H, `${r} ms`));
  const ceiling = py(PAYLOAD_CEILING).toFixed(1);
  out.push(`<line x1="${left}" y1="${ceiling}" x2="${left + PANEL_W}" y2="${ceiling}" stroke="#2ca02c" stroke-dasharray="4 4"/>`);
  out.push(`<text x="${left + PANEL_W - 4}" y="${(Number(ceiling) - 5).toFixed(1)}" text-anchor="end" fill="#2ca02c" font-size="11">1 Gbit/s link: ${PAYLOAD_CEILING.toFixed(3)} of payload</text>`);
  out.push(...axisTitles(left, TOP, PANEL_W, PANEL_H, 'round-trip time (log scale)', 'Gbit/s at the sink'));
  for (const id of paths) {
    const all = points(profiles, id, key);
    const line = all.filter((p) => !p.loss);
    const color = PATH_COLORS[id];
    if (line.length > 1) {
      const d = line.map((p, i) => `${i === 0 ? 'M' : 'L'}${px(p.rtt).toFixed(1)},${py(p.gbps).toFixed(1)}`).join(' ');
      out.push(`<path d="${d}" fill="none" stroke="${color}" stroke-width="2"${dashOf(id)}/>`);
    }
    for (const p of all) {
      const fill = p.loss ? '#fff' : color;
      out.push(`<circle cx="${px(p.rtt).toFixed(1)}" cy="${py(p.gbps).toFixed(1)}" r="${p.loss ? 5 : 3.5}" fill="${fill}" stroke="${color}" stroke-width="2"><title>${esc(`${WAN_LABELS[id]}, ${p.rtt} ms${p.loss ? ' with loss' : ''}: ${p.gbps.toFixed(3)} Gbit/s`)}</title></circle>`);
    }
  }
  return out;
}

export function wanChart(profiles: readonly ProfileRecord[], paths: readonly WanPathId[], subtitle: string): string {
  const yMax = 1.2;
  const body: string[] = [
    ...panel(LEFTS[0], 'One stream', profiles, paths, 'bulk1', yMax),
    ...panel(LEFTS[1], 'Eight streams at once (total)', profiles, paths, 'bulk8', yMax),
  ];
  const legendY = H - 40;
  const step = W / (paths.length + 1.5);
  paths.forEach((id, i) => {
    const x = step * (i + 0.4) + 20;
    body.push(...legendEntry(x, legendY, id, WAN_LABELS[id]));
  });
  const hx = step * (paths.length + 0.4) + 20;
  body.push(`<circle cx="${hx + 8}" cy="${legendY}" r="5" fill="#fff" stroke="#333" stroke-width="2"/>`);
  body.push(`<text x="${hx + 20}" y="${legendY}" dominant-baseline="middle">50 ms with 0.5% loss</text>`);
  body.push(`<text x="${W / 2}" y="${H - 12}" text-anchor="middle" fill="#555" font-size="11">Written by npm run bench:wan (bench/wan/chart.ts); figures in bench/results/wan-latest.json.</text>`);
  return svgDocument(W, H, 'Throughput against round-trip time on an emulated 1 Gbit/s path', subtitle, body);
}
