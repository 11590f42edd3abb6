/**
 * The real command as child processes on loopback: a client killed with
 * SIGKILL while streams are in flight (the server closes its users and a new
 * client re-forms the pair), and SIGTERM of either side (exit status 0 within
 * about 2 s, the partner logs why, the user's connection is closed).
 *
 * Layout (see test/helpers/loopback.ts): link on 127.0.0.1, entry ports on
 * 127.0.0.2:P, targets on 127.0.0.3:P. The CLI refuses port 0, so its link
 * port comes from a port-0 listener that was just closed.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { TestContext } from 'node:test';
import { spawnCli } from '../helpers/cli.js';
import { entryOf, eventCount, linkUpWith, nextEvent, startTestServer } from '../helpers/loopback.js';
import { ENTRY_HOST, freePort, LINK_HOST, MiB } from '../helpers/net.js';
import { startEchoTarget } from '../helpers/targets.js';
import { echoRound, liveUser, track, type UserConn } from '../helpers/users.js';
import { assertWithin, withTimeout } from '../helpers/wait.js';

/** Keeps writing to the socket (respecting backpressure) until it dies: data always in flight. */
function keepSending(user: UserConn): void {
  const chunk = Buffer.alloc(64 * 1024, 0x61);
  const pump = (): void => {
    while (!user.socket.destroyed && user.socket.write(chunk));
  };
  user.socket.on('drain', pump);
  pump();
}

test('partner killed (SIGKILL) with streams in flight: the server closes its users, a new client re-forms the pair', { timeout: 30_000 }, async (t) => {
  const echo = await startEchoTarget(t);
  const { server, log } = await startTestServer(t, { ports: [echo], heartbeatSeconds: 1 });
  const linkPort = server.linkAddress?.port ?? 0;
  const args = ['-c', `${LINK_HOST}:${linkPort}`, '-t', '127.0.0.3', '--heartbeat=1'];

  const first = spawnCli(t, args);
  await linkUpWith(server, first, 10_000);
  const { host, port } = entryOf(server);
  const users = [await liveUser(t, host, port), await liveUser(t, host, port), await liveUser(t, host, port)];
  for (const user of users) keepSending(user);
  const closes = eventCount(server, 'stream-close', users.length, 5000);
  const down = nextEvent(server, 'link-down', 5000);

  const started = performance.now();
  first.child.kill('SIGKILL');
  for (const user of users) {
    const info = await user.closedWithin(3000);
    assertWithin(t, info.at - started, 1500, "a user's connection closed after the kill");
    assert.ok(info.hadError, 'abortively');
  }
  await down;
  for (const close of await closes) assert.match(close.reason, /link lost/);
  assert.equal(server.openStreams, 0);
  await log.waitFor(/link down with 127\.0\.0\.1:\d+: .*\(closing 3 connections\)/, 1000);

  // A new client: the pair re-forms without anything done on the server.
  const second = spawnCli(t, args);
  await linkUpWith(server, second, 10_000);
  await second.waitFor(/link up with 127\.0\.0\.1:\d+/, 5000);
  await echoRound(t, host, port, MiB);
  assert.equal(server.status().linksUp, 2);
});

/** A CLI server and a CLI client, linked, with one live user connection from the server's port to an echo target. */
async function cliPair(
  t: TestContext,
): Promise<{ server: ReturnType<typeof spawnCli>; client: ReturnType<typeof spawnCli>; user: UserConn; remote: UserConn }> {
  const echo = await startEchoTarget(t);
  const linkPort = await freePort(LINK_HOST);
  echo.releaseEntry();
  const server = spawnCli(t, ['-s', String(linkPort), '-p', `${ENTRY_HOST}:${echo.port}`, '--heartbeat=1']);
  await server.waitFor(/tcpipe \S+ server: link port/, 10_000);
  const client = spawnCli(t, ['-c', `${LINK_HOST}:${linkPort}`, '-t', '127.0.0.3', '--heartbeat=1']);
  await Promise.all([server.waitFor(/link up with/, 10_000), client.waitFor(/link up with/, 10_000)]);
  const user = await liveUser(t, ENTRY_HOST, echo.port);
  const remote = track(await echo.connection(0, 1000));
  keepSending(user); // data in flight both ways (the target echoes) when the signal comes
  return { server, client, user, remote };
}

/** SIGTERM to one end of a CLI pair: what the other end logs, and what the stopped one logs first (if anything). */
const SIGTERMS = [
  { stopped: 'server', partner: 'client', partnerSees: /link down with 127\.0\.0\.1:\d+: partner said goodbye: partner shutting down \(SIGTERM\)/, ownLine: /SIGTERM: stopping/ },
  { stopped: 'client', partner: 'server', partnerSees: /link down with 127\.0\.0\.1:\d+: partner said goodbye: client shutting down/, ownLine: null },
] as const;

for (const c of SIGTERMS) {
  test(`SIGTERM to the ${c.stopped}: it exits 0 within 2 s, the ${c.partner} logs why, the user is closed`, { timeout: 30_000 }, async (t) => {
    const ends = await cliPair(t);
    const { user, remote } = ends;
    const stopped = ends[c.stopped];
    const partner = ends[c.partner];
    const started = performance.now();
    stopped.child.kill('SIGTERM');
    const exit = await withTimeout(stopped.exited, 5000, `the ${c.stopped} to exit`);
    assert.equal(exit.code, 0, `exit status (output:\n${stopped.output()})`);
    assertWithin(t, exit.at - started, 2000, 'exit after SIGTERM');
    if (c.ownLine !== null) await stopped.waitFor(c.ownLine, 100);
    await partner.waitFor(c.partnerSees, 2000);
    const info = await user.closedWithin(2000);
    assertWithin(t, info.at - started, 2000, 'user closed');
    const remoteInfo = await remote.closedWithin(2000);
    assertWithin(t, remoteInfo.at - started, 2000, "target's connection closed");
    if (c.stopped === 'client') assert.ok(info.hadError, 'abortively: the stream did not finish');
    assert.equal(partner.child.exitCode, null, `the ${c.partner} keeps running${c.partner === 'client' ? ' (and retrying)' : ''}`);
  });
}
