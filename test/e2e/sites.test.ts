// One server, many sites (issue 19), run for real with the CLI in network namespaces.
//
// Topology (a chain; the hub forwards nothing, so users reach the sites only through tcpipe):
//
//   user 10.232.1.1 <-> 10.232.1.2 hub 10.232.2.1 <-> sitea <-> siteb <-> sitec
//
// The hub runs `tcpipe --config=hub.toml` with three [[client]] tables and cannot dial
// out (the seed's firewall); each site runs the ordinary client with its own secret
// file and `-t 127.0.0.1`: its target is a greeter on its own loopback, tagged with the
// site's name, so a stream that reached the wrong site says so.
//
// Skipped, with the reason, when network namespaces (root, ip, iptables) are unavailable.
import { describe, test } from 'node:test';
import type { TestContext } from 'node:test';
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createTopology, netnsAvailable, outputOf, waitForLine } from '../helpers/netns.js';
import type { Topology } from '../helpers/netns.js';
import { generateSecret } from '../../src/security/secret.js';

const NODE = process.execPath;
const MAIN = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));
const HOSTS = ['user', 'hub', 'sitea', 'siteb', 'sitec'] as const;
type Host = (typeof HOSTS)[number];
const SITES = ['sitea', 'siteb', 'sitec'] as const;
type SiteHost = (typeof SITES)[number];
/** Each site's entry port on the hub. */
const PORT: Record<SiteHost, number> = { sitea: 40000, siteb: 41000, sitec: 42000 };

// Greets each connection with "<tag>:<port>\n", then echoes. argv: tag port...
const GREETER = `
const net = require('node:net');
const [tag, ...ports] = process.argv.slice(1);
for (const p of ports) {
  net.createServer((s) => { console.log('accept ' + p); s.on('error', () => {}); s.write(tag + ':' + p + '\\n'); s.pipe(s); })
    .listen(Number(p), '127.0.0.1', () => console.log('listening ' + p));
}
`;

// A user that holds its connection: prints "ready <greeting>", then on each line "N" on stdin
// sends N random bytes and prints "echo ok N" or "echo bad ..." once they are back; "closed" at the end.
const HOLDER = `
const net = require('node:net');
const crypto = require('node:crypto');
const [addr, port] = process.argv.slice(1);
let greeting = null;
let rest = Buffer.alloc(0);
let want = null;
const s = net.connect({ host: addr, port: Number(port) });
s.on('data', (d) => {
  if (greeting === null) {
    const all = Buffer.concat([rest, d]);
    const nl = all.indexOf(10);
    if (nl < 0) { rest = all; return; }
    greeting = all.subarray(0, nl).toString();
    rest = all.subarray(nl + 1);
    console.log('ready ' + greeting);
  } else rest = Buffer.concat([rest, d]);
  if (want !== null && rest.length >= want.length) {
    const ok = rest.subarray(0, want.length).equals(want);
    console.log(ok ? 'echo ok ' + want.length : 'echo bad ' + rest.length);
    rest = rest.subarray(want.length);
    want = null;
  }
});
process.stdin.setEncoding('utf8');
process.stdin.on('data', (line) => { want = crypto.randomBytes(Number(line.trim())); s.write(want); });
s.on('error', (e) => console.log('error ' + (e.code || e.message)));
s.on('close', () => { console.log('closed'); process.exit(0); });
`;

// One connection: prints the greeting, or "none" if closed before one. argv: addr port
const PROBE = `
const net = require('node:net');
const [addr, port] = process.argv.slice(1);
let buf = '';
const s = net.connect({ host: addr, port: Number(port) });
s.setEncoding('utf8');
s.on('data', (d) => { buf += d; if (buf.includes('\\n')) { console.log(buf.split('\\n')[0]); process.exit(0); } });
s.on('error', (e) => { console.log('none ' + (e.code || e.message)); process.exit(0); });
s.on('close', () => { console.log('none closed'); process.exit(0); });
setTimeout(() => { console.log('none timeout'); process.exit(0); }, 5000);
`;

const avail = await netnsAvailable({ need: ['iptables'] });

interface Hub {
  readonly topo: Topology<Host>;
  readonly dir: string;
  readonly config: string;
  readonly keys: Record<SiteHost, string>;
  readonly server: ChildProcess;
}

function tcpipe(topo: Topology<Host>, host: Host, args: readonly string[]): ChildProcess {
  const env = { ...process.env };
  delete env.TCPIPE_SECRET;
  return topo.spawn(host, NODE, [MAIN, ...args], { env });
}

