/**
 * Dialing through a proxy: HTTP CONNECT (with Basic authentication) or
 * SOCKS5 (RFC 1928, with RFC 1929 username/password). Also the choice of a
 * proxy from HTTPS_PROXY / HTTP_PROXY / ALL_PROXY / NO_PROXY, as curl does.
 * The password is held so that it cannot be printed.
 */
import net from 'node:net';
import { isIP } from 'node:net';
import { inspect } from 'node:util';
import { ErrorCodes, TcpipeError, errorMessage } from '../errors.js';
import { formatAddress } from './transport.js';

export class ProxyPassword {
  readonly #value: string;
  constructor(value: string) {
    this.#value = value;
  }
  reveal(): string {
    return this.#value;
  }
  toString(): string {
    return '[password]';
  }
  toJSON(): string {
    return '[password]';
  }
  [inspect.custom](): string {
    return '[password]';
  }
}

/** As curl: a proxy URL without a port means 1080. */
export const DEFAULT_PROXY_PORT = 1080;

export interface ProxySpec {
  readonly kind: 'http' | 'socks5';
  readonly host: string;
  readonly port: number;
  readonly username?: string;
  readonly password?: ProxyPassword;
}

/** `http://[user:pass@]host:port` or `socks5://...`; the error never shows the password. */
export function parseProxyUrl(text: string, what: string): ProxySpec {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new TcpipeError(ErrorCodes.CONFIG, `${what}: not a URL (expected http://host:port or socks5://host:port)`);
  }
  const kind = url.protocol === 'http:' ? 'http' : url.protocol === 'socks5:' || url.protocol === 'socks5h:' ? 'socks5' : null;
  if (kind === null) throw new TcpipeError(ErrorCodes.CONFIG, `${what}: unsupported proxy scheme '${url.protocol}' (use http:// or socks5://)`);
  const host = url.hostname.replace(/^\[|\]$/g, '');
  if (host === '') throw new TcpipeError(ErrorCodes.CONFIG, `${what}: the proxy URL has no host`);
  // URL drops a port equal to its scheme's default (80 for http:): read it from the text.
  const written = /^[a-z0-9]+:\/\/(?:[^@/]*@)?(?:\[[^\]]*\]|[^:/]*)(?::(\d+))?/i.exec(text)?.[1];
  const port = written !== undefined ? Number(written) : DEFAULT_PROXY_PORT;
  const spec: { -readonly [K in keyof ProxySpec]: ProxySpec[K] } = { kind, host, port };
  if (url.username !== '') spec.username = decodeURIComponent(url.username);
  if (url.password !== '') spec.password = new ProxyPassword(decodeURIComponent(url.password));
  return spec;
}

/** The proxy as it may be logged: scheme, user and address, never the password. */
export function describeProxy(proxy: ProxySpec): string {
  const user = proxy.username !== undefined ? `${proxy.username}@` : '';
  return `${proxy.kind}://${user}${formatAddress(proxy.host, proxy.port)}`;
}

/**
 * The proxy the environment names for a link to `host`, as curl reads it:
 * `https_proxy`/`HTTPS_PROXY` for TCP and wss:// links, `http_proxy`/`HTTP_PROXY`
 * for ws:// links, then `all_proxy`/`ALL_PROXY`; none when NO_PROXY matches.
 */
export function proxyFromEnv(
  host: string,
  scheme: 'tcp' | 'ws' | 'wss',
  env: NodeJS.ProcessEnv,
): { proxy: ProxySpec; variable: string } | null {
  if (noProxyMatches(host, env.no_proxy ?? env.NO_PROXY ?? '')) return null;
  const names = scheme === 'ws' ? ['http_proxy', 'HTTP_PROXY'] : ['https_proxy', 'HTTPS_PROXY'];
  for (const name of [...names, 'all_proxy', 'ALL_PROXY']) {
    const value = env[name];
    if (value !== undefined && value !== '') return { proxy: parseProxyUrl(value, name), variable: name };
  }
  return null;
}

