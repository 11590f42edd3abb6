// Transports through real middleboxes, with the CLI in network namespaces.
//
//   1. Only a proxy goes out: client — squid — server. The client's namespace may
//      open TCP only to squid's port (iptables); squid asks for Basic authentication.
//      The pair relays both ways with the password in the URL, in
//      --proxy-password-file, in HTTPS_PROXY and in TCPIPE_PROXY_PASSWORD; a wrong
//      password gives 'proxy refused CONNECT: 407 ...' and retries; a squid restart
//      is survived by itself.
//   2. Behind nginx: client — nginx (TLS, test CA) — server. wss:// with --tls-ca;
//      a capture between nginx and the server shows a relayed marker without a
//      secret and never with one (TLS-PSK runs inside the WebSocket, end to end).
//   3. One server port takes a plain client, then a ws:// client.
//   4. SOCKS5 through dante-server with username/password (a throwaway system user).
//   5. Garbage, unfinished upgrades and wrong paths on the server port, from other
//      addresses, while a live pair keeps relaying.
//   6. --transport=tcp refuses ws clients, --transport=ws refuses plain ones.
//
// squid, nginx-light, dante-server, openssl and tcpdump are installed with apt-get
// when missing (root). Skipped, with the reason, when namespaces or the tools are
// unavailable. Every middlebox runs with its own configuration in a temporary
// directory, in the foreground, and is killed at the end.
import { describe, test, before, after } from 'node:test';
import type { TestContext } from 'node:test';
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { childEnv, CLI_MAIN, NODE } from '../helpers/cli.js';
import {
  createSystemUser,
  ensureTools,
  makeCertificates,
  nginxLocation,
  removeSystemUser,
  runCommand,
  squidAccessLog,
  startCapture,
  startDante,
  startNginx,
  startSquid,
  TempDir,
  writeNameShim,
  type Certificates,
  type Squid,
} from '../helpers/middlebox.js';
import { createTopology, netnsAvailable, type Topology } from '../helpers/netns.js';
import { assertIntact, echoFrom } from '../helpers/ns-apps.js';
import { outputOf, waitForLine } from '../helpers/output.js';
import { stopProcess } from '../helpers/proc.js';


/** Bounds on waits, generous for a loaded machine: a node start there can take seconds. */
const START_MS = 15_000;
const LINK_MS = 15_000;

const LINK_UP = /link up with /;
const LINK_DOWN = /link down with /;
const NO_LINK = /no link: /;

const LINK_PORT = 50000;
/** The nginx location block of the README, for a tcpipe server at `backend` (its link port). */
const NGINX_LOCATION = (backend: string): string => nginxLocation('/tcpipe', `${backend}:${LINK_PORT}`);
const SQUID_PORT = 3128;
const SOCKS_PORT = 1080;
const NGINX_PORT = 8443;
/** Entry port on the client side; its target listens behind the server. */
const FORWARD_PORT = 41000;
/** Entry port on the server side; its target listens behind the client. */
const REVERSE_PORT = 41001;

// A user 'server' application on 127.0.0.1 (behind its tcpipe). argv: tag port...
// Greets each connection with "<tag>:<port>\n", then echoes everything.
const TARGET_APP = `
const net = require('node:net');
const [tag, ...ports] = process.argv.slice(1);
for (const p of ports) {
  const srv = net.createServer((s) => {
    s.on('error', () => {});
    s.write(tag + ':' + s.localPort + '\\n');
    s.pipe(s);
  });
  srv.listen(Number(p), '127.0.0.1', () => console.log('listening ' + p));
}
`;

// A user that keeps one connection busy. argv: addr port durationMs
// Every 50 ms sends "tick <n>\\n" and checks the echo; after durationMs closes and
// prints JSON { sent, echoed, error }.
const CHATTER_USER = `
const net = require('node:net');
const [addr, port, ms] = process.argv.slice(1);
let sent = 0, buf = '', header = null, finished = false, timer = null;
const done = (error) => {
  if (finished) return;
  finished = true;
  clearInterval(timer);
  const echoed = buf.split('\\n').filter((l) => /^tick \\d+$/.test(l)).length;
  console.log(JSON.stringify({ header, sent, echoed, error }));
  process.exit(0);
};
const s = net.connect({ host: addr, port: Number(port) });
s.setEncoding('utf8');
s.on('connect', () => {
  console.log('connected');
  timer = setInterval(() => s.write('tick ' + (sent++) + '\\n'), 50);
  setTimeout(() => { clearInterval(timer); setTimeout(() => s.end(), 300); }, Number(ms));
});
s.on('data', (d) => {
  buf += d;
  if (header === null && buf.includes('\\n')) { header = buf.slice(0, buf.indexOf('\\n')); buf = buf.slice(header.length + 1); }
});
s.on('end', () => done(null));
s.on('error', (e) => done(e.code || e.message));
setTimeout(() => done('timeout'), Number(ms) + 5000);
`;

// A raw connection to the server port. argv: addr port localAddress payloadBase64 waitMs
// Sends the payload, keeps the connection open, prints JSON { reply, closedAfterMs, error }
// when the server closes it (closedAfterMs null if it did not within waitMs).
const RAW_ATTACK = `
const net = require('node:net');
const [addr, port, local, b64, ms] = process.argv.slice(1);
const start = Date.now();
const chunks = [];
let finished = false;
let error = null;
const done = (closed) => {
  if (finished) return;
  finished = true;
  console.log(JSON.stringify({ reply: Buffer.concat(chunks).toString('latin1'), closedAfterMs: closed ? Date.now() - start : null, error }));
  process.exit(0);
};
const s = net.connect({ host: addr, port: Number(port), localAddress: local });
s.on('connect', () => s.write(Buffer.from(b64, 'base64')));
s.on('data', (d) => chunks.push(d));
s.on('close', () => done(true));
s.on('error', (e) => { error = e.code || e.message; });
setTimeout(() => done(false), Number(ms));
`;

