/**
 * The link's life on loopback, through the library: a link that goes silent
 * (heartbeat), a link that is cut, and a server that is replaced on the same
 * port. Each time users' connections are closed and the client re-forms the
 * pair by itself.
 *
 * Layout (see test/helpers/loopback.ts): link on 127.0.0.1 (through a chaos
 * relay where it must fail), entry ports on 127.0.0.2:P, targets on 127.0.0.3:P.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Tcpipe } from '../../src/index.js';
import { entryOf, eventCount, nextEvent, startTestClient, startTestPair, startTestServer } from '../helpers/loopback.js';
import { LINK_HOST } from '../helpers/net.js';
import { startEchoTarget } from '../helpers/targets.js';
import { echoRound, liveUser, type UserConn } from '../helpers/users.js';
import { assertWithin } from '../helpers/wait.js';
import type { TestContext } from 'node:test';

/** A user connection through `entry`'s i-th port, proven end to end with one echoed line. */
function liveUserVia(t: TestContext, entry: Tcpipe, index = 0): Promise<UserConn> {
  const { host, port } = entryOf(entry, index);
  return liveUser(t, host, port);
}

test('silent link: both sides declare it dead within the heartbeat timeout and close their users', async (t) => {
  const behindClient = await startEchoTarget(t);
  const behindServer = await startEchoTarget(t);
  const p = await startTestPair(t, { serverPorts: [behindClient], clientPorts: [behindServer], viaRelay: true, common: { heartbeatSeconds: 1 } });
  const users = [await liveUserVia(t, p.server), await liveUserVia(t, p.client)];
  const downs = [nextEvent(p.server, 'link-down', 3000), nextEvent(p.client, 'link-down', 3000)] as const;
  // Each side holds two streams: the entry of its own user, the exit of the other side's user.
  const closes = [eventCount(p.server, 'stream-close', 2, 3000), eventCount(p.client, 'stream-close', 2, 3000)];
  const timed = (promise: Promise<unknown>): Promise<number> => promise.then(() => performance.now());

  const started = performance.now();
  p.relay?.blackhole(); // nothing gets through any more, and nothing is closed
  const [serverDownAt, clientDownAt] = await Promise.all(downs.map(timed));
  for (const [side, at] of [
    ['server', serverDownAt],
    ['client', clientDownAt],
  ] as const) {
    assertWithin(t, (at ?? Infinity) - started, 1500, `${side} declared the silent link dead (heartbeat 1 s)`);
  }
  assert.match((await downs[0]).reason, /heartbeat timeout/);
  assert.match((await downs[1]).reason, /heartbeat timeout/);
  for (const user of users) {
    const info = await user.closedWithin(1000);
    assertWithin(t, info.at - started, 1500, "user's connection closed");
    assert.ok(info.hadError, 'abortively (the stream was cut short)');
  }
  for (const close of (await Promise.all(closes)).flat()) assert.match(close.reason, /link lost: .*heartbeat timeout/);
  assert.equal(p.server.openStreams + p.client.openStreams, 0);
});

test('cut link: users are closed at once, and the client re-forms the startTestPair by itself', async (t) => {
  const echo = await startEchoTarget(t);
  const p = await startTestPair(t, { serverPorts: [echo], viaRelay: true });
  const user = await liveUserVia(t, p.server);
  const serverDown = nextEvent(p.server, 'link-down', 2000);
  const clientDown = nextEvent(p.client, 'link-down', 2000);
  const serverUp = nextEvent(p.server, 'link-up', 5000);
  const clientUp = nextEvent(p.client, 'link-up', 5000);

  const started = performance.now();
  p.relay?.cut();
  await Promise.all([serverDown, clientDown]);
  const info = await user.closedWithin(1000);
  assertWithin(t, info.at - started, 500, "user's connection closed after the cut");
  assert.ok(info.hadError);

  await Promise.all([serverUp, clientUp]);
  assert.equal(p.relay?.connections, 2, 'the client dialed again through the relay');
  const { host, port } = entryOf(p.server);
  await echoRound(t, host, port, 256 * 1024);
});

test('server replaced on the same link port: the client reconnects within its backoff and relays again', async (t) => {
  const echo = await startEchoTarget(t);
  const first = await startTestServer(t, { ports: [echo], name: 'server-1' });
  const linkPort = first.server.linkAddress?.port ?? 0;
  const firstUp = nextEvent(first.server, 'link-up', 5000);
  const { client, log } = await startTestClient(t, { port: linkPort, limits: { backoffMinMs: 50, backoffMaxMs: 200 } });
  await firstUp;
  const user = await liveUserVia(t, first.server);

  const clientDown = nextEvent(client, 'link-down', 3000);
  await first.server.stop();
  const down = await clientDown;
  assert.match(down.reason, /partner said goodbye: shutting down/);
  const info = await user.closedWithin(1000);
  assert.ok(info.hadError, "the user's connection was closed");

  const clientUp = nextEvent(client, 'link-up', 3000);
  const started = performance.now();
  const second = await startTestServer(t, { ports: [echo], port: linkPort, name: 'server-2' });
  await clientUp;
  assertWithin(t, performance.now() - started, 1000, 'reconnected after the new server started (backoff at most 200 ms)');
  assert.equal(second.server.linkAddress?.port, linkPort);
  assert.ok(second.server.linkUp || (await nextEvent(second.server, 'link-up', 1000)) !== undefined);
  await log.waitFor(/link lost: partner said goodbye: shutting down; retrying in/, 1000);
  const { host, port } = entryOf(second.server);
  await echoRound(t, host, port, 256 * 1024);
  assert.equal(client.status().linksUp, 2);
  assert.equal(LINK_HOST, second.server.linkAddress?.address);
});
