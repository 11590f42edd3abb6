/**
 * The data path of a pair on loopback, through the library: integrity of
 * many parallel streams in both directions, half-close both ways, resets
 * both ways, and a slow reader (backpressure to the user, bounded buffering,
 * no head-of-line blocking, every byte delivered once the reader resumes).
 *
 * Layout (see test/helpers/loopback.ts): link on 127.0.0.1, entry ports on
 * 127.0.0.2:P, targets on 127.0.0.3:P.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import type { Tcpipe } from '../../src/index.js';
import { entryOf, eventCount, nextEvent, startTestPair } from '../helpers/loopback.js';
import { MiB } from '../helpers/net.js';
import { retainedBufferBytes } from '../helpers/proc.js';
import { startEchoTarget, startHashTarget, startTarget, type HashTarget } from '../helpers/targets.js';
import { connectUser, echoRound, liveUser, sha256, track, writeInChunks } from '../helpers/users.js';
import { assertWithin, untilStalled, waitForEvent, withTimeout } from '../helpers/wait.js';

test('integrity: 16 parallel streams, both directions at once, 2-4 MiB each way, SHA-256 at both ends', { timeout: 60_000 }, async (t) => {
  const size = (): number => 2 * MiB + Math.floor(Math.random() * 2 * MiB);
  // Reached through the server's ports (the client dials them) and through the client's ports (the server dials them).
  const behindClient = [await startHashTarget(t, size), await startHashTarget(t, size)];
  const behindServer = [await startHashTarget(t, size), await startHashTarget(t, size)];
  const p = await startTestPair(t, { serverPorts: behindClient, clientPorts: behindServer });

  const STREAMS = 16;
  const serverCloses = eventCount(p.server, 'stream-close', STREAMS, 45_000);
  const clientCloses = eventCount(p.client, 'stream-close', STREAMS, 45_000);

  interface Plan {
    readonly id: number;
    readonly entry: Tcpipe;
    readonly portIndex: number;
    readonly target: HashTarget;
  }
  const plans: Plan[] = [];
  for (let id = 1; id <= STREAMS; id++) {
    const viaServer = id % 2 === 0; // interleaved: both directions start together
    const portIndex = Math.floor(id / 2) % 2;
    const targets = viaServer ? behindClient : behindServer;
    plans.push({ id, entry: viaServer ? p.server : p.client, portIndex, target: targets[portIndex] as HashTarget });
  }

  const results = await withTimeout(
    Promise.all(
      plans.map(async (plan) => {
        const { host, port } = entryOf(plan.entry, plan.portIndex);
        const payload = Buffer.concat([Buffer.alloc(4), randomBytes(size())]);
        payload.writeUInt32BE(plan.id, 0);
        const conn = await connectUser(t, host, port, false);
        const hash = createHash('sha256');
        conn.socket.on('data', (chunk: Buffer) => hash.update(chunk));
        void writeInChunks(conn.socket, payload).then(() => conn.socket.end());
        const info = await conn.closed;
        return { plan, sent: payload.length, sentHash: sha256(payload), got: conn.receivedBytes, gotHash: hash.digest('hex'), info };
      }),
    ),
    45_000,
    'all 16 streams to finish',
  );

  // The users saw their sockets close; the targets may still be finishing on their side.
  await Promise.all([...behindClient, ...behindServer].map((target) => target.allDone(target.sockets.length, 5000)));
  for (const r of results) {
    const where = `stream ${r.plan.id} (through the ${r.plan.entry === p.server ? 'server' : 'client'}'s port #${r.plan.portIndex})`;
    assert.equal(r.info.error, null, `${where}: the user saw no error`);
    assert.ok(r.info.ended, `${where}: the user saw the target's FIN`);
    const record = r.plan.target.records.get(r.plan.id);
    assert.ok(record !== undefined, `${where}: the target saw the stream's id`);
    assert.ok(record.done, `${where}: the target read to EOF and finished writing`);
    assert.equal(record.receivedBytes, r.sent, `${where}: byte count user -> target`);
    assert.equal(record.receivedHash, r.sentHash, `${where}: SHA-256 user -> target`);
    assert.equal(r.got, record.sentBytes, `${where}: byte count target -> user`);
    assert.equal(r.gotHash, record.sentHash, `${where}: SHA-256 target -> user`);
  }

  // Each side saw 8 streams as the entry side and 8 as the exit side, all closed cleanly.
  for (const [name, closes] of [
    ['server', await serverCloses],
    ['client', await clientCloses],
  ] as const) {
    assert.equal(closes.filter((c) => c.side === 'entry').length, 8, `${name}: entry streams`);
    assert.equal(closes.filter((c) => c.side === 'exit').length, 8, `${name}: exit streams`);
    for (const c of closes) assert.equal(c.reason, '', `${name}: stream ${c.id} closed cleanly`);
  }
  assert.equal(p.server.openStreams, 0);
  assert.equal(p.client.openStreams, 0);
  assert.ok(p.server.linkUp && p.client.linkUp, 'the link is still up');
});

test('half-close: the user sends a request and its FIN, the target reads to EOF, then replies in full', async (t) => {
  const reply = randomBytes(MiB);
  const requests: string[] = [];
  const target = await startTarget(t, (socket) => {
    const chunks: Buffer[] = [];
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    // Like an HTTP/1.0 server reading a request terminated by EOF: it answers only after the FIN.
    socket.on('end', () => {
      const request = Buffer.concat(chunks).toString();
      requests.push(request);
      socket.write(`reply to ${request}\n`);
      socket.end(reply);
    });
  });
  const p = await startTestPair(t, { serverPorts: [target] });
  const { host, port } = entryOf(p.server);
  const user = await connectUser(t, host, port);
  user.socket.end('GET /'); // printf 'GET /' | nc
  const info = await user.closedWithin(5000);
  assert.equal(info.error, null);
  assert.ok(info.ended, 'the user saw the FIN after the reply');
  assert.deepEqual(requests, ['GET /'], 'the target read the whole request, then EOF');
  const got = user.data();
  const head = Buffer.from('reply to GET /\n');
  assert.equal(got.length, head.length + reply.length, 'the whole reply arrived');
  assert.ok(got.subarray(0, head.length).equals(head));
  assert.equal(sha256(got.subarray(head.length)), sha256(reply));
});

test('half-close, the other way: the target half-closes first, the user keeps sending, everything arrives', async (t) => {
  const payload = randomBytes(2 * MiB);
  const received: { bytes: number; hash: string }[] = [];
  const target = await startTarget(t, (socket) => {
    const hash = createHash('sha256');
    let bytes = 0;
    socket.end('banner\n'); // half-close at once, keep reading
    socket.on('data', (chunk: Buffer) => {
      hash.update(chunk);
      bytes += chunk.length;
    });
    socket.on('end', () => {
      received.push({ bytes, hash: hash.digest('hex') });
      target.events.emit('read-done');
    });
  });
  // Through the client's port this time: the server is the exit side.
  const p = await startTestPair(t, { clientPorts: [target] });
  const { host, port } = entryOf(p.client);
  const user = await connectUser(t, host, port);
  await withTimeout(new Promise((resolve) => user.socket.once('end', resolve)), 5000, "the target's FIN at the user");
  assert.equal(user.data().toString(), 'banner\n');
  assert.ok(!user.socket.destroyed && user.socket.writable, 'the user can still send after the FIN');
  // The user sends only now, after the target's half-close.
  await writeInChunks(user.socket, payload);
  user.socket.end();
  const info = await user.closedWithin(5000);
  assert.equal(info.error, null);
  if (received.length === 0) await waitForEvent(target.events, 'read-done', 5000);
  assert.equal(received.length, 1, 'the target read to EOF');
  assert.equal(received[0]?.bytes, payload.length, 'every byte sent after the half-close arrived');
  assert.equal(received[0]?.hash, sha256(payload));
});

/** Opens a stream through `entry` to `target`, and proves it works end to end with one echoed line. */
async function openedStream(
  t: Parameters<typeof startEchoTarget>[0],
  entry: Tcpipe,
  target: Awaited<ReturnType<typeof startEchoTarget>>,
  index: number,
): Promise<{ user: ReturnType<typeof track>; remote: ReturnType<typeof track> }> {
  const { host, port } = entryOf(entry);
  const user = await liveUser(t, host, port);
  const remote = track(await target.connection(index, 5000));
  return { user, remote };
}

