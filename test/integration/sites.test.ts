/**
 * One server, many sites, through the library on loopback: three sites, each
 * with its own secret, entry port and target; isolation, hostile clients, and
 * live reconfiguration with held connections checked byte for byte.
 *
 * Layout: link on 127.0.0.1; the server's entry ports on 127.0.0.2:P; each
 * site's target on 127.0.0.3:P greets with its site's letter, then echoes.
 * A site's client routes only its own port, so a stream that reached the
 * wrong site would fail, not silently succeed.
 */
import { test } from 'node:test';
import type { TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startClient, startServer, type Tcpipe } from '../../src/index.js';
import { generateSecret } from '../../src/security/secret.js';
import type { SiteOptions } from '../../src/options.js';
import { createRegistry } from '../../src/metrics/metrics.js';
import { renderStatus } from '../../src/cli/status.js';
import {
  ENTRY_HOST,
  LINK_HOST,
  TARGET_HOST,
  TEST_LIMITS,
  captureLog,
  connectUser,
  freePort,
  spawnCli,
  nextEvent,
  recordEvents,
  sha256,
  startTarget,
  withTimeout,
  type LogCapture,
  type Target,
  type UserConn,
} from '../helpers/loopback.js';

const NAMES = ['site-a', 'site-b', 'site-c'] as const;
type Name = (typeof NAMES)[number];

/** A target that says which site it is, then echoes. */
function siteTarget(t: TestContext, name: string): Promise<Target> {
  return startTarget(t, (socket) => {
    socket.write(`${name}\n`);
    socket.pipe(socket);
  });
}

interface Hub {
  readonly server: Tcpipe;
  readonly log: LogCapture;
  readonly linkPort: number;
  readonly secrets: Record<Name, string>;
  readonly targets: Record<Name, Target>;
  readonly sites: SiteOptions[];
}

async function startHub(t: TestContext, extra: Partial<Record<Name, Partial<SiteOptions>>> = {}): Promise<Hub> {
  const secrets = { 'site-a': generateSecret(), 'site-b': generateSecret(), 'site-c': generateSecret() };
  const targets = {} as Record<Name, Target>;
  for (const name of NAMES) targets[name] = await siteTarget(t, name);
  const sites = NAMES.map((name) => {
    targets[name].releaseEntry();
    return { name, secret: [secrets[name]], ports: [{ host: ENTRY_HOST, port: targets[name].port }], ...extra[name] };
  });
  const log = captureLog('server');
  const server = await startServer({ port: 0, host: LINK_HOST, clients: sites, logger: log.logger, heartbeatSeconds: 5, limits: TEST_LIMITS });
  t.after(() => server.stop());
  const linkPort = server.linkAddress?.port;
  if (linkPort === undefined) throw new Error('no link address');
  return { server, log, linkPort, secrets, targets, sites };
}

/** A site's client: the ordinary client, with its secret, routing only its own port (or `ports`) to the targets. */
async function startSite(
  t: TestContext,
  hub: Hub,
  name: Name,
  secret = hub.secrets[name],
  extra: { ports?: number[]; entryHost?: string } = {},
): Promise<{ client: Tcpipe; log: LogCapture }> {
  const log = captureLog(name);
  const client = await startClient({
    host: LINK_HOST,
    port: hub.linkPort,
    proxy: null,
    secret,
    routes: [{ port: hub.targets[name].port, host: TARGET_HOST }],
    ports: (extra.ports ?? []).map((port) => ({ host: extra.entryHost ?? ENTRY_HOST, port })),
    logger: log.logger,
    heartbeatSeconds: 5,
    limits: TEST_LIMITS,
  });
  t.after(() => client.stop());
  return { client, log };
}

async function startAllSites(t: TestContext, hub: Hub): Promise<Record<Name, Tcpipe>> {
  const ups = NAMES.map((name) => nextEvent(hub.server, 'link-up', 5000, (e) => e.client === name));
  const clients = {} as Record<Name, Tcpipe>;
  for (const name of NAMES) clients[name] = (await startSite(t, hub, name)).client;
  await Promise.all(ups);
  return clients;
}

