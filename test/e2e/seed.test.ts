// The seed's example, run for real with the CLI in network namespaces.
//
// Topology (a chain; no host forwards, so nothing reaches across except through tcpipe):
//
//   appli1 10.231.1.1 <-> 10.231.1.2 host1 10.231.2.1 <-> 10.231.2.2 host2 10.231.3.1 <-> 10.231.3.2 appli2
//
// host1 runs `tcpipe -s 50000 -p 40000,40001` behind the seed's firewall: it accepts
// inbound TCP on 50000, 40000 and 40001 only and cannot dial out. host2 runs
// `tcpipe -c host1:50000 -t appli2`. appli2 answers on 40000 and 40001; appli1
// connects to host1:40000 and host1:40001.
//
// Skipped, with the reason, when network namespaces (root, ip, iptables, nc) are unavailable.
import { describe, test } from 'node:test';
import type { TestContext } from 'node:test';
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { childEnv, CLI_MAIN, NODE } from '../helpers/cli.js';
import { createTopology, netnsAvailable, type Topology } from '../helpers/netns.js';
import { assertIntact, echoFrom } from '../helpers/ns-apps.js';
import { outputOf, waitForLine } from '../helpers/output.js';

const HOSTS = ['appli1', 'host1', 'host2', 'appli2'] as const;
type Host = (typeof HOSTS)[number];

const LINK_UP = /link up with /;
const LINK_DOWN = /link down with /;

// A user 'server' application. argv: bindHost tag port...
// Greets each connection with "<tag>:<port> from <peer address>\n", then echoes
// everything; a first chunk "bye\n" makes it close the connection instead.
// Logs "listening <port>", "accept <port> from <addr>" and "close <port>".
const TARGET_APP = `
const net = require('node:net');
const [host, tag, ...ports] = process.argv.slice(1);
for (const p of ports) {
  const srv = net.createServer((s) => {
    const port = s.localPort;
    const peer = s.remoteAddress;
    console.log('accept ' + port + ' from ' + peer);
    s.on('error', () => {});
    s.on('close', () => console.log('close ' + port));
    s.write(tag + ':' + port + ' from ' + peer + '\\n');
    let first = true;
    s.on('data', (d) => {
      if (first && d.toString('latin1') === 'bye\\n') { s.end(); return; }
      first = false;
      s.write(d);
    });
  });
  srv.listen(Number(p), host, () => console.log('listening ' + p));
}
`;

// A user 'client' application that holds its connection. argv: addr port mode timeoutMs
//   hold: send "ping\\n", print "ready <greeting>" once echoed, then wait
//   quit: like hold, then close its side once echoed
//   bye:  send "bye\\n" (the target then closes)
// Prints "closed <everything received, JSON>" when the connection closes.
const HOLD_USER = `
const net = require('node:net');
const [addr, port, mode, ms] = process.argv.slice(1);
let buf = '';
let ready = false;
const s = net.connect({ host: addr, port: Number(port) });
s.setEncoding('utf8');
s.on('connect', () => s.write(mode === 'bye' ? 'bye\\n' : 'ping\\n'));
s.on('data', (d) => {
  buf += d;
  if (mode !== 'bye' && !ready && buf.includes('\\nping\\n')) {
    ready = true;
    console.log('ready ' + buf.split('\\n')[0]);
    if (mode === 'quit') s.end();
  }
});
s.on('error', (e) => console.log('error ' + (e.code || e.message)));
s.on('close', () => { console.log('closed ' + JSON.stringify(buf)); process.exit(0); });
setTimeout(() => { console.log('timeout'); process.exit(2); }, Number(ms));
`;


const avail = await netnsAvailable({ need: ['iptables', 'nc'] });

async function topology(t: TestContext): Promise<Topology<Host>> {
  const topo = await createTopology({ hosts: HOSTS, forwarding: false });
  t.after(() => topo.destroy());
  return topo;
}

