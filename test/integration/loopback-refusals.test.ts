/**
 * Everything a pair refuses, on loopback through the library, and how it
 * says why: a target that refuses, no partner, one connection per port,
 * garbage on the link port, and a second client while the first is alive
 * (refused) or silently gone (replaced after a partner check).
 *
 * Layout (see test/helpers/loopback.ts): link on 127.0.0.1, entry ports on
 * 127.0.0.2:P, targets on 127.0.0.3:P. Garbage comes from other loopback
 * sources (127.0.0.70 and up): a server's PenaltyBox blocks a source after
 * repeated failures, and the real client dials from 127.0.0.1.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import { entryOf, nextEvent, recordEvents, startTestClient, startTestPair, startTestServer } from '../helpers/loopback.js';
import { LINK_HOST, MiB } from '../helpers/net.js';
import { startChaosRelay } from '../helpers/relay.js';
import { startDeadTarget, startEchoTarget } from '../helpers/targets.js';
import { connectUser, dialUser, echoRound, track, type UserConn } from '../helpers/users.js';
import { assertWithin, withTimeout } from '../helpers/wait.js';
import type { TestContext } from 'node:test';

function escape(text: string | number): string {
  return String(text).replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

test('target refused: the user is reset promptly and both sides say why', async (t) => {
  const dead = await startDeadTarget(t);
  const p = await startTestPair(t, { serverPorts: [dead] });
  const exitRefused = nextEvent(p.client, 'refused', 3000);
  const entryRefused = nextEvent(p.server, 'refused', 3000);
  const entryClosed = nextEvent(p.server, 'stream-close', 3000);
  const { host, port } = entryOf(p.server);
  const started = performance.now();
  const user = dialUser(t, host, port);
  const info = await user.closedWithin(2000);
  assertWithin(t, info.at - started, 1000, 'user reset after the target refused');
  assert.ok(info.hadError && info.error?.code === 'ECONNRESET', `reset, not a clean close (${info.error?.code ?? 'no error'})`);
  assert.ok(!info.ended);

  const why = new RegExp(`cannot connect to target 127\\.0\\.0\\.3:${port}: connect ECONNREFUSED`);
  const refused = await exitRefused;
  assert.equal(refused.kind, 'target_refused');
  assert.equal(refused.port, port);
  assert.match(refused.reason, why);
  const entryEvent = await entryRefused;
  assert.equal(entryEvent.kind, 'target_refused');
  assert.equal(entryEvent.port, port);
  assert.match(entryEvent.reason, why);
  const closed = await entryClosed;
  assert.equal(closed.side, 'entry');
  assert.equal(closed.port, port);
  assert.match(closed.reason, why);
  await p.clientLog.waitFor(new RegExp(`WARN .*port ${port}: ${why.source}`), 2000);
  await p.serverLog.waitFor(new RegExp(`WARN .*on port ${port} refused by the partner: ${why.source}`), 2000);
  assert.ok(p.server.linkUp && p.client.linkUp, 'the link stays up');
  assert.equal(p.server.openStreams + p.client.openStreams, 0);
});

test('no partner: a server alone resets users at once, with the reason logged', async (t) => {
  const echo = await startEchoTarget(t);
  const { server, log } = await startTestServer(t, { ports: [echo] });
  const refused = nextEvent(server, 'refused', 3000);
  const { host, port } = entryOf(server);
  const started = performance.now();
  const user = dialUser(t, host, port); // the reset may come before or after 'connect'
  const info = await user.closedWithin(2000);
  assertWithin(t, info.at - started, 1000, 'user reset without a partner');
  assert.ok(info.hadError && info.error?.code === 'ECONNRESET', `reset (${info.error?.code ?? 'no error'})`);
  const event = await refused;
  assert.equal(event.kind, 'no_partner');
  assert.equal(event.port, port);
  assert.match(event.reason, /no partner/);
  await log.waitFor(new RegExp(`WARN .*refused connection on port ${port} from [\\d.]+:\\d+: no partner`), 1000);
  assert.equal(echo.sockets.length, 0, 'nothing reached the target');
});

test('--one-per-port: a second connection to a busy port is refused; once the first closes, the port accepts again', async (t) => {
  const echo = await startEchoTarget(t);
  const p = await startTestPair(t, { serverPorts: [echo], common: { onePerPort: true } });
  const { host, port } = entryOf(p.server);
  const opened = nextEvent(p.server, 'stream-open', 3000);
  const first = await connectUser(t, host, port);
  await opened; // the server took the connection (and stopped listening on the port)

  const second = await connectUser(t, host, port).then(
    () => null,
    (err: NodeJS.ErrnoException) => err,
  );
  assert.equal(second?.code, 'ECONNREFUSED', 'a second connection while the first is open is refused');

  first.socket.write('still here\n');
  const closed = nextEvent(p.server, 'stream-close', 3000);
  first.socket.end();
  const info = await first.closedWithin(3000);
  assert.equal(info.error, null);
  assert.equal(first.data().toString(), 'still here\n', 'the first connection relayed throughout');
  await closed;

  // The port listens again once the entry side has released it: a few quick tries at most.
  let ms: number | null = null;
  let lastError: unknown = null;
  for (let attempt = 0; attempt < 20 && ms === null; attempt++) {
    try {
      ms = await echoRound(t, host, port, 64 * 1024);
    } catch (err) {
      lastError = err;
      await new Promise((resolve) => setImmediate(resolve));
    }
  }
  assert.ok(ms !== null, `a new connection works after the first closed (${String(lastError)})`);
});

/** A raw connection from `localAddress` to the link port that writes `bytes`; resolves with what it got back once closed. */
async function garbage(t: TestContext, port: number, localAddress: string, bytes: Buffer): Promise<{ reply: Buffer; conn: UserConn }> {
  const socket = net.connect({ host: LINK_HOST, port, localAddress });
  t.after(() => {
    socket.destroy();
  });
  const conn = track(socket);
  await withTimeout(
    new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    }),
    3000,
    'connect to the link port',
  );
  socket.write(bytes);
  await conn.closedWithin(3000);
  return { reply: conn.data(), conn };
}