/** Opens a user connection to a site's entry port and reads the target's greeting. */
async function greeted(t: TestContext, port: number): Promise<{ user: UserConn; greeting: string }> {
  const user = await connectUser(t, ENTRY_HOST, port);
  await withTimeout(
    new Promise<void>((resolve) => {
      const check = (): void => {
        if (!user.data().includes(10)) return;
        user.socket.off('data', check);
        resolve();
      };
      user.socket.on('data', check);
      check();
    }),
    5000,
    `the greeting on port ${port}`,
  );
  return { user, greeting: user.data().toString().split('\n')[0] ?? '' };
}

/** Sends `size` random bytes on a held connection and checks the echo, byte for byte. */
async function echoes(user: UserConn, size: number): Promise<void> {
  const before = user.receivedBytes;
  const payload = randomBytes(size);
  user.socket.write(payload);
  await withTimeout(
    new Promise<void>((resolve) => {
      const check = (): void => {
        if (user.receivedBytes < before + size) return;
        user.socket.off('data', check);
        resolve();
      };
      user.socket.on('data', check);
      check();
    }),
    5000,
    `${size} bytes echoed`,
  );
  const back = user.data().subarray(user.data().length - size);
  assert.equal(sha256(back), sha256(payload), 'the echo matches byte for byte');
}

test('each site\'s port reaches that site only; status and events name the client', async (t) => {
  const hub = await startHub(t);
  const clients = await startAllSites(t, hub);
  const opened = { 'site-a': recordEvents(clients['site-a'], 'stream-open'), 'site-b': recordEvents(clients['site-b'], 'stream-open'), 'site-c': recordEvents(clients['site-c'], 'stream-open') };
  for (const name of NAMES) {
    const { user, greeting } = await greeted(t, hub.targets[name].port);
    assert.equal(greeting, name, `a user on ${name}'s port reaches ${name}`);
    await echoes(user, 64 * 1024);
    user.socket.destroy();
  }
  for (const name of NAMES) assert.equal(opened[name].length, 1, `${name}'s client saw exactly its own stream`);
  const status = hub.server.status();
  assert.equal(status.link, null, 'with clients, the link is per client');
  assert.deepEqual(status.clients?.map((c) => c.name), [...NAMES]);
  for (const c of status.clients ?? []) {
    assert.notEqual(c.link, null, `${c.name}'s link is up`);
    assert.ok(c.bytesIn >= 64 * 1024 && c.bytesOut >= 64 * 1024, `${c.name} counts its own bytes (${c.bytesIn} in, ${c.bytesOut} out)`);
  }
  const text = await createRegistry(hub.server).metrics();
  for (const name of NAMES) {
    assert.match(text, new RegExp(`tcpipe_link_up\\{client="${name}"\\} 1`));
    assert.match(text, new RegExp(`tcpipe_bytes_total\\{direction="in",client="${name}"\\} \\d+`));
  }
  assert.doesNotMatch(text, /^tcpipe_link_up \d/m, 'no unlabelled link series with clients');
  const shown = renderStatus(status, Date.now());
  assert.match(shown, /server: 3 clients, 3 links up/);
  for (const name of NAMES) assert.match(shown, new RegExp(`^${name}\\s+up\\s+\\S+\\s+127\\.0\\.0\\.1:\\d+\\s+[\\d.]+ ms`, 'm'));
});