function table(name: SiteHost, key: string, more = ''): string {
  return `[[client]]\nname = "${name}"\nsecret-file = "${key}"\nports = [${PORT[name]}]\n${more}`;
}

async function startHub(t: TestContext, extra: Partial<Record<SiteHost, string>> = {}): Promise<Hub> {
  const topo = await createTopology({ hosts: HOSTS, subnetBase: '10.232' });
  t.after(() => topo.destroy());
  await topo.setForwarding('hub', false);
  const dir = mkdtempSync(join(tmpdir(), 'tcpipe-hub-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const keys = {} as Record<SiteHost, string>;
  for (const site of SITES) {
    keys[site] = join(dir, `${site}.key`);
    writeFileSync(keys[site], generateSecret() + '\n');
    chmodSync(keys[site], 0o600);
  }
  const config = join(dir, 'hub.toml');
  writeFileSync(config, `server = 50000\n${SITES.map((s) => table(s, keys[s], extra[s])).join('')}`);
  await topo.firewallNoDialOut('hub', [50000, 40000, 41000, 42000, 46000, 46001]);
  const server = tcpipe(topo, 'hub', [`--config=${config}`]);
  await waitForLine(server, /server: link port 50000.*3 clients/, 5000);
  return { topo, dir, config, keys, server };
}

async function startSite(hub: Hub, site: SiteHost, key = hub.keys[site], args: readonly string[] = [], greeter = true): Promise<ChildProcess> {
  const { topo } = hub;
  if (greeter) {
    const app = topo.spawn(site, NODE, ['-e', GREETER, site, String(PORT[site]), '46000', '46001']);
    await waitForLine(app, /^listening 46001$/, 5000);
  }
  return tcpipe(topo, site, ['-c', `${topo.addr('hub', site)}:50000`, '-t', '127.0.0.1', `--secret-file=${key}`, ...args]);
}

async function startSites(hub: Hub): Promise<Record<SiteHost, ChildProcess>> {
  const clients = {} as Record<SiteHost, ChildProcess>;
  for (const site of SITES) clients[site] = await startSite(hub, site);
  for (const site of SITES) {
    await waitForLine(clients[site], /link up with /, 8000);
    await waitForLine(hub.server, new RegExp(`link up with .*client '${site}'`), 8000);
  }
  return clients;
}

async function probe(hub: Hub, port: number, from: Host = 'user', address = hub.topo.addr('hub', 'user')): Promise<string> {
  const r = await hub.topo.exec(from, NODE, ['-e', PROBE, address, String(port)], { timeoutMs: 8000 });
  return r.stdout.trim();
}

async function holder(hub: Hub, port: number): Promise<ChildProcess> {
  const user = hub.topo.spawn('user', NODE, ['-e', HOLDER, hub.topo.addr('hub', 'user'), String(port)]);
  await waitForLine(user, /^ready /, 5000);
  return user;
}

/** Sends `size` bytes on a held connection and waits for the byte-for-byte verdict. */
async function echoHeld(user: ChildProcess, size: number): Promise<string> {
  const verdict = waitForLine(user, /^echo |^closed|^error/, 10_000, { includePast: false });
  user.stdin?.write(`${size}\n`);
  return verdict;
}

describe('one server, many sites, across network namespaces', { skip: avail.ok ? false : avail.reason, concurrency: true }, () => {
  test('three sites: each port reaches its own site; a wrong secret, a borrowed secret and a port not given are refused', { timeout: 60_000 }, async (t) => {
    const hub = await startHub(t, { sitea: 'target = ["127.0.0.1"]\nallow = [45001]\n', siteb: 'target = ["127.0.0.1"]\nallow = [45002]\n' });
    const hubTarget = hub.topo.spawn('hub', NODE, ['-e', GREETER, 'hub', '45001', '45002']);
    await waitForLine(hubTarget, /^listening 45002$/, 5000);
    const clients = await startSites(hub);
    for (const site of SITES) assert.equal(await probe(hub, PORT[site]), `${site}:${PORT[site]}`, `a user on ${site}'s port reaches ${site}`);
    const held = await holder(hub, PORT.sitea);
    assert.equal(await echoHeld(held, 1024 * 1024), `echo ok ${1024 * 1024}`);

    // A wrong secret: no link; the hub counts an authentication failure.
    const strangerKey = join(hub.dir, 'stranger.key');
    writeFileSync(strangerKey, generateSecret() + '\n');
    chmodSync(strangerKey, 0o600);
    const stranger = tcpipe(hub.topo, 'sitec', ['-c', `${hub.topo.addr('hub', 'sitec')}:50000`, `--secret-file=${strangerKey}`]);
    await waitForLine(hub.server, /authentication failed from/, 8000);
    stranger.kill();

    // site-a's secret from site-c's machine while site-a is live: refused, site-a untouched.
    const borrowed = tcpipe(hub.topo, 'sitec', ['-c', `${hub.topo.addr('hub', 'sitec')}:50000`, `--secret-file=${hub.keys.sitea}`]);
    await waitForLine(borrowed, /client 'sitea' already has a live link/, 8000);
    borrowed.kill();
    assert.equal(await echoHeld(held, 64 * 1024), `echo ok ${64 * 1024}`, "site-a's held connection is intact");

    // site-a's own side asks the hub for 45001 (allowed to it) and 45002 (site-b's, not given to it).
    clients.sitea.kill();
    const sitea = await startSite(hub, 'sitea', hub.keys.sitea, ['-p', '45001,45002'], false);
    await waitForLine(sitea, /link up with /, 8000);
    assert.equal(await probe(hub, 45001, 'sitea', '127.0.0.1'), 'hub:45001');
    assert.match(await probe(hub, 45002, 'sitea', '127.0.0.1'), /^none/);
    await waitForLine(hub.server, /refused stream \d+ for port 45002 from the partner of client 'sitea': port 45002 is not in --allow/, 5000);
    assert.match(outputOf(hubTarget), /^accept 45001$/m);
    assert.doesNotMatch(outputOf(hubTarget), /^accept 45002$/m, "site-a never reached site-b's port on the hub");
    assert.doesNotMatch(outputOf(hub.server), /link down with .*client '(siteb|sitec)'/, 'the other sites kept their links');
  });

  test('SIGHUP: a removed site loses its port and link, a changed one gets its new ports, held streams stay intact; a bad file is refused', { timeout: 60_000 }, async (t) => {
    const hub = await startHub(t);
    const clients = await startSites(hub);
    const held = { sitea: await holder(hub, PORT.sitea), siteb: await holder(hub, PORT.siteb), sitec: await holder(hub, PORT.sitec) };

    // site-c removed, site-a gains the range 46000-46001, site-b unchanged.
    writeFileSync(hub.config, `server = 50000\n${table('sitea', hub.keys.sitea, 'ports = [40000, "46000-46001"]\n').replace(`ports = [${PORT.sitea}]\n`, '')}${table('siteb', hub.keys.siteb)}`);
    const reloaded = waitForLine(hub.server, /reloaded: /, 5000, { includePast: false });
    hub.server.kill('SIGHUP');
    const line = await reloaded;
    assert.match(line, /client 'sitec' removed/);
    assert.match(line, /client 'sitea': port 46000 opened/);
    await waitForLine(hub.server, /closing the link of client 'sitec'.*removed from the configuration/, 5000);
    await waitForLine(clients.sitec, /link down with /, 5000);
    await waitForLine(held.sitec, /^closed/, 5000);
    assert.match(await probe(hub, PORT.sitec), /^none/, "site-c's port is closed");
    assert.equal(await probe(hub, 46001), 'sitea:46001', "site-a's new range reaches site-a");
    for (const site of ['sitea', 'siteb'] as const) {
      assert.equal(await echoHeld(held[site], 1024 * 1024), `echo ok ${1024 * 1024}`, `${site}'s held connection, byte for byte`);
    }
    assert.doesNotMatch(outputOf(hub.server), /link down with .*client '(sitea|siteb)'/);

    // A bad file: refused with its reason, the running configuration kept.
    writeFileSync(hub.config, `server = 50000\n${table('sitea', hub.keys.sitea)}${table('sitea', hub.keys.siteb).replace(`ports = [${PORT.sitea}]`, 'ports = [41000]')}`);
    const failed = waitForLine(hub.server, /reload failed, keeping the running configuration: config .*client 'sitea': key 'name': two clients are named 'sitea'/, 5000, { includePast: false });
    hub.server.kill('SIGHUP');
    await failed;
    assert.equal(await echoHeld(held.sitea, 256 * 1024), `echo ok ${256 * 1024}`);
    assert.equal(await probe(hub, 46000), 'sitea:46000', 'the running configuration stands');
  });
});