/** Random bytes that start like nothing the server recognises (not TLS 0x16, not 'G'ET, not 'T'CPIPE). */
function randomGarbage(size: number): Buffer {
  const bytes = randomBytes(size);
  bytes[0] = 0x00;
  return bytes;
}

const HTTP_GET = Buffer.from('GET / HTTP/1.1\r\nHost: tcpipe\r\n\r\n');
const HTTP_POST = Buffer.from('POST /tcpipe HTTP/1.1\r\nHost: tcpipe\r\nContent-Length: 0\r\n\r\n');

test('garbage on the link port: closed with a logged reason; the server stays healthy and a client pairs afterwards', async (t) => {
  const echo = await startEchoTarget(t);
  const { server, log } = await startTestServer(t, { ports: [echo] });
  const linkPort = server.linkAddress?.port ?? 0;

  const random = await garbage(t, linkPort, '127.0.0.70', randomGarbage(4096));
  await log.waitFor(/WARN .*refused link from 127\.0\.0\.70:\d+: not a tcpipe link/, 2000);
  assert.ok(random.reply.includes('not a tcpipe link'), 'the refusal (a GOAWAY) carries the reason');

  const get = await garbage(t, linkPort, '127.0.0.71', HTTP_GET);
  assert.match(get.reply.toString('latin1'), /^HTTP\/1\.1 404/, 'an HTTP request gets an HTTP answer');
  await log.waitFor(/WARN .*refused link from 127\.0\.0\.71:\d+: HTTP GET \/: wrong path/, 2000);

  await garbage(t, linkPort, '127.0.0.72', HTTP_POST);
  await log.waitFor(/WARN .*refused link from 127\.0\.0\.72:\d+: not a tcpipe link/, 2000);
  assert.ok(!server.linkUp);

  // A real client still pairs, and relays.
  const serverUp = nextEvent(server, 'link-up', 5000);
  const { client } = await startTestClient(t, { port: linkPort });
  await serverUp;
  assert.ok(client.linkUp || (await nextEvent(client, 'link-up', 2000)) !== undefined);
  const { host, port } = entryOf(server);
  await echoRound(t, host, port, 256 * 1024);
});