test('hostile clients: a wrong secret gets no link; another\'s secret while its owner is live is refused; ports not given are refused', async (t) => {
  const hub = await startHub(t, { 'site-b': { target: TARGET_HOST } });
  const pa = hub.targets['site-a'].port;
  const pb = hub.targets['site-b'].port;
  hub.sites[0] = { ...hub.sites[0], name: 'site-a', target: TARGET_HOST, allow: [pa] };
  await hub.server.reconfigure({ clients: hub.sites });
  const ups = NAMES.map((name) => nextEvent(hub.server, 'link-up', 5000, (e) => e.client === name));
  // site-a's client also listens on 127.0.0.4 for its own port and for site-b's port number.
  const a = await startSite(t, hub, 'site-a', hub.secrets['site-a'], { ports: [pa, pb], entryHost: '127.0.0.4' });
  const b = await startSite(t, hub, 'site-b', hub.secrets['site-b'], { ports: [pb], entryHost: '127.0.0.5' });
  await startSite(t, hub, 'site-c');
  await Promise.all(ups);
  const serverDowns = recordEvents(hub.server, 'link-down');

  // A stranger with a secret no table holds: no link, an authentication failure on the server.
  await startSite(t, hub, 'site-a', generateSecret());
  await hub.log.waitFor(/authentication failed from/, 5000);

  // site-b's secret from another machine while site-b is live: today's one-partner rule, for site-b.
  const impostor = await startSite(t, hub, 'site-b');
  await impostor.log.waitFor(/client 'site-b' already has a live link/, 5000);
  assert.equal(serverDowns.length, 0, 'no client lost its link');
  assert.ok(b.client.linkUp, 'site-b keeps its link');

  // site-a reaches its allowed port through the server's target...
  const allowed = await connectUser(t, '127.0.0.4', pa);
  await withTimeout(new Promise<void>((resolve) => allowed.socket.once('data', () => resolve())), 5000, 'site-a reaches its port');
  assert.match(allowed.data().toString(), /^site-a\n/);
  // ...but not site-b's port, which site-b itself may ask for.
  const refused = nextEvent(hub.server, 'refused', 5000, (r) => r.client === 'site-a' && r.kind === 'not_allowed' && r.port === pb);
  const denied = await connectUser(t, '127.0.0.4', pb);
  await refused;
  await denied.closedWithin(5000);
  assert.equal(denied.receivedBytes, 0, 'nothing from site-b\'s target reached site-a');
  const own = await connectUser(t, '127.0.0.5', pb);
  await withTimeout(new Promise<void>((resolve) => own.socket.once('data', () => resolve())), 5000, 'site-b reaches its port');
  assert.match(own.data().toString(), /^site-b\n/);
  assert.ok(a.client.linkUp);
});

test('reconfigure: a removed client loses its port and link, a changed one gets its new port, the others keep their streams', async (t) => {
  const hub = await startHub(t);
  const clients = await startAllSites(t, hub);
  const held: Partial<Record<Name, UserConn>> = {};
  for (const name of NAMES) held[name] = (await greeted(t, hub.targets[name].port)).user;
  const extra = await siteTarget(t, 'site-a');
  extra.releaseEntry();

  const cDown = nextEvent(clients['site-c'], 'link-down', 5000);
  const next = hub.sites
    .filter((s) => s.name !== 'site-c')
    .map((s) => (s.name === 'site-a' ? { ...s, ports: [...(s.ports ?? []), { host: ENTRY_HOST, port: extra.port }] } : s));
  const changes = await hub.server.reconfigure({ clients: next });
  clients['site-a'].reload({ routes: [hub.targets['site-a'].port, extra.port].map((port) => ({ port, host: TARGET_HOST })) });
  assert.ok(changes.some((c) => /client 'site-c' removed/.test(c)), changes.join('; '));
  assert.ok(changes.some((c) => new RegExp(`client 'site-a': port .*${extra.port} opened`).test(c)), changes.join('; '));
  await cDown;
  await hub.log.waitFor(/closing the link of client 'site-c'/, 5000);
  await withTimeout(held['site-c']?.closed ?? Promise.reject(new Error('no site-c user')), 5000, "site-c's connection to close");
  await assert.rejects(connectUser(t, ENTRY_HOST, hub.targets['site-c'].port), /ECONNREFUSED/, "site-c's port is closed");

  for (const name of ['site-a', 'site-b'] as const) {
    const user = held[name];
    assert.ok(user !== undefined);
    await echoes(user, 256 * 1024);
  }
  assert.ok(clients['site-a'].linkUp && clients['site-b'].linkUp, 'the other links stayed up');
  const { greeting } = await greeted(t, extra.port);
  assert.equal(greeting, 'site-a', "site-a's new port reaches site-a");
});

