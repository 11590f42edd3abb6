/**
 * One server, many sites, at scale (issue 19): N clients (default 1000), each with its
 * own secret, held by one server process (the CLI, with N [[client]] tables).
 *
 *   npm run build && npm run build:bench && node dist/bench/sites-scale.js [--clients=1000] [--idle=20]
 *
 * Reports: the server's memory per idle client link (RSS and heap growth over N links,
 * against the same server with one partner, with and without a secret), its CPU for
 * the heartbeats of N idle links, and a mass restart: every client stops and N new
 * ones dial at once while a stranger floods the link port from another address with
 * handshakes that fail; the time until all N are back (must be under 30 s); then the
 * server's descriptors and memory once they are gone again.
 *
 * The clients run in this process (the figures are the server's, read from /proc).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startClient, type Tcpipe } from '../src/index.js';
import { fetchStatus } from '../src/cli/status.js';
import { generateSecret } from '../src/security/secret.js';

const MAIN = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));
const args = new Map(process.argv.slice(2).map((a) => a.replace(/^--/, '').split('=') as [string, string]));
const N = Number(args.get('clients') ?? 1000);
const IDLE_S = Number(args.get('idle') ?? 20);
const CLK_TCK = 100;

function rssKiB(pid: number): number {
  const m = /VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m?.[1] ?? 0);
}
function cpuTicks(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? [];
  return Number(fields[11] ?? 0) + Number(fields[12] ?? 0);
}
function fds(pid: number): number {
  return readdirSync(`/proc/${pid}/fd`).length;
}
const wait = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

interface Server {
  readonly child: ChildProcess;
  readonly linkPort: number;
  readonly metricsPort: number;
}

async function startServerProcess(dir: string, config: string): Promise<Server> {
  const [linkPort, metricsPort] = [await freePort(), await freePort()];
  const path = join(dir, `server-${linkPort}.toml`);
  writeFileSync(path, `server = ${linkPort}\nmetrics = "127.0.0.1:${metricsPort}"\nquiet = true\n${config}`);
  // The bench's own preload lets it ask for a full GC (SIGUSR2) before reading the heap.
  const preload = join(dir, 'gc-on-usr2.cjs');
  writeFileSync(preload, "process.on('SIGUSR2', () => globalThis.gc && globalThis.gc());\n");
  const child = spawn(process.execPath, ['--expose-gc', '--require', preload, MAIN, `--config=${path}`], { stdio: ['ignore', 'ignore', 'pipe'] });
  child.stderr?.resume();
  for (let i = 0; i < 100; i++) {
    const up = await fetchStatus('127.0.0.1', metricsPort, 500).then(() => true, () => false);
    if (up) return { child, linkPort, metricsPort };
    await wait(100);
  }
  throw new Error('the server did not start');
}

/** The server's V8 heap in use (MiB) after a full GC, from its own metrics. */
async function heapMiB(server: Server): Promise<number> {
  server.child.kill('SIGUSR2');
  await wait(500);
  const text = await new Promise<string>((resolve, reject) => {
    import('node:http').then(({ default: http }) => {
      http.get({ host: '127.0.0.1', port: server.metricsPort, path: '/metrics' }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => resolve(body));
      }).on('error', reject);
    }, reject);
  });
  const m = /^tcpipe_process_nodejs_heap_size_used_bytes (\S+)$/m.exec(text);
  return Number(m?.[1] ?? Number.NaN) / 1024 ** 2;
}

async function linksUp(server: Server): Promise<number> {
  const status = await fetchStatus('127.0.0.1', server.metricsPort, 5000);
  return status.clients === undefined ? (status.link === null ? 0 : 1) : status.clients.filter((c) => c.link !== null).length;
}

async function until(server: Server, count: number, maxMs: number): Promise<number> {
  const started = Date.now();
  while (Date.now() - started < maxMs) {
    if ((await linksUp(server)) >= count) return Date.now() - started;
    await wait(250);
  }
  return Number.NaN;
}

async function dialAll(server: Server, secrets: readonly (string | null)[]): Promise<Tcpipe[]> {
  return Promise.all(
    secrets.map((secret) =>
      startClient({ host: '127.0.0.1', port: server.linkPort, proxy: null, ...(secret !== null ? { secret: [secret] } : {}) }),
    ),
  );
}

/** A stranger on 127.0.0.99: TLS-looking garbage, as fast as 32 connections at a time allow. */
function flood(port: number): { stop: () => number } {
  let stopped = false;
  let sent = 0;
  const one = (): void => {
    if (stopped) return;
    const socket = net.connect({ host: '127.0.0.1', port, localAddress: '127.0.0.99' });
    sent++;
    socket.on('error', () => undefined);
    socket.on('connect', () => {
      socket.end(Buffer.concat([Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00]), Buffer.alloc(512, 0x41)]));
    });
    socket.on('close', () => setImmediate(one));
  };
  for (let i = 0; i < 32; i++) one();
  return {
    stop: () => {
      stopped = true;
      return sent;
    },
  };
}

