/**
 * Real middleboxes for the transport tests, from Debian packages: squid (HTTP
 * CONNECT proxy with Basic authentication), nginx (TLS-terminating reverse
 * proxy for WebSocket upgrades), dante-server (SOCKS5 with username/password),
 * plus openssl for a test CA and certificate and tcpdump for captures.
 *
 * Each middlebox runs in the foreground inside a namespace of a Topology
 * (test/helpers/netns.ts), with its own configuration file in a temporary
 * directory and on the port the test chooses: nothing under /etc is read or
 * written and no system service is started. The processes are spawned
 * through Topology.spawn, so Topology.destroy() kills them; `stop()` ends one
 * earlier (SIGTERM, then SIGKILL after a bounded wait).
 *
 * `ensureTools` installs what is missing with apt-get (root only; `apt-get
 * update` first, only when an install is needed) and reports what is still
 * missing, for a clean skip.
 *
 * The one thing that touches the system is `createSystemUser` (dante's
 * username method checks system accounts): it adds a throwaway account with
 * useradd and `removeSystemUser` deletes it; the test registers the removal.
 */
import { randomBytes } from 'node:crypto';
import { spawn as cpSpawn, execFileSync, type ChildProcess } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Topology } from './netns.js';
import { outputOf, waitForLine } from './output.js';
import { stopProcess } from './proc.js';

/** Process stops are proc.ts's; re-exported for tests that import them from here. */
export { stopProcess, waitExit } from './proc.js';

// ---------------------------------------------------------------------------
// Processes outside namespaces
// ---------------------------------------------------------------------------

export interface RunResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
  readonly timedOut: boolean;
}

/** Runs `cmd args` (no shell), bounded; never rejects except when it cannot start. */
export function runCommand(cmd: string, args: readonly string[], opts: { timeoutMs?: number; input?: string; env?: NodeJS.ProcessEnv } = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = cpSpawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'], env: opts.env ?? process.env });
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      if (stdout.length < 1 << 20) stdout += d;
    });
    child.stderr.setEncoding('utf8').on('data', (d: string) => {
      if (stderr.length < 1 << 20) stderr += d;
    });
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, opts.timeoutMs ?? 10_000);
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr, timedOut });
    });
    child.stdin.on('error', () => undefined);
    child.stdin.end(opts.input ?? '');
  });
}

