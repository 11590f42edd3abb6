/**
 * The PROXY protocol against real servers (issue 21), on loopback:
 *
 *   user 127.0.0.9 / ::1 ──> entry (127.0.0.2:E, [::1]:E6) ══link══> exit ──> nginx 127.0.0.3:N
 *                                                                     `listen ... proxy_protocol`
 *   user ──> HAProxy 127.0.0.5:H (send-proxy / send-proxy-v2) ──> entry --accept-proxy-protocol
 *
 * nginx answers every request with what the header told it:
 * "$proxy_protocol_addr $proxy_protocol_port $proxy_protocol_server_addr $proxy_protocol_server_port".
 * It refuses connections without a header, so each answer proves the header came first.
 * Users bind 127.0.0.9 (a source no tcpipe socket uses) or connect from ::1 (told apart by port).
 *
 * nginx and HAProxy run unprivileged-config processes, config in a temp dir,
 * in the foreground (`nginx -c FILE -e LOG -g 'daemon off;'`, `haproxy -f FILE -db`).
 * scripts/install-test-deps.sh installs them; without them the suite is skipped.
 */
import { after, before, describe, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { promisify } from 'node:util';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { once } from 'node:events';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startClient, startServer } from '../../src/index.js';
import type { Limits, RouteSpec, Tcpipe } from '../../src/instance.js';
import { DEFAULTS } from '../../src/config/defaults.js';
import { linkSettingsFrom } from '../../src/config/resolve.js';
import { LinkClient } from '../../src/link/client.js';
import { LinkServer } from '../../src/link/server.js';
import type { LinkHandlers } from '../../src/link/link-session.js';
import { CLI_MAIN } from '../helpers/loopback.js';
import { renderStatus } from '../../src/cli/status.js';
import { encodeProxyV2 } from '../../src/protocol/proxy-header.js';
import { generateSecret } from '../../src/security/secret.js';
import {
  LINK_HOST,
  TARGET_HOST,
  TEST_LIMITS,
  captureLog,
  freePort,
  nextEvent,
  recordEvents,
  spawnCli,
  track,
  withTimeout,
  type LogCapture,
} from '../helpers/loopback.js';

const USER_V4 = '127.0.0.9';
const ENTRY_V4 = '127.0.0.2';
const LB_HOST = '127.0.0.5';
const MS = 10_000;

function tool(name: string): string | null {
  const dirs = [...(process.env.PATH ?? '').split(':'), '/usr/sbin', '/sbin'];
  for (const dir of dirs) if (dir !== '' && existsSync(join(dir, name))) return join(dir, name);
  return null;
}
const NGINX = tool('nginx');
const HAPROXY = tool('haproxy');
const missing = [NGINX === null ? 'nginx' : '', HAPROXY === null ? 'haproxy' : ''].filter((n) => n !== '');
const SKIP = missing.length > 0 ? `needs ${missing.join(' and ')} (scripts/install-test-deps.sh)` : false;

// ---------------------------------------------------------------------------
// Real servers
// ---------------------------------------------------------------------------

interface Child {
  readonly process: ChildProcess;
  output(): string;
  stop(): Promise<void>;
}

