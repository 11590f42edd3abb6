/**
 * UDP through the link (issue 20), on loopback: flows each getting only
 * their own replies, datagram boundaries kept (zero-length and the largest),
 * the idle timeout, the flow cap, ICMP errors, routes, drops under overload,
 * a partner without udp, and UDP beside secrets, WebSocket and resumption.
 */
import { describe, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { EventEmitter, once } from 'node:events';
import { randomBytes } from 'node:crypto';
import dgram from 'node:dgram';
import net from 'node:net';
import { startClient, startServer } from '../../src/index.js';
import { Capability, Flag, FlowCloseCode, FrameType, GoAwayCode, PREFACE } from '../../src/protocol/constants.js';
import { encodeDatagram, encodeFlowOpen } from '../../src/protocol/datagram.js';
import type { Frame } from '../../src/protocol/frame.js';
import { FrameDecoder, parseCodeAndReason } from '../../src/protocol/decode.js';
import { encodeHelloInfo } from '../../src/protocol/hello.js';
import { generateSecret } from '../../src/security/secret.js';
import { captureLog, freePort, LINK_HOST, nextEvent, spawnCli, startChaosRelay, TEST_LIMITS, withTimeout, type ChaosRelay } from '../helpers/loopback.js';
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

  test('IPv6: -p [::1]:P/udp and a target on [::1]', async (t) => {
    const target = await startUdpEcho(t, '::1');
    const pair = await udpPair(t, { entryHost: '::1', target: { host: '::1', port: target.port } });
    const user = await udpUser(t, pair.address, '::1');
    assert.equal((await roundTrip(user, 'over IPv6')).toString(), 'over IPv6');
    await pair.exitLog.waitFor(/flow 1 open on port \d+\/udp \(exit, from \[::1\]:\d+ to \[::1\]:\d+\)/, 2000);
    assert.match(pair.entry.status().udp.flowList[0]?.peer ?? '', /^\[::1\]:\d+$/);
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
    // A user who keeps trying opens a flow each time; the exit side's log does not repeat itself.
    for (const id of [2, 3, 4]) {
      user.send('x');
      await pair.entryLog.waitFor(new RegExp(`flow ${id} closed .*not in --allow`), 3000);
    }
    assert.equal(pair.exitLog.lines.filter((l) => /refused flow/.test(l)).length, 1);
    assert.equal(FlowCloseCode.NOT_ALLOWED, 3);
  });
});

/** Reads frames from a raw socket until a GOAWAY (after the preface), within 5 s. */
async function readGoAway(socket: net.Socket, expectPreface: boolean): Promise<{ code: number; reason: string }> {
  const decoder = new FrameDecoder({ maxDataPayload: 1 << 20, expectPreface });
  return withTimeout(
    new Promise((resolve, reject) => {
      socket.on('data', (chunk: Buffer) => {
        decoder.push(chunk);
        try {
          let frame;
          while ((frame = decoder.next()) !== null) if (frame.type === FrameType.GOAWAY) resolve(parseCodeAndReason(frame.payload));
        } catch (err) {
          reject(err as Error);
        }
      });
      socket.on('error', () => undefined);
    }),
    5000,
    'a GOAWAY',
  );
}

/** The HELLO of a tcpipe that predates capability udp (no key 10). */
function oldHello(role: 'client' | 'server'): Buffer {
  return encodeHelloInfo({ role, initialWindow: 256 * 1024, maxFramePayload: 64 * 1024, maxStreams: 1024, heartbeatMs: 15_000, software: 'tcpipe/0.0.9', capabilities: [] });
}