async function runOk(cmd: string, args: readonly string[], opts: { timeoutMs?: number; input?: string } = {}): Promise<RunResult> {
  const r = await runCommand(cmd, args, opts);
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.timedOut ? 'timed out' : `exit ${String(r.code)}`}\n${r.stderr}${r.stdout}`);
  return r;
}

// ---------------------------------------------------------------------------
// Tools and packages
// ---------------------------------------------------------------------------

export interface Tool {
  /** Command looked up on PATH (with /usr/sbin and /sbin added). */
  readonly cmd: string;
  /** Debian package that provides it. */
  readonly pkg: string;
}

export const MIDDLEBOX_TOOLS: readonly Tool[] = [
  { cmd: 'squid', pkg: 'squid' },
  { cmd: 'nginx', pkg: 'nginx-light' },
  { cmd: 'danted', pkg: 'dante-server' },
  { cmd: 'openssl', pkg: 'openssl' },
  { cmd: 'tcpdump', pkg: 'tcpdump' },
  { cmd: 'useradd', pkg: 'passwd' },
  { cmd: 'chpasswd', pkg: 'passwd' },
];

const SEARCH_PATH = `${process.env.PATH ?? '/usr/bin:/bin'}:/usr/sbin:/sbin:/usr/local/sbin`;

async function missingTools(tools: readonly Tool[]): Promise<Tool[]> {
  const missing: Tool[] = [];
  for (const tool of tools) {
    const r = await runCommand('sh', ['-c', `command -v ${tool.cmd}`], { env: { ...process.env, PATH: SEARCH_PATH } }).catch(() => null);
    if (r === null || r.code !== 0) missing.push(tool);
  }
  return missing;
}

export type ToolAvailability = { ok: true; installed: readonly string[] } | { ok: false; reason: string };

/**
 * Makes sure the tools are present: installs the missing ones' packages with
 * apt-get (root only), bounded by `timeoutMs`. Resolves with what was
 * installed, or with the reason they are still missing.
 */
export async function ensureTools(tools: readonly Tool[] = MIDDLEBOX_TOOLS, timeoutMs = 300_000): Promise<ToolAvailability> {
  const missing = await missingTools(tools);
  if (missing.length === 0) return { ok: true, installed: [] };
  const pkgs = [...new Set(missing.map((t) => t.pkg))];
  const uid = typeof process.getuid === 'function' ? process.getuid() : -1;
  if (uid !== 0) return { ok: false, reason: `missing ${missing.map((t) => t.cmd).join(', ')} (packages ${pkgs.join(' ')}); run as root to install them` };
  const apt = await runCommand('sh', ['-c', 'command -v apt-get']).catch(() => null);
  if (apt === null || apt.code !== 0) return { ok: false, reason: `missing ${pkgs.join(' ')} and no apt-get to install them` };
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive', PATH: SEARCH_PATH };
  const deadline = Date.now() + timeoutMs;
  const update = await runCommand('apt-get', ['update', '-qq'], { env, timeoutMs });
  if (update.code !== 0) return { ok: false, reason: `apt-get update failed (${update.timedOut ? 'timed out' : `exit ${String(update.code)}`}): ${update.stderr.trim().slice(-400)}` };
  const install = await runCommand('apt-get', ['install', '-y', '-qq', '--no-install-recommends', ...pkgs], {
    env,
    timeoutMs: Math.max(1000, deadline - Date.now()),
  });
  if (install.code !== 0) {
    return { ok: false, reason: `apt-get install ${pkgs.join(' ')} failed (${install.timedOut ? 'timed out' : `exit ${String(install.code)}`}): ${install.stderr.trim().slice(-400)}` };
  }
  const still = await missingTools(tools);
  if (still.length > 0) return { ok: false, reason: `still missing after apt-get install: ${still.map((t) => t.cmd).join(', ')}` };
  return { ok: true, installed: pkgs };
}

/** Absolute path of an installed command (squid, nginx, danted live in /usr/sbin). */
export async function which(cmd: string): Promise<string> {
  const r = await runOk('sh', ['-c', `PATH='${SEARCH_PATH}' command -v ${cmd}`]);
  return r.stdout.trim();
}

// ---------------------------------------------------------------------------
// Temporary directories
// ---------------------------------------------------------------------------

/**
 * A fresh directory that unprivileged middlebox workers (squid's `proxy`,
 * nginx's `www-data`, dante's `nobody`) can read; `rw()` gives a
 * world-writable subdirectory for their logs and temporary files.
 */
export class TempDir {
  readonly path: string;
  constructor(prefix: string) {
    this.path = mkdtempSync(join(tmpdir(), prefix));
    chmodSync(this.path, 0o755);
  }
  file(name: string, content: string | Buffer, mode = 0o644): string {
    const p = join(this.path, name);
    writeFileSync(p, content);
    chmodSync(p, mode);
    return p;
  }
  rw(name: string): string {
    const p = join(this.path, name);
    mkdirSync(p, { recursive: true });
    chmodSync(p, 0o777);
    return p;
  }
  join(name: string): string {
    return join(this.path, name);
  }
  remove(): void {
    rmSync(this.path, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------------------
// Processes in namespaces
// ---------------------------------------------------------------------------

/** A middlebox process: the child, its output so far, and a bounded stop. */
export interface Middlebox {
  readonly child: ChildProcess;
  output(): string;
  stop(): Promise<void>;
}

function middlebox(child: ChildProcess, signal: NodeJS.Signals = 'SIGTERM'): Middlebox {
  return { child, output: () => outputOf(child), stop: () => stopProcess(child, 3000, signal) };
}

// ---------------------------------------------------------------------------
// openssl: a CA and a server certificate
// ---------------------------------------------------------------------------

export interface Certificates {
  readonly caCert: string;
  readonly cert: string;
  readonly key: string;
}

/** A test CA and a certificate it signs for `ip` (and `dnsName`), EC P-256, valid 2 days. */
export async function makeCertificates(dir: TempDir, ip: string, dnsName: string): Promise<Certificates> {
  const caKey = dir.join('ca.key');
  const caCert = dir.join('ca.pem');
  const key = dir.join('server.key');
  const csr = dir.join('server.csr');
  const cert = dir.join('server.pem');
  const ext = dir.file('server.ext', `basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=IP:${ip},DNS:${dnsName}\n`);
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  await runOk('openssl', ['req', '-x509', ...ec, '-keyout', caKey, '-out', caCert, '-days', '2', '-subj', '/CN=tcpipe test CA',
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign']);
  await runOk('openssl', ['req', ...ec, '-keyout', key, '-out', csr, '-subj', `/CN=${dnsName}`]);
  await runOk('openssl', ['x509', '-req', '-in', csr, '-CA', caCert, '-CAkey', caKey, '-set_serial', `0x${randomBytes(8).toString('hex')}`, '-out', cert, '-days', '2', '-extfile', ext]);
  chmodSync(key, 0o644);
  return { caCert, cert, key };
}

/** An Apache MD5 ($apr1$) password hash, as htpasswd writes it. */
export async function apr1(password: string): Promise<string> {
  const r = await runOk('openssl', ['passwd', '-apr1', '-stdin'], { input: password + '\n' });
  return r.stdout.trim();
}

// ---------------------------------------------------------------------------
// squid: an HTTP CONNECT proxy with Basic authentication
// ---------------------------------------------------------------------------

export interface SquidOptions {
  readonly port: number;
  /** user -> password; Basic authentication is required when given. */
  readonly users?: Readonly<Record<string, string>>;
}

export interface Squid extends Middlebox {
  readonly port: number;
  /** Starts squid again with the same configuration (after stop()); resolves once it accepts. */
  restart(): Promise<Squid>;
}

/**
 * squid in the foreground (-N) with its own configuration: CONNECT to any
 * port, for authenticated users only when `users` is given; no cache, logs in
 * `dir`. Resolves once it accepts connections on `port`.
 */
export async function startSquid<H extends string>(topo: Topology<H>, host: H, dir: TempDir, opts: SquidOptions): Promise<Squid> {
  const squid = await which('squid');
  const logs = dir.rw('squid-logs');
  const lines = [
    `http_port ${opts.port}`,
    `pid_filename ${join(logs, 'squid.pid')}`,
    `cache_log ${join(logs, 'cache.log')}`,
    `access_log stdio:${join(logs, 'access.log')}`,
    'cache_store_log none',
    'cache deny all',
    `coredump_dir ${logs}`,
    'shutdown_lifetime 0 seconds',
    'dns_v4_first on',
    'dns_nameservers 127.0.0.1',
    'acl CONNECT method CONNECT',
  ];
  if (opts.users !== undefined) {
    const helper = '/usr/lib/squid/basic_ncsa_auth';
    const entries: string[] = [];
    for (const [user, password] of Object.entries(opts.users)) entries.push(`${user}:${await apr1(password)}`);
    const htpasswd = dir.file('squid.htpasswd', entries.join('\n') + '\n');
    lines.push(
      `auth_param basic program ${helper} ${htpasswd}`,
      'auth_param basic children 2 startup=1 idle=1',
      'auth_param basic realm tcpipe test proxy',
      'acl authenticated proxy_auth REQUIRED',
      'http_access deny !authenticated',
    );
  }
  lines.push('http_access allow CONNECT', 'http_access deny all');
  const conf = dir.file('squid.conf', lines.join('\n') + '\n');
  const start = async (): Promise<Squid> => {
    // -N: no daemon; -d 1: level-1 messages on stderr too, for the test's log.
    const child = topo.spawn(host, squid, ['-N', '-d', '1', '-f', conf]);
    try {
      await topo.waitForPort(host, opts.port, 15_000, { mode: 'listen' });
    } catch (err) {
      await stopProcess(child, 1000, 'SIGKILL').catch(() => undefined);
      throw new Error(`squid did not start: ${err instanceof Error ? err.message : String(err)}\n${outputOf(child)}\n${readSafe(join(logs, 'cache.log'))}`);
    }
    const box = middlebox(child);
    return { ...box, port: opts.port, restart: start };
  };
  return start();
}

function readSafe(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
}

/** squid's access log so far (one line per CONNECT, with its status). */
export function squidAccessLog(dir: TempDir): string {
  return readSafe(join(dir.join('squid-logs'), 'access.log'));
}

// ---------------------------------------------------------------------------
// nginx: TLS in front, WebSocket upgrades on a path passed to a backend
// ---------------------------------------------------------------------------

export interface NginxOptions {
  /** Address and port nginx listens on with TLS. */
  readonly listen: string;
  readonly certs: Certificates;
  /** The location block to put in the server block (see NGINX_LOCATION). */
  readonly location: string;
}

/**
 * The location block the tests use, and the README quotes: WebSocket upgrades
 * on `path` passed to the tcpipe server at `backend`.
 */
export function nginxLocation(path: string, backend: string): string {
  return [
    `location ${path} {`,
    `    proxy_pass http://${backend};`,
    '    proxy_http_version 1.1;',
    '    proxy_set_header Upgrade $http_upgrade;',
    '    proxy_set_header Connection "upgrade";',
    '    proxy_set_header Host $host;',
    '    proxy_read_timeout 3600s;',
    '    proxy_send_timeout 3600s;',
    '    proxy_buffering off;',
    '}',
  ].join('\n');
}