/** Connects until host:port accepts (the server is up), within `ms`; 25 ms between refused tries. */
async function untilAccepting(host: string, port: number, ms: number, child: Child): Promise<void> {
  const deadline = Date.now() + ms;
  for (;;) {
    if (child.process.exitCode !== null) throw new Error(`exited (${child.process.exitCode}) before listening:\n${child.output()}`);
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect({ host, port }, () => {
        s.destroy();
        resolve(true);
      });
      s.on('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`${host}:${port} not accepting within ${ms} ms:\n${child.output()}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

function spawnChild(command: string, args: readonly string[]): Child {
  const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let text = '';
  child.stdout?.on('data', (c: Buffer) => (text += c.toString()));
  child.stderr?.on('data', (c: Buffer) => (text += c.toString()));
  const exited = once(child, 'exit').then(() => undefined);
  return {
    process: child,
    output: () => text,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      await withTimeout(exited, 5000, `${command} to exit`).catch(() => child.kill('SIGKILL'));
    },
  };
}

/** nginx answering with what each connection's PROXY header said, on 127.0.0.3:port and [::1]:port. */
async function startNginx(dir: string): Promise<{ port: number; child: Child }> {
  const port = await freePort(TARGET_HOST);
  const conf = join(dir, 'nginx.conf');
  writeFileSync(
    conf,
    `worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/nginx-error.log;
events { worker_connections 256; }
http {
  access_log off;
  client_body_temp_path ${dir}/body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  server {
    listen ${TARGET_HOST}:${port} proxy_protocol;
    listen [::1]:${port} proxy_protocol;
    location / {
      default_type text/plain;
      return 200 "$proxy_protocol_addr $proxy_protocol_port $proxy_protocol_server_addr $proxy_protocol_server_port\\n";
    }
  }
}
`,
  );
  const child = spawnChild(NGINX ?? 'nginx', ['-p', dir, '-e', `${dir}/nginx-error.log`, '-c', conf, '-g', 'daemon off;']);
  await untilAccepting(TARGET_HOST, port, MS, child);
  return { port, child };
}

interface Frontend {
  readonly bind: string;
  readonly port: number;
  readonly backend: string;
  readonly send: 'send-proxy' | 'send-proxy-v2';
}

/** HAProxy in TCP mode: each frontend forwards to `backend` with a PROXY header. */
async function startHaproxy(t: TestContext, dir: string, frontends: readonly Frontend[]): Promise<void> {
  const conf = join(dir, `haproxy-${Date.now()}.cfg`);
  const sections = frontends.map(
    (f, i) => `frontend fe${i}
  bind ${f.bind.includes(':') ? `[${f.bind}]` : f.bind}:${f.port}
  default_backend be${i}
backend be${i}
  server s ${f.backend} ${f.send}
`,
  );
  writeFileSync(
    conf,
    `global
  maxconn 256
defaults
  mode tcp
  timeout connect 5s
  timeout client 30s
  timeout server 30s
${sections.join('')}`,
  );
  const child = spawnChild(HAPROXY ?? 'haproxy', ['-f', conf, '-db']);
  t.after(() => child.stop());
  for (const f of frontends) await untilAccepting(f.bind, f.port, MS, child);
}

// ---------------------------------------------------------------------------
// Users
// ---------------------------------------------------------------------------

/** An HTTP/1.0 request from `localAddress` (if given); resolves with nginx's answer line and the user's port. */
async function ask(host: string, port: number, localAddress?: string): Promise<{ said: string; userPort: number }> {
  const socket = net.connect({ host, port, ...(localAddress !== undefined ? { localAddress } : {}) });
  const user = track(socket);
  await withTimeout(once(socket, 'connect'), MS, `connect to ${host}:${port}`);
  const userPort = socket.localPort ?? 0;
  socket.write('GET / HTTP/1.0\r\nHost: tcpipe.test\r\n\r\n');
  await user.closedWithin(MS);
  const text = user.data().toString('latin1');
  assert.match(text, /^HTTP\/1\.1 200 /, `nginx answered:\n${text}`);
  return { said: text.slice(text.indexOf('\r\n\r\n') + 4).trim(), userPort };
}

// ---------------------------------------------------------------------------
// Pairs
// ---------------------------------------------------------------------------

interface PairSpec {
  /** Which instance has the entry ports (the other connects to targets). */
  readonly entrySide: 'server' | 'client';
  readonly ports: readonly { host: string; port: number }[];
  readonly routes: readonly RouteSpec[];
  readonly proxyProtocol?: 'v1' | 'v2';
  readonly acceptProxyProtocol?: boolean;
  readonly secret?: boolean;
  readonly limits?: Partial<Limits>;
}

interface ProxyPair {
  readonly entry: Tcpipe;
  readonly exit: Tcpipe;
  readonly entryLog: LogCapture;
  readonly exitLog: LogCapture;
}

async function proxyPair(t: TestContext, spec: PairSpec): Promise<ProxyPair> {
  const serverLog = captureLog('server');
  const clientLog = captureLog('client');
  const secret = spec.secret === true ? { secret: generateSecret() } : {};
  const entryOptions = { ports: spec.ports, ...(spec.acceptProxyProtocol === true ? { acceptProxyProtocol: true } : {}) };
  const exitOptions = { routes: spec.routes, ...(spec.proxyProtocol !== undefined ? { proxyProtocol: spec.proxyProtocol } : {}) };
  const limits = { ...TEST_LIMITS, ...spec.limits };
  const server = await startServer({
    port: 0,
    host: LINK_HOST,
    logger: serverLog.logger,
    limits,
    ...secret,
    ...(spec.entrySide === 'server' ? entryOptions : exitOptions),
  });
  t.after(() => server.stop());
  const serverUp = nextEvent(server, 'link-up', MS);
  const client = await startClient({
    host: LINK_HOST,
    port: server.linkAddress?.port ?? 0,
    proxy: null,
    logger: clientLog.logger,
    limits,
    ...secret,
    ...(spec.entrySide === 'client' ? entryOptions : exitOptions),
  });
  t.after(() => client.stop());
  await Promise.all([serverUp, client.linkUp ? Promise.resolve() : nextEvent(client, 'link-up', MS)]);
  return spec.entrySide === 'server'
    ? { entry: server, exit: client, entryLog: serverLog, exitLog: clientLog }
    : { entry: client, exit: server, entryLog: clientLog, exitLog: serverLog };
}

// ---------------------------------------------------------------------------

describe('PROXY protocol with nginx and HAProxy', { skip: SKIP, concurrency: false }, () => {
  let dir = '';
  let nginx: { port: number; child: Child } | null = null;
  const nginxPort = (): number => nginx?.port ?? 0;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'tcpipe-proxy-'));
    nginx = await startNginx(dir);
  });
  after(async () => {
    await nginx?.child.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  /** Entry ports on 127.0.0.2 and [::1], both routed by the exit side to nginx. */
  async function entryPorts(): Promise<{ v4: number; v6: number; ports: { host: string; port: number }[]; routes: RouteSpec[] }> {
    const v4 = await freePort(ENTRY_V4);
    const v6 = await freePort('::1');
    return {
      v4,
      v6,
      ports: [
        { host: ENTRY_V4, port: v4 },
        { host: '::1', port: v6 },
      ],
      routes: [
        { port: v4, host: TARGET_HOST, targetPort: nginxPort() },
        { port: v6, host: TARGET_HOST, targetPort: nginxPort() },
      ],
    };
  }

  for (const entrySide of ['server', 'client'] as const) {
    for (const version of ['v1', 'v2'] as const) {
      for (const secret of [false, true]) {
        test(`entry on the ${entrySide}, ${version}, ${secret ? 'with' : 'without'} a secret: nginx learns the IPv4 and IPv6 users' addresses`, { timeout: 30_000 }, async (t) => {
          const { v4, v6, ports, routes } = await entryPorts();
          const p = await proxyPair(t, { entrySide, ports, routes, proxyProtocol: version, secret });
          const opened = recordEvents(p.entry, 'stream-open');
          const four = await ask(ENTRY_V4, v4, USER_V4);
          assert.equal(four.said, `${USER_V4} ${four.userPort} ${ENTRY_V4} ${v4}`);
          const six = await ask('::1', v6);
          assert.equal(six.said, `::1 ${six.userPort} ::1 ${v6}`);
          assert.deepEqual(
            opened.map((o) => o.peer),
            [`${USER_V4}:${four.userPort}`, `[::1]:${six.userPort}`],
          );
          // The exit side's log names the user as well as the target.
          await p.exitLog.waitFor(new RegExp(`open on port ${v4} \\(exit, ${TARGET_HOST}:${nginxPort()}, user ${USER_V4}:${four.userPort}\\)`), MS);
          await p.exitLog.waitFor(new RegExp(`open on port ${v6} \\(exit, ${TARGET_HOST}:${nginxPort()}, user \\[::1\\]:${six.userPort}\\)`), MS);
        });
      }
    }
  }

  test('a route chooses its own version; proxy-protocol=none writes nothing; --proxy-protocol covers the rest', { timeout: 30_000 }, async (t) => {
    // A target that answers, once the user has finished, with everything it received.
    const mirror = net.createServer({ allowHalfOpen: true }, (s) => {
      const got: Buffer[] = [];
      s.on('error', () => undefined);
      s.on('data', (c: Buffer) => got.push(c));
      s.on('end', () => s.end(Buffer.concat(got)));
    });
    mirror.listen(0, TARGET_HOST);
    await once(mirror, 'listening');
    t.after(() => mirror.close());
    const mirrorPort = (mirror.address() as net.AddressInfo).port;
    const [v2, none, fallback] = [await freePort(ENTRY_V4), await freePort(ENTRY_V4), await freePort(ENTRY_V4)];
    await proxyPair(t, {
      entrySide: 'server',
      ports: [v2, none, fallback].map((port) => ({ host: ENTRY_V4, port })),
      routes: [
        { port: v2, host: TARGET_HOST, targetPort: mirrorPort, proxyProtocol: 'v2' },
        { port: none, host: TARGET_HOST, targetPort: mirrorPort, proxyProtocol: 'none' },
        { port: fallback, host: TARGET_HOST, targetPort: mirrorPort },
      ],
      proxyProtocol: 'v1',
    });
    const mirrored = async (port: number): Promise<{ bytes: Buffer; userPort: number }> => {
      const user = track(net.connect({ host: ENTRY_V4, port, localAddress: USER_V4, allowHalfOpen: true }));
      await once(user.socket, 'connect');
      const userPort = user.socket.localPort ?? 0;
      user.socket.end('hi');
      await user.closedWithin(MS);
      return { bytes: user.data(), userPort };
    };
    const a = await mirrored(v2);
    const expected = encodeProxyV2({ family: 4, transport: 'stream', sourceAddress: USER_V4, sourcePort: a.userPort, destinationAddress: ENTRY_V4, destinationPort: v2 });
    assert.deepEqual(a.bytes, Buffer.concat([expected, Buffer.from('hi')]));
    assert.equal((await mirrored(none)).bytes.toString('latin1'), 'hi');
    const c = await mirrored(fallback);
    assert.equal(c.bytes.toString('latin1'), `PROXY TCP4 ${USER_V4} ${ENTRY_V4} ${c.userPort} ${fallback}\r\nhi`);
  });

  test("without --accept-proxy-protocol a user's 'PROXY TCP4 ...' is data, after tcpipe's own header", { timeout: 30_000 }, async (t) => {
    const received: Buffer[] = [];
    let gotAll: () => void = () => undefined;
    const done = new Promise<void>((resolve) => (gotAll = resolve));
    const capture = net.createServer({ allowHalfOpen: true }, (s) => {
      s.on('error', () => undefined);
      s.on('data', (c: Buffer) => received.push(c));
      s.on('end', () => {
        s.end();
        gotAll();
      });
    });
    capture.listen(0, TARGET_HOST);
    await once(capture, 'listening');
    t.after(() => capture.close());
    const port = await freePort(ENTRY_V4);
    await proxyPair(t, {
      entrySide: 'client',
      ports: [{ host: ENTRY_V4, port }],
      routes: [{ port, host: TARGET_HOST, targetPort: (capture.address() as net.AddressInfo).port }],
      proxyProtocol: 'v1',
    });
    const socket = net.connect({ host: ENTRY_V4, port, localAddress: USER_V4, allowHalfOpen: true });
    await once(socket, 'connect');
    const userPort = socket.localPort ?? 0;
    const spoof = 'PROXY TCP4 1.2.3.4 5.6.7.8 1111 2222\r\nhello\n';
    socket.end(spoof);
    await withTimeout(done, MS, 'the target to receive everything');
    socket.destroy();
    assert.equal(Buffer.concat(received).toString('latin1'), `PROXY TCP4 ${USER_V4} ${ENTRY_V4} ${userPort} ${port}\r\n${spoof}`);
  });

  for (const send of ['send-proxy', 'send-proxy-v2'] as const) {
    test(`behind HAProxy (${send}): the header sent on names what HAProxy's named; logs and status show the user`, { timeout: 30_000 }, async (t) => {
      const entryPort = await freePort(ENTRY_V4);
      const lb4 = await freePort(LB_HOST);
      const lb6 = await freePort('::1');
      const p = await proxyPair(t, {
        entrySide: 'server',
        ports: [{ host: ENTRY_V4, port: entryPort }],
        routes: [{ port: entryPort, host: TARGET_HOST, targetPort: nginxPort() }],
        acceptProxyProtocol: true,
        proxyProtocol: 'v2',
      });
      await startHaproxy(t, dir, [
        { bind: LB_HOST, port: lb4, backend: `${ENTRY_V4}:${entryPort}`, send },
        { bind: '::1', port: lb6, backend: `${ENTRY_V4}:${entryPort}`, send },
      ]);
      const four = await ask(LB_HOST, lb4, USER_V4);
      assert.equal(four.said, `${USER_V4} ${four.userPort} ${LB_HOST} ${lb4}`);
      const six = await ask('::1', lb6);
      assert.equal(six.said, `::1 ${six.userPort} ::1 ${lb6}`);
      await p.entryLog.waitFor(new RegExp(`open on port ${entryPort} \\(entry, ${USER_V4}:${four.userPort}\\)`), MS);

      // An open connection: `tcpipe status` names the user, not HAProxy.
      const opened = nextEvent(p.entry, 'stream-open', MS);
      const held = net.connect({ host: LB_HOST, port: lb4, localAddress: USER_V4 });
      t.after(() => held.destroy());
      await once(held, 'connect');
      const info = await opened;
      assert.equal(info.peer, `${USER_V4}:${held.localPort ?? 0}`);
      // The earlier connections may still be closing: every stream listed names a user, none HAProxy.
      const peers = p.entry.status().streams.map((s) => s.peer);
      assert.ok(peers.includes(info.peer), `status lists ${info.peer}: ${peers.join(', ')}`);
      for (const peer of peers) assert.match(peer, new RegExp(`^(${USER_V4.replace(/\./g, '\\.')}|\\[::1\\]):\\d+$`), 'a user, not HAProxy');
      const status = p.entry.status();
      assert.match(renderStatus(status, Date.now()), new RegExp(`entry\\s+${USER_V4.replace(/\./g, '\\.')}:${held.localPort ?? 0}`));
    });
  }

  test('bad headers on an --accept-proxy-protocol port: closed, one line each, nothing else disturbed', { timeout: 30_000 }, async (t) => {
    const port = await freePort(ENTRY_V4);
    const p = await proxyPair(t, {
      entrySide: 'client',
      ports: [{ host: ENTRY_V4, port }],
      routes: [{ port, host: TARGET_HOST, targetPort: nginxPort() }],
      acceptProxyProtocol: true,
      proxyProtocol: 'v2',
      limits: { proxyHeaderTimeoutMs: 400 },
    });
    const opened = recordEvents(p.entry, 'stream-open');
    const refused = recordEvents(p.entry, 'refused');
    const downs = recordEvents(p.entry, 'link-down');
    const sig = '\r\n\r\n\0\r\nQUIT\n';
    const cases: [string, Buffer | string, boolean, RegExp][] = [
      ['plain HTTP', 'GET / HTTP/1.1\r\nHost: x\r\n\r\n', false, /bad PROXY header: not a PROXY protocol header/],
      ['malformed v1', 'PROXY TCP4 1.2.3.4 5.6.7.8 99999 1\r\n', false, /bad PROXY header: v1 header: bad port/],
      ['oversized v1', `PROXY UNKNOWN ${'x'.repeat(120)}`, false, /no CRLF within 107 bytes/],
      ['truncated v1', 'PROXY TCP4 1.2.3.4', true, /closed before its PROXY header was complete \(18 bytes received\)/],
      ['v2 with a bogus length', Buffer.concat([Buffer.from(sig, 'latin1'), Buffer.from([0x21, 0x11, 0xff, 0xff])]), false, /length 65535 is above this side's limit/],
      ['v2 length too short', Buffer.concat([Buffer.from(sig, 'latin1'), Buffer.from([0x21, 0x21, 0x00, 0x0c]), Buffer.alloc(12)]), false, /too short for the family's 36-byte/],
      ['a header that never finishes', 'PROXY TCP4 ', false, /no complete PROXY header within 0\.4s \(11 bytes received\)/],
    ];
    for (const [name, bytes, endAfter, line] of cases) {
      const user = track(net.connect({ host: ENTRY_V4, port, localAddress: USER_V4 }));
      await once(user.socket, 'connect');
      if (endAfter) user.socket.end(bytes);
      else user.socket.write(bytes);
      await withTimeout(user.closed, 3000, `${name}: the connection to be closed`);
      assert.equal(user.data().length, 0, `${name}: nothing relayed back`);
      const logged = await p.entryLog.waitFor(line, MS);
      assert.match(logged, new RegExp(`closed connection on port ${port} from ${USER_V4}:\\d+: `), name);
    }
    assert.equal(opened.length, 0, 'no stream opened for a bad header');
    assert.deepEqual([...new Set(refused.map((r) => r.kind))], ['bad_proxy_header']);
    assert.equal(refused.length, cases.length);

    // Good headers still pass: v2 with TLVs tcpipe does not know, v1 UNKNOWN (the connection's own
    // address), and v2 LOCAL (a health check: relayed without an address, nginx sees LOCAL).
    const tlvs = Buffer.from('ee0003616263' + '010002' + '6832', 'hex');
    const header = encodeProxyV2({ family: 4, transport: 'stream', sourceAddress: '192.0.2.7', sourcePort: 4242, destinationAddress: '198.51.100.1', destinationPort: 443 });
    const withTlvs = Buffer.concat([header, tlvs]);
    withTlvs.writeUInt16BE(12 + tlvs.length, 14);
    const viaHeader = async (first: Buffer | string): Promise<{ said: string; userPort: number }> => {
      const user = track(net.connect({ host: ENTRY_V4, port, localAddress: USER_V4 }));
      await once(user.socket, 'connect');
      const userPort = user.socket.localPort ?? 0;
      user.socket.write(first);
      user.socket.write('GET / HTTP/1.0\r\n\r\n');
      await user.closedWithin(MS);
      const text = user.data().toString('latin1');
      assert.match(text, /^HTTP\/1\.1 200 /, text);
      return { said: text.slice(text.indexOf('\r\n\r\n') + 4).trim(), userPort };
    };
    assert.equal((await viaHeader(withTlvs)).said, '192.0.2.7 4242 198.51.100.1 443', 'v2 with unknown TLVs');
    const unknown = await viaHeader('PROXY UNKNOWN\r\n');
    assert.equal(unknown.said, `${USER_V4} ${unknown.userPort} ${ENTRY_V4} ${port}`, 'v1 UNKNOWN: the connection itself');
    const local = await viaHeader(encodeProxyV2(null));
    assert.equal(local.said, '', 'v2 LOCAL: nginx is told LOCAL in turn, no address');
    assert.equal(opened.length, 3);
    assert.equal(downs.length, 0, 'the link never went down');
    assert.ok(p.exit.linkUp && p.entry.linkUp);
  });

  test('the command line: --accept-proxy-protocol, a TOML route with proxy-protocol=v2, and `tcpipe status` naming the user', { timeout: 60_000 }, async (t) => {
    const linkPort = await freePort(LINK_HOST);
    const entryPort = await freePort(ENTRY_V4);
    const metricsPort = await freePort(LINK_HOST);
    const server = spawnCli(t, ['-s', String(linkPort), '-p', `${ENTRY_V4}:${entryPort}`, '--accept-proxy-protocol', `--metrics=${LINK_HOST}:${metricsPort}`, '-v']);
    await server.waitFor(/metrics on http/, MS);
    const toml = join(dir, `client-${entryPort}.toml`);
    writeFileSync(toml, `client = "${LINK_HOST}:${linkPort}"\ntarget = ["${entryPort}=${TARGET_HOST}:${nginxPort()},proxy-protocol=v2"]\n`);
    const client = spawnCli(t, [`--config=${toml}`]);
    await server.waitFor(/link up with/, MS);
    await client.waitFor(/link up with/, MS);

    const user = track(net.connect({ host: ENTRY_V4, port: entryPort, localAddress: USER_V4 }));
    await once(user.socket, 'connect');
    user.socket.write(`PROXY TCP4 203.0.113.7 ${ENTRY_V4} 5555 ${entryPort}\r\n`);
    await server.waitFor(/open on port \d+ \(entry, 203\.0\.113\.7:5555\)/, MS);
    const { stdout } = await promisify(execFile)(process.execPath, [CLI_MAIN, 'status', `--metrics=${LINK_HOST}:${metricsPort}`], { timeout: MS });
    assert.match(stdout, /entry\s+203\.0\.113\.7:5555/);
    user.socket.write('GET / HTTP/1.0\r\n\r\n');
    await user.closedWithin(MS);
    const text = user.data().toString('latin1');
    assert.equal(text.slice(text.indexOf('\r\n\r\n') + 4).trim(), `203.0.113.7 5555 ${ENTRY_V4} ${entryPort}`);
  });

  test('a partner without capability origin is refused by a side with --proxy-protocol, the same line on both sides', { timeout: 30_000 }, async (t) => {
    const reason = /lacks capability 'origin', which --proxy-protocol needs/;
    // The partner of an older version: the real link code, with a HELLO that lists no capability.
    const oldSettings = { ...linkSettingsFrom({ ...DEFAULTS, ...TEST_LIMITS }, 0), capabilities: [] };
    const oldLog = captureLog('old');
    const handlers: LinkHandlers = {
      onStreamRequest: (stream) => stream.reset(3, 'not here'),
      onSessionUp: (_s, peer) => oldLog.logger.info('link_up', `link up with ${peer.address}`),
      onSessionDown: (_s, end) => oldLog.logger.info('link_down', `link down: ${end.reason}`),
      onSessionHeld: () => undefined,
      onSessionResumed: () => undefined,
    };
    const common = { settings: oldSettings, software: 'tcpipe/0.0.9 (before origin)', security: { kind: 'none' as const } };

    // 1. New client with --proxy-protocol dials an old server: the client refuses after the HELLOs.
    const oldServer = new LinkServer(
      { ...common, host: LINK_HOST, port: 0, partnerCheckTimeoutMs: 500, maxPendingHandshakes: 8, transports: new Set(['tcp'] as const), wsPath: '/tcpipe' },
      handlers,
      { now: () => performance.now(), setTimer: (ms, cb) => { const h = setTimeout(cb, ms); return { cancel: () => clearTimeout(h) }; } },
      oldLog.logger,
    );
    const address = await oldServer.listen();
    t.after(() => oldServer.stop('test over'));
    const newLog = captureLog('new-client');
    const newClient = await startClient({ host: LINK_HOST, port: address.port, proxy: null, target: TARGET_HOST, proxyProtocol: 'v2', logger: newLog.logger, limits: TEST_LIMITS });
    t.after(() => newClient.stop());
    const mine = await newLog.waitFor(reason, MS);
    assert.match(mine, /refused the partner: the partner \(tcpipe\/0\.0\.9 \(before origin\)\) lacks capability 'origin'/);
    const theirs = await oldLog.waitFor(reason, MS);
    assert.match(theirs, /partner said goodbye: the partner \(tcpipe\/0\.0\.9 \(before origin\)\) lacks capability 'origin', which --proxy-protocol needs/);
    assert.equal(newClient.linkUp, false);

    // 2. An old client dials a new server with --proxy-protocol: the server refuses its HELLO.
    const serverLog = captureLog('new-server');
    const newServer = await startServer({ port: 0, host: LINK_HOST, target: TARGET_HOST, proxyProtocol: 'v1', logger: serverLog.logger, limits: TEST_LIMITS });
    t.after(() => newServer.stop());
    const clientLog = captureLog('old-client');
    const oldClient = new LinkClient(
      { ...common, target: { kind: 'tcp', host: LINK_HOST, port: newServer.linkAddress?.port ?? 0 }, proxy: null, backoffMinMs: 200, backoffMaxMs: 400, backoffResetAfterMs: 1000 },
      handlers,
      { now: () => performance.now(), setTimer: (ms, cb) => { const h = setTimeout(cb, ms); return { cancel: () => clearTimeout(h) }; } },
      clientLog.logger,
    );
    const abort = new AbortController();
    const loop = oldClient.connectLoop(abort.signal);
    t.after(async () => {
      abort.abort();
      await loop;
    });
    assert.match(await serverLog.waitFor(reason, MS), /refused link from 127\.0\.0\.1:\d+: the partner \(tcpipe\/0\.0\.9 \(before origin\)\) lacks capability 'origin'/);
    assert.match(await clientLog.waitFor(reason, MS), /refused by the partner: the partner \(tcpipe\/0\.0\.9 \(before origin\)\) lacks capability 'origin', which --proxy-protocol needs/);
    assert.equal(newServer.linkUp, false);
  });
});