test('reset: a user that resets makes the target see ECONNRESET promptly, and the other way round', async (t) => {
  const target = await startEchoTarget(t);
  const p = await startTestPair(t, { serverPorts: [target] });

  // The user resets (the exit side closes the stream), then the target resets (the entry side does).
  const cases = [
    { resets: 'user', sees: 'target', closer: p.client, closerSays: /user application/, closerName: 'the exit side' },
    { resets: 'target', sees: 'user', closer: p.server, closerSays: /target/, closerName: 'the entry side' },
  ] as const;
  for (const [index, c] of cases.entries()) {
    const ends = await openedStream(t, p.server, target, index);
    const [resetter, seer] = c.resets === 'user' ? [ends.user, ends.remote] : [ends.remote, ends.user];
    const closed = nextEvent(c.closer, 'stream-close', 2000);
    const started = performance.now();
    resetter.socket.resetAndDestroy();
    const info = await seer.closedWithin(1000);
    assert.ok(info.hadError, `the ${c.sees} socket closed with an error`);
    assert.equal(info.error?.code, 'ECONNRESET');
    if (c.sees === 'user') assert.ok(!info.ended, 'a reset, not a FIN');
    assertWithin(t, info.at - started, 1000, `${c.resets} reset seen by the ${c.sees}`);
    assert.match((await closed).reason, c.closerSays, `${c.closerName} says who reset`);
  }
  assert.ok(p.server.linkUp && p.client.linkUp, 'resets end streams, not the link');
});

