/**
 * The stall of issue 17 (fault scenario 11g: every stream of one side stopped
 * for good after a resume, the link alive): the link pacer's cap was closed
 * with no probe in flight, and only a probe's answer reopens it.
 *
 * How it came about: on a fresh pacer (a new or resumed link) bulk goes out
 * uncapped (the cap holds only once an interactive send met a backlog), so a
 * replay of megabytes puts MAX_PROBES probes on the wire and the bytes after
 * the last one carry none. A small send then closes the cap; the answers come
 * back slower and slower (a loaded partner), the cap shrinks below the bytes
 * written after the last probe, and once the last answer is in, nothing is
 * left to answer: every bulk stream waits in the send queue, its socket
 * paused, while heartbeats keep the link up. Only a small send (which passes
 * the cap and carries a probe) would have reopened it.
 *
 * Deterministic: a manual clock, and an in-memory link whose partner is this
 * test (it reads the frames the session writes and answers its probes).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { Session, type MuxSettings } from '../../src/mux/session.js';
import type { Stream } from '../../src/mux/stream.js';
import { frameSink, idleSink } from '../helpers/link-pairs.js';
import { LinkPacer } from '../../src/mux/link-pacer.js';
import { RoundTrip } from '../../src/mux/round-trip.js';
import { PacerPolicy } from '../../src/mux/tunables.js';
import { FrameDecoder } from '../../src/protocol/decode.js';
import { encodePing } from '../../src/protocol/encode.js';
import { Flag, FrameType } from '../../src/protocol/constants.js';
import type { Clock } from '../../src/clock.js';

const { MAX_PROBES } = PacerPolicy;
const KiB = 1024;
const MiB = 1024 * KiB;
const FRAME = 16 * KiB;
/** First four bytes of a probe's PING payload ("pace"), docs/PROTOCOL.md. */
const PROBE_MAGIC = 0x70616365;

function isProbe(payload: Buffer): boolean {
  return payload.length === 8 && payload.readUInt32BE(0) === PROBE_MAGIC;
}

test('link pacer: a cap closed with no probe in flight lets the next frame (and its probe) go', () => {
  const pacer = new LinkPacer(new RoundTrip());
  const probes: Buffer[] = [];
  // A resumed link's replay: 6.4 MB uncapped, a probe whenever one is due (as LinkWriter does).
  for (let i = 0; i < 400; i++) {
    pacer.wrote(FRAME + 9);
    if (pacer.probeDue) {
      const probe = pacer.probe(0);
      if (probe !== null) probes.push(probe);
    }
  }
  assert.equal(probes.length, MAX_PROBES, 'MAX_PROBES probes out; the bytes after the last one carry none');
  pacer.contended(0);
  assert.equal(pacer.closed, true, 'an interactive send met the backlog: the cap holds');
  // Answers 10 ms apart: the round trip grows, the cap shrinks below what the last probe left unacknowledged.
  let now = 0;
  for (const probe of probes) pacer.answered(probe, (now += 10));
  assert.ok(pacer.inFlight >= pacer.cap, `inFlight ${pacer.inFlight} >= cap ${pacer.cap}: the bytes after the last probe`);
  // No answer can come now; a closed cap would stay closed for good.
  assert.equal(pacer.closed, false, 'with no probe in flight the cap must not hold');
  pacer.wrote(FRAME + 9);
  assert.equal(pacer.probeDue, true, 'the next frame is followed by a probe');
  const probe = pacer.probe(now);
  assert.ok(probe !== null);
  assert.equal(pacer.closed, true, 'and the cap holds again until it is answered');
  pacer.answered(probe, now + 10);
  assert.equal(pacer.closed, false, 'its answer acknowledges every byte before it');
});

/** Time moves only when told; timers never fire (no heartbeat here, and the link is not distant). */
function manualClock(): { clock: Clock; advance(ms: number): number } {
  let now = 0;
  return {
    clock: { now: () => now, setTimer: () => ({ cancel: () => undefined }) },
    advance: (ms) => (now += ms),
  };
}