function tcpipe(topo: Topology<Host>, host: Host, args: readonly string[]): ChildProcess {
  return topo.spawn(host, NODE, [CLI_MAIN, ...args], { env: childEnv() });
}

async function startTarget(topo: Topology<Host>, host: Host, bind: string, tag: string, ports: readonly number[]): Promise<ChildProcess> {
  const app = topo.spawn(host, NODE, ['-e', TARGET_APP, bind, tag, ...ports.map(String)]);
  for (const p of ports) await waitForLine(app, new RegExp(`^listening ${p}$`), 5000);
  return app;
}



/** The seed's pair: server on host1 behind the firewall, client on host2 targeting appli2. */
async function seedPair(topo: Topology<Host>, extra: readonly string[] = []): Promise<{ server: ChildProcess; client: ChildProcess }> {
  await topo.firewallNoDialOut('host1', [50000, 40000, 40001]);
  const server = tcpipe(topo, 'host1', ['-s', '50000', '-p', '40000,40001', ...extra]);
  await waitForLine(server, /server: link port 50000/, 5000);
  const client = tcpipe(topo, 'host2', ['-c', `${topo.addr('host1', 'host2')}:50000`, '-t', topo.addr('appli2', 'host2'), ...extra]);
  await Promise.all([waitForLine(client, LINK_UP, 8000), waitForLine(server, LINK_UP, 8000)]);
  return { server, client };
}

function holdUser(topo: Topology<Host>, port: number, mode: 'hold' | 'quit' | 'bye', timeoutMs = 20_000): ChildProcess {
  return topo.spawn('appli1', NODE, ['-e', HOLD_USER, topo.addr('host1', 'appli1'), String(port), mode, String(timeoutMs)]);
}

/** Milliseconds until `child` prints a line matching `regex` (bounded by `timeoutMs`). */
async function timeUntil(child: ChildProcess, regex: RegExp, timeoutMs: number, since: number): Promise<number> {
  await waitForLine(child, regex, timeoutMs, { includePast: false });
  return Date.now() - since;
}

