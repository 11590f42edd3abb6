/** `tcpipe status`: asks a running instance's metrics endpoint for /status and prints it as a table. */
import http from 'node:http';
import type { TcpipeStatus } from '../instance.js';
import { errorMessage } from '../errors.js';
import { formatAddress } from '../link/transport.js';

export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let value = n / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${value.toFixed(1)} ${units[unit] ?? ''}`;
}

export function formatDuration(ms: number): string {
  const s = Math.floor(ms / 1000);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

/** Rows of cells as columns padded to their widest cell. */
function table(rows: readonly (readonly string[])[]): string[] {
  const widths = rows[0]?.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length))) ?? [];
  return rows.map((row) => row.map((cell, i) => cell.padEnd(widths[i] ?? 0)).join('  ').trimEnd());
}

/** A server with [[client]] tables: one row per client. */
function renderClients(status: TcpipeStatus, now: number): string[] {
  const clients = status.clients ?? [];
  const up = clients.filter((c) => c.link !== null).length;
  const rows = [['CLIENT', 'LINK', 'SINCE', 'PEER', 'RTT', 'STREAMS', 'IN', 'OUT']];
  for (const c of clients) {
    const since = c.link?.upSince ?? c.downSince ?? now;
    rows.push([
      c.name,
      c.link === null ? 'down' : 'up',
      formatDuration(now - since),
      c.link?.peer ?? '-',
      c.link === null ? '-' : `${c.link.rttMs.toFixed(2)} ms`,
      String(c.openStreams),
      formatBytes(c.bytesIn),
      formatBytes(c.bytesOut),
    ]);
  }
  return [`${status.role}: ${clients.length} clients, ${up} links up`, ...table(rows)];
}

export function renderStatus(status: TcpipeStatus, now: number): string {
  const lines: string[] = [];
  const link = status.link;
  if (status.clients !== undefined) lines.push(...renderClients(status, now));
  else {
    lines.push(
      link === null
        ? `${status.role}: link down`
        : `${status.role}: link up with ${link.peer} for ${formatDuration(now - link.upSince)}, rtt ${link.rttMs.toFixed(2)} ms, ${formatBytes(link.bytesIn)} in, ${formatBytes(link.bytesOut)} out`,
    );
  }
  lines.push(
    `since start: ${status.linksUp} links, ${status.streamsTotal} streams, ${formatBytes(status.bytesIn)} in, ${formatBytes(status.bytesOut)} out; ${status.streams.length} streams open`,
  );
  if (status.streams.length > 0) {
    const named = status.clients !== undefined;
    const rows = [[...(named ? ['CLIENT'] : []), 'STREAM', 'PORT', 'SIDE', 'PEER', 'AGE', 'IN', 'OUT']];
    for (const s of status.streams) {
      rows.push([
        ...(named ? [s.client ?? '-'] : []),
        String(s.id),
        String(s.port),
        s.side,
        s.peer,
        formatDuration(s.ageMs),
        formatBytes(s.bytesIn),
        formatBytes(s.bytesOut),
      ]);
    }
    lines.push(...table(rows));
  }
  // An instance older than UDP flows has no `udp` in its status.
  const udp = (status as Partial<TcpipeStatus>).udp;
  if (udp !== undefined && (udp.flowsTotal > 0 || udp.flows > 0)) {
    const drops = Object.entries(udp.dropped).filter(([, n]) => n > 0);
    lines.push(
      `udp: ${udp.flows} flows open (${udp.flowsTotal} since start), ${udp.datagramsIn} datagrams (${formatBytes(udp.bytesIn)}) in, ${udp.datagramsOut} (${formatBytes(udp.bytesOut)}) out, ${drops.length === 0 ? 'none dropped' : `dropped: ${drops.map(([r, n]) => `${n} ${r}`).join(', ')}`}`,
    );
    if (udp.flowList.length > 0) {
      const rows = [['FLOW', 'PORT', 'SIDE', 'PEER', 'AGE', 'IDLE', 'IN', 'OUT']];
      for (const f of udp.flowList) {
        rows.push([
          String(f.id),
          `${f.port}/udp`,
          f.side,
          f.peer || '-',
          formatDuration(f.ageMs),
          formatDuration(f.idleMs),
          `${f.datagramsIn} (${formatBytes(f.bytesIn)})`,
          `${f.datagramsOut} (${formatBytes(f.bytesOut)})`,
        ]);
      }
      lines.push(...table(rows));
    }
  }
  return lines.join('\n');
}

export function fetchStatus(host: string, port: number, timeoutMs = 3000): Promise<TcpipeStatus> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host, port, path: '/status', timeout: timeoutMs }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        body += chunk;
      });
      res.on('end', () => {
        if (res.statusCode !== 200) return reject(new Error(`${formatAddress(host, port)} answered ${res.statusCode ?? '?'}`));
        try {
          resolve(JSON.parse(body) as TcpipeStatus);
        } catch (err) {
          reject(new Error(`bad status from ${formatAddress(host, port)}: ${errorMessage(err)}`));
        }
      });
    });
    req.on('timeout', () => req.destroy(new Error(`no answer from ${formatAddress(host, port)} within ${timeoutMs / 1000}s`)));
    req.on('error', (err) => reject(new Error(`cannot reach tcpipe at ${formatAddress(host, port)}: ${errorMessage(err)}`)));
  });
}
