// DNS through the pair, both directions across the seed's firewall, with a real resolver
// (dnsmasq answering a local zone) and a real client (dig), all in network namespaces.
//
//   appli1 10.231.1.1 <-> 10.231.1.2 host1 10.231.2.1 <-> 10.231.2.2 host2 10.231.3.1 <-> 10.231.3.2 appli2
//
// host1 is behind the firewall: inbound TCP on 50000 and inbound UDP on 5353 only, no new
// TCP or UDP out (no host forwards, so nothing crosses except through tcpipe).
//   1. appli1 asks host1:5353/udp; host2 relays it to dnsmasq on appli2:53.
//   2. appli2 asks host2:5354/udp; host1 relays it to dnsmasq on its own 127.0.0.1:5300
//      (the internal resolver behind the firewall).
//
// Skipped, with the reason, when namespaces, iptables, dnsmasq or dig are unavailable.
import { describe, test } from 'node:test';
import type { TestContext } from 'node:test';
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { createTopology, netnsAvailable, outputOf, waitForLine } from '../helpers/netns.js';
import type { Topology } from '../helpers/netns.js';

const NODE = process.execPath;
const MAIN = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));
const HOSTS = ['appli1', 'host1', 'host2', 'appli2'] as const;
type Host = (typeof HOSTS)[number];
const LINK_UP = /link up with /;

const avail = await netnsAvailable({ need: ['iptables', ['sh', '-c', 'command -v dnsmasq || test -x /usr/sbin/dnsmasq'], ['sh', '-c', 'command -v dig']] });

function dnsmasq(topo: Topology<Host>, host: Host, address: string, port: number): ChildProcess {
  return topo.spawn(host, 'dnsmasq', [
    '--keep-in-foreground',
    '--log-facility=-',
    '--conf-file=/dev/null',
    '--no-resolv',
    '--no-hosts',
    '--address=/example.test/10.1.2.3',
    `--port=${port}`,
    `--listen-address=${address}`,
    '--bind-interfaces',
    '--user=root',
    '--pid-file=',
  ]);
}

async function dig(topo: Topology<Host>, from: Host, server: string, port: number, name: string): Promise<string> {
  const r = await topo.exec(from, 'dig', ['+short', '+time=2', '+tries=1', '-p', String(port), `@${server}`, name], { timeoutMs: 6000 });
  return r.stdout.trim();
}

function tcpipe(topo: Topology<Host>, host: Host, args: readonly string[]): ChildProcess {
  const env = { ...process.env };
  delete env.TCPIPE_SECRET;
  return topo.spawn(host, NODE, [MAIN, ...args], { env });
}

describe('DNS over UDP flows across network namespaces', { skip: avail.ok ? false : avail.reason }, () => {
  test('dig through the pair reaches dnsmasq in both directions across the firewall', { timeout: 60_000 }, async (t: TestContext) => {
    const topo = await createTopology({ hosts: HOSTS, forwarding: false });
    t.after(() => topo.destroy());
    const host1 = topo.addr('host1', 'appli1');
    const host2 = topo.addr('host2', 'appli2');
    const appli2 = topo.addr('appli2', 'host2');

    const far = dnsmasq(topo, 'appli2', appli2, 53);
    const internal = dnsmasq(topo, 'host1', '127.0.0.1', 5300);
    await Promise.all([waitForLine(far, /started/, 5000), waitForLine(internal, /started/, 5000)]);

    // The seed's firewall on host1, with UDP too: only 5353/udp comes in, nothing goes out new.
    await topo.firewallNoDialOut('host1', [50000]);
    await topo.iptables('host1', ['-A', 'INPUT', '-p', 'udp', '--dport', '5353', '-j', 'ACCEPT']);
    await topo.iptables('host1', ['-A', 'INPUT', '-p', 'udp', '!', '-i', 'lo', '-m', 'conntrack', '--ctstate', 'NEW', '-j', 'DROP']);
    await topo.iptables('host1', ['-A', 'OUTPUT', '-p', 'udp', '!', '-o', 'lo', '-m', 'conntrack', '--ctstate', 'NEW', '-j', 'DROP']);
    // Without tcpipe: appli1 cannot ask appli2's resolver, host1 cannot ask it either.
    assert.doesNotMatch(await dig(topo, 'appli1', appli2, 53, 'www.example.test'), /10\.1\.2\.3/, 'appli1 must not reach appli2 directly');
    assert.doesNotMatch(await dig(topo, 'host1', topo.addr('host2', 'host1'), 53, 'www.example.test'), /10\.1\.2\.3/);
    assert.equal(await dig(topo, 'host1', '127.0.0.1', 5300, 'www.example.test'), '10.1.2.3', 'the internal resolver answers locally');

    const server = tcpipe(topo, 'host1', ['-s', '50000', '-p', '5353/udp', '-t', '5354/udp=127.0.0.1:5300', '-v']);
    await waitForLine(server, /server: link port 50000/, 5000);
    const client = tcpipe(topo, 'host2', ['-c', `${topo.addr('host1', 'host2')}:50000`, '-p', '5354/udp', '-t', `5353/udp=${appli2}:53`, '-v']);
    await Promise.all([waitForLine(client, LINK_UP, 8000), waitForLine(server, LINK_UP, 8000)]);

    // 1. From behind the firewall's outside (appli1) to the far resolver.
    assert.equal(await dig(topo, 'appli1', host1, 5353, 'www.example.test'), '10.1.2.3');
    assert.equal(await dig(topo, 'appli1', host1, 5353, 'a.b.example.test'), '10.1.2.3');
    // 2. From the far side (appli2) to the resolver behind the firewall.
    assert.equal(await dig(topo, 'appli2', host2, 5354, 'www.example.test'), '10.1.2.3');

    await waitForLine(server, /flow 1 open on port 5353\/udp \(entry, from 10\.231\.1\.1:\d+\)/, 2000);
    await waitForLine(client, new RegExp(`flow 1 open on port 5353/udp \\(exit, from 10\\.231\\.1\\.1:\\d+ to ${appli2.replace(/\./g, '\\.')}:53\\)`), 2000);
    await waitForLine(server, /flow 1 open on port 5354\/udp \(exit, from 10\.231\.3\.2:\d+ to 127\.0\.0\.1:5300\)/, 2000);
    assert.doesNotMatch(outputOf(server) + outputOf(client), /link down|ERROR|dropped/);
  });
});
