/**
 * Command-line parsing and validation. Pure: argv in, a typed command out,
 * or a UsageError with a one-line reason (the CLI prints it with the usage
 * and exits 2).
 */
import { parseArgs } from 'node:util';
import { UsageError } from '../errors.js';
import type { ListenSpec } from '../endpoints/entry.js';
import type { RouteSpec, SiteOptions } from '../instance.js';
import { CLIENT_TABLES, readConfigFile, type OptionValues } from '../config/file.js';
import { sitesOf } from '../config/site-args.js';
import { parseProxyFlags } from './proxy-args.js';
import { parseHostPort, parsePort, parsePortList, parseTargets } from './port-args.js';

export { MAX_PORT_RANGE, parseHostPort, parsePort, parsePortList, parsePortRange, parseTargets, splitProtocol } from './port-args.js';

export type LogFormat = 'text' | 'json';

export interface RunCommand {
  readonly kind: 'run';
  readonly mode: 'server' | 'client';
  /** Server: the link port. Client: the server's port. */
  readonly linkPort: number;
  /** Client: the server's host. Server: the bind address of the link listener (default all). */
  readonly linkHost: string | undefined;
  readonly ports: readonly ListenSpec[];
  readonly target: string | undefined;
  readonly routes: readonly RouteSpec[];
  readonly onePerPort: boolean;
  readonly heartbeatSeconds: number | undefined;
  /** --resume: seconds to hold user connections when the link drops (0: off). */
  readonly resumeSeconds: number | undefined;
  readonly verbosity: 'quiet' | 'normal' | 'verbose';
  readonly logFormat: LogFormat;
  readonly secretFile: string | undefined;
  readonly tls: { readonly cert: string; readonly key: string; readonly ca: string; readonly serverName: string | undefined } | undefined;
  readonly allow: readonly number[] | undefined;
  /** --allow=N/udp entries: the UDP ports the partner may open flows for. */
  readonly allowUdp: readonly number[] | undefined;
  /** --udp-timeout: seconds a UDP flow lives without a datagram. */
  readonly udpTimeoutSeconds: number | undefined;
  /** --udp-max-flows: UDP flows at once on this side. */
  readonly udpMaxFlows: number | undefined;
  readonly maxHandshakes: number | undefined;
  /** --max-window: the largest receive window a stream may grow to, in bytes. */
  readonly maxWindow: number | undefined;
  /** --session-budget: receive bytes the link may hold beyond the initial windows, in bytes. */
  readonly sessionBudget: number | undefined;
  /** Client: a ws:// or wss:// link URL instead of host:port. */
  readonly linkUrl: string | undefined;
  readonly proxy: string | undefined;
  readonly proxyPasswordFile: string | undefined;
  /** Server: accepted transports; client: CA file for wss:// (in `tls.ca` when certificates are used). */
  readonly transports: readonly ('tcp' | 'ws')[] | undefined;
  readonly wsPath: string | undefined;
  readonly wsCaFile: string | undefined;
  /** --metrics=HOST:PORT: where to serve Prometheus metrics and status. */
  readonly metrics: { readonly host: string; readonly port: number } | undefined;
  /** A server's `[[client]]` tables (config file only): many sites, one partner each. */
  readonly sites?: readonly SiteOptions[];
  /** --proxy-protocol: the PROXY header written to targets (routes may choose their own). */
  readonly proxyProtocol: 'v1' | 'v2' | undefined;
  /** --accept-proxy-protocol: entry connections start with a load balancer's PROXY header. */
  readonly acceptProxyProtocol: boolean;
}

export type Command =
  | RunCommand
  | { readonly kind: 'help' }
  | { readonly kind: 'version' }
  | { readonly kind: 'keygen' }
  | { readonly kind: 'status'; readonly metrics: { readonly host: string; readonly port: number } }
  | { readonly kind: 'demo'; readonly verbosity: 'quiet' | 'normal' | 'verbose' };

const OPTIONS = {
  config: { type: 'string' },
  metrics: { type: 'string' },
  client: { type: 'string', short: 'c' },
  server: { type: 'string', short: 's' },
  ports: { type: 'string', short: 'p', multiple: true },
  target: { type: 'string', short: 't', multiple: true },
  'one-per-port': { type: 'boolean' },
  heartbeat: { type: 'string' },
  resume: { type: 'string' },
  verbose: { type: 'boolean', short: 'v' },
  quiet: { type: 'boolean', short: 'q' },
  'log-format': { type: 'string' },
  'secret-file': { type: 'string' },
  'tls-cert': { type: 'string' },
  'tls-key': { type: 'string' },
  'tls-ca': { type: 'string' },
  'tls-server-name': { type: 'string' },
  allow: { type: 'string' },
  proxy: { type: 'string' },
  'proxy-password-file': { type: 'string' },
  transport: { type: 'string' },
  'ws-path': { type: 'string' },
  'max-handshakes': { type: 'string' },
  'max-window': { type: 'string' },
  'session-budget': { type: 'string' },
  'proxy-protocol': { type: 'string' },
  'accept-proxy-protocol': { type: 'boolean' },
  'udp-timeout': { type: 'string' },
  'udp-max-flows': { type: 'string' },
  help: { type: 'boolean', short: 'h' },
  version: { type: 'boolean', short: 'V' },
} as const;

