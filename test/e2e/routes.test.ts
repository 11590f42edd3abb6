// Routes across hosts: the exit side sends one port to another port of another
// host (-t PORT=HOST:TPORT), the rest to its default host, and --allow refuses
// what it does not list. Three network namespaces in a chain, no forwarding:
//
//   host1 (server, -p 40000,40001,40002) <-> host2 (client) <-> db (the targets)
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { CLI_MAIN, NODE } from '../helpers/cli.js';
import { createTopology, netnsAvailable } from '../helpers/netns.js';
import { waitForLine } from '../helpers/output.js';


// Greets each connection with "<port the target listens on>\n" and closes.
const TARGETS = `
const net = require('node:net');
for (const p of process.argv.slice(1)) {
  net.createServer((s) => { s.on('error', () => {}); s.end('served by ' + s.localPort + '\\n'); })
    .listen(Number(p), '0.0.0.0', () => console.log('listening ' + p));
}
`;

// Connects, prints what it received (JSON) when the connection closes.
const USER = `
const net = require('node:net');
const [addr, port] = process.argv.slice(1);
let got = '';
const s = net.connect(Number(port), addr);
s.setEncoding('utf8');
s.on('data', (d) => (got += d));
s.on('error', (e) => { console.log(JSON.stringify({ got, error: e.code || e.message })); process.exit(0); });
s.on('close', () => { console.log(JSON.stringify({ got, error: null })); process.exit(0); });
setTimeout(() => { console.log(JSON.stringify({ got, error: 'timeout' })); process.exit(0); }, 5000);
`;

const avail = await netnsAvailable({ need: ['iptables'] });

describe('routes across network namespaces', { skip: avail.ok ? false : avail.reason }, () => {
  test('-t HOST -t PORT=HOST:TPORT --allow: each port goes where the exit side says', { timeout: 40_000 }, async (t) => {
    const topo = await createTopology({ hosts: ['host1', 'host2', 'db'] as const, forwarding: false });
    t.after(() => topo.destroy());
    const db = topo.addr('db', 'host2');
    const targets = topo.spawn('db', NODE, ['-e', TARGETS, '40000', '41001', '40002']);
    for (const p of [40000, 41001, 40002]) await waitForLine(targets, new RegExp(`^listening ${p}$`), 5000);

    const server = topo.spawn('host1', NODE, [CLI_MAIN, '-s', '50000', '-p', '40000,40001,40002']);
    await waitForLine(server, /server: link port 50000/, 5000);
    const client = topo.spawn('host2', NODE, [
      CLI_MAIN,
      '-c',
      `${topo.addr('host1', 'host2')}:50000`,
      '-t',
      db,
      '-t',
      `40001=${db}:41001`,
      '--allow=40000,40001',
    ]);
    await Promise.all([waitForLine(client, /link up with /, 8000), waitForLine(server, /link up with /, 8000)]);

    const user = async (port: number): Promise<{ got: string; error: string | null }> => {
      const r = await topo.exec('host1', NODE, ['-e', USER, topo.addr('host1', 'host2'), String(port)], { timeoutMs: 8000 });
      return JSON.parse(r.stdout.trim().split('\n').pop() ?? '{}') as { got: string; error: string | null };
    };
    assert.deepEqual(await user(40000), { got: 'served by 40000\n', error: null }, 'the default host, same port');
    assert.deepEqual(await user(40001), { got: 'served by 41001\n', error: null }, 'the routed port goes to db:41001');
    const refused = await user(40002);
    assert.equal(refused.got, '', 'a port outside --allow reaches nothing, though db listens on it');
    assert.notEqual(refused.error, 'timeout', 'the refusal is prompt');
    await waitForLine(client, /port 40002 is not in --allow/, 5000);
    await waitForLine(server, /on port 40002 refused by the partner: port 40002 is not in --allow/, 5000);
  });
});
