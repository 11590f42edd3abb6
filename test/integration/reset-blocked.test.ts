/**
 * A reset must cross the link within 1 s whatever the window (docs/PROTOCOL.md,
 * "Ordering and the close"): a user socket whose stream waits for window is
 * paused, and a paused socket whose Readable buffer is full no longer reads,
 * so the kernel's RST went unnoticed until the window opened (issue 22).
 */
import assert from 'node:assert/strict';
import type net from 'node:net';
import test from 'node:test';
import { MiB, assertWithin, entryOf, connectUser, nextEvent, pair, startTarget, track, untilStalled } from '../helpers/loopback.js';

/** What docs/PROTOCOL.md states: a reset reaches the other side within this bound. */
const RESET_BOUND_MS = 1000;

test('reset while blocked: a user that resets while its stream waits for window resets the target within 1 s', { timeout: 30_000 }, async (t) => {
  // The target never reads: the stream's window runs out and the user socket is paused.
  const target = await startTarget(t, (socket) => socket.pause());
  const p = await pair(t, { serverPorts: [target], common: { limits: { initialWindow: 64 * 1024, maxWindow: 256 * 1024 } } });
  const { host, port } = entryOf(p.server);
  const user = await connectUser(t, host, port);
  const remote = track(await target.connection(0, 5000));
  const total = 64 * MiB;
  const chunk = Buffer.alloc(64 * 1024, 0x61);
  let sent = 0;
  const writeMore = (): void => {
    while (sent < total && !user.socket.destroyed) {
      sent += chunk.length;
      if (!user.socket.write(chunk)) return;
    }
  };
  user.socket.on('drain', writeMore);
  writeMore();
  // Blocked: nothing more leaves the user's socket (the relay stopped reading it).
  const left = await untilStalled(() => sent - user.socket.writableLength, 300, 15_000, "the user's writes");
  assert.ok(left < total, `the stream is blocked (${left} of ${total} bytes left the user)`);
  t.diagnostic(`blocked after ${left} bytes`);

  const exitClosed = nextEvent(p.client, 'stream-close', 5000);
  const started = performance.now();
  user.socket.resetAndDestroy();
  const close = await exitClosed;
  // The exit side reset its target connection: measured there, since the target itself
  // does not read either and so notices the RST only when it reads again.
  assertWithin(t, performance.now() - started, RESET_BOUND_MS, 'user reset relayed to the blocked target');
  assert.match(close.reason, /user application/, 'the exit side says who reset');
  // Reading again, the target finds the reset (libuv reports a RST after a partial read as
  // an end-of-stream; an empty write then surfaces the error, as pipe.ts does).
  remote.socket.once('end', () => remote.socket.write(Buffer.alloc(0)));
  remote.socket.resume();
  const info = await remote.closedWithin(2000);
  assert.ok(info.hadError, 'the target socket closed with an error');
  assert.equal(info.error?.code, 'ECONNRESET', 'the target sees a reset, not a FIN');
  assert.ok(p.server.linkUp && p.client.linkUp, 'the reset ended the stream, not the link');
});

test('reset while blocked: a target that resets while its stream waits for window resets the user within 1 s', { timeout: 30_000 }, async (t) => {
  // The target floods; the user never reads: the exit side's socket to the target is paused.
  const total = 64 * MiB;
  const chunk = Buffer.alloc(64 * 1024, 0x62);
  let sent = 0;
  let targetSocket: net.Socket | null = null;
  const target = await startTarget(t, (socket) => {
    targetSocket = socket;
    const writeMore = (): void => {
      while (sent < total && !socket.destroyed) {
        sent += chunk.length;
        if (!socket.write(chunk)) return;
      }
    };
    socket.on('drain', writeMore);
    writeMore();
  });
  const p = await pair(t, { serverPorts: [target], common: { limits: { initialWindow: 64 * 1024, maxWindow: 256 * 1024 } } });
  const { host, port } = entryOf(p.server);
  const user = await connectUser(t, host, port);
  user.socket.pause();
  await target.connection(0, 5000);
  const socket = targetSocket as net.Socket | null;
  assert.ok(socket !== null);
  const left = await untilStalled(() => sent - socket.writableLength, 300, 15_000, "the target's writes");
  assert.ok(left < total, `the stream is blocked (${left} of ${total} bytes left the target)`);

  const entryClosed = nextEvent(p.server, 'stream-close', 5000);
  const started = performance.now();
  socket.resetAndDestroy();
  const close = await entryClosed;
  assertWithin(t, performance.now() - started, RESET_BOUND_MS, 'target reset relayed to the blocked user');
  assert.match(close.reason, /target/, 'the entry side says who reset');
});
