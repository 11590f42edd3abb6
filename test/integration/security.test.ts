/**
 * Security of the link on loopback: shared secret (TLS 1.3 PSK), no downgrade
 * either way, garbage and floods of unauthenticated connections, --allow,
 * secrets kept out of every log line, and mutual TLS with certificates.
 *
 * Layout: link on 127.0.0.1; entry listeners on 127.0.0.2:P; targets on
 * 127.0.0.3:P. Misbehaving connections come from other loopback sources
 * (127.0.0.50 and up), directly or through a forwarder, because a server's
 * PenaltyBox closes new links from a source unread for 1 s, 2 s, 4 s... once
 * it has failed; the legitimate client always dials from 127.0.0.1.
 *
 * Servers given by the CLI take no port 0: they get a free port above 61000.
 */
import { after, describe, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { once } from 'node:events';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { startClient, startServer, type ClientOptions, type ServerOptions, type Tcpipe } from '../../src/index.js';
import type { LogLevel } from '../../src/log/logger.js';
import { PREFACE } from '../../src/protocol/constants.js';
import { Secret, generateSecret } from '../../src/security/secret.js';
import { runCli, spawnCli, startCliServer, type CliChild } from '../helpers/cli.js';
import { captureLog, escapeRegExp, type LogCapture } from '../helpers/logs.js';
import { ENTRY_HOST, rawConnect, TARGET_HOST } from '../helpers/net.js';
import { startChaosRelay, type ChaosRelay } from '../helpers/relay.js';
import { startEchoTarget, type Target } from '../helpers/targets.js';
import { echoAttempt } from '../helpers/users.js';
import { observationWindow, withTimeout } from '../helpers/wait.js';

// ---------------------------------------------------------------------------
// Setup helpers
// ---------------------------------------------------------------------------

type ServerExtra = Omit<ServerOptions, 'port' | 'host' | 'logger'>;
type ClientExtra = Omit<ClientOptions, 'host' | 'port' | 'logger'>;

interface Side {
  readonly inst: Tcpipe;
  readonly log: LogCapture;
  /** link-up events so far. */
  ups(): number;
}

interface ServerSide extends Side {
  readonly port: number;
}

function track(inst: Tcpipe, log: LogCapture): Side {
  let ups = 0;
  inst.on('link-up', () => ups++);
  return { inst, log, ups: () => ups };
}

async function server(t: TestContext, options: ServerExtra, level: LogLevel = 'debug'): Promise<ServerSide> {
  const log = captureLog('server', level);
  const inst = await startServer({ port: 0, host: '127.0.0.1', logger: log.logger, ...options });
  t.after(() => inst.stop());
  const port = inst.linkAddress?.port;
  assert.ok(port !== undefined && port > 0);
  return { ...track(inst, log), port };
}

async function client(t: TestContext, port: number, options: ClientExtra, level: LogLevel = 'debug'): Promise<Side> {
  const log = captureLog('client', level);
  const inst = await startClient({ host: '127.0.0.1', port, logger: log.logger, proxy: null, ...options });
  t.after(() => inst.stop());
  return track(inst, log);
}

/** An echo target on 127.0.0.3:P, its port P free on 127.0.0.2 for the entry listener. */
async function target(t: TestContext): Promise<Target> {
  const tg = await startEchoTarget(t);
  tg.releaseEntry();
  return tg;
}

/** A relay to the link port that dials from `source`, recording up to 4 MiB each way per connection. */
function forwarder(t: TestContext, port: number, source: string): Promise<ChaosRelay> {
  return startChaosRelay(t, '127.0.0.1', port, { localAddress: source, recordBytes: 4 * 1024 * 1024 });
}

function linkUp(side: Side, ms: number): Promise<void> {
  if (side.inst.linkUp) return Promise.resolve();
  return withTimeout(
    once(side.inst, 'link-up').then(() => undefined),
    ms,
    `link-up; log:\n${side.log.text()}`,
  );
}

const entry = (port: number): { host: string; port: number } => ({ host: ENTRY_HOST, port });

/** A live pair with a secret: server is the entry side (127.0.0.2:P), client the exit side (127.0.0.3). */
async function livePair(
  t: TestContext,
  secret: string | undefined,
  limits: ServerExtra['limits'] = {},
): Promise<{ srv: ServerSide; cli: Side; tg: Target }> {
  const tg = await target(t);
  const sec = secret === undefined ? {} : { secret };
  const srv = await server(t, { ports: [entry(tg.port)], ...sec, limits });
  const cli = await client(t, srv.port, { target: TARGET_HOST, ...sec });
  await linkUp(srv, 5000);
  await linkUp(cli, 5000);
  return { srv, cli, tg };
}

/**
 * Keeps relaying small echo rounds through the live pair until stopped (or the
 * test ends); records every result. Gives up after 50 failures so that a broken
 * pair cannot spin.
 */
function keepRelaying(
  t: TestContext,
  port: number,
  size = 2048,
): { stop(): Promise<{ ok: number; failures: string[]; maxMs: number; ms: number[] }> } {
  let running = true;
  const ms: number[] = [];
  const failures: string[] = [];
  const loop = (async () => {
    while (running && failures.length < 50) {
      const r = await echoAttempt(ENTRY_HOST, port, size, 3000);
      if (r.ok) ms.push(r.ms);
      else failures.push(r.detail);
    }
  })();
  const stop = async (): Promise<{ ok: number; failures: string[]; maxMs: number; ms: number[] }> => {
    running = false;
    await loop;
    return { ok: ms.length, failures, maxMs: Math.max(0, ...ms), ms };
  };
  t.after(() => stop());
  return { stop };
}

/** Parses a byte stream as TLS records; returns the record types seen. Throws if it is not TLS. */
function tlsRecordTypes(bytes: Buffer): number[] {
  const types: number[] = [];
  let at = 0;
  while (at + 5 <= bytes.length) {
    const type = bytes[at] ?? 0;
    const major = bytes[at + 1] ?? 0;
    const length = bytes.readUInt16BE(at + 3);
    if (![0x14, 0x15, 0x16, 0x17].includes(type) || major !== 0x03 || length > 16384 + 256) {
      throw new Error(`not a TLS record at offset ${at}: ${bytes.subarray(at, at + 8).toString('hex')}`);
    }
    types.push(type);
    at += 5 + length;
  }
  return types;
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? 0;
}

// ---------------------------------------------------------------------------
// 1-3: secrets, and no downgrade
// ---------------------------------------------------------------------------

describe('shared secret', () => {
  test('same secret: the pair relays, data intact both ways, and the link is TLS on the wire', { timeout: 30_000 }, async (t) => {
    const secret = generateSecret();
    const tg = await target(t);
    const srv = await server(t, { ports: [entry(tg.port)], secret });
    // The client dials through a recording forwarder, so the test sees the link's bytes.
    const wire = await forwarder(t, srv.port, '127.0.0.1');
    const cli = await client(t, wire.port, { target: TARGET_HOST, secret });
    await linkUp(srv, 5000);
    await linkUp(cli, 5000);

    const marker = Buffer.from(`TCPIPE-MARKER-${randomBytes(8).toString('hex')}-`.repeat(64));
    const big = await echoAttempt(ENTRY_HOST, tg.port, 1024 * 1024, 10_000, marker);
    assert.ok(big.ok, big.detail);
    const parallel = await Promise.all(Array.from({ length: 8 }, () => echoAttempt(ENTRY_HOST, tg.port, 64 * 1024, 10_000)));
    for (const r of parallel) assert.ok(r.ok, r.detail);

    const up = wire.recorded('up');
    const down = wire.recorded('down');
    assert.ok(up.length > 1024 * 1024 && down.length > 1024 * 1024, 'the relayed bytes crossed the forwarder');
    assert.equal(up[0], 0x16, 'the client opens with a TLS handshake record');
    assert.equal(down[0], 0x16, 'the server answers with a TLS handshake record');
    const upTypes = tlsRecordTypes(up);
    const downTypes = tlsRecordTypes(down);
    assert.ok(upTypes.includes(0x17) && downTypes.includes(0x17), 'application data travels in TLS records');
    for (const [name, bytes] of [['client->server', up], ['server->client', down]] as const) {
      assert.equal(bytes.indexOf(marker.subarray(0, 40)), -1, `${name}: the relayed marker is not readable on the wire`);
      assert.equal(bytes.indexOf(PREFACE), -1, `${name}: the tcpipe preface travels inside TLS`);
      assert.equal(bytes.indexOf(Buffer.from(secret)), -1, `${name}: the secret is not on the wire`);
      assert.equal(bytes.indexOf(Secret.fromText(secret, 't').psk()), -1, `${name}: the PSK is not on the wire`);
    }
    assert.equal(tg.sockets.length, 9);

    // Control: the same forwarder check on a pair without a secret does see the marker.
    const tg2 = await target(t);
    const plainSrv = await server(t, { ports: [entry(tg2.port)] });
    const plainWire = await forwarder(t, plainSrv.port, '127.0.0.1');
    const plainCli = await client(t, plainWire.port, { target: TARGET_HOST });
    await linkUp(plainSrv, 5000);
    await linkUp(plainCli, 5000);
    const r = await echoAttempt(ENTRY_HOST, tg2.port, 1024, 5000, marker);
    assert.ok(r.ok, r.detail);
    const plainUp = plainWire.recorded('up');
    assert.ok(plainUp.indexOf(marker.subarray(0, 40)) >= 0, 'control: without a secret the marker is on the wire');
    assert.equal(plainUp.indexOf(PREFACE), 0, 'control: a plaintext link starts with the preface');
  });

  test('wrong secret: no link, both sides say so, the client backs off, and a right client pairs afterwards', { timeout: 30_000 }, async (t) => {
    const secret = generateSecret();
    const tg = await target(t);
    const srv = await server(t, { ports: [entry(tg.port)], secret });
    const wrongWire = await forwarder(t, srv.port, '127.0.0.60');
    const startedAt = performance.now();
    const wrong = await client(t, wrongWire.port, { target: TARGET_HOST, secret: generateSecret() });

    await srv.log.waitFor(/authentication failed from 127\.0\.0\.60:\d+: the client does not hold the same secret/, 5000);
    await wrong.log.waitFor(/authentication failed with 127\.0\.0\.1:\d+/, 5000);
    // Observe a bounded window: the client keeps trying, on its backoff (0.5 s doubling), not in a tight loop.
    await wrongWire.waitForConnections(3, 8000).catch((err: unknown) => {
      throw new Error(`${String(err)}; client log:\n${wrong.log.text()}`);
    });
    const elapsed = performance.now() - startedAt;
    await observationWindow(Math.max(0, 3500 - elapsed));
    const attempts = wrongWire.connections;
    assert.ok(attempts >= 3 && attempts <= 8, `attempts in ~3.5 s: ${attempts} (expected a handful: the backoff doubles from 0.5 s)`);
    assert.ok(wrong.log.count(/authentication failed with/) >= 2, wrong.log.text());
    assert.equal(wrong.ups(), 0, 'the wrong client never got a link');
    assert.equal(srv.ups(), 0, 'the server never got a link');
    assert.equal(srv.log.count(/link up/), 0);

    // The server is fine: a client with the right secret pairs (from 127.0.0.1, never penalised) and relays,
    // while the wrong one keeps failing.
    const right = await client(t, srv.port, { target: TARGET_HOST, secret });
    await linkUp(right, 5000);
    await linkUp(srv, 5000);
    const r = await echoAttempt(ENTRY_HOST, tg.port, 64 * 1024);
    assert.ok(r.ok, r.detail);
    assert.equal(wrong.ups(), 0);
  });

  test('plaintext client against a server with a secret: refused with auth-required, both log why, no link', { timeout: 20_000 }, async (t) => {
    const secret = generateSecret();
    const tg = await target(t);
    const srv = await server(t, { ports: [entry(tg.port)], secret });
    const wire = await forwarder(t, srv.port, '127.0.0.61');
    const plain = await client(t, wire.port, { target: TARGET_HOST });
    await srv.log.waitFor(/authentication failed from 127\.0\.0\.61:\d+: plaintext link refused: this server requires a secret/, 5000);
    await plain.log.waitFor(/no link: authentication failed with 127\.0\.0\.1:\d+: refused by the partner: plaintext link refused: this server requires a secret/, 5000);
    assert.ok(plain.log.count(/no secret: the link is neither authenticated nor encrypted/) === 1, 'the plaintext side warns at start');
    // The refusal is the server's GOAWAY, in plaintext, never a HELLO.
    const down = wire.recorded('down');
    assert.equal(down.indexOf(PREFACE), 0);
    assert.equal(down[PREFACE.length], 0x08, 'first frame after the preface is GOAWAY');
    assert.equal(down[PREFACE.length + 10], 8, 'GOAWAY code auth-required (8)');
    assert.equal(plain.ups() + srv.ups(), 0);
    assert.equal(plain.inst.linkUp || srv.inst.linkUp, false);
  });

  test('client with a secret against a server without one: refused, both log why, no link', { timeout: 20_000 }, async (t) => {
    const secret = generateSecret();
    const tg = await target(t);
    const srv = await server(t, { ports: [entry(tg.port)] });
    const wire = await forwarder(t, srv.port, '127.0.0.62');
    const sec = await client(t, wire.port, { target: TARGET_HOST, secret });
    await srv.log.waitFor(
      /authentication failed from 127\.0\.0\.62:\d+: the client speaks TLS \(it has a secret or a certificate\) and this server has neither/,
      5000,
    );
    await sec.log.waitFor(/no link: authentication failed with 127\.0\.0\.1:\d+: the server closed the link during the TLS handshake/, 5000);
    assert.equal(wire.recorded('down').length, 0, 'the plaintext server sent nothing: no HELLO, so no downgrade');
    assert.equal(sec.ups() + srv.ups(), 0);
  });
});

// ---------------------------------------------------------------------------
// 4-5: garbage and floods of unauthenticated connections
// ---------------------------------------------------------------------------

interface GarbageCase {
  readonly name: string;
  readonly bytes: Buffer;
  /** The server closes at once (true) or only at the handshake deadline (false). */
  readonly atOnce: boolean;
  readonly log: RegExp;
}

function garbageCases(kind: 'secret' | 'plaintext', timeoutS: number): GarbageCase[] {
  const random = randomBytes(300);
  random[0] = 0xa5; // neither 0x16 (TLS) nor 'T' (preface): the outcome is deterministic
  const truncatedHello = Buffer.concat([Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03]), randomBytes(20)]);
  const http = Buffer.from('GET / HTTP/1.1\r\nHost: tcpipe\r\nUser-Agent: curl/8\r\n\r\n');
  const prefaceGarbage = Buffer.concat([PREFACE, Buffer.from([0xff]), randomBytes(40)]);
  const prefaceHugeHello = Buffer.concat([PREFACE, Buffer.from([0x01, 0x00, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff])]);
  const wrongPreface = /refused link from [\d.:]+: not a tcpipe link: wrong preface/;
  const authRequired = /authentication failed from [\d.:]+: plaintext link refused: this server requires a secret/;
  return [
    { name: 'random bytes', bytes: random, atOnce: true, log: wrongPreface },
    kind === 'secret'
      ? { name: 'truncated TLS ClientHello', bytes: truncatedHello, atOnce: false, log: new RegExp(`refused link from [\\d.:]+: handshake not finished within ${timeoutS}s`) }
      : { name: 'truncated TLS ClientHello', bytes: truncatedHello, atOnce: true, log: /authentication failed from [\d.:]+: the client speaks TLS/ },
    // The port also takes WebSocket links: a GET to another path is refused like any garbage.
    { name: 'HTTP GET', bytes: http, atOnce: true, log: /refused link from [\d.:]+: (HTTP GET \/: wrong path|an HTTP request|not a tcpipe link)/ },
    kind === 'secret'
      ? { name: 'valid preface then garbage', bytes: prefaceGarbage, atOnce: true, log: authRequired }
      : { name: 'valid preface then garbage', bytes: prefaceGarbage, atOnce: true, log: /refused link from [\d.:]+: unknown frame type 0xff/ },
    kind === 'secret'
      ? { name: 'preface then a HELLO header of 4 GiB', bytes: prefaceHugeHello, atOnce: true, log: authRequired }
      : { name: 'preface then a HELLO header of 4 GiB', bytes: prefaceHugeHello, atOnce: true, log: /refused link from [\d.:]+: control frame of 4294967295 bytes exceeds the limit/ },
  ];
}