describe('seed example across network namespaces', { skip: avail.ok ? false : avail.reason, concurrency: true }, () => {
  test('host1 -s 50000 -p 40000,40001 / host2 -c host1:50000 -t appli2: 1 MiB each way on both ports, intact', { timeout: 40_000 }, async (t) => {
    const topo = await topology(t);
    const host1 = topo.addr('host1', 'appli1');
    const appli2 = topo.addr('appli2', 'host2');

    const target = await startTarget(topo, 'appli2', '0.0.0.0', 'appli2', [40000, 40001]);
    // Without tcpipe, appli1 cannot reach appli2 (no forwarding), and host1 cannot dial out at all.
    await topo.firewallNoDialOut('host1', [50000, 40000, 40001]);
    const direct = await echoFrom(topo, 'appli1', appli2, 40000, 'rand:16', 1500);
    assert.notEqual(direct.error, null, `appli1 must not reach appli2 directly: ${JSON.stringify(direct)}`);
    const probe = await startTarget(topo, 'host2', '0.0.0.0', 'probe', [40999]);
    const dialOut = await topo.exec('host1', 'nc', ['-z', '-n', '-w', '1', topo.addr('host2', 'host1'), '40999'], { timeoutMs: 3000 });
    assert.notEqual(dialOut.code, 0, 'host1 must not be able to dial out to a listening host2');
    assert.equal((await topo.exec('appli2', 'nc', ['-z', '-n', '-w', '1', topo.addr('host2', 'appli2'), '40999'])).code, 0, 'the probe listens');
    probe.kill();

    const { server, client } = await seedPair(topo);
    assert.match(await waitForLine(server, LINK_UP, 100), new RegExp(`link up with ${topo.addr('host2', 'host1').replace(/\./g, '\\.')}:`));

    const size = 1024 * 1024;
    const [r0, r1] = await Promise.all([echoFrom(topo, 'appli1', host1, 40000, `rand:${size}`), echoFrom(topo, 'appli1', host1, 40001, `rand:${size}`)]);
    // The exit side (host2) connected to appli2 on the same port number as the entry port.
    const host2 = topo.addr('host2', 'appli2');
    assertIntact(r0, `appli2:40000 from ${host2}`, 'port 40000');
    assertIntact(r1, `appli2:40001 from ${host2}`, 'port 40001');
    assert.match(outputOf(target), new RegExp(`accept 40000 from ${host2.replace(/\./g, '\\.')}`));

    // Several connections on one port at once, each its own stream.
    const many = await Promise.all([1, 2, 3].map(() => echoFrom(topo, 'appli1', host1, 40001, 'rand:65536')));
    for (const [i, r] of many.entries()) assertIntact(r, `appli2:40001 from ${host2}`, `parallel connection ${i}`);

    // A user 'client' closing its side reaches appli2, and appli2 closing reaches appli1.
    const targetClosed = waitForLine(target, /^close 40000$/, 5000, { includePast: false });
    const quitter = holdUser(topo, 40000, 'quit');
    assert.match(await waitForLine(quitter, /^ready /, 5000), /^ready appli2:40000 /);
    await waitForLine(quitter, /^closed /, 5000);
    await targetClosed;
    const bye = holdUser(topo, 40001, 'bye');
    assert.match(await waitForLine(bye, /^closed /, 5000), /^closed "appli2:40001 from [\d.]+\\n"$/);

    assert.doesNotMatch(outputOf(server) + outputOf(client), /link down|ERROR/, 'the link stayed up');
  });

  test('reverse direction: client-side -p 40002, target on host1 127.0.0.1 behind the server', { timeout: 30_000 }, async (t) => {
    const topo = await topology(t);
    await topo.firewallNoDialOut('host1', [50000]);
    // host1's own application, on loopback only: the firewall allows host1 to dial its loopback.
    const target = await startTarget(topo, 'host1', '127.0.0.1', 'host1-local', [40002]);
    const server = tcpipe(topo, 'host1', ['-s', '50000', '-t', '127.0.0.1']);
    await waitForLine(server, /server: link port 50000/, 5000);
    const client = tcpipe(topo, 'host2', ['-c', `${topo.addr('host1', 'host2')}:50000`, '-p', '40002,40003']);
    await Promise.all([waitForLine(client, LINK_UP, 8000), waitForLine(server, LINK_UP, 8000)]);

    // A user on appli2 connects to host2:40002 and reaches host1's 127.0.0.1:40002.
    const host2 = topo.addr('host2', 'appli2');
    const r = await echoFrom(topo, 'appli2', host2, 40002, 'rand:1048576');
    assertIntact(r, 'host1-local:40002 from 127.0.0.1', 'reverse port 40002');
    assert.match(outputOf(target), /accept 40002 from 127\.0\.0\.1/);

    // No target on 40003: host2 closes the user's connection without any data.
    const refused = await echoFrom(topo, 'appli2', host2, 40003, 'rand:16', 5000);
    assert.notEqual(refused.error, 'timeout', 'the connection must be closed, not left hanging');
    assert.equal(refused.header, '');
    assert.equal(refused.got, 0);
    await waitForLine(server, /40003/, 3000);
    // The link survives a refused stream.
    assertIntact(await echoFrom(topo, 'appli2', host2, 40002, 'rand:4096'), 'host1-local:40002 from 127.0.0.1', 'after the refusal');
  });

  test('client killed: the user connection on host1 closes, new ones are refused; restarted, the pair re-forms', { timeout: 30_000 }, async (t) => {
    const topo = await topology(t);
    await startTarget(topo, 'appli2', '0.0.0.0', 'appli2', [40000, 40001]);
    const { server, client } = await seedPair(topo);

    const held = holdUser(topo, 40000, 'hold');
    await waitForLine(held, /^ready appli2:40000 /, 5000);
    const serverDown = waitForLine(server, LINK_DOWN, 5000, { includePast: false });
    const killedAt = Date.now();
    client.kill('SIGKILL');
    const closedAfter = await timeUntil(held, /^closed /, 5000, killedAt);
    await serverDown;
    t.diagnostic(`user connection closed ${closedAfter} ms after the client was killed`);
    assert.ok(closedAfter < 5000, `user connection closed ${closedAfter} ms after the client died`);

    // No partner: host1 closes a new user connection at once.
    const lonely = await echoFrom(topo, 'appli1', topo.addr('host1', 'appli1'), 40000, 'rand:16', 5000);
    assert.notEqual(lonely.error, 'timeout', 'the connection must be closed, not left hanging');
    assert.equal(lonely.header, '');

    // Restart the client with the same command: it dials again and the pair re-forms by itself.
    const serverUp = waitForLine(server, LINK_UP, 10_000, { includePast: false });
    const again = tcpipe(topo, 'host2', ['-c', `${topo.addr('host1', 'host2')}:50000`, '-t', topo.addr('appli2', 'host2')]);
    await Promise.all([waitForLine(again, LINK_UP, 10_000), serverUp]);
    const r = await echoFrom(topo, 'appli1', topo.addr('host1', 'appli1'), 40000, 'rand:262144');
    assertIntact(r, `appli2:40000 from ${topo.addr('host2', 'appli2')}`, 'after the restart');
  });

  test('silent cut with --heartbeat=2: both sides see the link down in time, close the connections, and re-form after healing', { timeout: 40_000 }, async (t) => {
    const topo = await topology(t);
    const target = await startTarget(topo, 'appli2', '0.0.0.0', 'appli2', [40000, 40001]);
    const { server, client } = await seedPair(topo, ['--heartbeat=2']);

    const held = holdUser(topo, 40000, 'hold', 30_000);
    await waitForLine(held, /^ready appli2:40000 /, 5000);
    await waitForLine(target, /^accept 40000 /, 1000);

    const serverDown = waitForLine(server, LINK_DOWN, 8000, { includePast: false });
    const clientDown = waitForLine(client, LINK_DOWN, 8000, { includePast: false });
    const heldClosed = waitForLine(held, /^closed /, 8000, { includePast: false });
    const targetClosed = waitForLine(target, /^close 40000$/, 8000, { includePast: false });
    // Drop everything between host2 and host1, silently (no RST, no FIN).
    await topo.cutLink('host2', 'host1');
    const cutAt = Date.now();
    const [serverLine, clientLine] = await Promise.all([serverDown, clientDown]);
    const detectedMs = Date.now() - cutAt;
    t.diagnostic(`link down seen on both sides ${detectedMs} ms after the cut`);
    // Detection lands between 2/3 and all of the heartbeat timeout; allow scheduling slack.
    assert.ok(detectedMs <= 2000 + 750, `link down seen ${detectedMs} ms after the cut (heartbeat 2 s)`);
    assert.match(serverLine, /heartbeat|no answer/i);
    assert.match(clientLine, /heartbeat|no answer/i);
    // Both sides close their user connections: appli1's on host1, appli2's on host2.
    await Promise.all([heldClosed, targetClosed]);

    const serverUp = waitForLine(server, LINK_UP, 15_000, { includePast: false });
    const clientUp = waitForLine(client, LINK_UP, 15_000, { includePast: false });
    await topo.healLink('host2', 'host1');
    await Promise.all([serverUp, clientUp]);
    const r = await echoFrom(topo, 'appli1', topo.addr('host1', 'appli1'), 40001, 'rand:262144');
    assertIntact(r, `appli2:40001 from ${topo.addr('host2', 'appli2')}`, 'after healing');
  });
});