/** nginx in the foreground with its own configuration; resolves once it listens. */
export async function startNginx<H extends string>(topo: Topology<H>, host: H, dir: TempDir, opts: NginxOptions): Promise<Middlebox> {
  const nginx = await which('nginx');
  const tmp = dir.rw('nginx-tmp');
  const port = Number(opts.listen.slice(opts.listen.lastIndexOf(':') + 1));
  const indent = (text: string, n: number): string => text.split('\n').map((l) => ' '.repeat(n) + l).join('\n');
  const conf = dir.file(
    'nginx.conf',
    [
      'worker_processes 1;',
      `pid ${join(tmp, 'nginx.pid')};`,
      'error_log stderr info;',
      'events { worker_connections 256; }',
      'http {',
      '    access_log off;',
      `    client_body_temp_path ${join(tmp, 'body')};`,
      `    proxy_temp_path ${join(tmp, 'proxy')};`,
      `    fastcgi_temp_path ${join(tmp, 'fastcgi')};`,
      `    uwsgi_temp_path ${join(tmp, 'uwsgi')};`,
      `    scgi_temp_path ${join(tmp, 'scgi')};`,
      '    server {',
      `        listen ${opts.listen} ssl;`,
      `        ssl_certificate ${opts.certs.cert};`,
      `        ssl_certificate_key ${opts.certs.key};`,
      '        ssl_protocols TLSv1.2 TLSv1.3;',
      indent(opts.location, 8),
      '        location / { return 404; }',
      '    }',
      '}',
      '',
    ].join('\n'),
  );
  const test = await topo.exec(host, nginx, ['-t', '-p', dir.path, '-c', conf, '-e', 'stderr'], { timeoutMs: 10_000 });
  if (test.code !== 0) throw new Error(`nginx -t refused the configuration:\n${test.stderr}\n${readSafe(conf)}`);
  const child = topo.spawn(host, nginx, ['-p', dir.path, '-c', conf, '-e', 'stderr', '-g', 'daemon off;']);
  try {
    await topo.waitForPort(host, port, 15_000, { mode: 'listen' });
  } catch (err) {
    await stopProcess(child, 1000, 'SIGKILL').catch(() => undefined);
    throw new Error(`nginx did not start: ${err instanceof Error ? err.message : String(err)}\n${outputOf(child)}`);
  }
  // SIGQUIT would wait for the open WebSocket to end; SIGTERM is nginx's fast shutdown.
  return middlebox(child, 'SIGTERM');
}