// An ordinary HTTP client. argv: addr port localAddress path -> prints "status <code>"
const HTTP_GET = `
const http = require('node:http');
const [addr, port, local, path] = process.argv.slice(1);
const req = http.get({ host: addr, port: Number(port), localAddress: local, path, agent: false }, (res) => {
  res.resume();
  res.on('end', () => console.log('status ' + res.statusCode));
});
req.on('error', (e) => console.log('error ' + (e.code || e.message)));
req.setTimeout(10000, () => { console.log('error timeout'); req.destroy(); });
`;


interface AttackResult {
  reply: string;
  closedAfterMs: number | null;
  error: string | null;
}

// ---------------------------------------------------------------------------
// Availability: namespaces (root, ip, iptables, nc) and the middlebox packages.
// ---------------------------------------------------------------------------

const netns = await netnsAvailable({ need: ['iptables', 'nc'] });
const tools = netns.ok ? await ensureTools() : netns;
const SKIP: string | false = !netns.ok ? netns.reason : !tools.ok ? tools.reason : false;
if (tools.ok && tools.installed.length > 0) process.stderr.write(`transports.test: installed ${tools.installed.join(' ')}\n`);

async function keygen(): Promise<string> {
  const r = await runCommand(NODE, [CLI_MAIN, 'keygen']);
  assert.equal(r.code, 0, r.stderr);
  return r.stdout.trim();
}

function tcpipe<H extends string>(topo: Topology<H>, host: H, args: readonly string[], env: NodeJS.ProcessEnv = childEnv()): ChildProcess {
  return topo.spawn(host, NODE, [CLI_MAIN, ...args], { env });
}

async function startTarget<H extends string>(topo: Topology<H>, host: H, tag: string, ports: readonly number[]): Promise<ChildProcess> {
  const app = topo.spawn(host, NODE, ['-e', TARGET_APP, tag, ...ports.map(String)]);
  for (const p of ports) await waitForLine(app, new RegExp(`^listening ${p}$`), START_MS);
  return app;
}



/** Relays 256 KiB through the client's entry port (to the server side) and the server's (to the client side). */
async function relayBothWays<H extends string>(topo: Topology<H>, clientHost: H, serverHost: H, what: string): Promise<void> {
  const [forward, reverse] = await Promise.all([
    echoFrom(topo, clientHost, '127.0.0.1', FORWARD_PORT, 'rand:262144', 15_000),
    echoFrom(topo, serverHost, '127.0.0.1', REVERSE_PORT, 'rand:262144', 15_000),
  ]);
  assertIntact(forward, `server-app:${FORWARD_PORT}`, `${what}: client-side -p ${FORWARD_PORT} to the target behind the server`);
  assertIntact(reverse, `client-app:${REVERSE_PORT}`, `${what}: server-side -p ${REVERSE_PORT} to the target behind the client`);
}

/** Stops a tcpipe (SIGTERM, bounded) and waits until `partner` has logged the link down. */
async function stopClient(client: ChildProcess, partner: ChildProcess): Promise<void> {
  const down = waitForLine(partner, LINK_DOWN, 10_000, { includePast: false });
  await stopProcess(client, 3000);
  await down;
}

function escape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** Lines of `text` matching `regex`. */
function count(text: string, regex: RegExp): number {
  return text.split('\n').filter((l) => regex.test(l)).length;
}

async function topology<const H extends string>(t: TestContext, hosts: readonly H[], forwarding: boolean): Promise<Topology<H>> {
  const topo = await createTopology({ hosts, forwarding });
  t.after(() => topo.destroy());
  return topo;
}

function tempDir(t: TestContext, prefix: string): TempDir {
  const dir = new TempDir(prefix);
  t.after(() => dir.remove());
  return dir;
}

/**
 * The client's namespace may open TCP connections only to `to`:`port` (and its
 * own loopback): the seed's no-dial-out firewall, with one hole.
 */
async function onlyThisWayOut<H extends string>(topo: Topology<H>, host: H, to: string, port: number): Promise<void> {
  await topo.firewallNoDialOut(host, []);
  await topo.iptables(host, ['-I', 'OUTPUT', '1', '-p', 'tcp', '-d', to, '--dport', String(port), '-m', 'conntrack', '--ctstate', 'NEW', '-j', 'ACCEPT']);
}

async function cannotConnect<H extends string>(topo: Topology<H>, from: H, addr: string, port: number, what: string): Promise<void> {
  const r = await topo.exec(from, 'nc', ['-z', '-n', '-w', '1', addr, String(port)], { timeoutMs: 3000 });
  assert.notEqual(r.code, 0, `${what}: ${from} must not reach ${addr}:${port}`);
}

// ---------------------------------------------------------------------------