describe('hostile connections to the link port', () => {
  for (const kind of ['secret', 'plaintext'] as const) {
    test(`garbage handshakes (${kind} server): each closed and logged, the live pair keeps relaying`, { timeout: 30_000 }, async (t) => {
      const timeoutMs = 1500;
      const { srv, cli, tg } = await livePair(t, kind === 'secret' ? generateSecret() : undefined, { handshakeTimeoutMs: timeoutMs });
      let downs = 0;
      srv.inst.on('link-down', () => downs++);
      cli.inst.on('link-down', () => downs++);
      const relay = keepRelaying(t, tg.port);
      const cases = garbageCases(kind, timeoutMs / 1000);
      await Promise.all(
        cases.map(async (c, i) => {
          const source = `127.0.0.${70 + i}`;
          const conn = await rawConnect('127.0.0.1', srv.port, source);
          conn.socket.write(c.bytes);
          const closedAfter = await conn.closedWithin(timeoutMs + 3000);
          assert.notEqual(closedAfter, null, `${c.name}: the server closed it`);
          if (c.atOnce) assert.ok((closedAfter ?? 0) < 1500, `${c.name}: closed at once (after ${closedAfter} ms)`);
          else assert.ok((closedAfter ?? 0) >= timeoutMs - 100, `${c.name}: held until the handshake deadline (${closedAfter} ms)`);
          const line = await srv.log.waitFor(new RegExp(`from ${escapeRegExp(source)}:\\d+`), 2000, `${c.name}: a log line for ${source}`);
          c.log.lastIndex = 0;
          assert.match(line, c.log, `${c.name}`);
          // Never a HELLO: at most the preface and a GOAWAY, or an HTTP error status.
          const back = Buffer.concat(conn.received);
          if (back.subarray(0, 5).toString('latin1') === 'HTTP/') {
            assert.match(back.toString('latin1'), /^HTTP\/1\.1 4\d\d /, `${c.name}: answer ${back.toString('latin1')}`);
          } else if (back.length > 0) {
            assert.equal(back.indexOf(PREFACE), 0, `${c.name}: answer ${back.toString('hex')}`);
            assert.equal(back[PREFACE.length], 0x08, `${c.name}: only a GOAWAY follows the preface`);
          }
        }),
      );
      const result = await relay.stop();
      assert.deepEqual(result.failures, [], 'the live pair never failed a round');
      assert.ok(result.ok >= 1, `the live pair relayed throughout (${result.ok} rounds)`);
      assert.equal(downs, 0, 'the live link never went down');
      assert.ok(srv.inst.linkUp && cli.inst.linkUp);
      const after = await echoAttempt(ENTRY_HOST, tg.port, 256 * 1024);
      assert.ok(after.ok, after.detail);
    });
  }

  test('a WebSocket upgrade followed by a malformed frame is refused and does not kill the server (CLI, with a secret)', { timeout: 30_000 }, async (t) => {
    const secret = generateSecret();
    // One handshake slot: if the bad link kept its slot, the correct client below could not get in.
    const { cli: srv, port } = await startCliServer(t, ['--max-handshakes=1'], { TCPIPE_SECRET: secret });
    t.after(() => srv.stop());
    const upgrade = Buffer.from(
      'GET /tcpipe HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
        'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n',
    );
    // A client-to-server frame must be masked: this one is not, and announces a huge length.
    const conn = await rawConnect('127.0.0.1', port, '127.0.0.79');
    conn.socket.write(Buffer.concat([upgrade, Buffer.from('827fffffffffffffffff', 'hex')]));
    assert.notEqual(await conn.closedWithin(3000), null, 'the connection is closed');
    // Logged at once, or at the latest at the handshake deadline (10 s by default).
    await srv.waitFor(/refused link from 127\.0\.0\.79:\d+/, 12_000);
    // Still there, and the bad link's handshake slot is free again: a correct client pairs.
    const log = captureLog('client', 'info');
    const good = await startClient({ host: '127.0.0.1', port, proxy: null, secret, logger: log.logger });
    t.after(() => good.stop());
    await log.waitFor(/link up with/, 5000);
    assert.equal(srv.child.exitCode, null, 'the server is still running');
  });

  test('300 idle unauthenticated connections: the live pair keeps low latency; held ones close at the deadline, the excess at once', { timeout: 30_000 }, async (t) => {
    const handshakeTimeoutMs = 1000;
    const maxPending = 64;
    const { srv, cli, tg } = await livePair(t, generateSecret(), { handshakeTimeoutMs, maxPendingHandshakes: maxPending });
    let downs = 0;
    srv.inst.on('link-down', () => downs++);
    cli.inst.on('link-down', () => downs++);
    // Baseline latency of the live pair.
    const base: number[] = [];
    for (let i = 0; i < 20; i++) {
      const r = await echoAttempt(ENTRY_HOST, tg.port, 64);
      assert.ok(r.ok, r.detail);
      base.push(r.ms);
    }
    const relay = keepRelaying(t, tg.port, 64);
    const sources = ['127.0.0.100', '127.0.0.101', '127.0.0.102', '127.0.0.103', '127.0.0.104', '127.0.0.105'];
    const floodStart = performance.now();
    const conns = await Promise.all(
      Array.from({ length: 300 }, (_, i) => rawConnect('127.0.0.1', srv.port, sources[i % sources.length] ?? '127.0.0.100', 5000)),
    );
    const connectedIn = performance.now() - floodStart;
    const closes = await Promise.all(conns.map((c) => c.closedWithin(handshakeTimeoutMs + 4000)));
    const result = await relay.stop();

    const open = closes.filter((c) => c === null).length;
    assert.equal(open, 0, `every idle connection is closed by the server (${open} still open ${handshakeTimeoutMs + 4000} ms after connect)`);
    const ms = closes.map((c) => c ?? Infinity);
    const atOnce = ms.filter((m) => m < handshakeTimeoutMs * 0.6).length;
    const held = ms.filter((m) => m >= handshakeTimeoutMs * 0.6);
    assert.ok(held.length >= 1 && held.length <= maxPending, `held until the deadline: ${held.length} (at most ${maxPending} pending)`);
    assert.ok(atOnce >= 300 - maxPending, `closed at once beyond the pending limit: ${atOnce}`);
    for (const m of held) {
      assert.ok(m >= handshakeTimeoutMs - 50 && m <= handshakeTimeoutMs + 1500, `a held connection closed after ${m.toFixed(0)} ms`);
    }
    assert.ok(srv.log.count(new RegExp(`handshakes already pending`)) >= 1, 'the pending limit is logged');
    assert.ok(srv.log.count(/handshake not finished within 1s/) >= 1, 'the deadline is logged');

    // The live pair was not disturbed.
    assert.deepEqual(result.failures, []);
    assert.ok(result.ok >= 5, `rounds during the flood: ${result.ok}`);
    assert.equal(downs, 0);
    const baseMedian = median(base);
    const floodMedian = median(result.ms);
    t.diagnostic(
      `connect 300 in ${connectedIn.toFixed(0)} ms; held ${held.length}, at once ${atOnce}; echo latency baseline median ${baseMedian.toFixed(1)} ms, during flood median ${floodMedian.toFixed(1)} ms, max ${result.maxMs.toFixed(1)} ms`,
    );
    assert.ok(floodMedian < 50, `median echo latency during the flood: ${floodMedian.toFixed(1)} ms`);
    assert.ok(result.maxMs < 500, `worst echo latency during the flood: ${result.maxMs.toFixed(1)} ms`);
  });
});

