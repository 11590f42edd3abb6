// Self-test of test/helpers/netns.ts with real sockets in real network namespaces.
// Skips (with the reason) when namespaces cannot be created, e.g. when not root.
import { describe, test } from 'node:test';
import type { TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { NODE } from '../helpers/cli.js';
import { createTopology, netnsAvailable, type Topology } from '../helpers/netns.js';
import { waitForLine } from '../helpers/output.js';


// Tiny TCP server: argv = [port, tag]. Greets every connection with "<tag>\n".
const SERVER = `
const net = require('node:net');
const [port, tag] = process.argv.slice(1);
const srv = net.createServer((s) => { s.on('error', () => {}); s.end(tag + '\\n'); });
srv.listen(Number(port), '0.0.0.0', () => console.log('listening ' + port));
`;

// Tiny TCP client: argv = [addr, port, timeoutMs]. Prints "reply <text>",
// "error <code>" or "timeout" and exits 0 / 1 / 2.
const CLIENT = `
const net = require('node:net');
const [addr, port, ms] = process.argv.slice(1);
const s = net.connect(Number(port), addr);
let buf = '';
s.setEncoding('utf8');
s.on('data', (d) => { buf += d; });
s.on('end', () => { console.log('reply ' + buf.trim()); process.exit(0); });
s.on('error', (e) => { console.log('error ' + (e.code || e.message)); process.exit(1); });
setTimeout(() => { console.log('timeout'); process.exit(2); }, Number(ms));
`;

type Outcome = { kind: 'reply'; text: string } | { kind: 'error'; code: string } | { kind: 'timeout' };

async function connect<H extends string>(topo: Topology<H>, from: H, addr: string, port: number, timeoutMs = 1500): Promise<Outcome> {
  const r = await topo.exec(from, NODE, ['-e', CLIENT, addr, String(port), String(timeoutMs)], { timeoutMs: timeoutMs + 3000 });
  const out = r.stdout.trim();
  if (out.startsWith('reply ')) return { kind: 'reply', text: out.slice('reply '.length) };
  if (out.startsWith('error ')) return { kind: 'error', code: out.slice('error '.length) };
  if (out === 'timeout') return { kind: 'timeout' };
  throw new Error(`client produced unexpected output (code ${String(r.code)}): ${out} ${r.stderr}`);
}

async function startServer<H extends string>(topo: Topology<H>, host: H, port: number, tag: string): Promise<ChildProcess> {
  const child = topo.spawn(host, NODE, ['-e', SERVER, String(port), tag]);
  await waitForLine(child, /^listening \d+$/, 5000);
  return child;
}

async function topology<const H extends string>(t: TestContext, hosts: readonly H[]): Promise<Topology<H>> {
  const topo = await createTopology({ hosts });
  t.after(() => topo.destroy());
  return topo;
}

function listNamespaces(): string[] {
  return execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' })
    .split('\n')
    .map((l) => l.split(' ')[0] ?? '')
    .filter((n) => n.length > 0);
}

const avail = await netnsAvailable({ need: ['iptables', 'nc'] });

describe('netns helper', { skip: avail.ok ? false : avail.reason, concurrency: true }, () => {
  test('two hosts on one /24 can talk; lo is up and the ephemeral port range is set', { timeout: 20000 }, async (t) => {
    const topo = await topology(t, ['a', 'b']);
    const a = topo.host('a');
    const b = topo.host('b');
    assert.match(a.addr, /^10\.\d+\.\d+\.1$/);
    assert.match(b.addr, /^10\.\d+\.\d+\.2$/);
    assert.notEqual(a.ns, b.ns);
    for (const i of [...a.interfaces, ...b.interfaces]) assert.ok(i.name.length <= 15, i.name);

    await startServer(topo, 'b', 40101, 'from-b');
    await topo.waitForPort('b', 40101, 3000, { from: 'a' });
    assert.deepEqual(await connect(topo, 'a', b.addr, 40101), { kind: 'reply', text: 'from-b' });
    // Loopback inside the namespace works too.
    assert.deepEqual(await connect(topo, 'b', '127.0.0.1', 40101), { kind: 'reply', text: 'from-b' });

    const range = await topo.execOk('a', 'sysctl', ['-n', 'net.ipv4.ip_local_port_range']);
    assert.deepEqual(range.stdout.trim().split(/\s+/), ['61000', '65000']);
    const links = await topo.execOk('b', 'ip', ['-o', 'link', 'show', 'lo']);
    assert.match(links.stdout, /UP/);
  });

  test('the same port can be listened on in both namespaces at once', { timeout: 20000 }, async (t) => {
    const topo = await topology(t, ['a', 'b']);
    await startServer(topo, 'a', 40201, 'server-a');
    await startServer(topo, 'b', 40201, 'server-b');
    assert.deepEqual(await connect(topo, 'a', topo.addr('b'), 40201), { kind: 'reply', text: 'server-b' });
    assert.deepEqual(await connect(topo, 'b', topo.addr('a'), 40201), { kind: 'reply', text: 'server-a' });
    assert.deepEqual(await connect(topo, 'a', '127.0.0.1', 40201), { kind: 'reply', text: 'server-a' });
  });

  test('firewallNoDialOut blocks outbound connects but allows inbound on the given ports', { timeout: 20000 }, async (t) => {
    const topo = await topology(t, ['client', 'server']);
    await startServer(topo, 'client', 40301, 'client-svc');
    await startServer(topo, 'server', 40302, 'allowed');
    await startServer(topo, 'server', 40303, 'not-allowed');

    // Before: the server host can dial out.
    assert.deepEqual(await connect(topo, 'server', topo.addr('client'), 40301), { kind: 'reply', text: 'client-svc' });

    await topo.firewallNoDialOut('server', [40302]);
    const started = Date.now();
    const out = await connect(topo, 'server', topo.addr('client'), 40301, 1500);
    assert.notEqual(out.kind, 'reply', `outbound connect should fail, got ${JSON.stringify(out)}`);
    assert.ok(Date.now() - started < 5000);
    // Inbound on the allowed port still works (SYN-ACK and data are ESTABLISHED replies).
    assert.deepEqual(await connect(topo, 'client', topo.addr('server'), 40302), { kind: 'reply', text: 'allowed' });
    // Inbound on other ports is dropped.
    assert.notEqual((await connect(topo, 'client', topo.addr('server'), 40303, 1000)).kind, 'reply');
    // Loopback on the server host is unaffected.
    assert.deepEqual(await connect(topo, 'server', '127.0.0.1', 40303), { kind: 'reply', text: 'not-allowed' });

    await topo.clearFirewall('server');
    assert.deepEqual(await connect(topo, 'server', topo.addr('client'), 40301), { kind: 'reply', text: 'client-svc' });
  });

  test('cutLink makes connects fail and healLink restores them', { timeout: 20000 }, async (t) => {
    const topo = await topology(t, ['a', 'b']);
    await startServer(topo, 'b', 40401, 'b');
    assert.deepEqual(await connect(topo, 'a', topo.addr('b'), 40401), { kind: 'reply', text: 'b' });

    await topo.cutLink('a');
    await topo.cutLink('a'); // idempotent
    const started = Date.now();
    assert.notEqual((await connect(topo, 'a', topo.addr('b'), 40401, 1000)).kind, 'reply');
    assert.notEqual((await connect(topo, 'b', topo.addr('a'), 40401, 1000)).kind, 'reply');
    assert.ok(Date.now() - started < 8000);
    await assert.rejects(topo.waitForPort('b', 40401, 600, { from: 'a' }), /not accepting/);

    await topo.healLink('a');
    const rules = await topo.iptables('a', ['-S']);
    assert.doesNotMatch(rules.stdout, /DROP/);
    assert.deepEqual(await connect(topo, 'a', topo.addr('b'), 40401), { kind: 'reply', text: 'b' });
  });

  test('three-host chain: a reaches c only through b, and only with forwarding on in b', { timeout: 20000 }, async (t) => {
    const topo = await topology(t, ['a', 'b', 'c']);
    assert.equal(topo.host('b').interfaces.length, 2);
    assert.notEqual(topo.addr('b', 'a'), topo.addr('b', 'c'));
    await startServer(topo, 'c', 40501, 'c');
    assert.deepEqual(await connect(topo, 'a', topo.addr('c'), 40501), { kind: 'reply', text: 'c' });
    // b sees c on its own link.
    assert.deepEqual(await connect(topo, 'b', topo.addr('c', 'b'), 40501), { kind: 'reply', text: 'c' });

    await topo.setForwarding('b', false);
    assert.notEqual((await connect(topo, 'a', topo.addr('c'), 40501, 1000)).kind, 'reply');
    await topo.setForwarding('b', true);
    assert.deepEqual(await connect(topo, 'a', topo.addr('c'), 40501), { kind: 'reply', text: 'c' });

    // Cutting b's link towards c isolates c from a.
    await topo.cutLink('b', 'c');
    assert.notEqual((await connect(topo, 'a', topo.addr('c'), 40501, 1000)).kind, 'reply');
    await topo.healLink('b', 'c');
    assert.deepEqual(await connect(topo, 'a', topo.addr('c'), 40501), { kind: 'reply', text: 'c' });
  });

  test('waitForLine rejects with the output when the child exits, and on timeout', { timeout: 20000 }, async (t) => {
    const topo = await topology(t, ['a', 'b']);
    const quick = topo.spawn('a', 'sh', ['-c', 'echo hello; echo oops >&2; exit 3']);
    assert.equal(await waitForLine(quick, /^oops$/, 3000), 'oops');
    await assert.rejects(waitForLine(quick, /never/, 3000), /exited \(code 3.*\n[\s\S]*hello/);
    const slow = topo.spawn('a', 'sleep', ['30']);
    await assert.rejects(waitForLine(slow, /x/, 200), /timed out after 200 ms/);
  });

  test('destroy kills spawned processes, removes the namespaces and is idempotent', { timeout: 20000 }, async () => {
    const topo = await createTopology({ hosts: ['a', 'b'] });
    const namespaces = topo.hosts.map((h) => h.ns);
    for (const ns of namespaces) assert.ok(listNamespaces().includes(ns), `${ns} should exist`);
    // A process that ignores SIGTERM must still be killed (SIGKILL after the grace period).
    const stubborn = topo.spawn('a', 'sh', ['-c', 'trap "" TERM; echo ready; while :; do sleep 1; done']);
    await waitForLine(stubborn, /ready/, 3000);
    const exited = new Promise<NodeJS.Signals | null>((resolve) => stubborn.once('exit', (_code, sig) => resolve(sig)));

    await Promise.all([topo.destroy(), topo.destroy()]);
    await topo.destroy();
    assert.equal(topo.destroyed, true);
    assert.equal(await exited, 'SIGKILL');
    const after = listNamespaces();
    for (const ns of namespaces) assert.ok(!after.includes(ns), `${ns} should be gone`);
    await assert.rejects(topo.exec('a', 'true'), /destroyed/);
  });
});