test('slow reader: backpressure reaches the user, buffering stays bounded, other streams flow, every byte arrives', { timeout: 60_000 }, async (t) => {
  const TOTAL = 64 * MiB;
  const CHUNK = 64 * 1024;
  const limits = { initialWindow: 256 * 1024, maxWindow: MiB, linkWriteBound: 256 * 1024 };
  // The reader does not read at all until told to.
  const slow = await startTarget(t, (socket) => socket.pause());
  const echo = await startEchoTarget(t);
  const p = await startTestPair(t, { serverPorts: [slow, echo], common: { limits } });

  const payload = randomBytes(TOTAL);
  const want = sha256(payload);
  const baseline = await retainedBufferBytes();

  const { host, port } = entryOf(p.server, 0);
  const user = await connectUser(t, host, port, false);
  let accepted = 0; // bytes the socket handed to the kernel, i.e. the relay took
  let refused = 0; // write() calls that returned false
  for (let offset = 0; offset < TOTAL; offset += CHUNK) {
    const chunk = payload.subarray(offset, offset + CHUNK);
    if (!user.socket.write(chunk, () => (accepted += chunk.length))) refused++;
  }
  const reader = await slow.connection(0, 5000);
  const stalledAt = await untilStalled(() => accepted, 300, 20_000, "the user's writes");

  assert.ok(refused > 0, 'write() returned false');
  assert.ok(stalledAt < TOTAL / 2, `the relay took only part of the data while the reader is paused (${(stalledAt / MiB).toFixed(1)} MiB of 64)`);
  assert.equal(user.socket.writableLength, TOTAL - stalledAt, 'the rest waits in the user socket');

  // What tcpipe itself holds for this stream (both instances live in this process):
  // about one window on the exit side, plus the link bound and a read chunk on the entry side.
  const held = (await retainedBufferBytes()) - baseline;
  const bound = limits.maxWindow + limits.linkWriteBound + MiB;
  assert.ok(held < bound, `buffers retained while stalled: ${(held / MiB).toFixed(2)} MiB (bound ${(bound / MiB).toFixed(2)} MiB)`);
  const streams = p.client.status().streams;
  assert.equal(streams.length, 1);
  assert.ok((streams[0]?.bytesIn ?? 0) < TOTAL / 2, 'the exit side received only part of it');

  // One stream must never stall another: a second stream on the same link relays promptly.
  const ms = await echoRound(t, entryOf(p.server, 1).host, entryOf(p.server, 1).port, MiB, 5000);
  assertWithin(t, ms, 2000, 'another stream relayed 1 MiB both ways beside the stalled one');
  assert.equal(accepted, stalledAt, 'the stalled stream is still stalled');

  // The reader resumes: everything arrives, intact.
  const hash = createHash('sha256');
  let got = 0;
  reader.on('data', (chunk: Buffer) => {
    hash.update(chunk);
    got += chunk.length;
  });
  const readerEnded = withTimeout(new Promise((resolve) => reader.once('end', resolve)), 40_000, 'the slow reader to get EOF');
  user.socket.end();
  reader.resume();
  await readerEnded;
  assert.equal(got, TOTAL);
  assert.equal(hash.digest('hex'), want);
  assert.equal(accepted, TOTAL);
});
