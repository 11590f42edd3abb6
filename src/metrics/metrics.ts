/**
 * Prometheus metrics and the status endpoint (`--metrics=HOST:PORT`):
 * GET /metrics serves the Prometheus text format (prom-client, the standard
 * client for Node), GET /status a JSON snapshot that `tcpipe status` prints.
 * Counters follow the instance's events; gauges are read at scrape time.
 * A server with `[[client]]` tables labels every link and stream metric with
 * `client`; without them the series are as they always were (no such label).
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import type { Tcpipe } from '../instance.js';
import type { Logger } from '../log/logger.js';
import { errorMessage } from '../errors.js';
import { UDP_DROP_REASONS } from '../endpoints/udp-relay.js';

export interface MetricsServer {
  readonly address: AddressInfo;
  close(): Promise<void>;
}

/** `{ client }` for a labelled series, nothing for an instance without clients. */
function byClient(client: string | undefined): { client?: string } {
  return client === undefined ? {} : { client };
}

export function createRegistry(instance: Tcpipe): Registry {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'tcpipe_process_' });
  const linkUp = new Gauge({
    name: 'tcpipe_link_up',
    help: '1 while the link to the partner is up (per client with [[client]] tables)',
    labelNames: ['client'],
    registers: [registry],
    collect() {
      const clients = instance.status().clients;
      if (clients === undefined) linkUp.set(instance.linkUp ? 1 : 0);
      else for (const c of clients) linkUp.set({ client: c.name }, c.link === null ? 0 : 1);
    },
  });
  const uptime = new Gauge({
    name: 'tcpipe_link_uptime_seconds',
    help: 'Seconds since the current link came up (0 when down)',
    labelNames: ['client'],
    registers: [registry],
    collect() {
      const status = instance.status();
      const since = (upSince: number | undefined): number => (upSince === undefined ? 0 : (Date.now() - upSince) / 1000);
      if (status.clients === undefined) uptime.set(since(status.link?.upSince));
      else for (const c of status.clients) uptime.set({ client: c.name }, since(c.link?.upSince));
    },
  });
  const rtt = new Gauge({
    name: 'tcpipe_heartbeat_rtt_seconds',
    help: 'Smoothed round-trip time of heartbeat pings on the current link',
    labelNames: ['client'],
    registers: [registry],
    collect() {
      const status = instance.status();
      if (status.clients === undefined) rtt.set((status.link?.rttMs ?? 0) / 1000);
      else for (const c of status.clients) rtt.set({ client: c.name }, (c.link?.rttMs ?? 0) / 1000);
    },
  });
  new Gauge({
    name: 'tcpipe_receive_buffered_bytes',
    help: 'Bytes received from the partner not yet taken by local sockets',
    labelNames: ['client'],
    registers: [registry],
    collect() {
      const status = instance.status();
      if (status.clients === undefined) this.set(status.link?.bufferedBytes ?? 0);
      else for (const c of status.clients) this.set({ client: c.name }, c.link?.bufferedBytes ?? 0);
    },
  });
  new Counter({
    name: 'tcpipe_links_total',
    help: 'Links established since start (reconnects are this minus one)',
    labelNames: ['client'],
    registers: [registry],
    collect() {
      const status = instance.status();
      this.reset();
      if (status.clients === undefined) this.inc(status.linksUp);
      else for (const c of status.clients) this.inc({ client: c.name }, c.linksUp);
    },
  });
  const bytes = new Counter({
    name: 'tcpipe_bytes_total',
    help: 'Relayed payload bytes: in = from the partner, out = to the partner',
    labelNames: ['direction', 'client'],
    registers: [registry],
    collect() {
      const status = instance.status();
      bytes.reset();
      if (status.clients === undefined) {
        bytes.inc({ direction: 'in' }, status.bytesIn);
        bytes.inc({ direction: 'out' }, status.bytesOut);
      } else {
        for (const c of status.clients) {
          bytes.inc({ direction: 'in', client: c.name }, c.bytesIn);
          bytes.inc({ direction: 'out', client: c.name }, c.bytesOut);
        }
      }
    },
  });
  const open = new Gauge({
    name: 'tcpipe_streams_open',
    help: 'Open streams, per port and side',
    labelNames: ['port', 'side', 'client'],
    registers: [registry],
    collect() {
      open.reset();
      for (const s of instance.status().streams) open.inc({ port: String(s.port), side: s.side, ...byClient(s.client) });
    },
  });
  const opened = new Counter({
    name: 'tcpipe_streams_total',
    help: 'Streams opened since start, per port and side',
    labelNames: ['port', 'side', 'client'],
    registers: [registry],
  });
  const refused = new Counter({
    name: 'tcpipe_refused_total',
    help: 'Connections and streams refused or failed, by reason',
    labelNames: ['reason', 'client'],
    registers: [registry],
  });
  registerUdpMetrics(registry, instance);
  instance.on('stream-open', (s) => opened.inc({ port: String(s.port), side: s.side, ...byClient(s.client) }));
  instance.on('refused', (r) => refused.inc({ reason: r.kind, ...byClient(r.client) }));
  return registry;
}