describe('udp with everything else', () => {
  test('a partner without udp is refused with the same clear line on both sides (server with a /udp port)', async (t) => {
    const log = captureLog('server');
    const server = await startServer({ port: 0, host: LINK_HOST, ports: [{ host: '127.0.0.2', port: 0, protocol: 'udp' }], logger: log.logger, limits: TEST_LIMITS });
    t.after(() => server.stop());
    const old = net.connect(server.linkAddress?.port ?? 0, LINK_HOST);
    t.after(() => old.destroy());
    old.write(Buffer.concat([PREFACE, oldHello('client')]));
    const { code, reason } = await readGoAway(old, true);
    assert.equal(code, GoAwayCode.MISSING_CAPABILITY);
    assert.match(reason, /the partner \(tcpipe\/0\.0\.9\) lacks capability 'udp', which the \/udp port 0 needs/);
    await log.waitFor(/refused link from .*lacks capability 'udp'/, 3000);
    assert.equal(server.linkUp, false);
  });

  test('a partner without udp is refused with the same clear line on both sides (client with a /udp route)', async (t) => {
    const goaway = new Promise<{ code: number; reason: string }>((resolve, reject) => {
      const fake = net.createServer((socket) => {
        socket.write(Buffer.concat([PREFACE, oldHello('server')]));
        readGoAway(socket, true).then(resolve, reject);
      });
      fake.listen(0, LINK_HOST);
      t.after(() => fake.close());
      fake.once('listening', () => {
        const log = captureLog('client');
        startClient({
          host: LINK_HOST,
          port: (fake.address() as net.AddressInfo).port,
          proxy: null,
          routes: [{ port: 5353, protocol: 'udp', host: '127.0.0.3', targetPort: 53 }],
          logger: log.logger,
          limits: TEST_LIMITS,
        }).then((client) => {
          t.after(() => client.stop());
          log.waitFor(/refused the partner: .*lacks capability 'udp', which the \/udp route for port 5353 needs/, 5000).catch(reject);
        }, reject);
      });
    });
    const { code, reason } = await goaway;
    assert.equal(code, GoAwayCode.MISSING_CAPABILITY);
    assert.match(reason, /lacks capability 'udp', which the \/udp route for port 5353 needs/);
  });

  test('with a shared secret, and over a WebSocket link', async (t) => {
    const secret = generateSecret();
    for (const websocket of [false, true]) {
      const target = await startUdpEcho(t);
      const pair = await udpPair(t, { websocket, entryIs: 'client', common: { secret }, target: { host: '127.0.0.3', port: target.port } });
      const user = await udpUser(t, pair.address);
      for (const size of [0, 100, 65_000]) {
        const d = randomBytes(size);
        assert.ok((await roundTrip(user, d)).equals(d), `${size} bytes ${websocket ? 'over WebSocket' : 'with a secret'}`);
      }
      await Promise.all([pair.entry.stop(), pair.exit.stop()]);
    }
  });

  test('flows carry on after a resumed link; datagrams sent meanwhile are dropped and counted', async (t) => {
    const target = await startUdpEcho(t);
    let relay: ChaosRelay | null = null;
    const pair = await udpPair(t, {
      common: { resumeSeconds: 30 },
      target: { host: '127.0.0.3', port: target.port },
      dialPort: async (linkPort) => {
        relay = await startChaosRelay(t, LINK_HOST, linkPort);
        return relay.port;
      },
    });
    const user = await udpUser(t, pair.address);
    assert.equal((await roundTrip(user, 'before')).toString(), 'before');
    const held = nextEvent(pair.entry, 'link-held', 5000);
    (relay as ChaosRelay | null)?.cut();
    await held;
    user.send('meanwhile');
    await pair.entryLog.waitFor(/dropped a datagram \((held|no-link)\)/, 3000);
    await nextEvent(pair.entry, 'link-resumed', 10_000);
    assert.equal((await roundTrip(user, 'after')).toString(), 'after');
    const entry = pair.entry.status().udp;
    assert.equal(entry.flowsTotal, 1, 'the same flow');
    assert.equal(pair.exit.status().udp.flowsTotal, 1);
    assert.equal(entry.dropped.held + entry.dropped['no-link'], 1);
  });

  test('under overload datagrams are dropped and counted, never queued without bound', async (t) => {
    const target = await startUdpEcho(t);
    // A relay that stops reading: the link backs up as far as the kernel lets it.
    let stalled: net.Socket[] = [];
    let linkPort = 0;
    const stall = net.createServer((down) => {
      const up = net.connect(linkPort, LINK_HOST);
      down.pipe(up).pipe(down);
      stalled = [down, up];
      for (const s of stalled) s.on('error', () => undefined);
    });
    stall.listen(0, LINK_HOST);
    await once(stall, 'listening');
    t.after(() => {
      for (const s of stalled) s.destroy();
      stall.close();
    });
    const pair = await udpPair(t, {
      entryIs: 'client',
      target: { host: '127.0.0.3', port: target.port },
      dialPort: async (p) => {
        linkPort = p;
        return (stall.address() as net.AddressInfo).port;
      },
    });
    const user = await udpUser(t, pair.address);
    assert.equal((await roundTrip(user, 'warm')).toString(), 'warm');
    stalled[0]?.unpipe();
    stalled[0]?.pause();
    const datagram = Buffer.alloc(1200, 1);
    let sent = 0;
    for (let burst = 0; burst < 200 && pair.entry.status().udp.dropped.congested === 0; burst++) {
      for (let i = 0; i < 100; i++, sent++) user.send(datagram);
      await new Promise((resolve) => setImmediate(resolve));
    }
    const udp = pair.entry.status().udp;
    assert.ok(udp.dropped.congested > 0, `congested drops after ${sent} datagrams: ${JSON.stringify(udp)}`);
    // What went to the link is bounded by the kernel's buffers and the link write bound, not by what was sent.
    assert.ok(udp.bytesOut < 32 * 1024 * 1024, `bytes written ${udp.bytesOut}`);
    await pair.entryLog.waitFor(/dropped a datagram \(congested\): the link is congested/, 1000);
  });
});

