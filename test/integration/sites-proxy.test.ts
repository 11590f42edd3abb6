/**
 * One server, many sites, with main's PROXY protocol and UDP: a server with
 * [[client]] tables reads the load balancer's PROXY header on every site's
 * entry ports and the site's route writes one to its target naming the same
 * user; a bad header is refused with the site's name; /udp is refused for a
 * server with clients (UDP is for one partner).
 */
import { test } from 'node:test';
import type { TestContext } from 'node:test';
import assert from 'node:assert/strict';
import type net from 'node:net';
import { startClient, startServer, type Tcpipe } from '../../src/index.js';
import { generateSecret } from '../../src/security/secret.js';
import { TcpipeError } from '../../src/errors.js';
import { ENTRY_HOST, LINK_HOST, TARGET_HOST, TEST_LIMITS, captureLog, connectUser, nextEvent, startTarget, withTimeout, type Target } from '../helpers/loopback.js';

/** Resolves with what the target's first connection received once it holds `want` bytes. */
function received(target: Target, want: number): Promise<string> {
  return withTimeout(
    target.connection(0, 5000).then(
      (socket: net.Socket) =>
        new Promise<string>((resolve) => {
          const chunks: Buffer[] = [];
          socket.on('data', (chunk: Buffer) => {
            chunks.push(chunk);
            const all = Buffer.concat(chunks);
            if (all.length >= want) resolve(all.toString('latin1'));
          });
        }),
    ),
    5000,
    `${want} bytes at the target`,
  );
}

async function site(t: TestContext, linkPort: number, secret: string, target: Target): Promise<Tcpipe> {
  const client = await startClient({
    host: LINK_HOST,
    port: linkPort,
    proxy: null,
    secret,
    routes: [{ port: target.port, host: TARGET_HOST, proxyProtocol: 'v1' }],
    heartbeatSeconds: 5,
    limits: TEST_LIMITS,
  });
  t.after(() => client.stop());
  return client;
}

test('[[client]] sites with --accept-proxy-protocol: the user the header names reaches the site\'s target in its own PROXY header; a bad header is refused for that client', async (t) => {
  const secrets = { a: generateSecret(), b: generateSecret() };
  const ta = await startTarget(t, () => undefined);
  const tb = await startTarget(t, () => undefined);
  ta.releaseEntry();
  tb.releaseEntry();
  const log = captureLog('server');
  const server = await startServer({
    port: 0,
    host: LINK_HOST,
    clients: [
      { name: 'site-a', secret: [secrets.a], ports: [{ host: ENTRY_HOST, port: ta.port }] },
      { name: 'site-b', secret: [secrets.b], ports: [{ host: ENTRY_HOST, port: tb.port }] },
    ],
    acceptProxyProtocol: true,
    logger: log.logger,
    heartbeatSeconds: 5,
    limits: TEST_LIMITS,
  });
  t.after(() => server.stop());
  const linkPort = server.linkAddress?.port ?? 0;
  const ups = ['site-a', 'site-b'].map((name) => nextEvent(server, 'link-up', 5000, (e) => e.client === name));
  await site(t, linkPort, secrets.a, ta);
  await site(t, linkPort, secrets.b, tb);
  await Promise.all(ups);

  const user = await connectUser(t, ENTRY_HOST, ta.port);
  user.socket.write('PROXY TCP4 192.0.2.7 198.51.100.1 4242 443\r\nhello');
  const expected = 'PROXY TCP4 192.0.2.7 198.51.100.1 4242 443\r\nhello';
  assert.equal(await received(ta, expected.length), expected, "site-a's target learns the user the load balancer named");
  const stream = server.status().streams.find((s) => s.client === 'site-a');
  assert.equal(stream?.peer, '192.0.2.7:4242', 'status names the user, under site-a');

  const refused = nextEvent(server, 'refused', 5000, (r) => r.kind === 'bad_proxy_header');
  const bad = await connectUser(t, ENTRY_HOST, tb.port);
  bad.socket.write('GET / HTTP/1.0\r\n\r\n');
  const event = await refused;
  assert.equal(event.client, 'site-b', 'the refusal names the client whose port it was');
  await log.waitFor(/closed connection on port \d+ from 127\.0\.0\.1:\d+: .*PROXY/, 5000);
});

test('a server with clients refuses /udp entry ports (UDP serves one partner)', async () => {
  await assert.rejects(
    startServer({ port: 0, host: LINK_HOST, clients: [{ name: 'x', secret: [generateSecret()], ports: [{ port: 61999, protocol: 'udp' }] }] }),
    (err: unknown) => err instanceof TcpipeError && /client 'x': \/udp ports are for a server without clients/.test(err.message),
  );
});

test('a site with a /udp route is refused at the handshake by a server with clients (it offers no capability udp), logged on both sides', async (t) => {
  const secret = generateSecret();
  const serverLog = captureLog('server');
  const server = await startServer({
    port: 0,
    host: LINK_HOST,
    clients: [{ name: 'site-a', secret: [secret], ports: [] }],
    logger: serverLog.logger,
    heartbeatSeconds: 5,
    limits: TEST_LIMITS,
  });
  t.after(() => server.stop());
  const clientLog = captureLog('site-a');
  const client = await startClient({
    host: LINK_HOST,
    port: server.linkAddress?.port ?? 0,
    proxy: null,
    secret,
    routes: [{ port: 5353, host: TARGET_HOST, protocol: 'udp' }],
    logger: clientLog.logger,
    heartbeatSeconds: 5,
    limits: TEST_LIMITS,
  });
  t.after(() => client.stop());
  const line = /lacks capability 'udp', which the \/udp route for port 5353 needs/;
  await clientLog.waitFor(line, 5000);
  await serverLog.waitFor(line, 5000);
  assert.equal(server.linkUp, false);
});