test('garbage on the link port while a startTestPair is live does not disturb the startTestPair', async (t) => {
  const echo = await startEchoTarget(t);
  const p = await startTestPair(t, { serverPorts: [echo] });
  const downs = [...[p.server, p.client].map((i) => recordEvents(i, 'link-down'))];
  const { host, port } = entryOf(p.server);
  const held = await connectUser(t, host, port);
  held.socket.write('before\n');

  await Promise.all([
    garbage(t, p.linkPort, '127.0.0.73', randomGarbage(64 * 1024)),
    garbage(t, p.linkPort, '127.0.0.74', HTTP_GET),
    garbage(t, p.linkPort, '127.0.0.75', HTTP_POST),
  ]);
  for (const source of ['73', '74', '75']) {
    await p.serverLog.waitFor(new RegExp(`WARN .*refused link from 127\\.0\\.0\\.${source}:\\d+`), 2000);
  }

  held.socket.end('after\n');
  const info = await held.closedWithin(3000);
  assert.equal(info.error, null);
  assert.equal(held.data().toString(), 'before\nafter\n', 'the stream open during the garbage relayed throughout');
  await echoRound(t, host, port, MiB);
  assert.deepEqual(downs, [[], []], 'no link-down on either side');
  assert.ok(p.server.linkUp && p.client.linkUp);
  assert.ok(!p.serverLog.has(/partner_replaced|replacing it/));
  assert.equal(p.server.status().linksUp, 1, 'still the first link');
});

test('a second client is refused while the first is alive; both sides log it and the first startTestPair keeps relaying', async (t) => {
  const echo = await startEchoTarget(t);
  const p = await startTestPair(t, { serverPorts: [echo] });
  const downs = [p.server, p.client].map((i) => recordEvents(i, 'link-down'));
  const second = await startTestClient(t, { port: p.linkPort, name: 'second' });

  const serverLine = await p.serverLog.waitFor(/WARN .*refused partner 127\.0\.0\.1:\d+: already paired with 127\.0\.0\.1:\d+, which answered/, 5000);
  assert.ok(serverLine.length > 0);
  await second.log.waitFor(/WARN .*no link: refused by the partner: this server already has a live partner \(127\.0\.0\.1:\d+\)/, 5000);
  assert.ok(!second.client.linkUp, 'the second client has no link');
  await second.client.stop();

  const { host, port } = entryOf(p.server);
  await echoRound(t, host, port, MiB);
  const exits = p.client.status().streamsTotal;
  assert.equal(exits, 1, 'the stream went through the first client');
  assert.deepEqual(downs, [[], []], 'the first startTestPair never went down');
  assert.equal(p.server.status().linksUp, 1);
});

test('a silently dead first client is replaced by a newcomer after an unanswered partner check', async (t) => {
  const echo = await startEchoTarget(t);
  const checkMs = 1000;
  // Long heartbeats: only the partner check can find the first client dead in time.
  const tunables = { heartbeatSeconds: 30, limits: { partnerCheckTimeoutMs: checkMs } };
  const { server, log } = await startTestServer(t, { ports: [echo], ...tunables });
  const linkPort = server.linkAddress?.port ?? 0;
  const relay = await startChaosRelay(t, LINK_HOST, linkPort);
  const firstUp = nextEvent(server, 'link-up', 5000);
  const first = await startTestClient(t, { port: relay.port, name: 'first', ...tunables });
  await firstUp;

  const { host, port } = entryOf(server);
  await echoRound(t, host, port, 64 * 1024);
  assert.equal(first.client.status().streamsTotal, 1);

  relay.blackhole(); // the first client's link goes silent: nothing closes, nothing gets through
  const serverDown = nextEvent(server, 'link-down', 5000);
  const serverUp = nextEvent(server, 'link-up', 5000);
  const started = performance.now();
  const newcomer = await startTestClient(t, { port: linkPort, name: 'newcomer', ...tunables });
  await nextEvent(newcomer.client, 'link-up', 5000);
  const ms = performance.now() - started;
  assert.ok(ms >= checkMs - 50, `the server waited for the partner check (${ms.toFixed(0)} ms)`);
  assertWithin(t, ms, checkMs + 1500, 'newcomer linked (partner check included)');
  await serverDown;
  await serverUp;
  await log.waitFor(new RegExp(`WARN .*partner 127\\.0\\.0\\.1:\\d+ did not answer within ${escape(checkMs / 1000)}s: replacing it with 127\\.0\\.0\\.1:\\d+`), 1000);

  await echoRound(t, host, port, MiB);
  assert.equal(newcomer.client.status().streamsTotal, 1, 'the newcomer relays now');
  assert.equal(first.client.status().streamsTotal, 1, 'not the first client');
});