function noProxyMatches(host: string, list: string): boolean {
  const h = host.toLowerCase().replace(/^\[|\]$/g, '');
  for (const raw of list.split(',')) {
    let entry = raw.trim().toLowerCase();
    // Drop a port: "[v6]:port", "name:port" or "v4:port", never the last group of a bare IPv6 address.
    const bracketed = /^\[([^\]]+)\](?::\d+)?$/.exec(entry);
    if (bracketed !== null) entry = bracketed[1] ?? '';
    else if (isIP(entry) !== 6) entry = entry.replace(/:\d+$/, '');
    if (entry === '') continue;
    if (entry === '*') return true;
    const bare = entry.startsWith('.') ? entry.slice(1) : entry;
    if (h === bare || h.endsWith('.' + bare)) return true;
  }
  return false;
}

/** Reads from `socket` until `done` says the reply is complete; bounded. */
function readReply(socket: net.Socket, done: (buf: Buffer) => number, limit: number): Promise<{ reply: Buffer; rest: Buffer }> {
  return new Promise((resolve, reject) => {
    let buf: Buffer = Buffer.alloc(0);
    const cleanup = (): void => {
      socket.off('data', onData);
      socket.off('end', onEnd);
      socket.off('error', onError);
    };
    const onData = (chunk: Buffer): void => {
      buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]); // a few hundred bytes, once per link
      try {
        const used = done(buf);
        if (used > 0) {
          cleanup();
          socket.pause();
          const rest = buf.subarray(used);
          if (rest.length > 0) socket.unshift(rest);
          resolve({ reply: buf.subarray(0, used), rest });
        } else if (buf.length > limit) {
          cleanup();
          reject(new TcpipeError(ErrorCodes.LINK_CLOSED, 'proxy reply too long'));
        }
      } catch (err) {
        cleanup();
        reject(err);
      }
    };
    const onEnd = (): void => {
      cleanup();
      reject(new TcpipeError(ErrorCodes.LINK_CLOSED, 'proxy closed the connection'));
    };
    const onError = (err: Error): void => {
      cleanup();
      reject(new TcpipeError(ErrorCodes.LINK_CLOSED, `proxy connection failed: ${errorMessage(err)}`));
    };
    socket.on('data', onData);
    socket.on('end', onEnd);
    socket.on('error', onError);
    socket.resume();
  });
}

/** Asks an HTTP proxy for a tunnel with CONNECT. */
export async function httpConnect(socket: net.Socket, proxy: ProxySpec, host: string, port: number): Promise<void> {
  const authority = formatAddress(host, port);
  const lines = [`CONNECT ${authority} HTTP/1.1`, `Host: ${authority}`, 'User-Agent: tcpipe'];
  if (proxy.username !== undefined) {
    const token = Buffer.from(`${proxy.username}:${proxy.password?.reveal() ?? ''}`).toString('base64');
    lines.push(`Proxy-Authorization: Basic ${token}`);
  }
  socket.write(lines.join('\r\n') + '\r\n\r\n');
  const { reply } = await readReply(
    socket,
    (buf) => {
      const end = buf.indexOf('\r\n\r\n');
      return end < 0 ? 0 : end + 4;
    },
    16 * 1024,
  );
  const status = /^HTTP\/1\.[01] (\d{3})([^\r\n]*)/.exec(reply.toString('latin1'));
  if (status === null) throw new TcpipeError(ErrorCodes.LINK_CLOSED, 'proxy sent a malformed reply to CONNECT');
  if (status[1] !== '200') {
    throw new TcpipeError(ErrorCodes.LINK_CLOSED, `proxy refused CONNECT: ${status[1] ?? ''}${(status[2] ?? '').replace(/[^\x20-\x7e]/g, '')}`);
  }
}

const SOCKS_ERRORS: Readonly<Record<number, string>> = Object.freeze({
  1: 'general failure',
  2: 'connection not allowed by ruleset',
  3: 'network unreachable',
  4: 'host unreachable',
  5: 'connection refused',
  6: 'TTL expired',
  7: 'command not supported',
  8: 'address type not supported',
});