async function settle(pid: number): Promise<number> {
  await wait(3000);
  return rssKiB(pid);
}

async function onePartner(dir: string, secret: boolean): Promise<{ base: number; one: number }> {
  const key = join(dir, 'one.key');
  const text = generateSecret();
  writeFileSync(key, text + '\n');
  chmodSync(key, 0o600);
  const server = await startServerProcess(dir, secret ? `secret-file = "${key}"\n` : '');
  const pid = server.child.pid ?? 0;
  const base = await settle(pid);
  const [client] = await dialAll(server, [secret ? text : null]);
  await until(server, 1, 10_000);
  const one = await settle(pid);
  await client?.stop();
  server.child.kill('SIGTERM');
  return { base, one };
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'tcpipe-sites-scale-'));
  try {
    const secrets = Array.from({ length: N }, () => generateSecret());
    let tables = '';
    secrets.forEach((secret, i) => {
      const key = join(dir, `site-${i}.key`);
      writeFileSync(key, secret + '\n');
      chmodSync(key, 0o600);
      tables += `[[client]]\nname = "site-${i}"\nsecret-file = "${key}"\n`;
    });
    const server = await startServerProcess(dir, tables);
    const pid = server.child.pid ?? 0;
    const startFds = fds(pid);
    const base = await settle(pid);
    const baseHeap = await heapMiB(server);

    let t0 = Date.now();
    let clients = await dialAll(server, secrets);
    const firstUpMs = await until(server, N, 120_000);
    const held = await settle(pid);
    const heldHeap = await heapMiB(server);
    const heldFds = fds(pid);
    const ticks0 = cpuTicks(pid);
    const idleStarted = Date.now();
    await wait(IDLE_S * 1000);
    const cpuPct = ((cpuTicks(pid) - ticks0) / CLK_TCK / ((Date.now() - idleStarted) / 1000)) * 100;

    // Mass restart: all stop, all dial again at once, a stranger floods meanwhile.
    const stranger = flood(server.linkPort);
    await wait(2000);
    await Promise.all(clients.map((c) => c.stop()));
    t0 = Date.now();
    clients = await dialAll(server, secrets);
    const backMs = await until(server, N, 60_000);
    const strangerConnections = stranger.stop();
    const afterRestart = fds(pid);

    await Promise.all(clients.map((c) => c.stop()));
    const endRss = await settle(pid);
    const endHeap = await heapMiB(server);
    const endFds = fds(pid);
    server.child.kill('SIGTERM');
    void t0;

    const withSecret = await onePartner(dir, true);
    const plain = await onePartner(dir, false);
    const perLink = ((held - base) / N).toFixed(1);
    const lines = [
      `sites-scale: ${N} clients, each with its own secret (TLS 1.3 PSK), no entry ports; server = the CLI, figures from /proc`,
      `  first dial: all ${N} up in ${(firstUpMs / 1000).toFixed(1)} s`,
      `  server RSS: ${(base / 1024).toFixed(1)} MiB with no link, ${(held / 1024).toFixed(1)} MiB with ${N} idle links: ${perLink} KiB per idle client link`,
      `  server heap in use: ${baseHeap.toFixed(1)} MiB with no link, ${heldHeap.toFixed(1)} MiB with ${N} links (${(((heldHeap - baseHeap) * 1024) / N).toFixed(1)} KiB per link), ${endHeap.toFixed(1)} MiB once all left`,
      `  one partner for comparison: with a secret ${(withSecret.base / 1024).toFixed(1)} -> ${(withSecret.one / 1024).toFixed(1)} MiB, without ${(plain.base / 1024).toFixed(1)} -> ${(plain.one / 1024).toFixed(1)} MiB (one link is within RSS noise)`,
      `  heartbeats of ${N} idle links (default 15 s heartbeat, a ping every 5 s each): server CPU ${cpuPct.toFixed(1)} % of one core over ${IDLE_S} s`,
      `  mass restart with a stranger flooding from 127.0.0.99 (${strangerConnections} connections): all ${N} back in ${(backMs / 1000).toFixed(1)} s ${backMs < 30_000 ? '(< 30 s: ok)' : '(NOT within 30 s)'}`,
      `  descriptors: ${startFds} at start, ${heldFds} with ${N} links, ${afterRestart} after the restart, ${endFds} once all left; RSS at the end ${(endRss / 1024).toFixed(1)} MiB`,
    ];
    process.stdout.write(lines.join('\n') + '\n');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`sites-scale: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`);
    process.exit(1);
  },
);
