/**
 * A local socket reset right after its FIN was relayed (src/endpoints/pipe.ts;
 * issue 17: fault scenario 9 hung a client for good after SIGTERM).
 *
 * The partner's FIN makes the pipe end() its socket; a reset in the same turn
 * (a RESET frame in the same link read, or the session ending on SIGTERM)
 * used to call resetAndDestroy() while that shutdown was pending. libuv
 * refuses to reset a socket that is shutting down (UV_EINVAL) and Node then
 * drops the handle without closing it: 'error' (reset EINVAL), no 'close', the
 * pipe is never released, the descriptor leaks, and at exit Node waits for the
 * handle forever (a client at 100% CPU after "SIGTERM: stopping").
 *
 * Real sockets on loopback; every wait is bounded.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type net from 'node:net';
import { socketPair, withTimeout } from '../helpers/loopback.js';
import { StreamPipe } from '../../src/endpoints/pipe.js';
import { Stream, type StreamContext } from '../../src/mux/stream.js';
import { RoundTrip } from '../../src/mux/round-trip.js';
import { systemClock } from '../../src/clock.js';
import { ResetCode } from '../../src/protocol/constants.js';

/** A stream whose session is out of the picture: every frame it would send goes nowhere. */
function detachedStream(): Stream {
  const context: StreamContext = {
    sender: { maxFrame: 16 * 1024, congested: false, dataOpen: true, sendData: () => undefined, sendFrame: () => undefined, schedule: () => undefined },
    windows: { growWindow: () => 0 },
    released: () => undefined,
    roundTrip: new RoundTrip(),
    clock: systemClock,
    resumable: false,
    finished: () => undefined,
  };
  return new Stream(1, true, 7000, context, { sendWindow: 64 * 1024, receiveWindow: 64 * 1024, maxWindow: 64 * 1024 });
}

async function pipeOnPair(t: { after(fn: () => void): void }): Promise<{ pipe: StreamPipe; local: net.Socket; closed: Promise<string> }> {
  const [local, peer] = await socketPair();
  peer.on('error', () => undefined);
  peer.resume();
  t.after(() => {
    local.destroy();
    peer.destroy();
  });
  let onClosed: (reason: string) => void = () => undefined;
  const closed = new Promise<string>((resolve) => (onClosed = resolve));
  const pipe = new StreamPipe(local, detachedStream(), { onClosed: (_pipe, reason) => onClosed(reason) });
  pipe.start();
  return { pipe, local, closed };
}

test('pipe: a reset in the same turn as the FIN it follows closes the socket (partner RESET after FIN)', async (t) => {
  const { pipe, local, closed } = await pipeOnPair(t);
  const errors: string[] = [];
  local.on('error', (err) => errors.push(err.message));
  pipe.onEnd();
  pipe.onReset(ResetCode.PEER_RESET, 'the partner reset the stream');
  const reason = await withTimeout(closed, 3000, `the socket to close (errors: ${JSON.stringify(errors)}, destroyed ${local.destroyed})`);
  assert.equal(reason, 'the partner reset the stream');
  assert.deepEqual(errors, [], 'no "reset EINVAL"');
});

test('pipe: an abort in the same turn as the FIN it follows closes the socket (session ending on SIGTERM)', async (t) => {
  const { pipe, local, closed } = await pipeOnPair(t);
  const errors: string[] = [];
  local.on('error', (err) => errors.push(err.message));
  pipe.onEnd();
  pipe.abort(ResetCode.SHUTDOWN, 'shutting down');
  const reason = await withTimeout(closed, 3000, `the socket to close (errors: ${JSON.stringify(errors)}, destroyed ${local.destroyed})`);
  assert.equal(reason, 'shutting down');
  assert.deepEqual(errors, [], 'no "reset EINVAL"');
});

test('pipe: a reset with the socket open still goes out as a reset', async (t) => {
  const [local, peer] = await socketPair();
  t.after(() => {
    local.destroy();
    peer.destroy();
  });
  const peerError = new Promise<string>((resolve) => peer.on('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message)));
  peer.on('end', () => undefined);
  peer.resume();
  const pipe = new StreamPipe(local, detachedStream(), { onClosed: () => undefined });
  pipe.start();
  pipe.onReset(ResetCode.PEER_RESET, 'the partner reset the stream');
  assert.equal(await withTimeout(peerError, 3000, 'the peer to see the reset'), 'ECONNRESET');
});