describe('transports through real middleboxes', { skip: SKIP, concurrency: 4 }, () => {
  // -------------------------------------------------------------------------
  // 1. HTTP CONNECT through squid with Basic authentication.
  // -------------------------------------------------------------------------
  describe('only an HTTP proxy (squid, Basic auth) goes out', { concurrency: false }, () => {
    const HOSTS = ['client', 'proxy', 'server'] as const;
    type Host = (typeof HOSTS)[number];
    const USER = 'alice';
    const PASSWORD = `Pr0xy!pa@ss-${randomBytes(4).toString('hex')}`;
    let topo: Topology<Host>;
    let dir: TempDir;
    const cleanups: (() => unknown)[] = [];
    let squid: Squid;
    let server: ChildProcess;
    let secret: string;
    let proxyAddr: string;
    let serverAddr: string;

    before(async () => {
      // The proxy host forwards, so only the client's firewall keeps it from the server.
      topo = await createTopology({ hosts: HOSTS, forwarding: true });
      cleanups.push(() => topo.destroy());
      dir = new TempDir('tcpipe-squid-');
      cleanups.push(() => dir.remove());
      proxyAddr = topo.addr('proxy', 'client');
      serverAddr = topo.addr('server', 'proxy');
      secret = await keygen();
      squid = await startSquid(topo, 'proxy', dir, { port: SQUID_PORT, users: { [USER]: PASSWORD } });
      await startTarget(topo, 'server', 'server-app', [FORWARD_PORT]);
      await startTarget(topo, 'client', 'client-app', [REVERSE_PORT]);
      server = tcpipe(topo, 'server', ['-s', String(LINK_PORT), '-p', String(REVERSE_PORT), '-t', '127.0.0.1'], childEnv({ TCPIPE_SECRET: secret }));
      await waitForLine(server, /server: link port 50000/, START_MS);
      await onlyThisWayOut(topo, 'client', proxyAddr, SQUID_PORT);
    });
    after(async () => {
      // What before() set up, even when it failed half-way.
      for (const cleanup of cleanups.reverse()) await cleanup();
    });

    /** Starts a client through the proxy; resolves once both sides logged the link up. */
    async function proxiedClient(t: TestContext, args: readonly string[], env: Readonly<Record<string, string>> = {}): Promise<ChildProcess> {
      const serverUp = waitForLine(server, LINK_UP, LINK_MS, { includePast: false });
      const client = tcpipe(
        topo,
        'client',
        ['-c', `${serverAddr}:${LINK_PORT}`, '-p', String(FORWARD_PORT), '-t', '127.0.0.1', ...args],
        childEnv({ TCPIPE_SECRET: secret, ...env }),
      );
      t.after(() => stopProcess(client));
      const [, serverLine] = await Promise.all([waitForLine(client, LINK_UP, LINK_MS), serverUp]);
      // The server sees the link come from squid's address, not the client's.
      assert.match(serverLine, new RegExp(`link up with ${escape(topo.addr('proxy', 'server'))}:\\d+`));
      return client;
    }

    function assertNoPassword(client: ChildProcess, password = PASSWORD): void {
      const out = outputOf(client);
      for (const form of [password, encodeURIComponent(password), Buffer.from(`${USER}:${password}`).toString('base64')]) {
        assert.ok(!out.includes(form), `the proxy password (as ${form}) appears in the client's output:\n${out}`);
      }
    }

    test('the client can reach only squid: a direct connection to the server is dropped', { timeout: 20_000 }, async () => {
      await cannotConnect(topo, 'client', serverAddr, LINK_PORT, 'firewall');
      const viaProxy = await topo.exec('client', 'nc', ['-z', '-n', '-w', '2', proxyAddr, String(SQUID_PORT)], { timeoutMs: 4000 });
      assert.equal(viaProxy.code, 0, 'the client reaches squid');
    });

    test('--proxy=http://user:pass@proxy:port relays both ways; the password never shows', { timeout: 60_000 }, async (t) => {
      const client = await proxiedClient(t, [`--proxy=http://${USER}:${encodeURIComponent(PASSWORD)}@${proxyAddr}:${SQUID_PORT}`]);
      assert.match(outputOf(client), new RegExp(`dialing through proxy http://${USER}@${escape(proxyAddr)}:${SQUID_PORT}(?! \\(from)`));
      assert.match(outputOf(client), new RegExp(`link up with ${escape(serverAddr)}:${LINK_PORT} via http://${USER}@${escape(proxyAddr)}:${SQUID_PORT}`));
      await relayBothWays(topo, 'client', 'server', 'password in the URL');
      await stopClient(client, server);
      assertNoPassword(client);
      // squid logs a tunnel when it ends: alice's CONNECT to the server.
      const deadline = Date.now() + 5000;
      while (!/TCP_TUNNEL\/200 /.test(squidAccessLog(dir)) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      assert.match(squidAccessLog(dir), new RegExp(`TCP_TUNNEL/200 .* CONNECT ${escape(serverAddr)}:${LINK_PORT} ${USER} `), 'squid logged the tunnel for alice');
    });

    test('--proxy-password-file gives the password', { timeout: 60_000 }, async (t) => {
      const file = dir.file('proxy-pass', PASSWORD + '\n', 0o600);
      const client = await proxiedClient(t, [`--proxy=http://${USER}@${proxyAddr}:${SQUID_PORT}`, `--proxy-password-file=${file}`]);
      await relayBothWays(topo, 'client', 'server', 'password from a file');
      await stopClient(client, server);
      assertNoPassword(client);
    });

    test('HTTPS_PROXY with the password, and HTTPS_PROXY with TCPIPE_PROXY_PASSWORD', { timeout: 60_000 }, async (t) => {
      const fromUrl = await proxiedClient(t, [], { HTTPS_PROXY: `http://${USER}:${encodeURIComponent(PASSWORD)}@${proxyAddr}:${SQUID_PORT}` });
      assert.match(outputOf(fromUrl), new RegExp(`dialing through proxy http://${USER}@${escape(proxyAddr)}:${SQUID_PORT} \\(from HTTPS_PROXY\\)`));
      await relayBothWays(topo, 'client', 'server', 'HTTPS_PROXY');
      await stopClient(fromUrl, server);
      assertNoPassword(fromUrl);

      const fromEnv = await proxiedClient(t, [], { HTTPS_PROXY: `http://${USER}@${proxyAddr}:${SQUID_PORT}`, TCPIPE_PROXY_PASSWORD: PASSWORD });
      assert.match(outputOf(fromEnv), /\(from HTTPS_PROXY\)/);
      await relayBothWays(topo, 'client', 'server', 'TCPIPE_PROXY_PASSWORD');
      await stopClient(fromEnv, server);
      assertNoPassword(fromEnv);
    });

    test('a wrong password: "proxy refused CONNECT: 407 ...", and the client keeps retrying', { timeout: 60_000 }, async (t) => {
      const wrong = `wrong-${randomBytes(4).toString('hex')}`;
      const client = tcpipe(
        topo,
        'client',
        ['-c', `${serverAddr}:${LINK_PORT}`, '-t', '127.0.0.1', `--proxy=http://${USER}:${wrong}@${proxyAddr}:${SQUID_PORT}`],
        childEnv({ TCPIPE_SECRET: secret }),
      );
      t.after(() => stopProcess(client));
      const first = await waitForLine(client, NO_LINK, LINK_MS);
      assert.match(first, /no link: proxy refused CONNECT: 407 Proxy Authentication Required; retrying in /);
      // A second and third attempt, same answer: still running, not crashed.
      const again = /no link: proxy refused CONNECT: 407 /;
      const deadline = Date.now() + 10_000;
      while (count(outputOf(client), again) < 3 && Date.now() < deadline) await waitForLine(client, again, deadline - Date.now(), { includePast: false });
      assert.ok(count(outputOf(client), again) >= 3, outputOf(client));
      assert.equal(client.exitCode, null, 'the client is still running');
      assert.doesNotMatch(outputOf(client), LINK_UP);
      assert.doesNotMatch(outputOf(client), /TypeError|Unhandled|at .*\.js:\d+/, 'no stack trace');
      assertNoPassword(client, wrong);
      await stopProcess(client, 3000);
      assert.equal(client.exitCode, 0, 'a clean stop');
    });

    test('squid restarted: the link goes down, and comes back up by itself', { timeout: 60_000 }, async (t) => {
      const client = await proxiedClient(t, [`--proxy=http://${USER}:${encodeURIComponent(PASSWORD)}@${proxyAddr}:${SQUID_PORT}`]);
      await relayBothWays(topo, 'client', 'server', 'before the restart');
      const clientDown = waitForLine(client, LINK_DOWN, 10_000, { includePast: false });
      const serverDown = waitForLine(server, LINK_DOWN, 10_000, { includePast: false });
      const unreachable = waitForLine(client, /no link: proxy unreachable: /, 10_000, { includePast: false });
      await squid.stop();
      await Promise.all([clientDown, serverDown]);
      await unreachable;
      const clientUp = waitForLine(client, LINK_UP, 20_000, { includePast: false });
      const serverUp = waitForLine(server, LINK_UP, 20_000, { includePast: false });
      squid = await squid.restart();
      await Promise.all([clientUp, serverUp]);
      await relayBothWays(topo, 'client', 'server', 'after the restart');
      await stopClient(client, server);
      assertNoPassword(client);
    });
  });

  // -------------------------------------------------------------------------
  // 2. Behind nginx: TLS terminated by nginx, WebSocket to the server.
  // -------------------------------------------------------------------------
  describe('behind nginx (TLS with a test CA, WebSocket upgrades on /tcpipe)', { concurrency: false }, () => {
    const HOSTS = ['client', 'nginx', 'server'] as const;
    type Host = (typeof HOSTS)[number];
    const NAME = 'tunnel.test';
    let topo: Topology<Host>;
    let dir: TempDir;
    const cleanups: (() => unknown)[] = [];
    let certs: Certificates;
    let nginxAddr: string;
    let serverAddr: string;
    let nameShim: string;

    before(async () => {
      topo = await createTopology({ hosts: HOSTS, forwarding: false });
      cleanups.push(() => topo.destroy());
      dir = new TempDir('tcpipe-nginx-');
      cleanups.push(() => dir.remove());
      nginxAddr = topo.addr('nginx', 'client');
      serverAddr = topo.addr('server', 'nginx');
      certs = await makeCertificates(dir, nginxAddr, NAME);
      // The client resolves tunnel.test to nginx without touching /etc/hosts.
      nameShim = writeNameShim(dir, { [NAME]: nginxAddr });
      await startNginx(topo, 'nginx', dir, { listen: `${nginxAddr}:${NGINX_PORT}`, certs, location: NGINX_LOCATION(serverAddr) });
      await startTarget(topo, 'server', 'server-app', [FORWARD_PORT]);
    });
    after(async () => {
      // What before() set up, even when it failed half-way.
      for (const cleanup of cleanups.reverse()) await cleanup();
    });

    /** A tcpipe client in the client's namespace that resolves tunnel.test. */
    function client(t: TestContext, args: readonly string[], env: NodeJS.ProcessEnv = childEnv()): ChildProcess {
      const child = topo.spawn('client', NODE, ['-r', nameShim, CLI_MAIN, ...args], { env });
      t.after(() => stopProcess(child));
      return child;
    }

    test('without --tls-ca the test CA is unknown: no link, and the reason names the certificate', { timeout: 60_000 }, async (t) => {
      const untrusting = client(t, ['-c', `wss://${NAME}:${NGINX_PORT}/tcpipe`, '-t', '127.0.0.1']);
      assert.match(await waitForLine(untrusting, NO_LINK, LINK_MS), /self-signed certificate|unable to verify|unable to get local issuer/i);
      await waitForLine(untrusting, NO_LINK, 10_000, { includePast: false });
      assert.equal(untrusting.exitCode, null, 'still retrying');
      await stopProcess(untrusting);
    });

    test('a path nginx does not forward: "WebSocket upgrade failed: 404 Not Found from nginx", and the client keeps retrying', { timeout: 60_000 }, async (t) => {
      const wrongPath = client(t, ['-c', `wss://${NAME}:${NGINX_PORT}/elsewhere`, '-t', '127.0.0.1', `--tls-ca=${certs.caCert}`]);
      assert.match(await waitForLine(wrongPath, NO_LINK, LINK_MS), /no link: .*WebSocket upgrade failed: 404 Not Found from nginx; retrying in /);
      await waitForLine(wrongPath, NO_LINK, 10_000, { includePast: false });
      assert.equal(wrongPath.exitCode, null, 'still retrying');
      await stopProcess(wrongPath);
    });

    test('wss:// relays; a capture between nginx and the server shows a marker without a secret, never with one', { timeout: 60_000 }, async (t) => {
      t.diagnostic(`nginx location block:\n${NGINX_LOCATION(serverAddr)}`);
      const url = `wss://${NAME}:${NGINX_PORT}/tcpipe`;
      const serverIface = topo.host('server').interfaces[0]?.name ?? '';
      for (const withSecret of [false, true]) {
        const what = withSecret ? 'with a secret' : 'without a secret';
        const env = withSecret ? childEnv({ TCPIPE_SECRET: await keygen() }) : childEnv();
        const server = tcpipe(topo, 'server', ['-s', String(LINK_PORT), '-t', '127.0.0.1'], env);
        t.after(() => stopProcess(server));
        await waitForLine(server, /server: link port 50000/, START_MS);
        const pcapFile = dir.join(`between-nginx-and-server-${withSecret ? 'secret' : 'plain'}.pcap`);
        const capture = await startCapture(topo, 'server', serverIface, ['tcp', 'port', String(LINK_PORT)], pcapFile);
        const serverUp = waitForLine(server, LINK_UP, LINK_MS);
        const pair = client(t, ['-c', url, '-p', String(FORWARD_PORT), `--tls-ca=${certs.caCert}`], env);
        const [clientLine, serverLine] = await Promise.all([waitForLine(pair, LINK_UP, LINK_MS), serverUp]);
        assert.match(clientLine, new RegExp(`link up with ${escape(url)} `));
        assert.match(serverLine, new RegExp(`link up with ${escape(topo.addr('nginx', 'server'))}:\\d+`), `${what}: the server's partner is nginx`);

        const marker = `PLAINTEXT-MARKER-${randomBytes(6).toString('hex')}|`;
        const relayed = await echoFrom(topo, 'client', '127.0.0.1', FORWARD_PORT, `text:${marker}`, 15_000);
        assertIntact(relayed, `server-app:${FORWARD_PORT}`, `${what}: relayed through nginx`);
        await stopClient(pair, server);
        const pcap = await capture.stop();
        await stopProcess(server);
        // The relayed bytes crossed this wire both ways, so the capture must hold at least that much.
        assert.ok(pcap.length > 2 * relayed.sent, `${what}: the capture holds the relayed traffic (${pcap.length} bytes for ${relayed.sent} each way)`);
        // Client-to-server WebSocket frames are masked; the echo's way back (server to
        // client) is not, so without a secret the marker is readable on this wire.
        const seen = pcap.includes(Buffer.from(marker));
        t.diagnostic(`${what}: capture of ${pcap.length} bytes, marker ${seen ? 'seen' : 'not seen'}`);
        if (withSecret) assert.equal(seen, false, 'with a secret, the relayed marker must not appear between nginx and the server');
        else assert.equal(seen, true, 'control: without a secret, the relayed marker appears between nginx and the server');
      }
    });

    test('wss://<IP address> with --tls-ca: the certificate is checked against that address', { timeout: 60_000 }, async (t) => {
      // The certificate names nginx by IP (subjectAltName IP:...), as a server without DNS has.
      const server = tcpipe(topo, 'server', ['-s', String(LINK_PORT), '-t', '127.0.0.1']);
      t.after(() => stopProcess(server));
      await waitForLine(server, /server: link port 50000/, START_MS);
      const pair = client(t, ['-c', `wss://${nginxAddr}:${NGINX_PORT}/tcpipe`, '-p', String(FORWARD_PORT), `--tls-ca=${certs.caCert}`]);
      const first = await waitForLine(pair, /link up with |no link: /, LINK_MS);
      assert.match(first, LINK_UP, `a certificate for IP:${nginxAddr} must verify for wss://${nginxAddr}`);
      assertIntact(await echoFrom(topo, 'client', '127.0.0.1', FORWARD_PORT, 'rand:65536', 15_000), `server-app:${FORWARD_PORT}`, 'wss:// to an IP');
      await stopClient(pair, server);
      await stopProcess(server);
    });
  });

  // -------------------------------------------------------------------------
  // 3. One server port, both kinds of link.
  // -------------------------------------------------------------------------
  test('one server port takes a plain TCP client, then a ws:// client', { timeout: 60_000 }, async (t) => {
    const topo = await topology(t, ['client', 'server'], false);
    const env = childEnv({ TCPIPE_SECRET: await keygen() });
    const serverAddr = topo.addr('server', 'client');
    await startTarget(topo, 'server', 'server-app', [FORWARD_PORT]);
    await startTarget(topo, 'client', 'client-app', [REVERSE_PORT]);
    const server = tcpipe(topo, 'server', ['-s', String(LINK_PORT), '-p', String(REVERSE_PORT), '-t', '127.0.0.1'], env);
    await waitForLine(server, /server: link port 50000/, START_MS);

    const links: [string, string][] = [
      ['plain TCP', `${serverAddr}:${LINK_PORT}`],
      ['WebSocket', `ws://${serverAddr}:${LINK_PORT}/tcpipe`],
    ];
    for (const [what, address] of links) {
      const serverUp = waitForLine(server, LINK_UP, LINK_MS, { includePast: false });
      const client = tcpipe(topo, 'client', ['-c', address, '-p', String(FORWARD_PORT), '-t', '127.0.0.1'], env);
      assert.match(await waitForLine(client, LINK_UP, LINK_MS), new RegExp(`link up with ${escape(address)}`));
      await serverUp;
      await relayBothWays(topo, 'client', 'server', what);
      await stopClient(client, server);
    }
    assert.equal(count(outputOf(server), LINK_UP), 2);
    assert.doesNotMatch(outputOf(server), /refused link/);
  });

  test('--ws-path=/custom: a client on another path is told 404 by the server and keeps retrying; one on /custom links', { timeout: 60_000 }, async (t) => {
    const topo = await topology(t, ['client', 'server'], false);
    const serverAddr = topo.addr('server', 'client');
    await startTarget(topo, 'server', 'server-app', [FORWARD_PORT]);
    const server = tcpipe(topo, 'server', ['-s', String(LINK_PORT), '--ws-path=/custom', '-t', '127.0.0.1']);
    await waitForLine(server, /server: link port 50000/, START_MS);

    const good = tcpipe(topo, 'client', ['-c', `ws://${serverAddr}:${LINK_PORT}/custom`, '-p', String(FORWARD_PORT)]);
    t.after(() => stopProcess(good));
    await Promise.all([waitForLine(good, LINK_UP, LINK_MS), waitForLine(server, LINK_UP, LINK_MS)]);
    assertIntact(await echoFrom(topo, 'client', '127.0.0.1', FORWARD_PORT, 'rand:65536', 15_000), `server-app:${FORWARD_PORT}`, 'ws://.../custom');
    await stopClient(good, server);

    const logged = waitForLine(server, /refused link from [\d.]+:\d+: WebSocket upgrade on the wrong path \/tcpipe/, 10_000, { includePast: false });
    const lost = tcpipe(topo, 'client', ['-c', `ws://${serverAddr}:${LINK_PORT}/tcpipe`, '-t', '127.0.0.1']);
    t.after(() => stopProcess(lost));
    await logged;
    assert.match(await waitForLine(lost, NO_LINK, LINK_MS), /no link: .*WebSocket upgrade failed: 404 Not Found; retrying in /);
    await waitForLine(lost, NO_LINK, 10_000, { includePast: false });
    assert.equal(lost.exitCode, null, 'the client is still running');
    await stopProcess(lost);
  });

  // -------------------------------------------------------------------------
  // 4. SOCKS5 through dante-server, username/password.
  // -------------------------------------------------------------------------
  test('SOCKS5 through dante-server with username/password; a wrong password is named', { timeout: 60_000 }, async (t) => {
    const topo = await topology(t, ['client', 'socks', 'server'], true);
    const dir = tempDir(t, 'tcpipe-dante-');
    const password = `S0cks-${randomBytes(6).toString('hex')}`;
    // dante's 'socksmethod: username' checks the system's accounts: a throwaway one.
    const user = await createSystemUser('tcpt', password);
    t.after(() => removeSystemUser(user));
    const socksAddr = topo.addr('socks', 'client');
    const serverAddr = topo.addr('server', 'socks');
    await startDante(topo, 'socks', dir, { internal: socksAddr, port: SOCKS_PORT, external: topo.addr('socks', 'server'), method: 'username' });
    await startTarget(topo, 'server', 'server-app', [FORWARD_PORT]);
    await startTarget(topo, 'client', 'client-app', [REVERSE_PORT]);
    const env = childEnv({ TCPIPE_SECRET: await keygen() });
    const server = tcpipe(topo, 'server', ['-s', String(LINK_PORT), '-p', String(REVERSE_PORT), '-t', '127.0.0.1'], env);
    await waitForLine(server, /server: link port 50000/, START_MS);
    await onlyThisWayOut(topo, 'client', socksAddr, SOCKS_PORT);
    await cannotConnect(topo, 'client', serverAddr, LINK_PORT, 'firewall');

    const serverUp = waitForLine(server, LINK_UP, LINK_MS);
    const proxy = `socks5://${user}:${encodeURIComponent(password)}@${socksAddr}:${SOCKS_PORT}`;
    const client = tcpipe(topo, 'client', ['-c', `${serverAddr}:${LINK_PORT}`, '-p', String(FORWARD_PORT), '-t', '127.0.0.1', `--proxy=${proxy}`], env);
    assert.match(await waitForLine(client, LINK_UP, LINK_MS), new RegExp(`via socks5://${escape(user)}@${escape(socksAddr)}:${SOCKS_PORT}`));
    assert.match(await serverUp, new RegExp(`link up with ${escape(topo.addr('socks', 'server'))}:\\d+`), "the server's partner is dante");
    await relayBothWays(topo, 'client', 'server', 'SOCKS5');
    await stopClient(client, server);
    assert.ok(!outputOf(client).includes(password), 'the SOCKS5 password never shows');

    const wrong = tcpipe(topo, 'client', ['-c', `${serverAddr}:${LINK_PORT}`, '-t', '127.0.0.1', `--proxy=socks5://${user}:not-${password}@${socksAddr}:${SOCKS_PORT}`], env);
    assert.match(await waitForLine(wrong, NO_LINK, LINK_MS), /no link: SOCKS5 proxy refused the username or password; retrying/);
    await waitForLine(wrong, NO_LINK, 10_000, { includePast: false });
    assert.equal(wrong.exitCode, null, 'still retrying');
    await stopProcess(wrong);
  });

  // -------------------------------------------------------------------------
  // 5. Attacks on the server port while a pair relays.
  // -------------------------------------------------------------------------
  test('garbage, unfinished upgrades and wrong paths are closed with a reason while the pair keeps relaying', { timeout: 60_000 }, async (t) => {
    // attacker — server — client: the attacker reaches the server from its own addresses.
    const topo = await topology(t, ['attacker', 'server', 'client'], false);
    const env = childEnv({ TCPIPE_SECRET: await keygen() });
    const serverAddr = topo.addr('server', 'attacker');
    await startTarget(topo, 'client', 'client-app', [REVERSE_PORT]);
    const server = tcpipe(topo, 'server', ['-s', String(LINK_PORT), '-p', String(REVERSE_PORT)], env);
    await waitForLine(server, /server: link port 50000/, START_MS);
    const client = tcpipe(topo, 'client', ['-c', `${topo.addr('server', 'client')}:${LINK_PORT}`, '-t', '127.0.0.1'], env);
    await Promise.all([waitForLine(client, LINK_UP, LINK_MS), waitForLine(server, LINK_UP, LINK_MS)]);

    // One source address per attack, so the penalty for repeated failures never mixes them.
    const attackerIface = topo.host('attacker').interfaces[0]?.name ?? '';
    const sources = Array.from({ length: 7 }, (_, i) => `${serverAddr.split('.').slice(0, 3).join('.')}.${20 + i}`);
    for (const a of sources) await topo.execOk('attacker', 'ip', ['addr', 'add', `${a}/24`, 'dev', attackerIface]);

    // The live pair: one connection busy for the whole attack, echoing every 50 ms.
    const chatter = topo.spawn('server', NODE, ['-e', CHATTER_USER, '127.0.0.1', String(REVERSE_PORT), '12000']);
    await waitForLine(chatter, /^connected$/, START_MS);

    const raw = async (source: string, payload: string, waitMs: number): Promise<AttackResult> => {
      const r = await topo.exec('attacker', NODE, ['-e', RAW_ATTACK, serverAddr, String(LINK_PORT), source, Buffer.from(payload, 'latin1').toString('base64'), String(waitMs)], {
        timeoutMs: waitMs + 5000,
      });
      return JSON.parse(r.stdout.trim().split('\n').pop() ?? 'null') as AttackResult;
    };
    const upgrade = (path: string, key: boolean): string =>
      `GET ${path} HTTP/1.1\r\nHost: ${serverAddr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n${key ? 'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n' : ''}\r\n`;
    const src = (i: number): string => sources[i] ?? '';

    const [garbage, httpGarbage, noKey, unfinished, wrongPathUpgrade, wrongPath, httpClient] = await Promise.all([
      raw(src(0), '\x7f\x00\x13 this is not tcpipe at all \xff\xfe\r\n\r\n', 10_000),
      raw(src(1), 'GARBAGE \x01\x02 NOT HTTP\r\n\r\n', 10_000),
      raw(src(2), upgrade('/tcpipe', false), 10_000),
      raw(src(3), `GET /tcpipe HTTP/1.1\r\nHost: ${serverAddr}\r\nUpgrade: websocket\r\n`, 20_000),
      raw(src(4), upgrade('/admin', true), 10_000),
      raw(src(5), `GET /index.html HTTP/1.1\r\nHost: ${serverAddr}\r\n\r\n`, 10_000),
      topo.exec('attacker', NODE, ['-e', HTTP_GET, serverAddr, String(LINK_PORT), src(6), '/status'], { timeoutMs: 15_000 }),
    ]);

    const log = outputOf(server);
    const refusal = (source: string): string => log.split('\n').find((l) => l.includes(`refused link from ${source}:`)) ?? '';
    t.diagnostic(`server log:\n${log.split('\n').filter((l) => /refused link/.test(l)).join('\n')}`);
    const expectations: [string, AttackResult | null, string, RegExp][] = [
      ['garbage', garbage, src(0), /not a tcpipe link: wrong preface/],
      ['garbage that starts like GET', httpGarbage, src(1), /malformed HTTP request/],
      ['an upgrade without Sec-WebSocket-Key', noKey, src(2), /WebSocket upgrade/],
      ['a request head never finished', unfinished, src(3), /handshake not finished within 10s/],
      ['an upgrade on the wrong path', wrongPathUpgrade, src(4), /WebSocket upgrade on the wrong path \/admin/],
      ['a GET on the wrong path', wrongPath, src(5), /HTTP GET \/index\.html: wrong path/],
      ['an HTTP client on the wrong path', null, src(6), /HTTP GET \/status: wrong path/],
    ];
    for (const [what, result, source, reason] of expectations) {
      assert.match(refusal(source), reason, `${what}: the server logs why it closed the connection from ${source}\n${log}`);
      if (result !== null) assert.notEqual(result.closedAfterMs, null, `${what}: closed by the server (${JSON.stringify(result)})`);
    }
    assert.match(noKey.reply, /^HTTP\/1\.1 400 /, 'an upgrade without a key gets a 400');
    assert.match(httpGarbage.reply, /^HTTP\/1\.1 400 /, 'malformed HTTP gets a 400');
    assert.match(wrongPathUpgrade.reply, /^HTTP\/1\.1 404 /, 'an upgrade on the wrong path gets a 404');
    assert.match(wrongPath.reply, /^HTTP\/1\.1 404 /, 'a GET on the wrong path gets a 404');
    assert.match(httpClient.stdout, /^status 404$/m, `the HTTP client sees the 404: ${httpClient.stdout}${httpClient.stderr}`);
    const unfinishedAfter = unfinished.closedAfterMs ?? Infinity;
    assert.ok(unfinishedAfter >= 9000 && unfinishedAfter < 20_000, `the unfinished head was closed at the handshake deadline (${unfinishedAfter} ms)`);

    // The pair relayed the whole time, and still does.
    const chat = JSON.parse((await waitForLine(chatter, /^\{/, 10_000)) || 'null') as { header: string; sent: number; echoed: number; error: string | null };
    assert.equal(chat.error, null, JSON.stringify(chat));
    assert.equal(chat.header, `client-app:${REVERSE_PORT}`);
    assert.ok(chat.sent > 100 && chat.echoed === chat.sent, `every tick echoed during the attacks: ${JSON.stringify(chat)}`);
    assertIntact(await echoFrom(topo, 'server', '127.0.0.1', REVERSE_PORT, 'rand:262144', 15_000), `client-app:${REVERSE_PORT}`, 'after the attacks');
    assert.doesNotMatch(outputOf(server) + outputOf(client), LINK_DOWN, 'the link stayed up');
    assert.equal(count(outputOf(server), LINK_UP), 1);
  });

  // -------------------------------------------------------------------------
  // 6. --transport restricts what the server port takes.
  // -------------------------------------------------------------------------
  test('--transport=tcp refuses ws clients and --transport=ws refuses plain ones, each logged', { timeout: 60_000 }, async (t) => {
    const topo = await topology(t, ['client', 'server'], false);
    const serverAddr = topo.addr('server', 'client');
    await startTarget(topo, 'server', 'server-app', [FORWARD_PORT]);
    const tcpOnly = tcpipe(topo, 'server', ['-s', String(LINK_PORT), '--transport=tcp', '-t', '127.0.0.1']);
    const wsOnly = tcpipe(topo, 'server', ['-s', String(LINK_PORT + 1), '--transport=ws', '-t', '127.0.0.1']);
    await Promise.all([waitForLine(tcpOnly, /server: link port 50000/, START_MS), waitForLine(wsOnly, /server: link port 50001/, START_MS)]);
    const tcpAddress = `${serverAddr}:${LINK_PORT}`;
    const wsUrl = `ws://${serverAddr}:${LINK_PORT + 1}/tcpipe`;

    // Each server takes its own kind (first, so the refused attempts' penalty cannot interfere).
    for (const [server, address] of [
      [tcpOnly, tcpAddress],
      [wsOnly, wsUrl],
    ] as const) {
      const serverUp = waitForLine(server, LINK_UP, LINK_MS, { includePast: false });
      const client = tcpipe(topo, 'client', ['-c', address, '-p', String(FORWARD_PORT)]);
      await Promise.all([waitForLine(client, LINK_UP, LINK_MS), serverUp]);
      assertIntact(await echoFrom(topo, 'client', '127.0.0.1', FORWARD_PORT, 'rand:65536', 15_000), `server-app:${FORWARD_PORT}`, `${address} accepted`);
      await stopClient(client, server);
    }

    const refused: [ChildProcess, string, RegExp][] = [
      [tcpOnly, `ws://${serverAddr}:${LINK_PORT}/tcpipe`, /refused link from [\d.]+:\d+: an HTTP request, and this server takes no WebSocket links \(--transport=tcp\)/],
      [wsOnly, `${serverAddr}:${LINK_PORT + 1}`, /refused link from [\d.]+:\d+: a plain TCP link, and this server takes only WebSocket links \(--transport=ws\)/],
    ];
    await Promise.all(
      refused.map(async ([server, address, reason]) => {
        const logged = waitForLine(server, reason, 10_000, { includePast: false });
        const client = tcpipe(topo, 'client', ['-c', address, '-t', '127.0.0.1']);
        await logged;
        // The client says it has no link, and tries again.
        await waitForLine(client, NO_LINK, LINK_MS);
        await waitForLine(client, NO_LINK, LINK_MS, { includePast: false });
        assert.doesNotMatch(outputOf(client), LINK_UP, `${address}: never linked`);
        assert.equal(count(outputOf(server), LINK_UP), 1, `${address}: the server linked only its own kind`);
        await stopProcess(client);
      }),
    );
  });
});
