/**
 * The stall of fault scenario 11f (a flapping link with resume): after a
 * resume, a stream whose two FINs had both been sent and received ("closed")
 * but whose last bytes were lost with the link stopped partway for good. The
 * resumed link rewinds it to what the partner holds, so it has bytes (and its
 * FIN) to send again while its state stays closed; once the link socket was
 * full it waited in the send queue, and the queue's walk dropped every
 * finished stream, closed ones included, as if only a reset could end there.
 * Nothing else would queue it again: its socket is gone, its credit is ample.
 *
 * The same walk must still skip a reset stream: one reset while it waits in
 * the queue has nothing to send, not even the FIN the resume meant to resend.
 *
 * Deterministic: a manual clock, and in-memory links whose partner is this
 * test (it reads the frames the session writes and writes frames by hand).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { Session, type MuxSettings, type PeerSettings } from '../../src/mux/session.js';
import type { Stream, StreamSink } from '../../src/mux/stream.js';
import { FrameDecoder } from '../../src/protocol/decode.js';
import { encodeAccept, encodeDataHeader, encodeReset, encodeResume, encodeResumedWindow, u32 } from '../../src/protocol/encode.js';
import { Flag, FrameType, ResetCode, ResumeKind } from '../../src/protocol/constants.js';
import { ErrorCodes, TcpipeError } from '../../src/errors.js';
import type { Clock } from '../../src/clock.js';
import { frameSink } from '../helpers/link-pairs.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const FRAME = 16 * KiB;

/** Time stands still and timers never fire (no heartbeat, no grace running out; the link is not distant). */
const stillClock: Clock = { now: () => 0, setTimer: () => ({ cancel: () => undefined }) };

/** The partner at the other end of one in-memory link: the DATA bytes and FINs the session wrote, per stream. */
class Partner {
  readonly dataBytes = new Map<number, number>();
  readonly fins = new Set<number>();
  /** DATA frames of a stream after its FIN (none may come). */
  afterFin = 0;
  readonly link = frameSink((f) => {
    if (f.type !== FrameType.DATA) return;
    if (this.fins.has(f.streamId)) this.afterFin++;
    this.dataBytes.set(f.streamId, (this.dataBytes.get(f.streamId) ?? 0) + f.payload.length);
    if ((f.flags & Flag.FIN) !== 0) this.fins.add(f.streamId);
  });

  send(frame: Buffer): void {
    this.link.push(frame);
  }
}

const idleSink: StreamSink = {
  onData: () => undefined,
  onEnd: () => undefined,
  onReset: () => undefined,
  onAccept: () => undefined,
  onWritable: () => undefined,
};

/** Turns of the event loop until `done` holds or nothing moves any more (at most `max`). */
async function turnsUntil(done: () => boolean, max = 200): Promise<void> {
  for (let i = 0; i < max && !done(); i++) await nextTurn();
}

const SIZE = 256 * KiB;
/** What the partner holds of the stream's 256 KiB when the link is lost. */
const RECEIVED = 56 * KiB;

/**
 * A session whose stream sent 256 KiB and its FIN (and got the partner's FIN when `closed`),
 * then lost its link before the partner read more than RECEIVED bytes and the FIN; resumed on a
 * new link where the partner lists the stream with RECEIVED bytes and no FIN, followed in the same
 * read by the frames of `after`.
 * The write bound is small: the replay fills the link socket, and the stream waits in the send
 * queue for 'drain'.
 */
async function resumedWithLostTail(t: { after(fn: () => void): void }, closed: boolean, after: Buffer[]): Promise<{ stream: Stream; second: Partner; session: Session }> {
  const settings: MuxSettings = {
    initialWindow: 4 * MiB,
    maxWindow: 4 * MiB,
    receiveBudget: 64 * MiB,
    maxStreams: 100,
    linkWriteBound: 2 * FRAME,
    maxOpenRate: 1000,
    resumeGraceMs: 30_000,
  };
  const peer: PeerSettings = { initialWindow: 4 * MiB, maxFramePayload: FRAME, maxStreams: 100 };
  const newDecoder = (): FrameDecoder => new FrameDecoder({ maxDataPayload: FRAME, expectPreface: false });
  const first = new Partner();
  const session = new Session(first.link, newDecoder(), settings, peer, { onStreamRequest: () => undefined, onEnd: () => undefined }, stillClock);
  session.start();
  t.after(() => session.destroy('test over'));

  const stream = session.openStream(7000);
  assert.ok(stream !== null);
  stream.attach(idleSink);
  first.send(encodeAccept(stream.id));
  await nextTurn();
  stream.write(Buffer.alloc(SIZE, 7));
  stream.end();
  await turnsUntil(() => first.fins.has(stream.id));
  assert.equal(first.dataBytes.get(stream.id), SIZE);
  if (closed) {
    first.send(encodeDataHeader(stream.id, Flag.LOCAL | Flag.FIN, 0));
    await nextTurn();
  }
  assert.equal(stream.state, closed ? 'closed' : 'local-closed');

  // The link is lost before the partner read the last 200 KiB and the FIN (no FIN_RECEIVED came).
  session.linkFailed(new TcpipeError(ErrorCodes.LINK_CLOSED, 'test: link lost'));
  assert.equal(session.state, 'held');

  const second = new Partner();
  session.resumeOn(second.link, newDecoder(), peer);
  second.send(
    Buffer.concat([
      encodeResumedWindow(stream.id, Flag.LOCAL | Flag.ACCEPTED, RECEIVED, 4 * MiB, RECEIVED),
      encodeResume(ResumeKind.DONE, u32(0)),
      ...after,
    ]),
  );
  return { stream, second, session };
}

test('resume: a closed stream whose last bytes were lost sends them and its FIN again, even when it must wait in the send queue (11f stall)', async (t) => {
  const { stream, second, session } = await resumedWithLostTail(t, true, []);
  await turnsUntil(() => second.fins.has(stream.id));
  assert.equal(session.state, 'live');
  const state = JSON.stringify({ state: stream.state, sent: second.dataBytes.get(stream.id) ?? 0, fin: second.fins.has(stream.id), snapshot: session.snapshot() });
  assert.equal(second.dataBytes.get(stream.id), SIZE - RECEIVED, `every byte after the partner's count is sent again: ${state}`);
  assert.ok(second.fins.has(stream.id), `and the FIN after them: ${state}`);
  assert.equal(second.afterFin, 0);
});

test('resume: a stream reset while its replay waits in the send queue sends nothing more, not even its FIN', async (t) => {
  // The partner's RESET comes right behind its list: the stream is reset while its replay waits for 'drain'.
  const reset = encodeReset(1, Flag.LOCAL, ResetCode.PEER_RESET, 'test: target reset');
  const { stream, second, session } = await resumedWithLostTail(t, false, [reset]);
  await turnsUntil(() => false, 50);
  assert.equal(session.state, 'live');
  assert.equal(stream.state, 'reset');
  const sent = second.dataBytes.get(stream.id) ?? 0;
  assert.ok(sent > 0 && sent < SIZE - RECEIVED, `part of the replay went before the reset, not all of it (${sent} B)`);
  assert.equal(second.fins.has(stream.id), false, 'no FIN after the reset');
});
