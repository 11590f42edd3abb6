/**
 * Ports and routes on the command line and in the file: `-p`, `--allow` and
 * `ports` (ports, `BIND:PORT`, ranges `A-B`, each with `/udp` or `/tcp`) and
 * `-t` (a default host and routes `PORT[/udp]=HOST[:TPORT][,OPTION...]`).
 * Pure: text in, specs out, or a UsageError with a one-line reason.
 */
import { isIP } from 'node:net';
import { UsageError } from '../errors.js';
import type { ListenSpec } from '../endpoints/entry.js';
import type { RouteSpec } from '../instance.js';
import { parseRouteOptions } from './proxy-args.js';

export function parsePort(text: string, what: string): number {
  if (!/^\d{1,5}$/.test(text)) throw new UsageError(`${what}: '${text}' is not a port number (1-65535)`);
  const port = Number(text);
  if (port < 1 || port > 65535) throw new UsageError(`${what}: port ${port} is outside 1-65535`);
  return port;
}

/** `host:port`, `[v6]:port`. */
export function parseHostPort(text: string, what: string): { host: string; port: number } {
  if (text.startsWith('[')) {
    const v6 = /^\[([^\]]*)\](.*)$/.exec(text);
    const host = v6?.[1] ?? '';
    const rest = v6?.[2] ?? '';
    if (v6 !== null && host === '') throw new UsageError(`${what}: '[]' is not a host name or address`);
    if (v6 === null || !rest.startsWith(':') || rest === ':') {
      throw new UsageError(`${what}: '${text}' needs a port, as [${host || '<address>'}]:<port>`);
    }
    validateHost(host, what);
    return { host, port: parsePort(rest.slice(1), what) };
  }
  if (isIP(text) === 6) throw new UsageError(`${what}: '${text}' needs a port; write it as [${text}]:<port>`);
  const colon = text.lastIndexOf(':');
  if (colon < 0) throw new UsageError(`${what}: '${text}' needs a port, as <host>:<port>`);
  const host = text.slice(0, colon);
  if (host.includes(':')) throw new UsageError(`${what}: write an IPv6 address in brackets, as [${host}]:${text.slice(colon + 1)}`);
  if (host === '') throw new UsageError(`${what}: '${text}' has no host`);
  validateHost(host, what);
  return { host, port: parsePort(text.slice(colon + 1), what) };
}

/** A `/udp` or `/tcp` suffix (default TCP), and the text before it. */
export function splitProtocol(item: string): { text: string; protocol: 'tcp' | 'udp' } {
  const m = /^(.*)\/(udp|tcp)$/i.exec(item);
  if (m === null) return { text: item, protocol: 'tcp' };
  return { text: m[1] ?? '', protocol: (m[2] ?? '').toLowerCase() === 'udp' ? 'udp' : 'tcp' };
}

/** `[BIND:]PORT[/udp|/tcp][,...]`; a PORT may be a range `A-B` (`A-B/udp`). */
export function parsePortList(text: string, given: boolean, what = '-p/--ports'): ListenSpec[] {
  if (!given) return [];
  const specs: ListenSpec[] = [];
  for (const entry of text.split(',')) {
    if (entry === '') throw new UsageError(`${what}: empty entry in '${text}'`);
    const { text: item, protocol } = splitProtocol(entry);
    if (/\/\w*$/.test(item) || item === '') throw new UsageError(`${what}: '${entry}': a port takes /udp or /tcp, nothing else`);
    const addresses = parsePortRange(item, what) ?? [/^\d+$/.test(item) ? { port: parsePort(item, what) } : parseHostPort(item, what)];
    for (const address of addresses) {
      const spec: ListenSpec = protocol === 'udp' ? { ...address, protocol } : address;
      // Two listeners clash on one port when either takes every address, or both take the same one (TCP and UDP apart).
      const clash = specs.some(
        (o) => o.port === spec.port && (o.protocol ?? 'tcp') === protocol && (o.host === undefined || spec.host === undefined || o.host === spec.host),
      );
      if (clash) throw new UsageError(`${what}: port ${spec.port}${protocol === 'udp' ? '/udp' : ''} is listed twice`);
      specs.push(spec);
    }
  }
  return specs;
}