/** UDP flows (issue 20): read from the instance's counters at scrape time. */
function registerUdpMetrics(registry: Registry, instance: Tcpipe): void {
  new Gauge({
    name: 'tcpipe_udp_flows',
    help: 'UDP flows open on this side (entry and exit)',
    registers: [registry],
    collect() {
      this.set(instance.udpStats().flows);
    },
  });
  const datagrams = new Counter({
    name: 'tcpipe_udp_datagrams_total',
    help: 'UDP datagrams carried: in = from the partner, out = to the partner',
    labelNames: ['direction'],
    registers: [registry],
    collect() {
      const udp = instance.udpStats();
      datagrams.reset();
      datagrams.inc({ direction: 'in' }, udp.datagramsIn);
      datagrams.inc({ direction: 'out' }, udp.datagramsOut);
    },
  });
  const bytes = new Counter({
    name: 'tcpipe_udp_bytes_total',
    help: 'UDP payload bytes carried: in = from the partner, out = to the partner',
    labelNames: ['direction'],
    registers: [registry],
    collect() {
      const udp = instance.udpStats();
      bytes.reset();
      bytes.inc({ direction: 'in' }, udp.bytesIn);
      bytes.inc({ direction: 'out' }, udp.bytesOut);
    },
  });
  const dropped = new Counter({
    name: 'tcpipe_udp_dropped_total',
    help: 'UDP datagrams dropped, by reason (congested, held, no-link, no-flow, too-large, queue-full, refused)',
    labelNames: ['reason'],
    registers: [registry],
    collect() {
      const udp = instance.udpStats();
      dropped.reset();
      for (const reason of UDP_DROP_REASONS) dropped.inc({ reason }, udp.dropped[reason]);
    },
  });
}

export function startMetricsServer(instance: Tcpipe, host: string, port: number, logger: Logger): Promise<MetricsServer> {
  const registry = createRegistry(instance);
  const server = http.createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET') {
      res.writeHead(405, { allow: 'GET' }).end();
      return;
    }
    if (path === '/metrics') {
      registry.metrics().then(
        (text) => res.writeHead(200, { 'content-type': registry.contentType }).end(text),
        (err: unknown) => res.writeHead(500).end(errorMessage(err)),
      );
      return;
    }
    if (path === '/status') {
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(instance.status()));
      return;
    }
    res.writeHead(404, { 'content-type': 'text/plain' }).end('Not Found: try /metrics or /status\n');
  });
  server.on('clientError', (_err, socket) => socket.destroy());
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      const address = server.address() as AddressInfo;
      logger.info('metrics', `metrics on http://${address.family === 'IPv6' ? `[${address.address}]` : address.address}:${address.port}/metrics`);
      resolve({
        address,
        close: () => new Promise<void>((done) => server.close(() => done())),
      });
    });
  });
}