// ---------------------------------------------------------------------------
// dante: SOCKS5
// ---------------------------------------------------------------------------

export interface DanteOptions {
  /** Address and port dante listens on. */
  readonly internal: string;
  readonly port: number;
  /** Address (or interface) dante connects out from. */
  readonly external: string;
  /** 'username': RFC 1929 against system accounts; 'none': no authentication. */
  readonly method: 'username' | 'none';
}

/** danted in the foreground with its own configuration; resolves once it listens. */
export async function startDante<H extends string>(topo: Topology<H>, host: H, dir: TempDir, opts: DanteOptions): Promise<Middlebox> {
  const danted = await which('danted');
  const conf = dir.file(
    'danted.conf',
    [
      'logoutput: stderr',
      `internal: ${opts.internal} port = ${opts.port}`,
      `external: ${opts.external}`,
      'clientmethod: none',
      `socksmethod: ${opts.method}`,
      'user.privileged: root',
      'user.unprivileged: nobody',
      'client pass {',
      '    from: 0.0.0.0/0 to: 0.0.0.0/0',
      '    log: error',
      '}',
      'socks pass {',
      '    from: 0.0.0.0/0 to: 0.0.0.0/0',
      '    command: connect',
      '    log: error connect',
      '}',
      '',
    ].join('\n'),
  );
  const child = topo.spawn(host, danted, ['-f', conf, '-p', join(dir.rw('dante-run'), 'danted.pid'), '-N', '1']);
  try {
    await topo.waitForPort(host, opts.port, 15_000, { mode: 'listen' });
  } catch (err) {
    await stopProcess(child, 1000, 'SIGKILL').catch(() => undefined);
    throw new Error(`danted did not start: ${err instanceof Error ? err.message : String(err)}\n${outputOf(child)}`);
  }
  return middlebox(child);
}

