/**
 * Running tcpipe as an operator does: a config file, JSON logs, Prometheus
 * metrics, `tcpipe status`, and SIGHUP swapping a route without dropping the
 * link or the streams that stay valid. Real CLI processes on loopback.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { CLI_MAIN, spawnCli } from '../helpers/cli.js';
import { ENTRY_HOST, freePort, LINK_HOST, TARGET_HOST } from '../helpers/net.js';
import { startTarget } from '../helpers/targets.js';
import { withTimeout } from '../helpers/wait.js';

const ROUTED_HOST = '127.0.0.4';

function get(url: string): Promise<string> {
  return new Promise((resolve, reject) => {
    http
      .get(url, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => resolve(body));
      })
      .on('error', reject);
  });
}

/** Sends `text`, half-closes, and returns the whole reply. */
async function ask(port: number, text: string): Promise<string> {
  const socket = net.connect(port, ENTRY_HOST);
  socket.end(text);
  let reply = '';
  socket.setEncoding('utf8');
  for await (const chunk of socket) reply += String(chunk);
  return reply;
}

test('config file, JSON logs, metrics, status, and SIGHUP reload of a route', { timeout: 60_000 }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'tcpipe-ops-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  // Two targets: the default host answers "A:", the routed one "B:".
  const a = await startTarget(t, (s) => s.on('data', (d: Buffer) => s.write(`A:${d.toString()}`)).on('end', () => s.end()));
  const routed = net.createServer((s) => s.on('data', (d: Buffer) => s.write(`B:${d.toString()}`)).on('end', () => s.end()));
  await new Promise<void>((resolve) => routed.listen(0, ROUTED_HOST, resolve));
  t.after(() => routed.close());
  const routedPort = (routed.address() as net.AddressInfo).port;
  a.releaseEntry();
  const linkPort = await freePort();
  const metricsPort = await freePort();

  const serverConfig = join(dir, 'server.toml');
  writeFileSync(serverConfig, `server = ${linkPort}\nports = ["${ENTRY_HOST}:${a.port}"]\nmetrics = "${LINK_HOST}:${metricsPort}"\nlog-format = "json"\nverbose = true\n`);
  const clientConfig = join(dir, 'client.toml');
  const clientToml = (routes: string): string => `client = "${LINK_HOST}:${linkPort}"\ntarget = ["${TARGET_HOST}"${routes}]\nlog-format = "json"\n`;
  writeFileSync(clientConfig, clientToml(''));

  const server = spawnCli(t, [`--config=${serverConfig}`]);
  const client = spawnCli(t, [`--config=${clientConfig}`]);
  await client.waitFor(/"event":"link_up"/, 10_000);
  await server.waitFor(/"event":"link_up"/, 10_000);

  // Every log line is one JSON object with the stable fields.
  for (const line of [...server.lines, ...client.lines].filter((l) => l.trim() !== '')) {
    const record = JSON.parse(line) as Record<string, unknown>;
    for (const field of ['time', 'level', 'event', 'msg']) assert.ok(field in record, `${field} in ${line}`);
  }

  assert.equal(await ask(a.port, 'one'), 'A:one');

  // A long-lived stream, open across the reload.
  const held = net.connect(a.port, ENTRY_HOST);
  held.setEncoding('utf8');
  const heldReplies: string[] = [];
  held.on('data', (d: string) => heldReplies.push(d));
  await new Promise<void>((resolve) => held.once('connect', resolve));
  held.write('before');
  await withTimeout(new Promise<void>((resolve) => held.once('data', () => resolve())), 5000, 'held stream answer');

  const metrics = await get(`http://${LINK_HOST}:${metricsPort}/metrics`);
  assert.match(metrics, /^tcpipe_link_up 1$/m);
  assert.match(metrics, new RegExp(`^tcpipe_streams_open\\{port="${a.port}",side="entry"\\} 1$`, 'm'));
  assert.match(metrics, new RegExp(`^tcpipe_streams_total\\{port="${a.port}",side="entry"\\} 2$`, 'm'));
  assert.match(metrics, /^tcpipe_bytes_total\{direction="out"\} [1-9]/m);
  assert.match(metrics, /^tcpipe_heartbeat_rtt_seconds /m);

  const status = await promisify(execFile)(process.execPath, [CLI_MAIN, 'status', `--config=${serverConfig}`]);
  assert.match(status.stdout, /^server: link up with 127\.0\.0\.1:\d+ for \d+s, rtt/m);
  assert.match(status.stdout, new RegExp(`^\\d+\\s+${a.port}\\s+entry\\s+127\\.0\\.0\\.\\d+:\\d+`, 'm'));

  // Route the port elsewhere and reload: new streams go to B, the held one stays on A.
  writeFileSync(clientConfig, clientToml(`, "${a.port}=${ROUTED_HOST}:${routedPort}"`));
  client.child.kill('SIGHUP');
  const reloadLine = await client.waitFor(/"event":"reload"/, 5000);
  assert.match(reloadLine, new RegExp(`route ${a.port}: none -> ${ROUTED_HOST.replace(/\./g, '\\.')}:${routedPort}`));
  assert.equal(await ask(a.port, 'two'), 'B:two');
  held.write('after');
  await withTimeout(new Promise<void>((resolve) => held.once('data', () => resolve())), 5000, 'held stream still answers');
  assert.deepEqual(heldReplies, ['A:before', 'A:after']);
  assert.ok(!client.lines.some((l) => l.includes('"event":"link_down"')), 'the link stayed up');

  // A reload that breaks the file keeps the running configuration.
  writeFileSync(clientConfig, 'client = 1\nbogus = true\n');
  client.child.kill('SIGHUP');
  await client.waitFor(/"event":"reload_failed".*unknown key 'bogus'/, 5000);
  assert.equal(await ask(a.port, 'three'), 'B:three');
  held.end();
});

test('status of an instance that does not answer fails with exit 1 and one line', async () => {
  const port = await freePort();
  const result = await promisify(execFile)(process.execPath, [CLI_MAIN, 'status', `--metrics=${LINK_HOST}:${port}`]).then(
    () => null,
    (err: unknown) => err as { code?: number; stderr?: string },
  );
  assert.equal(result?.code, 1);
  assert.match(result?.stderr ?? '', /^tcpipe: cannot reach tcpipe at 127\.0\.0\.1:\d+: .*\n$/);
});