test('one partner: reconfigure applies a changed ports list in place, the link and held streams stay', async (t) => {
  const targets = [await siteTarget(t, 'one'), await siteTarget(t, 'two')];
  for (const target of targets) target.releaseEntry();
  const log = captureLog('server');
  const server = await startServer({ port: 0, host: LINK_HOST, ports: [{ host: ENTRY_HOST, port: targets[0]?.port ?? 0 }], logger: log.logger, limits: TEST_LIMITS });
  t.after(() => server.stop());
  const up = nextEvent(server, 'link-up', 5000);
  const client = await startClient({ host: LINK_HOST, port: server.linkAddress?.port ?? 0, proxy: null, target: TARGET_HOST, limits: TEST_LIMITS });
  t.after(() => client.stop());
  await up;
  const one = targets[0]?.port ?? 0;
  const two = targets[1]?.port ?? 0;
  const { user } = await greeted(t, one);
  const downs = recordEvents(server, 'link-down');
  const added = await server.reconfigure({ ports: [{ host: ENTRY_HOST, port: one }, { host: ENTRY_HOST, port: two }] });
  assert.deepEqual(added, [`port ${ENTRY_HOST}:${two} opened`]);
  assert.equal((await greeted(t, two)).greeting, 'two');
  await echoes(user, 128 * 1024);
  const removed = await server.reconfigure({ ports: [{ host: ENTRY_HOST, port: two }] });
  assert.deepEqual(removed, [`port ${ENTRY_HOST}:${one} closed`]);
  await user.closedWithin(5000);
  await assert.rejects(connectUser(t, ENTRY_HOST, one), /ECONNREFUSED/);
  assert.equal(downs.length, 0, 'the link stayed up');
  assert.ok(server.linkUp);
});

function openssl(args: readonly string[], cwd: string): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile('openssl', [...args], { cwd, timeout: 15_000 }, (err, _stdout, stderr) => (err !== null ? reject(new Error(`openssl: ${stderr}`)) : resolve()));
  });
}

