/**
 * What the LAN and WAN charts (svg.ts, wan/chart.ts) share, written by hand as
 * SVG (no dependency): one colour per path, the document, a panel's frame,
 * grid lines with their labels, axis titles and legend entries.
 */
import type { PathId } from './paths.js';

/** One colour per path, the same in every chart (the WAN paths are LAN paths too). */
export const PATH_COLORS: Readonly<Record<PathId, string>> = {
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

/** The paths drawn dashed (with a secret), beside their plain twin. */
export function dashOf(id: PathId): string {
  return id === 'tcpipe-secret' || id === 'tcpipe-ws-secret' ? ' stroke-dasharray="6 3"' : '';
}

export function esc(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

/** A panel's box at (left, top), with its title above. */
export function panelFrame(left: number, top: number, width: number, height: number, title: string): string[] {
  return [
    `<text x="${left + width / 2}" y="${top - 14}" text-anchor="middle" font-weight="bold">${esc(title)}</text>`,
    `<rect x="${left}" y="${top}" width="${width}" height="${height}" fill="none" stroke="#999"/>`,
  ];
}

/** A horizontal grid line at `y` across the panel, labelled on the left. */
export function yGridLine(left: number, width: number, y: string, label: string): string[] {
  return [
    `<line x1="${left}" y1="${y}" x2="${left + width}" y2="${y}" stroke="#e5e5e5"/>`,
    `<text x="${left - 6}" y="${y}" text-anchor="end" dominant-baseline="middle">${label}</text>`,
  ];
}

/** A vertical grid line at `x` down the panel, labelled below it. */
export function xGridLine(x: string, top: number, height: number, label: string): string[] {
  return [
    `<line x1="${x}" y1="${top}" x2="${x}" y2="${top + height}" stroke="#f0f0f0"/>`,
    `<text x="${x}" y="${top + height + 16}" text-anchor="middle">${label}</text>`,
  ];
}

/** The titles of the panel's x axis (below) and y axis (rotated, on the left). */
export function axisTitles(left: number, top: number, width: number, height: number, xTitle: string, yTitle: string): string[] {
  return [
    `<text x="${left + width / 2}" y="${top + height + 34}" text-anchor="middle">${esc(xTitle)}</text>`,
    `<text transform="translate(${left - 50} ${top + height / 2}) rotate(-90)" text-anchor="middle">${esc(yTitle)}</text>`,
  ];
}

/** A legend entry: a short line in the path's colour and its label. */
export function legendEntry(x: number, y: number, id: PathId, label: string): string[] {
  return [
    `<line x1="${x}" y1="${y}" x2="${x + 24}" y2="${y}" stroke="${PATH_COLORS[id]}" stroke-width="3"${dashOf(id)}/>`,
    `<text x="${x + 30}" y="${y}" dominant-baseline="middle">${esc(label)}</text>`,
  ];
}

/** The whole SVG document around `body`, with the chart's title and subtitle on top. */
export function svgDocument(width: number, height: number, title: string, subtitle: string, body: readonly string[]): string {
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12">`,
    ...[
      `<rect width="${width}" height="${height}" fill="#fff"/>`,
      `<text x="${width / 2}" y="22" text-anchor="middle" font-size="15" font-weight="bold">${esc(title)}</text>`,
      `<text x="${width / 2}" y="42" text-anchor="middle" fill="#555">${esc(subtitle)}</text>`,
      ...body,
    ].map((l) => `  ${l}`),
    '</svg>',
    '',
  ].join('\n');
}
