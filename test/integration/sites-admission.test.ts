/**
 * Admission and resumption per client on a server with many sites: a silent owner is replaced by a
 * newcomer with its secret after the partner check, and that check (3 s here) holds up
 * no other client's admission. Loopback, through the library.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { startClient, startServer, type Tcpipe } from '../../src/index.js';
import { generateSecret } from '../../src/security/secret.js';
import {
  ENTRY_HOST,
  LINK_HOST,
  TARGET_HOST,
  TEST_LIMITS,
  captureLog,
  connectUser,
  nextEvent,
  startChaosRelay,
  startTarget,
  withTimeout,
  type UserConn,
} from '../helpers/loopback.js';

test('a silent site is replaced by a newcomer with its secret; its partner check does not delay another site', { timeout: 30_000 }, async (t) => {
  const limits = { ...TEST_LIMITS, partnerCheckTimeoutMs: 3000 };
  const secrets = { a: generateSecret(), b: generateSecret(), c: generateSecret() };
  const log = captureLog('server');
  const server = await startServer({
    port: 0,
    host: LINK_HOST,
    clients: [
      { name: 'site-a', secret: [secrets.a] },
      { name: 'site-b', secret: [secrets.b] },
      { name: 'site-c', secret: [secrets.c] },
    ],
    logger: log.logger,
    heartbeatSeconds: 30,
    limits,
  });
  t.after(() => server.stop());
  const linkPort = server.linkAddress?.port ?? 0;
  const dial = async (secret: string, port = linkPort): Promise<Tcpipe> => {
    const client = await startClient({ host: LINK_HOST, port, proxy: null, secret: [secret], heartbeatSeconds: 30, limits });
    t.after(() => client.stop());
    return client;
  };
  const relay = await startChaosRelay(t, LINK_HOST, linkPort);
  const ups = ['site-a', 'site-b'].map((name) => nextEvent(server, 'link-up', 5000, (e) => e.client === name));
  await dial(secrets.a, relay.port);
  const b = await dial(secrets.b);
  await Promise.all(ups);

  relay.blackhole(); // site-a's owner goes silent: its link stays open and answers nothing
  const order: string[] = [];
  const replaced = log.waitFor(/partner .* did not answer within 3s: replacing it/, 10_000).then(() => order.push('site-a replaced'));
  const newA = nextEvent(server, 'link-up', 10_000, (e) => e.client === 'site-a');
  const cUp = nextEvent(server, 'link-up', 10_000, (e) => e.client === 'site-c').then(() => order.push('site-c up'));
  await dial(secrets.a);
  await dial(secrets.c);
  await Promise.all([replaced, cUp, newA]);
  assert.deepEqual(order, ['site-c up', 'site-a replaced'], "site-c's admission did not wait for site-a's partner check");
  assert.ok(b.linkUp, 'site-b kept its link');
  assert.ok(!log.has(/link down with .*client 'site-b'/));
});

test('resumption per site: site-a\'s cut link resumes its held connection byte for byte; site-b is not touched', { timeout: 30_000 }, async (t) => {
  const targets = { a: await startTarget(t, (s) => s.pipe(s)), b: await startTarget(t, (s) => s.pipe(s)) };
  targets.a.releaseEntry();
  targets.b.releaseEntry();
  const secrets = { a: generateSecret(), b: generateSecret() };
  const log = captureLog('server');
  const server = await startServer({
    port: 0,
    host: LINK_HOST,
    clients: [
      { name: 'site-a', secret: [secrets.a], ports: [{ host: ENTRY_HOST, port: targets.a.port }] },
      { name: 'site-b', secret: [secrets.b], ports: [{ host: ENTRY_HOST, port: targets.b.port }] },
    ],
    resumeSeconds: 10,
    logger: log.logger,
    limits: TEST_LIMITS,
  });
  t.after(() => server.stop());
  const linkPort = server.linkAddress?.port ?? 0;
  const relay = await startChaosRelay(t, LINK_HOST, linkPort);
  const ups = ['site-a', 'site-b'].map((name) => nextEvent(server, 'link-up', 5000, (e) => e.client === name));
  const dial = async (secret: string, port: number, target: number): Promise<Tcpipe> => {
    const client = await startClient({ host: LINK_HOST, port, proxy: null, secret: [secret], resumeSeconds: 10, routes: [{ port: target, host: TARGET_HOST }], limits: TEST_LIMITS });
    t.after(() => client.stop());
    return client;
  };
  await dial(secrets.a, relay.port, targets.a.port);
  await dial(secrets.b, linkPort, targets.b.port);
  await Promise.all(ups);
  const users = { a: await connectUser(t, ENTRY_HOST, targets.a.port), b: await connectUser(t, ENTRY_HOST, targets.b.port) };
  const sent = { a: randomBytes(200_000), b: randomBytes(200_000) };
  const echoed = (user: UserConn, size: number): Promise<void> =>
    withTimeout(
      new Promise<void>((resolve) => {
        const check = (): void => {
          if (user.receivedBytes >= size) resolve();
        };
        user.socket.on('data', check);
        check();
      }),
      10_000,
      `${size} bytes back`,
    );
  users.a.socket.write(sent.a.subarray(0, 100_000));
  users.b.socket.write(sent.b.subarray(0, 100_000));
  await Promise.all([echoed(users.a, 100_000), echoed(users.b, 100_000)]);

  const resumed = nextEvent(server, 'link-resumed', 10_000);
  relay.cut();
  await log.waitFor(/link lost with .*holding 1 connections/, 5000);
  users.a.socket.write(sent.a.subarray(100_000));
  users.b.socket.write(sent.b.subarray(100_000));
  const info = await resumed;
  assert.equal(info.streams, 1);
  await Promise.all([echoed(users.a, 200_000), echoed(users.b, 200_000)]);
  assert.ok(users.a.data().equals(sent.a), "site-a's connection, byte for byte across the resumption");
  assert.ok(users.b.data().equals(sent.b), "site-b's connection, byte for byte");
  assert.ok(!log.has(/client 'site-b'.*(held|down)|link (lost|down) with .*client 'site-b'/), 'site-b never lost its link');
});