async function leaf(dir: string, name: string, cn: string, san: string, usage: string): Promise<void> {
  await openssl(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${cn}`], dir);
  writeFileSync(join(dir, `${name}.ext`), `basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=${usage}\nsubjectAltName=${san}\n`);
  await openssl(['x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.crt', '-CAkey', 'ca.key', '-set_serial', `0x${randomBytes(8).toString('hex')}`, '-days', '1', '-out', `${name}.crt`, '-extfile', `${name}.ext`], dir);
}

test('certificates: the client certificate\'s CN or DNS name picks its site; a valid certificate naming no site gets no link', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'tcpipe-sites-pki-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  await openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '1', '-keyout', 'ca.key', '-out', 'ca.crt', '-subj', '/CN=ca', '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign'], dir);
  await leaf(dir, 'server', 'hub', 'DNS:hub', 'serverAuth');
  await leaf(dir, 'a', 'site-a', 'DNS:site-a', 'clientAuth');
  await leaf(dir, 'b', 'b-machine', 'DNS:b-machine,DNS:site-b.example', 'clientAuth');
  await leaf(dir, 'x', 'stranger', 'DNS:stranger', 'clientAuth');
  const tls = (name: string): { cert: Buffer; key: Buffer; ca: Buffer; serverName: string } => ({
    cert: readFileSync(join(dir, `${name}.crt`)),
    key: readFileSync(join(dir, `${name}.key`)),
    ca: readFileSync(join(dir, 'ca.crt')),
    serverName: 'hub',
  });
  const targets = { a: await siteTarget(t, 'site-a'), b: await siteTarget(t, 'site-b') };
  targets.a.releaseEntry();
  targets.b.releaseEntry();
  const log = captureLog('server');
  const server = await startServer({
    port: 0,
    host: LINK_HOST,
    tls: tls('server'),
    clients: [
      { name: 'site-a', certName: 'site-a', ports: [{ host: ENTRY_HOST, port: targets.a.port }] },
      { name: 'site-b', certName: 'site-b.example', ports: [{ host: ENTRY_HOST, port: targets.b.port }] },
    ],
    logger: log.logger,
    limits: TEST_LIMITS,
  });
  t.after(() => server.stop());
  const linkPort = server.linkAddress?.port ?? 0;
  const dial = async (name: string, port: number): Promise<Tcpipe> => {
    const client = await startClient({ host: LINK_HOST, port: linkPort, proxy: null, tls: tls(name), routes: [{ port, host: TARGET_HOST }], limits: TEST_LIMITS });
    t.after(() => client.stop());
    return client;
  };
  const ups = ['site-a', 'site-b'].map((name) => nextEvent(server, 'link-up', 5000, (e) => e.client === name));
  await dial('a', targets.a.port);
  await dial('b', targets.b.port);
  await Promise.all(ups);
  assert.equal((await greeted(t, targets.a.port)).greeting, 'site-a');
  assert.equal((await greeted(t, targets.b.port)).greeting, 'site-b');
  await dial('x', targets.a.port);
  await log.waitFor(/authentication failed from .*certificate names stranger.* belong to no \[\[client\]\] table/, 5000);
});

test('churn: 100 sites dial, all restart at once, all are back; descriptors return to where they started', { timeout: 90_000 }, async (t) => {
  const N = 100;
  const fds = (): number => readdirSync('/proc/self/fd').length;
  const secrets = Array.from({ length: N }, () => generateSecret());
  const server = await startServer({
    port: 0,
    host: LINK_HOST,
    clients: secrets.map((secret, i) => ({ name: `site-${i}`, secret: [secret] })),
    limits: TEST_LIMITS,
  });
  t.after(() => server.stop());
  const startFds = fds();
  const linkPort = server.linkAddress?.port ?? 0;
  const allUp = async (): Promise<void> => {
    const ups = secrets.map((_, i) => nextEvent(server, 'link-up', 30_000, (e) => e.client === `site-${i}`));
    const clients = await Promise.all(secrets.map((secret) => startClient({ host: LINK_HOST, port: linkPort, proxy: null, secret: [secret], limits: TEST_LIMITS })));
    try {
      await Promise.all(ups);
      assert.equal(server.status().clients?.filter((c) => c.link !== null).length, N);
    } finally {
      await Promise.all(clients.map((c) => c.stop()));
    }
  };
  await allUp();
  const restarted = performance.now();
  await allUp();
  t.diagnostic(`all ${N} back in ${((performance.now() - restarted) / 1000).toFixed(1)} s after a restart at once`);
  const downs = async (): Promise<void> => {
    while (server.linkUp) await new Promise((resolve) => setImmediate(resolve));
  };
  await withTimeout(downs(), 5000, 'every link to end');
  await withTimeout(
    (async () => {
      while (fds() > startFds + 2) await new Promise((resolve) => setTimeout(resolve, 20));
    })(),
    5000,
    `descriptors back near ${startFds} (now ${fds()})`,
  );
});

test('one partner, the CLI: SIGHUP applies a changed ports list in place (range added, a port removed), the link stays', { timeout: 60_000 }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'tcpipe-sites-hup-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const [one, two] = [await siteTarget(t, 'one'), await siteTarget(t, 'two')];
  one.releaseEntry();
  two.releaseEntry();
  const linkPort = await freePort();
  const config = join(dir, 'server.toml');
  const write = (ports: string): void => writeFileSync(config, `server = ${linkPort}\nports = [${ports}]\n`);
  write(`"${ENTRY_HOST}:${one.port}"`);
  const server = spawnCli(t, [`--config=${config}`]);
  await server.waitFor(/server: link port/, 10_000);
  const client = await startClient({ host: LINK_HOST, port: linkPort, proxy: null, target: TARGET_HOST, limits: TEST_LIMITS });
  t.after(() => client.stop());
  await server.waitFor(/link up with /, 10_000);
  const { user } = await greeted(t, one.port);

  write(`"${ENTRY_HOST}:${one.port}", "${ENTRY_HOST}:${two.port}-${two.port}"`);
  server.child.kill('SIGHUP');
  await server.waitFor(new RegExp(`reloaded: port ${ENTRY_HOST.replace(/\./g, '\\.')}:${two.port} opened`), 5000);
  assert.equal((await greeted(t, two.port)).greeting, 'two');
  await echoes(user, 64 * 1024);

  write(`"${ENTRY_HOST}:${two.port}"`);
  server.child.kill('SIGHUP');
  await server.waitFor(new RegExp(`reloaded: port ${ENTRY_HOST.replace(/\./g, '\\.')}:${one.port} closed`), 5000);
  await user.closedWithin(5000);
  await assert.rejects(connectUser(t, ENTRY_HOST, one.port), /ECONNREFUSED/);
  assert.doesNotMatch(server.output(), /link down/, 'the link stayed up');
  assert.ok(client.linkUp);
});
