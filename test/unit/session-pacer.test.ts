/**
 * The link pacer inside a session (src/mux/link-pacer.ts, its use in
 * src/mux/session.ts; docs/PROTOCOL.md, "The link's send queue"): two real
 * Sessions over a loopback TCP connection. link-pacer.test.ts checks the
 * pacer's arithmetic alone; these check that the session writes its probes,
 * routes the partner's answers back to it, and holds bulk streams (not small
 * sends) while the cap is reached.
 *
 * What the link carries is read by a second 'data' listener on each socket,
 * decoding the very chunks the receiving session reads; nothing is mocked.
 * Every wait is on an event (a chunk on the wire, a sink callback) with a
 * bounded timeout.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import type net from 'node:net';
import { MiB, socketPair, waitForEvent } from '../helpers/loopback.js';
import { Session, type MuxSettings, type PeerSettings, type SessionHooks } from '../../src/mux/session.js';
import type { Stream } from '../../src/mux/stream.js';
import { PacerPolicy } from '../../src/mux/tunables.js';

const { INITIAL_CAP, MAX_PROBES, MIN_PROBE_SPACING } = PacerPolicy;
import { FrameDecoder } from '../../src/protocol/decode.js';
import { Flag, FrameType, HEADER_LENGTH, MAX_DATA_PAYLOAD_LIMIT } from '../../src/protocol/constants.js';
import { systemClock, type Clock } from '../../src/clock.js';

const KiB = 1024;
const PORT = 40000;
/** First four bytes of a probe's PING payload ("pace"), docs/PROTOCOL.md. */
const PROBE_MAGIC = 0x70616365;

/** A PING as it stood on the wire: the bytes before it in this direction, and what it carried. */
interface WirePing {
  readonly at: number;
  readonly ack: boolean;
  readonly payload: Buffer;
}

/** The frames one direction of the link carried, decoded from the receiving socket's chunks. */
class WireTap {
  readonly pings: WirePing[] = [];
  /** DATA payload pieces in wire order (the decoder splits payloads where chunks split). */
  readonly data: { readonly streamId: number; readonly bytes: number }[] = [];
  private total = 0;

  constructor(socket: net.Socket, changes: EventEmitter) {
    const decoder = new FrameDecoder({ maxDataPayload: MAX_DATA_PAYLOAD_LIMIT, expectPreface: false });
    socket.on('data', (chunk: Buffer) => {
      decoder.push(chunk);
      this.total += chunk.length;
      for (let frame = decoder.next(); frame !== null; frame = decoder.next()) {
        if (frame.type === FrameType.PING) {
          const end = this.total - decoder.bufferedBytes;
          this.pings.push({ at: end - HEADER_LENGTH - frame.payload.length, ack: (frame.flags & Flag.ACK) !== 0, payload: Buffer.from(frame.payload) });
        } else if (frame.type === FrameType.DATA && frame.payload.length > 0) {
          this.data.push({ streamId: frame.streamId, bytes: frame.payload.length });
        }
      }
      changes.emit('change');
    });
  }

  /** The link pacer's probes (or, with `ack`, the answers to them): PINGs whose payload is "pace" and a u32 sequence number. */
  probes(ack: boolean): { at: number; seq: number; payload: Buffer }[] {
    return this.pings
      .filter((p) => p.ack === ack && p.payload.length === 8 && p.payload.readUInt32BE(0) === PROBE_MAGIC)
      .map((p) => ({ at: p.at, seq: p.payload.readUInt32BE(4), payload: p.payload }));
  }

  /** The bytes of `streamId` that the wire carried before the byte at `offset` of stream `marker`. */
  bytesBefore(streamId: number, marker: number, offset: number): number {
    let before = 0;
    let markerBytes = 0;
    for (const piece of this.data) {
      if (piece.streamId === marker) {
        markerBytes += piece.bytes;
        if (markerBytes > offset) return before;
      } else if (piece.streamId === streamId) {
        before += piece.bytes;
      }
    }
    throw new Error(`byte ${offset} of stream ${marker} never came`);
  }
}