export interface ParseOptions {
  /** Reads a --config file (default: readConfigFile); tests inject their own. */
  readonly loadConfig?: (path: string) => OptionValues;
}

/** Options whose command-line form is repeatable (an array); others are one string. */
const MULTIPLE = new Set(['ports', 'target']);

export function parseCommandLine(argv: readonly string[], parseOptions: ParseOptions = {}): Command {
  let parsed;
  try {
    parsed = parseArgs({ args: [...argv], options: OPTIONS, allowPositionals: true, strict: true });
  } catch (err) {
    throw new UsageError(cleanParseError(err));
  }
  const { values, positionals } = parsed;
  if (values.help === true) return { kind: 'help' };
  if (values.version === true) return { kind: 'version' };
  const configPath = values.config;
  if (configPath === undefined) return validate(values, positionals);
  // The file fills in what the command line does not say: flags override the file.
  const file = (parseOptions.loadConfig ?? readConfigFile)(configPath);
  const merged: Record<string, unknown> = { ...values };
  const fromFile = new Set<string>();
  for (const [key, value] of Object.entries(file)) {
    if (value === undefined || merged[key] !== undefined) continue;
    merged[key] = Array.isArray(value) && !MULTIPLE.has(key) ? value.join(',') : value;
    fromFile.add(key);
  }
  let command: Command;
  try {
    command = validate(merged as typeof values, positionals, file[CLIENT_TABLES] !== undefined);
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    // Name the file and key when the bad value came from the file.
    const label = /^(?:-\w\/)?--([\w-]+)(?::\s*|\s+)/.exec(err.message);
    const key = label?.[1];
    if (label === null || key === undefined || !fromFile.has(key)) throw err;
    throw new UsageError(`config ${configPath}: key '${key}': ${err.message.slice(label[0].length)}`);
  }
  const tables = file[CLIENT_TABLES];
  return tables === undefined || command.kind !== 'run' ? command : { ...command, sites: sitesOf(command, tables) };
}

type ParsedValues = ReturnType<typeof parseArgs<{ args: string[]; options: typeof OPTIONS; allowPositionals: true; strict: true }>>['values'];