describe('udp in the CLI, logs, metrics and status', () => {
  test('two CLIs: -p N/udp and -t N/udp=HOST:PORT, -v JSON logs of flows, metrics and tcpipe status', async (t) => {
    const target = await startUdpEcho(t);
    const [linkPort, udpPort, metricsPort] = [await freePort(), await freeUdpPort('127.0.0.2'), await freePort()];
    const server = spawnCli(t, ['-s', String(linkPort), '-p', `127.0.0.2:${udpPort}/udp`, '-v', '--log-format=json', `--metrics=127.0.0.1:${metricsPort}`]);
    await server.waitFor(/"event":"started"/, 10_000);
    const client = spawnCli(t, ['-c', `127.0.0.1:${linkPort}`, '-t', `${udpPort}/udp=127.0.0.3:${target.port}`, '-v', '--log-format=json']);
    await server.waitFor(/"event":"link_up"|link up/, 10_000);
    await client.waitFor(/link up/, 10_000);
    const user = await udpUser(t, { host: '127.0.0.2', port: udpPort });
    assert.equal((await roundTrip(user, 'hello over the CLI')).toString(), 'hello over the CLI');
    const open = JSON.parse(await server.waitFor(/"event":"flow_open"/, 5000)) as Record<string, unknown>;
    assert.equal(open.flow, 1);
    assert.equal(open.port, udpPort);
    assert.equal(open.side, 'entry');
    await client.waitFor(new RegExp(`"event":"flow_open".*"target":"127\\.0\\.0\\.3:${target.port}"`), 5000);
    const metrics = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
    assert.match(metrics, /^tcpipe_udp_flows 1$/m);
    assert.match(metrics, /^tcpipe_udp_datagrams_total\{direction="out"\} 1$/m);
    assert.match(metrics, /^tcpipe_udp_datagrams_total\{direction="in"\} 1$/m);
    assert.match(metrics, /^tcpipe_udp_bytes_total\{direction="out"\} 18$/m);
    assert.match(metrics, /^tcpipe_udp_dropped_total\{reason="congested"\} 0$/m);
    const status = spawnCli(t, ['status', `--metrics=127.0.0.1:${metricsPort}`]);
    await status.exited;
    assert.match(status.output(), /udp: 1 flows open \(1 since start\), 1 datagrams \(18 B\) in, 1 \(18 B\) out, none dropped/);
    assert.match(status.output(), new RegExp(`FLOW\\s+PORT\\s+SIDE\\s+PEER\\s+AGE\\s+IDLE\\s+IN\\s+OUT\\n1\\s+${udpPort}/udp\\s+entry\\s+127\\.0\\.0\\.1:\\d+`));
  });
});

