/**
 * Admission per client on a server with many sites: a silent owner is replaced by a
 * newcomer with its secret after the partner check, and that check (3 s here) holds up
 * no other client's admission. Loopback, through the library.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startClient, startServer, type Tcpipe } from '../../src/index.js';
import { generateSecret } from '../../src/security/secret.js';
import { LINK_HOST, TEST_LIMITS, captureLog, nextEvent, startChaosRelay } from '../helpers/loopback.js';

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