/** `clientTables`: the file has [[client]] tables, whose ports count as entry ports. */
function validate(values: ParsedValues, positionals: readonly string[], clientTables = false): Command {
  if (values.verbose === true && values.quiet === true) throw new UsageError('-v/--verbose and -q/--quiet cannot be used together');
  const verbosity = values.verbose === true ? 'verbose' : values.quiet === true ? 'quiet' : 'normal';

  if (positionals.length > 0) {
    const [first, ...rest] = positionals;
    if (first === 'keygen' && rest.length === 0) return { kind: 'keygen' };
    if (first === 'status' && rest.length === 0) {
      if (values.metrics === undefined) throw new UsageError('status needs --metrics=HOST:PORT (or --config with a metrics key): the address the instance serves');
      return { kind: 'status', metrics: parseHostPort(values.metrics, '--metrics') };
    }
    if (first === 'demo' && rest.length === 0) {
      if (values.client !== undefined || values.server !== undefined) throw new UsageError('demo takes no -c or -s: it runs both ends itself');
      return { kind: 'demo', verbosity };
    }
    const known = first === 'demo' || first === 'keygen' || first === 'status';
    throw new UsageError(`unexpected argument '${(known ? rest[0] : first) ?? ''}'`);
  }

  if (values.client === undefined && values.server === undefined) throw new UsageError('a mode is required: -c <host>:<port> or -s <port>');
  if (values.client !== undefined && values.server !== undefined) throw new UsageError('-c and -s cannot be used together: choose client or server mode');

  let mode: 'server' | 'client';
  let linkUrl: string | undefined;
  let linkPort: number;
  let linkHost: string | undefined;
  if (values.server !== undefined) {
    mode = 'server';
    linkPort = parsePort(values.server, '-s/--server');
    linkHost = undefined;
  } else {
    mode = 'client';
    const text = values.client ?? '';
    if (/^wss?:\/\//i.test(text)) {
      let url: URL;
      try {
        url = new URL(text);
      } catch {
        throw new UsageError(`-c/--client: '${text}' is not a valid URL`);
      }
      linkUrl = url.toString();
      linkHost = url.hostname.replace(/^\[|\]$/g, '');
      linkPort = url.port !== '' ? Number(url.port) : url.protocol === 'wss:' ? 443 : 80;
    } else if (/^[a-z][a-z0-9+.-]*:\/\//i.test(text)) {
      throw new UsageError(`-c/--client: unsupported scheme in '${text}' (use host:port, ws:// or wss://)`);
    } else {
      const address = parseHostPort(text, '-c/--client');
      linkHost = address.host;
      linkPort = address.port;
    }
  }

  const ports = parsePortList((values.ports ?? []).join(','), (values.ports ?? []).length > 0);
  const udpPort = ports.find((p) => p.protocol === 'udp');
  if (values['one-per-port'] === true && udpPort !== undefined) {
    throw new UsageError(`--one-per-port is for TCP ports: UDP port ${udpPort.port}/udp has no connection to wait for (each user address is a flow)`);
  }
  const { target, routes } = parseTargets(values.target ?? []);

  let heartbeatSeconds: number | undefined;
  if (values.heartbeat !== undefined) {
    heartbeatSeconds = Number(values.heartbeat);
    if (!/^\d+(\.\d+)?$/.test(values.heartbeat) || !(heartbeatSeconds >= 0.3 && heartbeatSeconds <= 3600)) {
      throw new UsageError(`--heartbeat must be a number of seconds between 0.3 and 3600, not '${values.heartbeat}'`);
    }
  }

  let resumeSeconds: number | undefined;
  if (values.resume !== undefined) {
    resumeSeconds = Number(values.resume);
    if (!/^\d+(\.\d+)?$/.test(values.resume) || !(resumeSeconds <= 86400)) {
      throw new UsageError(`--resume must be a number of seconds from 0 (off) to 86400, not '${values.resume}'`);
    }
  }

  const format = values['log-format'] ?? 'text';
  if (format !== 'text' && format !== 'json') throw new UsageError(`--log-format must be text or json, not '${format}'`);

  const tlsGiven = ['tls-cert', 'tls-key', 'tls-ca'].filter((k) => values[k as 'tls-cert'] !== undefined);
  // --tls-ca alone is the CA for a wss:// server; with --tls-cert and --tls-key it is mutual TLS.
  const wsCaOnly = tlsGiven.length === 1 && values['tls-ca'] !== undefined;
  if (wsCaOnly && linkUrl === undefined) throw new UsageError('--tls-ca alone verifies a wss:// server; for mutual TLS give --tls-cert and --tls-key too');
  if (!wsCaOnly && tlsGiven.length > 0 && tlsGiven.length < 3) throw new UsageError('--tls-cert, --tls-key and --tls-ca go together');
  if (tlsGiven.length === 0 && values['tls-server-name'] !== undefined) throw new UsageError('--tls-server-name needs --tls-cert, --tls-key and --tls-ca');
  if (tlsGiven.length === 3 && values['secret-file'] !== undefined) throw new UsageError('use either --secret-file or certificates, not both');
  const tls =
    tlsGiven.length === 3 && !wsCaOnly
      ? { cert: values['tls-cert'] ?? '', key: values['tls-key'] ?? '', ca: values['tls-ca'] ?? '', serverName: values['tls-server-name'] }
      : undefined;
  if (values['secret-file'] === '') throw new UsageError('--secret-file needs a path');

  if (values.proxy !== undefined) {
    if (mode !== 'client') throw new UsageError('--proxy is for the client (-c)');
    if (values.proxy !== 'none' && !/^(http|socks5h?):\/\/[^/]+\/?$/i.test(values.proxy)) {
      throw new UsageError('--proxy must be http://[user:pass@]host:port, socks5://[user:pass@]host:port or none');
    }
  }
  if (values['proxy-password-file'] !== undefined && values.proxy === undefined) {
    throw new UsageError('--proxy-password-file needs --proxy');
  }
  let transports: ('tcp' | 'ws')[] | undefined;
  if (values.transport !== undefined) {
    if (mode !== 'server') throw new UsageError('--transport is for the server (-s); a client picks its transport by the -c address');
    const items = values.transport.split(',');
    if (items.some((t) => t !== 'tcp' && t !== 'ws') || items.length === 0) {
      throw new UsageError(`--transport must be tcp, ws or tcp,ws, not '${values.transport}'`);
    }
    transports = [...new Set(items as ('tcp' | 'ws')[])];
  }
  const wsPath = values['ws-path'];
  if (wsPath !== undefined) {
    if (mode !== 'server') throw new UsageError('--ws-path is for the server; a client gives the path in its ws:// URL');
    if (!/^\/[\x21-\x7e]*$/.test(wsPath)) throw new UsageError(`--ws-path must start with / and hold no spaces, not '${wsPath}'`);
  }

  const allowSpecs = values.allow === undefined ? undefined : parsePortList(values.allow, true, '--allow').map((spec) => {
    if (spec.host !== undefined) throw new UsageError(`--allow takes port numbers, not '${spec.host}:${spec.port}'`);
    return spec;
  });
  const allow = allowSpecs?.filter((s) => s.protocol !== 'udp').map((s) => s.port);
  const allowUdp = allowSpecs?.filter((s) => s.protocol === 'udp').map((s) => s.port);

  let udpTimeoutSeconds: number | undefined;
  if (values['udp-timeout'] !== undefined) {
    const text = values['udp-timeout'];
    udpTimeoutSeconds = Number(text);
    if (!/^\d+(\.\d+)?$/.test(text) || !(udpTimeoutSeconds >= 1 && udpTimeoutSeconds <= 86400)) {
      throw new UsageError(`--udp-timeout must be a number of seconds from 1 to 86400, not '${text}'`);
    }
  }
  let udpMaxFlows: number | undefined;
  if (values['udp-max-flows'] !== undefined) {
    const text = values['udp-max-flows'];
    udpMaxFlows = Number(text);
    if (!/^\d+$/.test(text) || udpMaxFlows < 1 || udpMaxFlows > 1_000_000) {
      throw new UsageError(`--udp-max-flows must be a whole number from 1 to 1000000, not '${text}'`);
    }
  }

  const { proxyProtocol, acceptProxyProtocol } = parseProxyFlags(values['proxy-protocol'], values['accept-proxy-protocol'] === true, ports.length > 0 || clientTables);

  let maxHandshakes: number | undefined;
  if (values['max-handshakes'] !== undefined) {
    const text = values['max-handshakes'];
    maxHandshakes = Number(text);
    if (!/^\d+$/.test(text) || maxHandshakes < 1 || maxHandshakes > 100000) {
      throw new UsageError(`--max-handshakes must be a whole number from 1 to 100000, not '${text}'`);
    }
  }

  return {
    kind: 'run',
    mode,
    linkPort,
    linkHost,
    ports,
    target,
    routes,
    onePerPort: values['one-per-port'] === true,
    heartbeatSeconds,
    resumeSeconds,
    verbosity,
    logFormat: format,
    secretFile: values['secret-file'],
    tls,
    allow,
    allowUdp,
    udpTimeoutSeconds,
    udpMaxFlows,
    maxHandshakes,
    maxWindow: values['max-window'] === undefined ? undefined : parseSize(values['max-window'], '--max-window', 64 * 1024, 1024 ** 3),
    sessionBudget:
      values['session-budget'] === undefined ? undefined : parseSize(values['session-budget'], '--session-budget', 1024 * 1024, 16 * 1024 ** 3),
    linkUrl,
    proxy: values.proxy,
    proxyPasswordFile: values['proxy-password-file'],
    transports,
    wsPath,
    wsCaFile: wsCaOnly ? values['tls-ca'] : tls !== undefined && linkUrl !== undefined ? tls.ca : undefined,
    metrics: values.metrics === undefined ? undefined : parseHostPort(values.metrics, '--metrics'),
    proxyProtocol,
    acceptProxyProtocol,
  };
}

/** A size in bytes, with an optional K, M or G suffix (powers of 1024). */
export function parseSize(text: string, what: string, min: number, max: number): number {
  const m = /^(\d+)([KMG]?)i?B?$/i.exec(text);
  const unit = { '': 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3 }[(m?.[2] ?? '').toUpperCase()] ?? 1;
  const value = m === null ? Number.NaN : Number(m[1]) * unit;
  if (!(value >= min && value <= max)) {
    throw new UsageError(`${what} must be a size from ${min / 1024} KiB to ${max / 1024 ** 2} MiB (like 16M), not '${text}'`);
  }
  return value;
}

function cleanParseError(err: unknown): string {
  const message = err instanceof Error ? err.message : String(err);
  // parseArgs messages carry advice on a second sentence; keep the first line, without the trailing period.
  const first = (message.split('\n')[0] ?? message).replace(/\.$/, '');
  const unknown = /^Unknown option '([^']+)'/.exec(first);
  if (unknown !== null) return `unknown option '${unknown[1] ?? ''}'`;
  const missing = /^Option '([^']+)' argument missing/.exec(first);
  if (missing !== null) return `option '${missing[1] ?? ''}' needs a value`;
  return first.charAt(0).toLowerCase() + first.slice(1);
}