async function freeUdpPort(host: string): Promise<number> {
  const s = dgram.createSocket('udp4');
  s.bind(0, host);
  await once(s, 'listening');
  const port = s.address().port;
  s.close();
  return port;
}

describe('udp: a partner that misbehaves', () => {
  /** A raw partner that dials `server` with a HELLO listing `capabilities`, and collects the frames it gets. */
  async function rawPartner(t: TestContext, port: number, capabilities: number[]): Promise<{ socket: net.Socket; frame(type: number, ms?: number): Promise<Frame> }> {
    const socket = net.connect(port, LINK_HOST);
    t.after(() => socket.destroy());
    socket.on('error', () => undefined);
    const hello = encodeHelloInfo({ role: 'client', initialWindow: 256 * 1024, maxFramePayload: 64 * 1024, maxStreams: 1024, heartbeatMs: 15_000, software: 'raw', capabilities });
    socket.write(Buffer.concat([PREFACE, hello]));
    const decoder = new FrameDecoder({ maxDataPayload: 1 << 20, expectPreface: true });
    const frames: Frame[] = [];
    const events = new EventEmitter();
    socket.on('data', (chunk: Buffer) => {
      decoder.push(chunk);
      let f;
      while ((f = decoder.next()) !== null) {
        frames.push(f);
        events.emit('frame', f);
      }
    });
    return {
      socket,
      frame: (type, ms = 3000) => {
        const past = frames.find((f) => f.type === type);
        if (past !== undefined) return Promise.resolve(past);
        return withTimeout(new Promise<Frame>((resolve) => events.on('frame', (f: Frame) => f.type === type && resolve(f))), ms, `frame type ${type}`);
      },
    };
  }

  test('datagrams for a flow that does not exist: dropped, counted, logged, answered with FLOW_CLOSE no-flow; the link stays', async (t) => {
    const log = captureLog('server');
    const server = await startServer({ port: 0, host: LINK_HOST, target: '127.0.0.3', allowUdp: [9], logger: log.logger, limits: TEST_LIMITS });
    t.after(() => server.stop());
    const raw = await rawPartner(t, server.linkAddress?.port ?? 0, [Capability.UDP]);
    await raw.frame(FrameType.HELLO);
    raw.socket.write(encodeDatagram(99, 0, Buffer.from('who?')));
    const close = await raw.frame(FrameType.FLOW_CLOSE);
    assert.equal(close.streamId, 99);
    assert.equal(close.flags, Flag.LOCAL);
    assert.deepEqual(parseCodeAndReason(close.payload), { code: FlowCloseCode.NO_FLOW, reason: 'no such flow' });
    await log.waitFor(/dropped a datagram \(no-flow\): a datagram for flow 99, which this side does not hold/, 2000);
    assert.equal(server.udpStats().dropped['no-flow'], 1);
    // A FLOW_OPEN for a port not allowed: refused with the reason, the link stays.
    raw.socket.write(encodeFlowOpen(100, 53, null));
    await log.waitFor(/refused flow 100 for port 53\/udp from the partner: udp: port 53 is not in --allow/, 2000);
    assert.equal(server.linkUp, true);
    assert.equal(server.udpStats().flows, 0);
  });

  test('a datagram frame on a link without capability udp closes the link with protocol-error', async (t) => {
    const log = captureLog('server');
    const server = await startServer({ port: 0, host: LINK_HOST, target: '127.0.0.3', logger: log.logger, limits: TEST_LIMITS });
    t.after(() => server.stop());
    const raw = await rawPartner(t, server.linkAddress?.port ?? 0, []);
    await raw.frame(FrameType.HELLO);
    raw.socket.write(encodeFlowOpen(1, 53, null));
    const goaway = parseCodeAndReason((await raw.frame(FrameType.GOAWAY)).payload);
    assert.equal(goaway.code, GoAwayCode.PROTOCOL_ERROR);
    assert.match(goaway.reason, /frame type 10 on a link without capability udp/);
  });
});