/** A range takes at most this many ports: a typo like 4000-40000 must not bind 36,000. */
export const MAX_PORT_RANGE = 1000;

/** `[BIND:]A-B`: the ports from A to B; null when the item is not a range. */
export function parsePortRange(item: string, what: string): ListenSpec[] | null {
  const range = /^(.*?)(\d{1,5})-(\d{1,5})$/.exec(item);
  if (range === null) return null;
  const [, prefix = '', a = '', b = ''] = range;
  if (prefix !== '' && !prefix.endsWith(':')) return null;
  const first: ListenSpec = prefix === '' ? { port: parsePort(a, what) } : parseHostPort(prefix + a, what);
  const last = parsePort(b, what);
  if (last < first.port) throw new UsageError(`${what}: range ${a}-${b} goes backwards`);
  if (last - first.port + 1 > MAX_PORT_RANGE) throw new UsageError(`${what}: range ${a}-${b} has ${last - first.port + 1} ports (at most ${MAX_PORT_RANGE})`);
  const specs: ListenSpec[] = [];
  for (let port = first.port; port <= last; port++) specs.push(first.host === undefined ? { port } : { host: first.host, port });
  return specs;
}

/** `-t HOST` (once) and `-t PORT=HOST[:TPORT][,OPTION...]` (any number, one per port). */
export function parseTargets(items: readonly string[]): { target: string | undefined; routes: RouteSpec[] } {
  let target: string | undefined;
  const routes: RouteSpec[] = [];
  const seen = new Set<number>();
  for (const item of items) {
    const eq = item.indexOf('=');
    const comma = item.indexOf(',');
    if (comma >= 0 && (eq < 0 || comma < eq)) {
      throw new UsageError(`-t/--target: '${item}': options follow a route (-t PORT=HOST,proxy-protocol=v2); for every port use --proxy-protocol`);
    }
    if (eq < 0) {
      if (target !== undefined) throw new UsageError(`-t/--target: two default hosts ('${target}' and '${item}'); route one port with -t PORT=HOST[:TPORT]`);
      const host = item.replace(/^\[(.+)\]$/, '$1');
      if (host.includes(':') && isIP(host) !== 6) {
        throw new UsageError(`-t/--target: '${item}' is not a host; to change the port, route it: -t PORT=HOST:TPORT`);
      }
      validateHost(host, '-t/--target');
      target = host;
      continue;
    }
    const what = `-t/--target ${item}`;
    const { text: portText, protocol } = splitProtocol(item.slice(0, eq));
    const port = parsePort(portText, what);
    const key = protocol === 'udp' ? -port : port;
    if (seen.has(key)) throw new UsageError(`-t/--target: port ${port}${protocol === 'udp' ? '/udp' : ''} has two routes`);
    seen.add(key);
    const udp = protocol === 'udp' ? { protocol } : {};
    const [rest = '', ...options] = item.slice(eq + 1).split(',');
    const routeOptions = parseRouteOptions(options, what);
    if (rest === '') throw new UsageError(`${what}: no host after '='`);
    const withPort = /^\[.+\]:\d+$/.test(rest) || (/^[^:]+:\d+$/.test(rest) && !rest.startsWith('['));
    if (withPort) {
      const address = parseHostPort(rest, what);
      routes.push({ port, host: address.host, targetPort: address.port, ...udp, ...routeOptions });
    } else {
      const host = rest.replace(/^\[(.+)\]$/, '$1');
      validateHost(host, what);
      routes.push({ port, host, ...udp, ...routeOptions });
    }
  }
  return { target, routes };
}

function validateHost(host: string, what: string): void {
  if (host === '' || !/^[A-Za-z0-9._:%-]+$/.test(host)) throw new UsageError(`${what}: '${host}' is not a host name or address`);
}