/**
 * A throwaway system account (no home, no shell) with `password`, for dante's
 * username method. Returns its name; removeSystemUser deletes it.
 */
const usersToRemove = new Set<string>();
let userExitHook = false;

export async function createSystemUser(prefix: string, password: string): Promise<string> {
  const name = `${prefix}${process.pid.toString(36)}${Math.floor(Math.random() * 36 ** 3).toString(36)}`.slice(0, 31);
  await runOk('useradd', ['--system', '--no-create-home', '--shell', '/usr/sbin/nologin', '--comment', 'tcpipe test (temporary)', name]);
  usersToRemove.add(name);
  if (!userExitHook) {
    userExitHook = true;
    // Last resort when a test ends without its t.after (the process exits early).
    process.on('exit', () => {
      for (const user of usersToRemove) {
        try {
          execFileSync('userdel', [user], { stdio: 'ignore', timeout: 5000 });
        } catch {
          // already gone
        }
      }
    });
  }
  try {
    await runOk('chpasswd', [], { input: `${name}:${password}\n` });
  } catch (err) {
    await removeSystemUser(name);
    throw err;
  }
  return name;
}

export async function removeSystemUser(name: string): Promise<void> {
  const r = await runCommand('userdel', [name], { timeoutMs: 10_000 });
  if (r.code !== 0 && !/does not exist/.test(r.stderr)) throw new Error(`userdel ${name}: exit ${String(r.code)}: ${r.stderr}`);
  usersToRemove.delete(name);
}

// ---------------------------------------------------------------------------
// tcpdump
// ---------------------------------------------------------------------------

export interface Capture {
  /** Stops tcpdump (bounded) and returns the capture file's bytes. */
  stop(): Promise<Buffer>;
}

/**
 * tcpdump -U -w on `iface` in `host`'s namespace, with a BPF `filter`; resolves
 * once it listens. --immediate-mode: without it libpcap (TPACKET_V3) holds
 * packets in a kernel block, and those still there at SIGINT never reach the file.
 */
export async function startCapture<H extends string>(topo: Topology<H>, host: H, iface: string, filter: readonly string[], file: string): Promise<Capture> {
  const tcpdump = await which('tcpdump');
  const child = topo.spawn(host, tcpdump, ['-U', '--immediate-mode', '-n', '-s', '0', '-Z', 'root', '-i', iface, '-w', file, ...filter]);
  await waitForLine(child, /listening on /, 15_000);
  return {
    stop: async () => {
      await stopProcess(child, 3000, 'SIGINT');
      return readFileSync(file);
    },
  };
}

// ---------------------------------------------------------------------------
// Names without /etc/hosts
// ---------------------------------------------------------------------------

/**
 * Writes a CommonJS preload (`node -r <file>`) that answers dns.lookup for
 * the given names (name -> IPv4 address) and leaves every other name to the
 * system, so a test can dial `wss://name/...` without editing /etc/hosts.
 */
export function writeNameShim(dir: TempDir, names: Readonly<Record<string, string>>): string {
  return dir.file(
    'name-shim.cjs',
    `'use strict';
const dns = require('node:dns');
const names = ${JSON.stringify(names)};
const original = dns.lookup;
dns.lookup = function lookup(host, options, callback) {
  if (typeof options === 'function') { callback = options; options = {}; }
  const address = Object.prototype.hasOwnProperty.call(names, host) ? names[host] : undefined;
  if (address === undefined) return original.call(dns, host, options, callback);
  const all = typeof options === 'object' && options !== null && options.all === true;
  process.nextTick(() => (all ? callback(null, [{ address, family: 4 }]) : callback(null, address, 4)));
  return {};
};
`,
  );
}