interface Linked {
  /** The sending side: it opens the streams; b, the other, accepts them and consumes what arrives at once. */
  readonly a: Session;
  /** What a wrote to the link (read where b reads it). */
  readonly toB: WireTap;
  /** What b wrote to the link (read where a reads it). */
  readonly toA: WireTap;
  /** Bytes b delivered, per stream id. */
  readonly delivered: Map<number, number>;
  /** Opens a stream from a, accepted by b; `onWritable` runs when a held write has gone out. */
  open(onWritable?: () => void): Stream;
  /** Resolves once `condition` holds, checked at every chunk on the wire and every sink call; fails after `ms`. */
  until(condition: () => boolean, what: string, ms?: number): Promise<void>;
}

/** Two sessions over one loopback connection, torn down by t.after; the receive budget never binds. */
async function linked(t: TestContext, limits: Pick<MuxSettings, 'initialWindow' | 'maxWindow' | 'linkWriteBound'>, clock: Clock): Promise<Linked> {
  const settings: MuxSettings = { ...limits, receiveBudget: 256 * MiB, maxStreams: 100, maxOpenRate: 1000 };
  const peer: PeerSettings = { initialWindow: limits.initialWindow, maxFramePayload: 16 * KiB, maxStreams: 100 };
  const changes = new EventEmitter();
  const [linkA, linkB] = await socketPair();
  // As link/transport.ts does: with Nagle's algorithm, each small WINDOW frame waits for an ACK.
  linkA.setNoDelay(true);
  linkB.setNoDelay(true);
  const delivered = new Map<number, number>();
  const describe = (): string => `delivered ${JSON.stringify([...delivered])}`;
  const hooks = (onRequest: (stream: Stream) => void): SessionHooks => ({
    onStreamRequest: onRequest,
    onEnd: () => changes.emit('change'),
  });
  const sink = (stream: Stream, onWritable: () => void = () => undefined): void =>
    stream.attach({
      onData: (chunk) => {
        delivered.set(stream.id, (delivered.get(stream.id) ?? 0) + chunk.length);
        stream.consume(chunk.length);
        changes.emit('change');
      },
      onEnd: () => undefined,
      onReset: () => undefined,
      onAccept: () => changes.emit('change'),
      onWritable,
    });
  const newDecoder = (): FrameDecoder => new FrameDecoder({ maxDataPayload: peer.maxFramePayload, expectPreface: false });
  const a = new Session(linkA, newDecoder(), settings, peer, hooks(() => assert.fail('b opened a stream')), clock);
  const b = new Session(
    linkB,
    newDecoder(),
    settings,
    peer,
    hooks((stream) => {
      sink(stream);
      stream.accept();
    }),
    clock,
  );
  t.after(() => {
    a.destroy('test over');
    b.destroy('test over');
  });
  a.start();
  b.start();
  // Nothing is written yet, so the taps' byte offsets are the link's; and they listen after the
  // sessions, so a wait re-checked on a chunk sees what the session made of it.
  const toB = new WireTap(linkB, changes);
  const toA = new WireTap(linkA, changes);
  return {
    a,
    toB,
    toA,
    delivered,
    open(onWritable) {
      const stream = a.openStream(PORT);
      assert.ok(stream !== null, 'openStream refused');
      sink(stream, onWritable);
      return stream;
    },
    until(condition, what, ms = 10_000) {
      if (condition()) return Promise.resolve();
      return waitForEvent(changes, 'change', ms, condition).then(
        () => undefined,
        () => {
          throw new Error(`timed out after ${ms} ms waiting for ${what}; ${describe()}`);
        },
      );
    },
  };
}