/** Asks a SOCKS5 proxy to connect to host:port (the proxy resolves names). */
export async function socks5Connect(socket: net.Socket, proxy: ProxySpec, host: string, port: number): Promise<void> {
  const withAuth = proxy.username !== undefined;
  socket.write(Buffer.from(withAuth ? [5, 2, 0, 2] : [5, 1, 0]));
  const { reply: method } = await readReply(socket, (b) => (b.length >= 2 ? 2 : 0), 2);
  if (method[0] !== 5) throw new TcpipeError(ErrorCodes.LINK_CLOSED, 'proxy does not speak SOCKS5');
  if (method[1] === 2) {
    const user = Buffer.from(proxy.username ?? '', 'utf8');
    const pass = Buffer.from(proxy.password?.reveal() ?? '', 'utf8');
    if (user.length > 255 || pass.length > 255) throw new TcpipeError(ErrorCodes.CONFIG, 'SOCKS5 username or password longer than 255 bytes');
    socket.write(Buffer.concat([Buffer.from([1, user.length]), user, Buffer.from([pass.length]), pass]));
    const { reply: auth } = await readReply(socket, (b) => (b.length >= 2 ? 2 : 0), 2);
    if (auth[1] !== 0) throw new TcpipeError(ErrorCodes.LINK_CLOSED, 'SOCKS5 proxy refused the username or password');
  } else if (method[1] !== 0) {
    throw new TcpipeError(ErrorCodes.LINK_CLOSED, withAuth ? 'SOCKS5 proxy accepts none of our methods' : 'SOCKS5 proxy requires authentication');
  }
  let address: Buffer;
  const family = isIP(host);
  if (family === 4) address = Buffer.from([1, ...host.split('.').map(Number)]);
  else if (family === 6) address = Buffer.concat([Buffer.from([4]), ipv6Bytes(host)]);
  else {
    const name = Buffer.from(host, 'utf8');
    address = Buffer.concat([Buffer.from([3, name.length]), name]);
  }
  const portBytes = Buffer.from([port >> 8, port & 0xff]);
  socket.write(Buffer.concat([Buffer.from([5, 1, 0]), address, portBytes]));
  const { reply } = await readReply(
    socket,
    (b) => {
      if (b.length < 5) return 0;
      const type = b[3];
      const len = type === 1 ? 4 : type === 4 ? 16 : type === 3 ? 1 + (b[4] ?? 0) : -1;
      if (len < 0) throw new TcpipeError(ErrorCodes.LINK_CLOSED, 'SOCKS5 proxy sent a malformed reply');
      return b.length >= 4 + len + 2 ? 4 + len + 2 : 0;
    },
    300,
  );
  if (reply[1] !== 0) {
    throw new TcpipeError(ErrorCodes.LINK_CLOSED, `SOCKS5 proxy could not connect: ${SOCKS_ERRORS[reply[1] ?? 1] ?? `error ${reply[1] ?? '?'}`}`);
  }
}

function ipv6Bytes(address: string): Buffer {
  const [head = '', tail = ''] = address.split('::');
  const parse = (part: string): number[] => (part === '' ? [] : part.split(':').map((h) => parseInt(h, 16)));
  const left = parse(head);
  const right = parse(tail);
  const groups = address.includes('::') ? [...left, ...new Array<number>(8 - left.length - right.length).fill(0), ...right] : left;
  const out = Buffer.alloc(16);
  groups.forEach((g, i) => out.writeUInt16BE(g, i * 2));
  return out;
}

/** Dials the proxy, then has it connect to host:port; resolves with the tunnel. */
export async function dialViaProxy(
  proxy: ProxySpec,
  host: string,
  port: number,
  dial: (host: string, port: number) => Promise<net.Socket>,
): Promise<net.Socket> {
  let socket: net.Socket;
  try {
    socket = await dial(proxy.host, proxy.port);
  } catch (err) {
    throw new TcpipeError(ErrorCodes.LINK_CLOSED, `proxy unreachable: ${errorMessage(err)}`);
  }
  try {
    if (proxy.kind === 'http') await httpConnect(socket, proxy, host, port);
    else await socks5Connect(socket, proxy, host, port);
    return socket;
  } catch (err) {
    socket.destroy();
    throw err;
  }
}