// ---------------------------------------------------------------------------
// 6: --allow
// ---------------------------------------------------------------------------

describe('--allow', () => {
  async function setup(t: TestContext, serverArgs: string[]): Promise<{ p1: Target; p2: Target; srv: CliChild; cli: CliChild }> {
    const secret = generateSecret();
    const p1 = await target(t);
    const p2 = await target(t);
    const { cli: srv, port: linkPort } = await startCliServer(t, ['-p', `${ENTRY_HOST}:${p1.port},${ENTRY_HOST}:${p2.port}`, ...serverArgs], {
      TCPIPE_SECRET: secret,
    });
    t.after(() => srv.stop());
    const cli = spawnCli(t, ['-c', `127.0.0.1:${linkPort}`, '-t', TARGET_HOST, `--allow=${p1.port}`], { TCPIPE_SECRET: secret });
    t.after(() => cli.stop());
    await srv.waitFor(/link up with/, 5000);
    await cli.waitFor(/link up with/, 5000);
    return { p1, p2, srv, cli };
  }

  async function refusedConnection(port: number): Promise<{ code: string; ms: number }> {
    const started = performance.now();
    const user = net.connect({ host: ENTRY_HOST, port });
    let code = 'closed';
    user.on('error', (err: NodeJS.ErrnoException) => (code = err.code ?? err.message));
    user.on('connect', () => user.write('may I?'));
    await withTimeout(new Promise((resolve) => user.once('close', resolve)), 3000, `the user's connection to port ${port} is closed`);
    return { code, ms: performance.now() - started };
  }

  test('a stream for a port not in --allow: the user is reset at once, both sides log it (-v), the allowed port works', { timeout: 20_000 }, async (t) => {
    const { p1, p2, srv, cli } = await setup(t, ['-v']);
    const refused = await refusedConnection(p2.port);
    assert.equal(refused.code, 'ECONNRESET', "the user's connection is reset, not closed cleanly");
    assert.ok(refused.ms < 1000, `reset promptly (${refused.ms.toFixed(0)} ms)`);
    assert.equal(p2.sockets.length, 0, 'the exit side never connected to the refused port');
    await cli.waitFor(new RegExp(`WARN .*refused stream \\d+ for port ${p2.port} from the partner: port ${p2.port} is not in --allow`), 3000);
    await srv.waitFor(new RegExp(`port ${p2.port}.*not in --allow`), 3000);
    const ok = await echoAttempt(ENTRY_HOST, p1.port, 64 * 1024);
    assert.ok(ok.ok, ok.detail);
    assert.equal(p1.sockets.length, 1);
  });

  test('the entry side logs the partner refusing a port at the default verbosity (SECURITY.md: "both sides log it")', { timeout: 20_000 }, async (t) => {
    const { p2, srv, cli } = await setup(t, []);
    const refused = await refusedConnection(p2.port);
    assert.equal(refused.code, 'ECONNRESET');
    await cli.waitFor(new RegExp(`port ${p2.port} is not in --allow`), 3000);
    // Without -v the server (entry side) should still say why its user's connection was reset.
    await srv.waitFor(new RegExp(`port ${p2.port}.*not in --allow`), 3000);
  });
});