test('a bulk stream makes the session write "pace" probes between its DATA frames, and the answers go back to the pacer', async (t) => {
  const l = await linked(t, { initialWindow: 64 * KiB, maxWindow: 256 * KiB, linkWriteBound: 256 * KiB }, systemClock);
  const chunk = Buffer.alloc(MiB, 7);
  // Enough for MAX_PROBES + 1 probes a millisecond apart at several GB/s (10 to 25 MiB on this 2-core machine).
  const limit = 256 * MiB;
  let written = 0;
  let feeding = true;
  // Keeps the stream busy until told to stop: after a write that returns false, onWritable resumes.
  const feed = (): void => {
    while (feeding && written < limit) {
      written += chunk.length;
      if (!bulk.write(chunk)) return;
    }
  };
  const bulk = l.open(feed);
  const delivered = (): number => l.delivered.get(bulk.id) ?? 0;
  feed();
  // The first probe has no time to wait for: it follows the first eighth of the cap.
  await l.until(() => delivered() >= 2 * MiB, '2 MiB of bulk');
  assert.ok(l.toB.probes(false).length >= 1, 'the session wrote no probe behind 2 MiB of DATA');

  // A pacer that never hears an answer stops at MAX_PROBES outstanding: a probe numbered above
  // it shows that the partner's answers reached the pacer, not only the wire. A heartbeat ping
  // sent meanwhile still gets its own answer.
  const heartbeat = l.a.ping(10_000);
  const answered = (): boolean => l.toB.probes(false).some((p) => p.seq > MAX_PROBES);
  await l.until(() => answered() || delivered() === limit, `probe number ${MAX_PROBES + 1}`, 20_000);
  feeding = false;
  assert.ok(answered(), `no probe numbered above ${MAX_PROBES} in ${written / MiB} MiB: the answers did not reach the pacer`);
  const rtt = await heartbeat;
  assert.ok(rtt !== null, "the heartbeat's ping went unanswered during the bulk transfer");

  // A probe may follow the last DATA frame; the partner answers PINGs in order, so once the
  // answer to a ping written after everything has come back, every probe and answer has too.
  await l.until(() => delivered() === written, 'every byte written');
  assert.ok((await l.a.ping(10_000)) !== null, 'the closing ping went unanswered');
  // Every probe the wire carried is answered, in order, with its own payload.
  const probes = l.toB.probes(false);
  const answers = l.toA.probes(true);
  assert.deepEqual(
    probes.map((p) => p.seq),
    probes.map((_p, i) => i + 1),
    'probes are numbered from 1 in the order they are written',
  );
  assert.deepEqual(
    answers.map((p) => p.payload.toString('hex')),
    probes.map((p) => p.payload.toString('hex')),
    'each answer echoes its probe',
  );
  // Probes are spaced by bytes written (an eighth of the cap, 32 KiB at least), not one per frame.
  const first = probes[0];
  assert.ok(first !== undefined && first.at >= INITIAL_CAP / 8, `the first probe after ${first?.at ?? '?'} bytes`);
  for (let i = 1; i < probes.length; i++) {
    const gap = (probes[i]?.at ?? 0) - (probes[i - 1]?.at ?? 0);
    assert.ok(gap >= MIN_PROBE_SPACING, `probe ${i + 1} only ${gap} bytes after the one before`);
  }
  t.diagnostic(`${probes.length} probes over ${written / MiB} MiB`);
});

