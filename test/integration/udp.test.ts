/**
 * UDP through the link (issue 20), on loopback: flows each getting only
 * their own replies, datagram boundaries kept (zero-length and the largest),
 * the idle timeout, the flow cap, ICMP errors, routes, drops under overload,
 * a partner without udp, and UDP beside secrets, WebSocket and resumption.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { randomBytes } from 'node:crypto';
import dgram from 'node:dgram';
import { FlowCloseCode } from '../../src/protocol/constants.js';
import { startUdpEcho, udpPair, udpUser, roundTrip, closeQuietly } from '../helpers/udp.js';

describe('udp flows', () => {
  test('many concurrent flows, each getting only its own replies, both directions of the pair', async (t) => {
    for (const entryIs of ['server', 'client'] as const) {
      const target = await startUdpEcho(t);
      const pair = await udpPair(t, { entryIs, target: { host: '127.0.0.3', port: target.port } });
      const users = await Promise.all(Array.from({ length: 40 }, () => udpUser(t, pair.address)));
      // Every user sends 5 tagged datagrams at once, all users together.
      for (let round = 0; round < 5; round++) users.forEach((u, i) => u.send(`user ${i} round ${round}`));
      await Promise.all(
        users.map(async (u, i) => {
          const got = new Set<string>();
          while (got.size < 5) {
            const reply = (await u.next(5000)).toString();
            assert.match(reply, new RegExp(`^user ${i} round \\d$`), `user ${i} got ${reply}`);
            got.add(reply);
          }
        }),
      );
      const entry = pair.entry.status().udp;
      const exit = pair.exit.status().udp;
      assert.equal(entry.flows, 40);
      assert.equal(exit.flows, 40);
      assert.equal(entry.datagramsOut, 200);
      assert.equal(entry.datagramsIn, 200);
      assert.equal(new Set(target.received.map((r) => r.from)).size, 40, 'one target socket per flow');
      assert.equal(Object.values(entry.dropped).reduce((a, b) => a + b, 0), 0);
      await Promise.all([pair.entry.stop(), pair.exit.stop()]);
    }
  });

  test('datagram boundaries: zero-length, one byte, the largest over IPv4 (65,507 bytes), in order', async (t) => {
    const target = await startUdpEcho(t);
    const pair = await udpPair(t, { target: { host: '127.0.0.3', port: target.port } });
    const user = await udpUser(t, pair.address);
    user.socket.setRecvBufferSize(1024 * 1024);
    user.socket.setSendBufferSize(1024 * 1024);
    const sizes = [0, 1, 1400, 65_507, 0, 9000, 65_507, 3];
    const sent = sizes.map((n) => randomBytes(n));
    for (const d of sent) user.send(d);
    for (const [i, d] of sent.entries()) {
      const reply = await user.next(5000);
      assert.equal(reply.length, d.length, `datagram ${i}`);
      assert.ok(reply.equals(d), `datagram ${i} intact`);
    }
    assert.equal(pair.exit.status().udp.flows, 1);
  });

  test('a flow ends after --udp-timeout without traffic, on each side, and -v logs it', async (t) => {
    const target = await startUdpEcho(t);
    const pair = await udpPair(t, {
      target: { host: '127.0.0.3', port: target.port },
      entry: { limits: { udpTimeoutSeconds: 0.4 } },
      exit: { limits: { udpTimeoutSeconds: 0.4 } },
    });
    const user = await udpUser(t, pair.address);
    assert.equal((await roundTrip(user, 'ping')).toString(), 'ping');
    await pair.entryLog.waitFor(/flow 1 open on port \d+\/udp \(entry, from 127\.0\.0\.1:\d+\)/, 1000);
    await pair.exitLog.waitFor(/flow 1 open on port \d+\/udp \(exit, from 127\.0\.0\.1:\d+ to 127\.0\.0\.3:\d+\)/, 1000);
    await pair.entryLog.waitFor(/flow 1 closed on port \d+\/udp after 0\.\d+s: 1 datagrams \(4 B\) in, 1 \(4 B\) out \(idle\)/, 3000);
    await pair.exitLog.waitFor(/flow 1 closed .*\((idle|the partner ended it: idle)\)/, 3000);
    assert.equal(pair.entry.status().udp.flows, 0);
    assert.equal(pair.exit.status().udp.flows, 0);
    // The user's next datagram opens a new flow.
    assert.equal((await roundTrip(user, 'again')).toString(), 'again');
    assert.equal(pair.entry.status().udp.flowsTotal, 2);
  });

  test('--udp-max-flows: the flow idle longest goes first, and its user is served again on a new flow', async (t) => {
    const target = await startUdpEcho(t);
    const pair = await udpPair(t, { target: { host: '127.0.0.3', port: target.port }, exit: { limits: { udpMaxFlows: 4 } } });
    const users = await Promise.all(Array.from({ length: 6 }, () => udpUser(t, pair.address)));
    for (const [i, u] of users.entries()) assert.equal((await roundTrip(u, `u${i}`)).toString(), `u${i}`);
    assert.equal(pair.exit.status().udp.flows, 4);
    await pair.exitLog.waitFor(/flow 1 closed .*flow limit/, 1000);
    await pair.exitLog.waitFor(/flow 2 closed .*flow limit/, 1000);
    // The entry side heard of it and forgot flows 1 and 2.
    await pair.entryLog.waitFor(/flow 2 closed .*the partner ended it/, 2000);
    assert.deepEqual(
      pair.entry.status().udp.flowList.map((f) => f.id).sort(),
      [3, 4, 5, 6],
    );
    const [first] = users;
    assert.ok(first !== undefined);
    assert.equal((await roundTrip(first, 'back')).toString(), 'back');
    assert.equal(pair.exit.status().udp.flows, 4);
  });

  test('a flood of new source addresses stays within the cap on both sides, memory bounded', async (t) => {
    const target = await startUdpEcho(t);
    const pair = await udpPair(t, {
      target: { host: '127.0.0.3', port: target.port },
      common: { limits: { udpMaxFlows: 50 } },
    });
    const sockets: dgram.Socket[] = [];
    for (let i = 0; i < 300; i++) {
      const s = dgram.createSocket('udp4');
      s.bind(0, '127.0.0.1');
      await once(s, 'listening');
      t.after(() => closeQuietly(s));
      sockets.push(s);
      s.send(`flood ${i}`, pair.address.port, pair.address.host);
      // bind and send complete without an I/O turn: give the entry socket one to read in, or
      // 300 datagrams overflow its receive buffer (212,992 bytes hold 256 small ones) before it runs.
      await new Promise((resolve) => setImmediate(resolve));
    }
    const last = await udpUser(t, pair.address);
    assert.equal((await roundTrip(last, 'last')).toString(), 'last');
    assert.ok(pair.entry.status().udp.flows <= 50, `entry flows ${pair.entry.status().udp.flows}`);
    assert.ok(pair.exit.status().udp.flows <= 50, `exit flows ${pair.exit.status().udp.flows}`);
    assert.ok(pair.entry.status().udp.flowsTotal >= 250);
  });
});

describe('udp refusals and errors', () => {
  test('ICMP port unreachable from the target ends the flow, logged, no socket left', async (t) => {
    const dead = dgram.createSocket('udp4');
    dead.bind(0, '127.0.0.3');
    await once(dead, 'listening');
    const port = dead.address().port;
    dead.close();
    const pair = await udpPair(t, { target: { host: '127.0.0.3', port } });
    const user = await udpUser(t, pair.address);
    user.send('anyone?');
    user.send('anyone?');
    await pair.exitLog.waitFor(/flow 1 on port \d+\/udp: 127\.0\.0\.3:\d+ refused \(ICMP port unreachable\)/, 3000);
    await pair.entryLog.waitFor(/flow 1 closed .*the partner ended it: 127\.0\.0\.3:\d+ refused/, 3000);
    assert.equal(pair.exit.status().udp.flows, 0);
    assert.equal(pair.entry.status().udp.flows, 0);
  });

  test('a port without a /udp route is refused with a reason on the exit side and ends the flow', async (t) => {
    const pair = await udpPair(t, { exit: { allow: [53] } });
    const user = await udpUser(t, pair.address);
    user.send('x');
    await pair.exitLog.waitFor(/refused flow 1 for port \d+\/udp from the partner: udp: port \d+ is not in --allow/, 3000);
    await pair.entryLog.waitFor(/flow 1 closed .*the partner ended it: udp: port \d+ is not in --allow/, 3000);
    assert.equal(pair.entry.status().udp.flows, 0);
    assert.equal(FlowCloseCode.NOT_ALLOWED, 3);
  });
});
