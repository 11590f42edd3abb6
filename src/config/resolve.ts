/**
 * Turns the public options into what the layers take: the link's security,
 * the client's target and proxy, the exit side's route table.
 */
import type { LinkSecurity } from '../link/security.js';
import type { LinkTarget } from '../link/client.js';
import { ProxyPassword, parseProxyUrl, proxyFromEnv, type ProxySpec } from '../link/proxy.js';
import { RouteTable, type Route } from '../endpoints/routes.js';
import { Secret } from '../security/secret.js';
import { ErrorCodes, TcpipeError } from '../errors.js';
import type { ClientOptions, CommonOptions, Limits, ReloadableOptions } from '../instance.js';
import type { LinkSettings } from '../link/link-session.js';
import { Capability } from '../protocol/constants.js';
import type { CapabilityRequirement } from '../protocol/hello.js';

export function securityFrom(options: CommonOptions): LinkSecurity {
  if (options.secret !== undefined && options.tls !== undefined) {
    throw new TcpipeError(ErrorCodes.CONFIG, 'give either a secret or certificates, not both');
  }
  if (options.secret !== undefined) {
    const texts = typeof options.secret === 'string' ? [options.secret] : options.secret;
    if (texts.length === 0) throw new TcpipeError(ErrorCodes.CONFIG, 'secret: the list is empty');
    const name = (i: number): string => (texts.length > 1 ? `secret ${i + 1}` : 'secret');
    return { kind: 'psk', secrets: texts.map((t, i) => (t instanceof Secret ? t : Secret.fromText(t, name(i)))) };
  }
  if (options.tls !== undefined) return { kind: 'cert', ...options.tls };
  return { kind: 'none' };
}

export function clientTarget(o: ClientOptions): LinkTarget {
  if (o.url !== undefined) {
    let url: URL;
    try {
      url = new URL(o.url);
    } catch {
      throw new TcpipeError(ErrorCodes.CONFIG, `not a URL: ${o.url}`);
    }
    if (url.protocol !== 'ws:' && url.protocol !== 'wss:') throw new TcpipeError(ErrorCodes.CONFIG, `unsupported link URL scheme '${url.protocol}' (ws: or wss:)`);
    const host = url.hostname.replace(/^\[|\]$/g, '');
    const port = url.port !== '' ? Number(url.port) : url.protocol === 'wss:' ? 443 : 80;
    return { kind: 'ws', url: url.toString(), host, port };
  }
  if (o.host === undefined || o.port === undefined) throw new TcpipeError(ErrorCodes.CONFIG, 'a client needs host and port, or url');
  return { kind: 'tcp', host: o.host, port: o.port };
}

export function clientProxy(o: ClientOptions, target: LinkTarget): { spec: ProxySpec; from: string } | null {
  let found: { spec: ProxySpec; from: string } | null = null;
  if (typeof o.proxy === 'string') found = { spec: parseProxyUrl(o.proxy, 'proxy'), from: '' };
  else if (o.proxy === undefined) {
    const scheme = target.kind === 'tcp' ? 'tcp' : target.url.startsWith('wss:') ? 'wss' : 'ws';
    const fromEnv = proxyFromEnv(target.host, scheme, o.env ?? process.env);
    if (fromEnv !== null) found = { spec: fromEnv.proxy, from: ` (from ${fromEnv.variable})` };
  }
  if (found !== null && o.proxyPassword !== undefined) {
    found = { spec: { ...found.spec, password: new ProxyPassword(o.proxyPassword) }, from: found.from };
  }
  return found;
}

export function routeTable(options: ReloadableOptions): RouteTable {
  const routes = new Map<number, Route>();
  for (const r of options.routes ?? []) {
    if ((r.protocol ?? 'tcp') !== 'tcp') continue;
    if (routes.has(r.port)) throw new TcpipeError(ErrorCodes.CONFIG, `port ${r.port} has two routes`);
    routes.set(r.port, {
      host: r.host,
      port: r.targetPort ?? r.port,
      ...(r.proxyProtocol !== undefined ? { proxyProtocol: r.proxyProtocol === 'none' ? null : r.proxyProtocol } : {}),
    });
  }
  return new RouteTable({
    defaultHost: options.target ?? null,
    proxyProtocol: options.proxyProtocol ?? null,
    routes,
    allow: options.allow === undefined ? null : new Set(options.allow),
  });
}

/** The exit side's table for UDP flows: /udp routes, the same default host, --allow=N/udp. */
export function udpRouteTable(options: ReloadableOptions): RouteTable {
  const routes = new Map<number, Route>();
  for (const r of options.routes ?? []) {
    if (r.protocol !== 'udp') continue;
    if (routes.has(r.port)) throw new TcpipeError(ErrorCodes.CONFIG, `port ${r.port}/udp has two routes`);
    routes.set(r.port, { host: r.host, port: r.targetPort ?? r.port });
  }
  // --allow lists ports of both kinds: given at all, a UDP port must be listed with /udp.
  const listed = options.allow !== undefined || options.allowUdp !== undefined;
  return new RouteTable({
    defaultHost: options.target ?? null,
    routes,
    allow: listed ? new Set(options.allowUdp ?? []) : null,
  });
}

/** What needs capability udp of the partner: the first /udp port or /udp route, for the refusal line. */
export function udpRequirement(options: CommonOptions): CapabilityRequirement[] {
  const port = (options.ports ?? []).find((p) => typeof p !== 'number' && p.protocol === 'udp');
  if (port !== undefined && typeof port !== 'number') return [{ capability: Capability.UDP, neededBy: `the /udp port ${port.port}` }];
  const route = (options.routes ?? []).find((r) => r.protocol === 'udp');
  if (route !== undefined) return [{ capability: Capability.UDP, neededBy: `the /udp route for port ${route.port}` }];
  return [];
}

/**
 * What this side's options need of the partner: writing PROXY headers to
 * targets needs the user's addresses, which only the partner's OPEN carries.
 */
export function requirementsFrom(options: ReloadableOptions): CapabilityRequirement[] {
  const writesHeaders = options.proxyProtocol !== undefined || (options.routes ?? []).some((r) => r.proxyProtocol === 'v1' || r.proxyProtocol === 'v2');
  return writesHeaders ? [{ capability: Capability.ORIGIN, neededBy: '--proxy-protocol' }] : [];
}

/** The link's settings from the limits (defaults merged with the caller's), --resume and the requirements. */
export function linkSettingsFrom(l: Limits, resumeSeconds: number, requirements: readonly CapabilityRequirement[] = []): LinkSettings {
  const heartbeatMs = l.heartbeatSeconds * 1000;
  return {
    mux: {
      initialWindow: l.initialWindow,
      maxWindow: l.maxWindow,
      receiveBudget: l.receiveBudget,
      maxStreams: l.maxStreams,
      linkWriteBound: l.linkWriteBound,
      maxOpenRate: l.maxOpenRate,
    },
    maxFramePayload: l.maxFramePayload,
    heartbeatMs,
    pingDivisor: l.pingDivisor,
    handshakeTimeoutMs: l.handshakeTimeoutMs,
    keepAliveMs: Math.max(1000, Math.floor(heartbeatMs / 2)),
    resumeGraceMs: Math.round(resumeSeconds * 1000),
    // Every tcpipe of this version speaks these (docs/PROTOCOL.md, "Capabilities").
    capabilities: [Capability.ORIGIN, Capability.UDP],
    requirements,
  };
}