test('after a small send met a backlog, bulk waits while the bytes in flight exceed the cap, and small sends still pass', async (t) => {
  // Windows and the link write bound far above what is sent: only the pacer can hold a stream.
  // Time stands still: the cap, once contended, holds for the whole test (it lapses 2 s later by
  // the clock), and a probe goes out only when the cap is reached (or first).
  const frozen: Clock = { now: () => 0, setTimer: (ms, cb) => systemClock.setTimer(ms, cb) };
  const l = await linked(t, { initialWindow: 32 * MiB, maxWindow: 32 * MiB, linkWriteBound: 256 * MiB }, frozen);
  const small = l.open();
  const bulk = l.open();
  await l.until(() => small.state === 'open' && bulk.state === 'open', 'both streams accepted');
  const message = Buffer.alloc(100, 1);
  const data = Buffer.alloc(16 * MiB, 2);

  // No one waits: a lone bulk stream writes far beyond the cap (1 MiB at first).
  assert.equal(bulk.write(data.subarray(0, 4 * MiB)), true);
  assert.equal(bulk.bufferedToSend, 0, 'a lone bulk stream is not held');
  // An interactive send finds 4 MiB in flight: it passes, and the cap holds from now on.
  small.write(message);
  assert.equal(small.bufferedToSend, 0, 'the small send went out at once');
  // Bulk now waits for the partner's answers; another small send still passes it.
  assert.equal(bulk.write(data.subarray(0, MiB)), false);
  assert.equal(bulk.bufferedToSend, MiB, 'bulk is held while the bytes in flight exceed the cap');
  small.write(message);
  assert.equal(small.bufferedToSend, 0, 'a small send passes while bulk is held');

  // The answers to the probes open the cap again and the held megabyte follows, behind both messages.
  await l.until(() => l.delivered.get(bulk.id) === 5 * MiB && l.delivered.get(small.id) === 200, 'the held bulk and both messages');
  assert.equal(l.toB.bytesBefore(bulk.id, small.id, 0), 4 * MiB, 'the first message followed the first 4 MiB');
  assert.equal(l.toB.bytesBefore(bulk.id, small.id, 100), 4 * MiB, 'the second message went before the held megabyte');

  // Still contended: a bulk write stops where the bytes in flight reach the cap. (The cap grew at
  // most by the bytes acknowledged so far, about 5 MiB, from 1 MiB: well under 16 MiB.)
  await l.until(() => !l.a.snapshot().congested, 'the answers to bring the bytes in flight under the cap');
  bulk.write(data);
  const held = bulk.bufferedToSend;
  assert.ok(held > 0 && held < data.length, `bulk sends up to the cap and stops there (${held} of ${data.length} bytes held)`);
  small.write(message);
  assert.equal(small.bufferedToSend, 0, 'a small send passes while bulk is held');
  await l.until(() => l.delivered.get(bulk.id) === 21 * MiB && l.delivered.get(small.id) === 300, 'the rest of the bulk and the third message');
  assert.equal(l.toB.bytesBefore(bulk.id, small.id, 200), 5 * MiB + data.length - held, 'the third message went before the held bytes');
  t.diagnostic(`${l.toB.probes(false).length} probes; ${held} bytes held at the second write`);
});

/**
 * The session's link pacer as observers see it (observe.ts): read to tell the cap's hold apart
 * from any other bound on bulk (a looser one that applies when the cap is not held would hold bulk too).
 */
function pacerOf(session: Session): { readonly cap: number; readonly inFlight: number; readonly holding: boolean } {
  return session.snapshot().pacer;
}

