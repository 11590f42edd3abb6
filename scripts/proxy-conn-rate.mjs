#!/usr/bin/env node
// Connections per second through a tcpipe pair on loopback, with and without PROXY headers
// (issue 21's cost per connection). Each connection: the user (127.0.0.9) sends 'x', the
// target answers 'ok' and closes. Modes: none; v1 or v2 written to the target; 'accept':
// the user sends a v1 header first (--accept-proxy-protocol) and v2 goes on to the target.
// Usage: npm run build && node scripts/proxy-conn-rate.mjs [connections] [rounds]

import net from 'node:net';
import { once } from 'node:events';
const root = new URL('../dist/src/index.js', import.meta.url).href;
const { startServer, startClient } = await import(root);
const { encodeProxyV1 } = await import(root.replace('index.js', 'protocol/proxy-header.js'));

const target = net.createServer({ allowHalfOpen: true }, (s) => {
  s.on('error', () => {});
  s.on('data', (c) => { if (c.includes(0x78)) s.end('ok'); });
});
target.listen(0, '127.0.0.3'); await once(target, 'listening');
const tport = target.address().port;

async function freePort(host) { const s = net.createServer(); s.listen(0, host); await once(s, 'listening'); const p = s.address().port; s.close(); return p; }

async function measure(mode, count, concurrency) {
  const port = await freePort('127.0.0.2');
  const server = await startServer({ port: 0, host: '127.0.0.1', ports: [{ host: '127.0.0.2', port }], acceptProxyProtocol: mode === 'accept' });
  const client = await startClient({ host: '127.0.0.1', port: server.linkAddress.port, proxy: null,
    routes: [{ port, host: '127.0.0.3', targetPort: tport }], ...(mode === 'v1' || mode === 'v2' ? { proxyProtocol: mode } : {}), ...(mode === 'accept' ? { proxyProtocol: 'v2' } : {}) });
  while (!server.linkUp || !client.linkUp) await new Promise((r) => setTimeout(r, 10));
  const header = encodeProxyV1({ family: 4, transport: 'stream', sourceAddress: '192.0.2.1', sourcePort: 1234, destinationAddress: '198.51.100.1', destinationPort: 80 });
  let started = 0;
  const one = () => new Promise((resolve, reject) => {
    const s = net.connect({ host: '127.0.0.2', port, localAddress: '127.0.0.9' });
    let got = '';
    s.on('connect', () => { if (mode === 'accept') s.write(header); s.write('x'); });
    s.on('data', (c) => { got += c; });
    s.on('error', reject);
    s.on('close', () => (got === 'ok' ? resolve() : reject(new Error(`got '${got}'`))));
  });
  const t0 = performance.now();
  await Promise.all(Array.from({ length: concurrency }, async () => { while (started < count) { started++; await one(); } }));
  const rate = count / ((performance.now() - t0) / 1000);
  await client.stop(); await server.stop();
  return rate;
}
const modes = ['none', 'v1', 'v2', 'accept'];
const results = Object.fromEntries(modes.map((m) => [m, []]));
await measure('none', 500, 16); // warm-up
const count = Number(process.argv[2] ?? 2000);
const rounds = Number(process.argv[3] ?? 5);
for (let round = 0; round < rounds; round++) for (const m of modes) results[m].push(await measure(m, count, 16));
for (const m of modes) {
  const r = results[m].sort((a, b) => a - b);
  console.log(`${m.padEnd(7)} median ${r[Math.floor(r.length / 2)].toFixed(0)} conn/s  (runs ${r.map((x) => x.toFixed(0)).join(', ')})`);
}
target.close();
process.exit(0);