// ---------------------------------------------------------------------------
// 7: the secret never appears in any output
// ---------------------------------------------------------------------------

describe('the secret stays secret', () => {
  test('no log line, error, help or JSON field contains the secret or its PSK; loose permissions warn; keygen', { timeout: 40_000 }, async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'tcpipe-sec-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const secret = generateSecret();
    const other = generateSecret();
    const file = join(dir, 'tcpipe.key');
    writeFileSync(file, `# tcpipe secret\n${secret}\n`);
    chmodSync(file, 0o600);
    const outputs: { name: string; text: string }[] = [];
    const tg = await target(t);

    // Server and client with --secret-file and -v; a relayed round.
    const { cli: srv, port: linkPort } = await startCliServer(t, ['-p', `${ENTRY_HOST}:${tg.port}`, `--secret-file=${file}`, '-v']);
    t.after(() => srv.stop());
    const cliA = spawnCli(t, ['-c', `127.0.0.1:${linkPort}`, '-t', TARGET_HOST, '--secret-file', file, '-v']);
    t.after(() => cliA.stop());
    await cliA.waitFor(/link up with/, 5000);
    await srv.waitFor(/link up with/, 5000);
    const r1 = await echoAttempt(ENTRY_HOST, tg.port, 4096);
    assert.ok(r1.ok, r1.detail);
    await srv.waitFor(/stream \d+ closed on port/, 3000);
    assert.equal(await cliA.stop(), 0);
    outputs.push({ name: 'client --secret-file -v', text: cliA.output() });

    // A client with TCPIPE_SECRET and JSON logs (fields too must not leak).
    const cliB = spawnCli(t, ['-c', `127.0.0.1:${linkPort}`, '-t', TARGET_HOST, '-v', '--log-format=json'], { TCPIPE_SECRET: secret });
    t.after(() => cliB.stop());
    await cliB.waitFor(/"event":"link_up"/, 8000);
    const r2 = await echoAttempt(ENTRY_HOST, tg.port, 4096);
    assert.ok(r2.ok, r2.detail);
    assert.equal(await cliB.stop(), 0);
    outputs.push({ name: 'client TCPIPE_SECRET json', text: cliB.output() });

    // A wrong secret, through the variable: both sides log the failure, neither logs a secret.
    const cliC = spawnCli(t, ['-c', `127.0.0.1:${linkPort}`, '-t', TARGET_HOST, '-v'], { TCPIPE_SECRET: other });
    t.after(() => cliC.stop());
    await cliC.waitFor(/authentication failed with/, 8000);
    await srv.waitFor(/authentication failed from/, 3000);
    await cliC.stop();
    outputs.push({ name: 'client with the wrong secret', text: cliC.output() });
    assert.equal(await srv.stop(), 0);
    outputs.push({ name: 'server --secret-file -v', text: srv.output() });

    // Error paths: a secret that is too short (file and variable), one with a space.
    const short = 'short-but-recognisable-7f3a9';
    writeFileSync(join(dir, 'short.key'), `${short}\n`, { mode: 0o600 });
    const shortFile = await runCli(['-s', '65001', `--secret-file=${join(dir, 'short.key')}`]);
    assert.equal(shortFile.code, 1, shortFile.stderr);
    assert.match(shortFile.stderr, /too short/);
    assert.ok(!shortFile.stderr.includes(short) && !shortFile.stdout.includes(short), shortFile.stderr);
    const shortEnv = await runCli(['-s', '65001'], { TCPIPE_SECRET: short });
    assert.equal(shortEnv.code, 1, shortEnv.stderr);
    assert.match(shortEnv.stderr, /TCPIPE_SECRET: the secret is too short/);
    assert.ok(!shortEnv.stderr.includes(short), shortEnv.stderr);
    const spaced = `${secret.slice(0, 20)} ${secret.slice(20)}`;
    const spacedEnv = await runCli(['-s', '65001'], { TCPIPE_SECRET: spaced });
    assert.equal(spacedEnv.code, 1);
    assert.match(spacedEnv.stderr, /must not contain spaces/);
    assert.ok(!spacedEnv.stderr.includes(secret.slice(0, 20)) && !spacedEnv.stderr.includes(secret.slice(20)), spacedEnv.stderr);
    outputs.push({ name: 'short secret file', text: shortFile.stdout + shortFile.stderr });
    outputs.push({ name: 'short TCPIPE_SECRET', text: shortEnv.stdout + shortEnv.stderr });
    outputs.push({ name: 'spaced TCPIPE_SECRET', text: spacedEnv.stdout + spacedEnv.stderr });
    // Usage error and help, with the secret in the environment.
    const usage = await runCli(['-s', '65001', '--tls-cert=x'], { TCPIPE_SECRET: secret });
    assert.equal(usage.code, 2);
    outputs.push({ name: 'usage error', text: usage.stdout + usage.stderr });
    const help = await runCli(['--help'], { TCPIPE_SECRET: secret });
    assert.equal(help.code, 0);
    assert.match(help.stdout, /--secret-file/);
    outputs.push({ name: '--help', text: help.stdout + help.stderr });

    // Loose permissions: a warning that names chmod 600, and still no secret.
    const loose = join(dir, 'loose.key');
    writeFileSync(loose, `${secret}\n`);
    chmodSync(loose, 0o640);
    const { cli: looseSrv } = await startCliServer(t, [`--secret-file=${loose}`]);
    t.after(() => looseSrv.stop());
    const warning = await looseSrv.waitFor(/WARN .*can be read by group or others/, 5000);
    assert.match(warning, new RegExp(`chmod 600 ${escapeRegExp(loose)}`));
    await looseSrv.stop();
    outputs.push({ name: 'loose secret file', text: looseSrv.output() });

    // Nothing printed anywhere holds a secret's text or its PSK in any common encoding.
    const forbidden: { what: string; text: string }[] = [];
    for (const [name, text] of [['secret', secret], ['wrong secret', other]] as const) {
      const psk = Secret.fromText(text, 'test').psk();
      forbidden.push({ what: `${name} text`, text });
      forbidden.push({ what: `${name} PSK base64`, text: psk.toString('base64') });
      forbidden.push({ what: `${name} PSK base64url`, text: psk.toString('base64url') });
      forbidden.push({ what: `${name} PSK hex`, text: psk.toString('hex') });
      forbidden.push({ what: `${name} raw bytes base64`, text: Buffer.from(text, 'base64url').toString('base64') });
    }
    for (const out of outputs) {
      assert.ok(out.text.length > 0, `${out.name}: captured some output`);
      for (const f of forbidden) assert.ok(!out.text.includes(f.text), `${out.name} contains the ${f.what}:\n${out.text}`);
    }
    // The JSON log really is JSON, line by line.
    for (const line of (outputs.find((o) => o.name === 'client TCPIPE_SECRET json')?.text ?? '').split('\n').filter((l) => l !== '')) {
      JSON.parse(line);
    }

    // keygen: exactly one line of 43 base64url characters, different each run.
    const k1 = await runCli(['keygen']);
    const k2 = await runCli(['keygen']);
    for (const k of [k1, k2]) {
      assert.equal(k.code, 0);
      assert.match(k.stdout, /^[A-Za-z0-9_-]{43}\n$/);
      assert.equal(k.stderr, '');
    }
    assert.notEqual(k1.stdout, k2.stdout);
    assert.equal(Buffer.from(k1.stdout.trim(), 'base64url').length, 32);
  });
});