/** The partner, as seen on an in-memory link: the DATA bytes and probes the session wrote. */
class Partner {
  readonly dataBytes = new Map<number, number>();
  /** Probes written and not answered yet, in order. */
  readonly unanswered: Buffer[] = [];
  probesSeen = 0;
  readonly link = frameSink((f) => {
    if (f.type === FrameType.DATA) this.dataBytes.set(f.streamId, (this.dataBytes.get(f.streamId) ?? 0) + f.payload.length);
    else if (f.type === FrameType.PING && (f.flags & Flag.ACK) === 0 && isProbe(f.payload)) {
      this.unanswered.push(Buffer.from(f.payload));
      this.probesSeen++;
    }
  });

  /** Answers the oldest probe (the partner answers PINGs in order, as it reads them). */
  answerOne(): boolean {
    const probe = this.unanswered.shift();
    if (probe === undefined) return false;
    this.link.push(encodePing(Flag.ACK, probe));
    return true;
  }
}


test('session: bulk queued behind the closed cap goes on once the answers leave no probe in flight (issue 17 stall)', async (t) => {
  const { clock, advance } = manualClock();
  const partner = new Partner();
  // The window and the write bound never bind: only the pacer decides.
  const settings: MuxSettings = {
    initialWindow: 64 * MiB,
    maxWindow: 64 * MiB,
    receiveBudget: 256 * MiB,
    maxStreams: 100,
    linkWriteBound: 1024 * MiB,
    maxOpenRate: 1000,
  };
  const session = new Session(
    partner.link,
    new FrameDecoder({ maxDataPayload: FRAME, expectPreface: false }),
    settings,
    { initialWindow: 64 * MiB, maxFramePayload: FRAME, maxStreams: 100 },
    { onStreamRequest: () => undefined, onEnd: () => undefined },
    clock,
  );
  session.start();
  t.after(() => session.destroy('test over'));
  const open = (): Stream => {
    const stream = session.openStream(7000);
    assert.ok(stream !== null);
    stream.attach(idleSink);
    return stream;
  };

  // 1. Bulk, uncapped: MAX_PROBES probes go out, and megabytes after the last of them.
  const bulk = open();
  const BULK = 400 * FRAME;
  for (let i = 0; i < BULK / (64 * KiB); i++) bulk.write(Buffer.alloc(64 * KiB, 1));
  await nextTurn();
  assert.equal(partner.dataBytes.get(bulk.id), BULK);
  assert.equal(partner.unanswered.length, MAX_PROBES);

  // 2. An interactive send meets that backlog: the cap holds (the small send itself passes).
  advance(1);
  const interactive = open();
  interactive.write(Buffer.alloc(100, 2));
  await nextTurn();
  assert.equal(partner.dataBytes.get(interactive.id), 100);
  assert.equal(session.snapshot().congested, true, 'the cap holds');

  // 3. More bulk waits in the send queue.
  const MORE = 256 * KiB;
  bulk.write(Buffer.alloc(MORE, 3));
  await nextTurn();
  assert.equal(partner.dataBytes.get(bulk.id), BULK, 'held by the cap');

  // 4. The partner answers every probe, 10 ms apart (it is loaded: the round trip grows).
  for (let i = 0; i < 200 && partner.unanswered.length > 0; i++) {
    advance(10);
    partner.answerOne();
    await nextTurn();
  }
  const sent = partner.dataBytes.get(bulk.id) ?? 0;
  const state = JSON.stringify({ sent, of: BULK + MORE, probesSeen: partner.probesSeen, snapshot: session.snapshot() });
  assert.equal(sent, BULK + MORE, `every queued byte went out once the probes were answered: ${state}`);
  assert.ok(partner.probesSeen > MAX_PROBES, `the frames after the stall carried probes: ${state}`);
});