test('an interactive stream that keeps sending keeps the cap held past ENFORCE_MS', async (t) => {
  // As above, only the pacer can hold a stream. Time moves only when the test moves it, and
  // only once every probe written so far is answered: each answer is processed at the time
  // its probe went out (round trips of 0 ms, so the cap never shrinks).
  let clockNow = 0;
  const manual: Clock = { now: () => clockNow, setTimer: (ms, cb) => systemClock.setTimer(ms, cb) };
  const l = await linked(t, { initialWindow: 32 * MiB, maxWindow: 32 * MiB, linkWriteBound: 256 * MiB }, manual);
  const small = l.open();
  const bulk = l.open();
  await l.until(() => small.state === 'open' && bulk.state === 'open', 'both streams accepted');
  const message = Buffer.alloc(100, 1);
  const delivered = (stream: Stream): number => l.delivered.get(stream.id) ?? 0;
  /** Every probe a wrote has reached b and its answer has been processed by a. */
  const allAnswered = (): boolean => l.toA.probes(true).length === l.toB.probes(false).length;

  // t = 0: an interactive send meets 2 MiB of bulk in flight (the cap starts at 1 MiB): the cap
  // holds until the first answer processed after t = 2000 ms.
  const backlog = 2 * MiB;
  assert.equal(bulk.write(Buffer.alloc(backlog, 2)), true);
  assert.equal(bulk.bufferedToSend, 0, 'a lone bulk stream is not held');
  small.write(message);
  assert.equal(small.bufferedToSend, 0, 'the small send went out at once');
  assert.ok(pacerOf(l.a).holding, 'a small send that met a backlog makes the cap hold');
  // The answers bring the bytes in flight back under the cap (only what followed the last probe stays).
  await l.until(
    () => delivered(bulk) === backlog && delivered(small) === 100 && allAnswered() && !l.a.snapshot().congested,
    'the backlog delivered, every probe answered, the bytes in flight under the cap',
  );

  // t = 1500 ms: the same interactive stream sends again; nothing is backlogged now, but the cap
  // holds, so the send holds it for another ENFORCE_MS (until t = 3500 ms).
  clockNow = 1500;
  small.write(message);
  assert.equal(small.bufferedToSend, 0, 'the second small send went out at once');
  await l.until(() => delivered(small) === 200 && allAnswered(), 'the second message');

  // t = 2500 ms: past the hold the first send started, within ENFORCE_MS of the second. Some bulk
  // under the cap makes a probe go out (its spacing, an eighth of the cap, is at most
  // (1 MiB + 2 MiB acknowledged) / 8 < 512 KiB), and its answer is processed now.
  clockNow = 2500;
  const answersBefore = l.toA.probes(true).length;
  const probing = 512 * KiB;
  assert.equal(bulk.write(Buffer.alloc(probing, 3)), true);
  assert.equal(bulk.bufferedToSend, 0, 'bulk under the cap is not held');
  await l.until(
    () => delivered(bulk) === backlog + probing && l.toA.probes(true).length > answersBefore && allAnswered(),
    'a probe written and answered at t = 2500 ms',
  );

  // The cap still holds: the answer just processed came after the first send's 2 s (checked before
  // any bulk is held, since a small send meeting held bulk would make the cap hold anew).
  const pacer = pacerOf(l.a);
  assert.ok(pacer.holding, 'the cap still holds at t = 2500 ms, after an answer processed then');

  // Bulk well beyond the cap (at most about 3.5 MiB by now) stops where the bytes in flight reach it.
  const data = Buffer.alloc(16 * MiB, 4);
  const inFlightBefore = pacer.inFlight;
  const cap = pacer.cap;
  assert.equal(bulk.write(data), false, 'the bulk write is held');
  const held = bulk.bufferedToSend;
  assert.ok(held > 0 && held < data.length, `bulk sends up to the cap and stops there (${held} of ${data.length} bytes held)`);
  small.write(message);
  assert.equal(small.bufferedToSend, 0, 'a small send passes while bulk is held');
  // Held by the cap itself, not by some looser bound: the write stopped at the first frame
  // (16 KiB, a header, perhaps a probe) that reached the cap.
  assert.ok(
    pacerOf(l.a).inFlight - 2 * KiB - 16 * KiB < cap && data.length - held <= cap - inFlightBefore + 16 * KiB,
    `bulk stopped at the cap (${cap} bytes): ${data.length - held} bytes sent with ${inFlightBefore} in flight before`,
  );

  // The answers release the rest, behind the third message.
  await l.until(
    () => delivered(bulk) === backlog + probing + data.length && delivered(small) === 300,
    'the rest of the bulk and the third message',
  );
  assert.equal(
    l.toB.bytesBefore(bulk.id, small.id, 200),
    backlog + probing + data.length - held,
    'the third message went before the held bytes',
  );
  t.diagnostic(`cap ${cap} bytes at t = 2500 ms; ${held} bytes held; ${l.toB.probes(false).length} probes`);
});