// ---------------------------------------------------------------------------
// 8: certificates
// ---------------------------------------------------------------------------

function openssl(args: readonly string[], cwd: string): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile('openssl', [...args], { cwd, timeout: 15_000 }, (err, _stdout, stderr) => {
      if (err !== null) reject(new Error(`openssl ${args.join(' ')}: ${err.message}\n${stderr}`));
      else resolve();
    });
  });
}

interface Pki {
  readonly dir: string;
  path(name: string): string;
  read(name: string): Buffer;
}

async function makeCa(pki: Pki, name: string): Promise<void> {
  await openssl(
    [
      'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '1',
      '-keyout', `${name}.key`, '-out', `${name}.crt`, '-subj', `/CN=${name}`,
      '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
    ],
    pki.dir,
  );
}

async function makeLeaf(pki: Pki, ca: string, name: string, cn: string, san: string, usage: 'serverAuth' | 'clientAuth'): Promise<void> {
  await openssl(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${cn}`], pki.dir);
  writeFileSync(pki.path(`${name}.ext`), `basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=${usage}\nsubjectAltName=${san}\n`);
  await openssl(
    ['x509', '-req', '-in', `${name}.csr`, '-CA', `${ca}.crt`, '-CAkey', `${ca}.key`, '-set_serial', `0x${randomBytes(8).toString('hex')}`, '-days', '1', '-out', `${name}.crt`, '-extfile', `${name}.ext`],
    pki.dir,
  );
}

describe('certificates (mutual TLS)', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'tcpipe-pki-'));
  after(() => rmSync(dir, { recursive: true, force: true }));
  const pki: Pki = { dir, path: (n) => join(dir, n), read: (n) => readFileSync(join(dir, n)) };
  let ready: Promise<void> | null = null;
  const makePki = (): Promise<void> =>
    (ready ??= (async () => {
      await Promise.all([makeCa(pki, 'ca'), makeCa(pki, 'rogue-ca')]);
      await Promise.all([
        makeLeaf(pki, 'ca', 'server', 'tcpipe-test-server', 'DNS:tcpipe-test-server,IP:127.0.0.1', 'serverAuth'),
        makeLeaf(pki, 'ca', 'server-dns-only', 'tcpipe-test-server', 'DNS:tcpipe-test-server', 'serverAuth'),
        makeLeaf(pki, 'ca', 'server-localhost', 'localhost', 'DNS:localhost', 'serverAuth'),
        makeLeaf(pki, 'ca', 'client', 'tcpipe-test-client', 'DNS:tcpipe-test-client', 'clientAuth'),
        makeLeaf(pki, 'rogue-ca', 'rogue-client', 'tcpipe-test-client', 'DNS:tcpipe-test-client', 'clientAuth'),
      ]);
    })());
  const tlsOf = (cert: string, ca = 'ca', serverName?: string): { cert: Buffer; key: Buffer; ca: Buffer; serverName?: string } => ({
    cert: pki.read(`${cert}.crt`),
    key: pki.read(`${cert}.key`),
    ca: pki.read(`${ca}.crt`),
    ...(serverName !== undefined ? { serverName } : {}),
  });
  const certArgs = (cert: string, ca = 'ca'): string[] => [
    `--tls-cert=${pki.path(`${cert}.crt`)}`,
    `--tls-key=${pki.path(`${cert}.key`)}`,
    `--tls-ca=${pki.path(`${ca}.crt`)}`,
  ];

  test('CLI: mutual TLS with --tls-server-name relays', { timeout: 30_000 }, async (t) => {
    await makePki();
    const tg = await target(t);
    const { cli: srv, port: linkPort } = await startCliServer(t, ['-p', `${ENTRY_HOST}:${tg.port}`, ...certArgs('server')]);
    t.after(() => srv.stop());
    const wire = await forwarder(t, linkPort, '127.0.0.1');
    const cli = spawnCli(t, ['-c', `127.0.0.1:${wire.port}`, '-t', TARGET_HOST, ...certArgs('client'), '--tls-server-name=tcpipe-test-server']);
    t.after(() => cli.stop());
    await srv.waitFor(/link up with/, 5000);
    await cli.waitFor(/link up with/, 5000);
    const marker = Buffer.from('TCPIPE-MARKER-CERT-'.repeat(50));
    const r = await echoAttempt(ENTRY_HOST, tg.port, 256 * 1024, 5000, marker);
    assert.ok(r.ok, r.detail);
    const up = wire.recorded('up');
    assert.equal(up[0], 0x16);
    assert.ok(tlsRecordTypes(up).includes(0x17));
    assert.equal(up.indexOf(marker.subarray(0, 38)), -1, 'the marker is encrypted');
    assert.doesNotMatch(srv.output() + cli.output(), /no secret: the link is neither/, 'certificates count as security: no insecure warning');
  });

  test('library, no serverName: the client checks the certificate against the IP it dials (127.0.0.1)', { timeout: 30_000 }, async (t) => {
    await makePki();
    // A certificate that names only tcpipe-test-server does not do for 127.0.0.1.
    const dnsOnly = await server(t, { ports: [], tls: tlsOf('server-dns-only') });
    const wire1 = await forwarder(t, dnsOnly.port, '127.0.0.82');
    const cli1 = await client(t, wire1.port, { tls: tlsOf('client') });
    await cli1.log.waitFor(/no link: authentication failed with 127\.0\.0\.1:\d+/, 5000);
    assert.equal(cli1.ups() + dnsOnly.ups(), 0);
    await cli1.inst.stop();

    // A certificate for "localhost" does not name 127.0.0.1 either (SECURITY.md: "the host it dials").
    const localhost = await server(t, { ports: [], tls: tlsOf('server-localhost') });
    const wire2 = await forwarder(t, localhost.port, '127.0.0.83');
    const cli2 = await client(t, wire2.port, { tls: tlsOf('client') });
    const outcome = await Promise.race([
      cli2.log.waitFor(/no link: authentication failed with 127\.0\.0\.1:\d+/, 5000).then(() => 'refused'),
      once(cli2.inst, 'link-up').then(() => 'link up'),
    ]);
    assert.equal(outcome, 'refused', `a certificate naming only localhost was accepted for 127.0.0.1; client log:\n${cli2.log.text()}`);
    await cli2.inst.stop();

    // The certificate that names IP 127.0.0.1 is the right one.
    const tg = await target(t);
    const srv = await server(t, { ports: [entry(tg.port)], tls: tlsOf('server') });
    const cli = await client(t, srv.port, { target: TARGET_HOST, tls: tlsOf('client') });
    await linkUp(cli, 5000);
    await linkUp(srv, 5000);
    const r = await echoAttempt(ENTRY_HOST, tg.port, 64 * 1024);
    assert.ok(r.ok, r.detail);
  });

  test('a client certificate from another CA is refused', { timeout: 30_000 }, async (t) => {
    await makePki();
    const tg = await target(t);
    const srv = await server(t, { ports: [entry(tg.port)], tls: tlsOf('server') });
    const wire = await forwarder(t, srv.port, '127.0.0.80');
    // The rogue client trusts the real CA (so it accepts the server) but its own certificate is from another CA.
    const rogue = await client(t, wire.port, { target: TARGET_HOST, tls: tlsOf('rogue-client', 'ca', 'tcpipe-test-server') });
    const outcome = await Promise.race([
      srv.log.waitFor(/authentication failed from 127\.0\.0\.80:\d+/, 5000).then(() => 'refused'),
      once(srv.inst, 'link-up').then(() => 'link up'),
    ]);
    assert.equal(outcome, 'refused', `the server admitted a client certificate signed by another CA; server log:\n${srv.log.text()}`);
    // TLS 1.3: the client has finished its side when the server refuses its certificate, so what it
    // sees may be a refusal or a closed link; either way, no link.
    await rogue.log.waitFor(/no link: .*127\.0\.0\.1:\d+/, 5000);
    assert.equal(rogue.ups() + srv.ups(), 0);
    await rogue.inst.stop();
    // The server still pairs with the right client.
    const good = await client(t, srv.port, { target: TARGET_HOST, tls: tlsOf('client', 'ca', 'tcpipe-test-server') });
    await linkUp(good, 5000);
    const r = await echoAttempt(ENTRY_HOST, tg.port, 4096);
    assert.ok(r.ok, r.detail);
    assert.equal(rogue.ups(), 0);
  });

  test('CLI: a server certificate that does not match --tls-server-name is refused by the client', { timeout: 30_000 }, async (t) => {
    await makePki();
    const { cli: srv, port: linkPort } = await startCliServer(t, certArgs('server'));
    t.after(() => srv.stop());
    const wire = await forwarder(t, linkPort, '127.0.0.81');
    const cli = spawnCli(t, ['-c', `127.0.0.1:${wire.port}`, ...certArgs('client'), '--tls-server-name=not-the-server']);
    t.after(() => cli.stop());
    const line = await cli.waitFor(/no link: authentication failed with 127\.0\.0\.1:\d+/, 5000);
    assert.match(line, /not-the-server|altnames|does not match/i);
    await srv.waitFor(/from 127\.0\.0\.81:\d+/, 5000);
    assert.doesNotMatch(srv.output() + cli.output(), /link up/);
  });
});
