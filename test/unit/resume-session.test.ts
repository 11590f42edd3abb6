/**
 * Stream resumption at the session level (src/mux/session.ts, stream.ts):
 * two resumable Sessions over a real loopback TCP connection. The link is
 * destroyed mid-transfer, both sessions hold their streams, and a new
 * connection carries them on (resumeOn): every byte must arrive exactly once
 * and in order, FINs, OPENs and RESETs made while held included. And the
 * grace timer ends a session that no new link came for.
 *
 * Every wait is on an event (sink callbacks, session hooks) with a bounded timeout.
 */
import { subscribe } from '../../src/observe.js';
import type { Duplex } from 'node:stream';
import { describe, test } from 'node:test';
import { socketPair } from '../helpers/loopback.js';
import { LINK_KINDS, linkPair } from '../helpers/link-pairs.js';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import net from 'node:net';
import { EventEmitter } from 'node:events';
import { Session, type MuxSettings, type PeerSettings, type ResumeInfo, type SessionEnd } from '../../src/mux/session.js';
import type { Stream, StreamSink } from '../../src/mux/stream.js';
import { FrameDecoder, parseCodeAndReason, parseResumedReceived, parseWindow } from '../../src/protocol/decode.js';
import {
  encodeAccept,
  encodeDataHeader,
  encodeOpen,
  encodeResume,
  encodeResumedWindow,
  encodeWindow,
  u32,
} from '../../src/protocol/encode.js';
import { Flag, FrameType, GoAwayCode, RESUMED_WINDOW_LENGTH, ResetCode, ResumeKind } from '../../src/protocol/constants.js';
import type { Frame } from '../../src/protocol/frame.js';
import { ErrorCodes } from '../../src/errors.js';
import { systemClock } from '../../src/clock.js';

const SETTINGS: MuxSettings = {
  initialWindow: 64 * 1024,
  maxWindow: 256 * 1024,
  receiveBudget: 8 * 1024 * 1024,
  maxStreams: 100,
  linkWriteBound: 256 * 1024,
  maxOpenRate: 1000,
  resumeGraceMs: 20_000,
};
const PEER: PeerSettings = { initialWindow: 64 * 1024, maxFramePayload: 16 * 1024, maxStreams: 100 };
const PORT = 40000;

/** Every sink and hook event; waits re-check their condition on each. */
class Changes extends EventEmitter {
  notify(): void {
    this.emit('change');
  }

  /** Resolves once `condition` holds; rejects after `timeoutMs` with `describe()` in the message. */
  until(condition: () => boolean, what: string, describe: () => string, timeoutMs = 15_000): Promise<void> {
    if (condition()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const check = (): void => {
        if (!condition()) return;
        cleanUp();
        resolve();
      };
      const timer = setTimeout(() => {
        cleanUp();
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}\n${describe()}`));
      }, timeoutMs);
      const cleanUp = (): void => {
        clearTimeout(timer);
        this.off('change', check);
      };
      this.on('change', check);
    });
  }
}

/** Records what a stream delivers, and consumes it at once. */
class Recorder implements StreamSink {
  private readonly chunks: Buffer[] = [];
  bytes = 0;
  ended = false;
  accepted = false;
  reset: { code: number; reason: string } | null = null;

  constructor(
    readonly stream: Stream,
    private readonly changes: Changes,
  ) {}

  onData(chunk: Buffer): void {
    this.chunks.push(Buffer.from(chunk));
    this.bytes += chunk.length;
    this.stream.consume(chunk.length);
    this.changes.notify();
  }

  onEnd(): void {
    this.ended = true;
    this.changes.notify();
  }

  onReset(code: number, reason: string): void {
    this.reset = { code, reason };
    this.changes.notify();
  }

  onAccept(): void {
    this.accepted = true;
    this.changes.notify();
  }

  onWritable(): void {}

  get data(): Buffer {
    return Buffer.concat(this.chunks);
  }

  describe(): string {
    return `stream ${this.stream.id} (${this.stream.isEntry ? 'entry' : 'exit'}, ${this.stream.state}): ${this.bytes} B in, ended ${this.ended}, reset ${JSON.stringify(this.reset)}`;
  }
}

interface Side {
  readonly name: string;
  readonly session: Session;
  /** Sinks by stream id. */
  readonly sinks: Map<number, Recorder>;
  held: SessionEnd | null;
  resumed: ResumeInfo | null;
  ended: SessionEnd | null;
}


const newDecoder = (): FrameDecoder => new FrameDecoder({ maxDataPayload: 64 * 1024, expectPreface: false });

/**
 * A session on `link`. `onRequest` runs when the partner opens a stream (after
 * the recording sink is attached); by default the stream is accepted.
 */
function side(name: string, link: Duplex, changes: Changes, settings: MuxSettings, onRequest?: (stream: Stream, sink: Recorder) => void): Side {
  const sinks = new Map<number, Recorder>();
  /** What the hooks record; the Side is this plus the session. */
  const seen: Pick<Side, 'held' | 'resumed' | 'ended'> = { held: null, resumed: null, ended: null };
  // A stream forgotten by its session (FIN acknowledged) is a change too: the tests wait for it.
  const unsubscribe = subscribe('tcpipe:stream:finished', () => changes.notify());
  const session = new Session(
    link,
    newDecoder(),
    settings,
    PEER,
    {
      onStreamRequest: (stream) => {
        const sink = new Recorder(stream, changes);
        stream.attach(sink);
        sinks.set(stream.id, sink);
        if (onRequest !== undefined) onRequest(stream, sink);
        else stream.accept();
        changes.notify();
      },
      onEnd: (end) => {
        seen.ended = end;
        unsubscribe();
        changes.notify();
      },
      onHeld: (end) => {
        seen.held = end;
        changes.notify();
      },
      onResumed: (info) => {
        seen.resumed = info;
        changes.notify();
      },
    },
    systemClock,
  );
  return Object.assign(seen, { name, session, sinks });
}

function open(entry: Side, changes: Changes): { stream: Stream; sink: Recorder } {
  const stream = entry.session.openStream(PORT);
  assert.ok(stream !== null, 'openStream refused');
  const sink = new Recorder(stream, changes);
  stream.attach(sink);
  entry.sinks.set(stream.id, sink);
  return { stream, sink };
}

/** Queues `data` on the stream in 64 KiB writes (the stream keeps what the window does not allow yet). */
function writeAll(stream: Stream, data: Buffer): void {
  for (let at = 0; at < data.length; at += 64 * 1024) stream.write(data.subarray(at, at + 64 * 1024));
}

function describeSides(...sides: Side[]): string {
  return sides
    .map(
      (s) =>
        `${s.name}: linkState ${s.session.state}, ended ${s.ended?.reason ?? 'no'}, streams ${s.session.streamCount}, resumed ${JSON.stringify(s.resumed)}\n` +
        [...s.sinks.values()].map((sink) => `  ${sink.describe()}`).join('\n'),
    )
    .join('\n');
}

/** The bytes one direction of a stream must deliver, in the order they were written. */
class Expected {
  private readonly parts: Buffer[] = [];

  add(bytes: number): Buffer {
    const data = crypto.randomBytes(bytes);
    this.parts.push(data);
    return data;
  }

  get data(): Buffer {
    return Buffer.concat(this.parts);
  }

  get length(): number {
    return this.parts.reduce((n, p) => n + p.length, 0);
  }
}

const hex = (bytes: Buffer): string => bytes.toString('hex');

function assertSame(got: Buffer, want: Buffer, what: string): void {
  assert.equal(got.length, want.length, `${what}: ${got.length} bytes arrived, ${want.length} were sent`);
  if (!got.equals(want)) {
    let at = 0;
    while (at < got.length && got[at] === want[at]) at++;
    assert.fail(`${what}: the bytes differ from offset ${at} (duplicated, lost or reordered bytes)`);
  }
}

for (const kind of LINK_KINDS) {
  describe(`session resumption over ${kind}`, () => {
    test('streams survive a lost link: every byte exactly once and in order, FIN, OPEN and RESET made while held included', { timeout: 60_000 }, async (t) => {
      const changes = new Changes();
      const [link1a, link1b] = await linkPair(kind);
      const links = [link1a, link1b];
      // A is the entry side (it opens the streams), B the exit side: it accepts each stream
      // and answers those it has a reply for with the reply and a FIN.
      const replies = new Map<number, Buffer>();
      const a = side('A', link1a, changes, SETTINGS);
      const b = side('B', link1b, changes, SETTINGS, (stream) => {
        stream.accept();
        const reply = replies.get(stream.id);
        if (reply !== undefined) {
          writeAll(stream, reply);
          stream.end();
        }
      });
      const all = (): string => describeSides(a, b);
      try {
        a.session.start();
        b.session.start();

        // Three streams, 4 MiB each way on each.
        const BULK = 4 * 1024 * 1024;
        const out = new Map<string, Expected>(); // key: `${id}:${from}`
        const expected = (id: number, from: 'A' | 'B'): Expected => {
          const key = `${id}:${from}`;
          let e = out.get(key);
          if (e === undefined) out.set(key, (e = new Expected()));
          return e;
        };
        const entryStreams = [1, 2, 3].map(() => open(a, changes));
        await changes.until(() => b.sinks.size === 3 && entryStreams.every((s) => s.sink.accepted), 'three streams open', all);
        const exitStream = (id: number): Stream => b.sinks.get(id)?.stream ?? assert.fail(`B has no stream ${id}`);
        for (const { stream } of entryStreams) {
          writeAll(stream, expected(stream.id, 'A').add(BULK));
          writeAll(exitStream(stream.id), expected(stream.id, 'B').add(BULK));
        }

        // Mid-transfer: once some data has arrived both ways, the link dies under both.
        const aSink = (id: number): Recorder => a.sinks.get(id) ?? assert.fail(`A has no stream ${id}`);
        const bSink = (id: number): Recorder => b.sinks.get(id) ?? assert.fail(`B has no stream ${id}`);
        await changes.until(() => aSink(1).bytes >= 256 * 1024 && bSink(1).bytes >= 256 * 1024, 'the transfer under way', all);
        link1a.destroy();
        link1b.destroy();
        await changes.until(() => a.held !== null && b.held !== null, 'both sessions held', all);

        for (const s of [a, b]) {
          assert.equal(s.session.state, 'held', `${s.name} holds`);
          assert.equal(s.session.isEnded, false);
          assert.equal(s.session.streamCount, 3, `${s.name} holds its three streams`);
          for (const sink of s.sinks.values()) {
            assert.equal(sink.reset, null, `${s.name}: ${sink.describe()} was not reset`);
            assert.notEqual(sink.stream.state, 'reset');
          }
        }
        for (const id of [1, 2, 3]) {
          assert.ok(aSink(id).bytes < BULK || bSink(id).bytes < BULK, `stream ${id} was still transferring when the link died`);
        }
        t.diagnostic(`when held: ${[1, 2, 3].map((id) => `stream ${id} A got ${aSink(id).bytes} B got ${bSink(id).bytes}`).join('; ')}`);
        // Bytes handed to the old link that the partner never received: they must be sent again.
        let lost = 0;
        for (const id of [1, 2, 3]) {
          lost += aSink(id).stream.sentBytes - bSink(id).stream.receivedBytes;
          lost += bSink(id).stream.sentBytes - aSink(id).stream.receivedBytes;
        }
        t.diagnostic(`${lost} bytes were lost with the old link`);
        assert.ok(lost > 0, 'some sent bytes were lost with the old link (else nothing is replayed)');

        // While held:
        // - stream 1: A writes more and sends its FIN; B writes more.
        writeAll(aSink(1).stream, expected(1, 'A').add(100_000));
        aSink(1).stream.end();
        writeAll(exitStream(1), expected(1, 'B').add(100_000));
        // - stream 2: B sends its FIN.
        exitStream(2).end();
        // - stream 3: A resets it.
        aSink(3).stream.reset(ResetCode.PEER_RESET, 'reset while the link was down');
        // - stream 4: A opens it, writes and sends its FIN; B answers with data and a FIN once it sees it.
        const fourth = open(a, changes);
        assert.equal(fourth.stream.id, 4);
        writeAll(fourth.stream, expected(4, 'A').add(200_000));
        fourth.stream.end();
        replies.set(4, expected(4, 'B').add(200_000));
        assert.equal(a.session.state, 'held');
        assert.equal(b.session.state, 'held');

        // A new connection: both sides resume on it (B sees stream 4's OPEN after the lists).
        const [link2a, link2b] = await linkPair(kind);
        links.push(link2a, link2b);
        a.session.resumeOn(link2a, newDecoder(), PEER);
        b.session.resumeOn(link2b, newDecoder(), PEER);
        assert.equal(a.session.state, 'resuming');
        assert.equal(b.session.state, 'resuming');
        await changes.until(() => a.resumed !== null && b.resumed !== null, 'both sessions resumed', all);
        t.diagnostic(`resumed: A ${JSON.stringify(a.resumed)}, B ${JSON.stringify(b.resumed)}`);

        // After the resumption: stream 1 B writes more, then its FIN; stream 2 A writes more, then its FIN.
        writeAll(exitStream(1), expected(1, 'B').add(150_000));
        exitStream(1).end();
        writeAll(aSink(2).stream, expected(2, 'A').add(150_000));
        aSink(2).stream.end();

        await changes.until(
          () => [1, 2, 4].every((id) => aSink(id).ended && bSink(id).ended) && bSink(3).reset !== null,
          'every FIN and the RESET across',
          all,
        );
        for (const id of [1, 2, 4]) {
          assertSame(bSink(id).data, expected(id, 'A').data, `stream ${id}, A to B`);
          assertSame(aSink(id).data, expected(id, 'B').data, `stream ${id}, B to A`);
        }
        // Stream 3: B learns of A's reset; what arrived before it is a prefix of what was sent, once.
        assert.deepEqual(bSink(3).reset, { code: ResetCode.PEER_RESET, reason: 'reset while the link was down' });
        assert.equal(aSink(3).reset, null, "A's own reset does not call its sink");
        for (const [sink, from] of [[bSink(3), 'A'], [aSink(3), 'B']] as const) {
          const sent = expected(3, from).data;
          assertSame(sink.data, sent.subarray(0, sink.bytes), `stream 3, from ${from} (prefix)`);
        }

        assert.deepEqual(a.resumed, { streams: 3, replayedBytes: a.resumed?.replayedBytes }, 'A carried streams 1 and 2 over and opened 4');
        assert.equal(b.resumed?.streams, 2, 'B carried streams 1 and 2 over');
        // Every stream closed both ways is forgotten once its FINs are acknowledged.
        await changes.until(() => a.session.streamCount === 0 && b.session.streamCount === 0, 'every stream forgotten', all);
        for (const s of [a, b]) {
          assert.equal(s.session.state, 'live');
          assert.equal(s.ended, null, `${s.name} still running`);
        }
      } finally {
        a.session.destroy('test over');
        b.session.destroy('test over');
        for (const link of links) link.destroy();
      }
    });

    test('the grace timer ends a held session with TCPIPE_ERR_RESUME_EXPIRED and resets its streams', { timeout: 30_000 }, async () => {
      const changes = new Changes();
      const [linkA, linkB] = await linkPair(kind);
      const grace = 300;
      const a = side('A', linkA, changes, { ...SETTINGS, resumeGraceMs: grace });
      const b = side('B', linkB, changes, { ...SETTINGS, resumeGraceMs: grace });
      const all = (): string => describeSides(a, b);
      try {
        a.session.start();
        b.session.start();
        const { stream, sink } = open(a, changes);
        stream.write(Buffer.from('hello'));
        await changes.until(() => sink.accepted && (b.sinks.get(1)?.bytes ?? 0) === 5, 'a stream with data', all);
        linkA.destroy();
        linkB.destroy();
        await changes.until(() => a.held !== null && b.held !== null, 'both sessions held', all);
        const heldAt = performance.now();
        assert.equal(a.ended, null);
        assert.equal(sink.reset, null);
        await changes.until(() => a.ended !== null && b.ended !== null, 'the grace to run out', all, 10_000);
        assert.ok(performance.now() - heldAt >= grace - 50, `ended after ${Math.round(performance.now() - heldAt)} ms, grace ${grace} ms`);
        for (const s of [a, b]) {
          assert.equal(s.ended?.error?.code, ErrorCodes.RESUME_EXPIRED, `${s.name}: ${s.ended?.reason ?? ''}`);
          assert.match(s.ended?.reason ?? '', /resume grace of 0\.3s ran out/);
          assert.equal(s.session.isEnded, true);
          assert.equal(s.session.streamCount, 0);
          const streamSink = s.sinks.get(1);
          assert.equal(streamSink?.reset?.code, ResetCode.SHUTDOWN, `${s.name}: its held stream is reset`);
        }
        // A new link is too late now.
        const [late1, late2] = await linkPair(kind);
        try {
          assert.throws(() => a.session.resumeOn(late1, newDecoder(), PEER), /not held/);
        } finally {
          late1.destroy();
          late2.destroy();
        }
      } finally {
        a.session.destroy('test over');
        b.session.destroy('test over');
        linkA.destroy();
        linkB.destroy();
      }
    });

    test('a live session cannot be resumed; a session without resumption ends when its link is lost', { timeout: 30_000 }, async () => {
      const changes = new Changes();
      const [linkA, linkB] = await linkPair(kind);
      const a = side('A', linkA, changes, { ...SETTINGS, resumeGraceMs: 0 });
      const b = side('B', linkB, changes, SETTINGS);
      const all = (): string => describeSides(a, b);
      try {
        a.session.start();
        b.session.start();
        assert.equal(a.session.resumable, false);
        assert.equal(b.session.resumable, true);
        assert.throws(() => b.session.resumeOn(linkB, newDecoder(), PEER), /not held/);
        const { sink } = open(a, changes);
        await changes.until(() => sink.accepted, 'the stream accepted', all);
        linkA.destroy();
        await changes.until(() => a.ended !== null && b.held !== null, 'A ended and B held', all);
        assert.equal(a.held, null);
        assert.equal(sink.reset?.code, ResetCode.SHUTDOWN);
        assert.equal(b.session.state, 'held');
      } finally {
        a.session.destroy('test over');
        b.session.destroy('test over');
        linkA.destroy();
        linkB.destroy();
      }
    });
  });
}

// ---------------------------------------------------------------------------
// Against a raw partner that writes frames by hand: exact resumption frames
// ---------------------------------------------------------------------------

interface RawPeer {
  readonly socket: net.Socket;
  readonly frames: Frame[];
  next(predicate: (f: Frame) => boolean, what: string, timeoutMs?: number): Promise<Frame>;
  /** Resolves once `condition` holds, re-checked on each frame received. */
  until(condition: () => boolean, what: string, timeoutMs?: number): Promise<void>;
}

/** Collects the frames the session sends on `socket` (DATA pieces joined per frame are not needed: payloads are small). */
function rawPeer(socket: net.Socket): RawPeer {
  const frames: Frame[] = [];
  const changes = new Changes();
  const decoder = new FrameDecoder({ maxDataPayload: 1 << 20, expectPreface: false });
  socket.on('error', () => undefined);
  socket.on('data', (chunk: Buffer) => {
    decoder.push(chunk);
    for (let frame = decoder.next(); frame !== null; frame = decoder.next()) frames.push({ ...frame, payload: Buffer.from(frame.payload) });
    changes.notify();
  });
  const seen = (): string => `frames seen: ${frames.map((f) => `${f.type}/${f.flags.toString(16)}/${f.streamId}/${f.payload.length}`).join(' ')}`;
  return {
    socket,
    frames,
    async next(predicate, what, timeoutMs = 5000) {
      let found: Frame | undefined;
      await changes.until(() => (found = frames.find(predicate)) !== undefined, what, seen, timeoutMs);
      return found as Frame;
    },
    until(condition, what, timeoutMs = 5000) {
      return changes.until(condition, what, seen, timeoutMs);
    },
  };
}

const isType =
  (type: number, streamId?: number) =>
  (f: Frame): boolean =>
    f.type === type && (streamId === undefined || f.streamId === streamId);

/** The DATA bytes of one stream in the order they came, and whether a FIN closed them. */
function dataOf(frames: readonly Frame[], streamId: number): { bytes: Buffer; fin: boolean; finAt: number } {
  const mine = frames.filter((f) => f.type === FrameType.DATA && f.streamId === streamId);
  const finIndex = mine.findIndex((f) => (f.flags & Flag.FIN) !== 0);
  return {
    bytes: Buffer.concat(mine.map((f) => f.payload)),
    fin: finIndex >= 0,
    finAt: finIndex >= 0 ? Buffer.concat(mine.slice(0, finIndex + 1).map((f) => f.payload)).length : -1,
  };
}

describe('session resumption against a raw partner', () => {
  test('the stream list, replay from the partner\'s received count, a lost FIN sent again, a lost ACCEPT taken from ACCEPTED', { timeout: 30_000 }, async () => {
    const changes = new Changes();
    const [link1, raw1] = await socketPair();
    const peer1 = rawPeer(raw1);
    const s = side('S', link1, changes, SETTINGS);
    const links = [link1, raw1];
    const all = (): string => describeSides(s);
    try {
      s.session.start();
      // Stream 1: accepted, 10 bytes and a FIN sent; the partner will say it has only 4 and no FIN.
      const one = open(s, changes);
      await peer1.next(isType(FrameType.OPEN, 1), 'OPEN 1');
      raw1.write(encodeAccept(1));
      await changes.until(() => one.sink.accepted, 'stream 1 accepted', all);
      one.stream.write(Buffer.from('0123456789'));
      one.stream.end();
      await peer1.next((f) => f.type === FrameType.DATA && f.streamId === 1 && (f.flags & Flag.FIN) !== 0, 'FIN on stream 1');
      // Stream 2: never accepted on this link (its ACCEPT is lost); 5 bytes sent, FIN waiting for ACCEPT.
      const two = open(s, changes);
      two.stream.write(Buffer.from('abcde'));
      two.stream.end();
      await peer1.next((f) => f.type === FrameType.DATA && f.streamId === 2 && f.payload.length > 0, 'DATA on stream 2');
      // The partner sends stream 1 some bytes: 3 received by S.
      raw1.write(Buffer.concat([encodeDataHeader(1, Flag.LOCAL, 3), Buffer.from('xyz')]));
      await changes.until(() => one.sink.bytes === 3, 'S received 3 bytes on stream 1', all);

      raw1.destroy();
      await changes.until(() => s.held !== null, 'S held', all);
      assert.equal(one.stream.state, 'local-closed');
      assert.equal(two.stream.state, 'opening');

      const [link2, raw2] = await socketPair();
      links.push(link2, raw2);
      const peer2 = rawPeer(raw2);
      s.session.resumeOn(link2, newDecoder(), PEER);
      const done = await peer2.next(isType(FrameType.RESUME), 'S\'s RESUME DONE');
      // S's list: one RESUMED WINDOW per stream, then DONE with the last stream the partner opened (none: 0).
      const list = peer2.frames.slice(0, peer2.frames.indexOf(done));
      // Entry side: no LOCAL, no ACCEPTED; no FIN received on either.
      assert.deepEqual(
        list.map((f) => [f.type, f.flags, f.streamId]),
        [
          [FrameType.WINDOW, Flag.RESUMED, 1],
          [FrameType.WINDOW, Flag.RESUMED, 2],
        ],
      );
      for (const [entry, received] of [[list[0], 3], [list[1], 0]] as const) {
        assert.ok(entry !== undefined);
        assert.equal(entry.payload.length, RESUMED_WINDOW_LENGTH);
        const { consumed, window } = parseWindow(entry.payload);
        assert.equal(parseResumedReceived(entry.payload), received);
        assert.equal(consumed, received, 'the sink consumed what it received');
        assert.equal(consumed + window, 64 * 1024, 'the limit advertised so far');
      }
      assert.equal(hex(done.payload), hex(Buffer.from([ResumeKind.DONE, 0, 0, 0, 0])));
      assert.equal(s.session.state, 'resuming');
      // While the lists cross, no DATA goes out.
      assert.equal(peer2.frames.filter(isType(FrameType.DATA)).length, 0);

      // The partner's list: stream 1 has 4 bytes of S's 10 (no FIN); stream 2 was accepted and has 2 bytes.
      raw2.write(
        Buffer.concat([
          encodeResumedWindow(1, Flag.LOCAL | Flag.ACCEPTED, 4, 64 * 1024, 4),
          encodeResumedWindow(2, Flag.LOCAL | Flag.ACCEPTED, 2, 64 * 1024, 2),
          encodeResume(ResumeKind.DONE, u32(2)),
        ]),
      );
      await changes.until(() => s.resumed !== null, 'S resumed', all);
      assert.equal(s.resumed?.streams, 2);
      assert.equal(two.sink.accepted, true, 'ACCEPTED in the entry counts as the lost ACCEPT');
      assert.equal(two.stream.state, 'local-closed', 'and the FIN that waited for it goes out');
      await peer2.next((f) => f.type === FrameType.DATA && f.streamId === 1 && (f.flags & Flag.FIN) !== 0, 'FIN on stream 1 again');
      await peer2.next((f) => f.type === FrameType.DATA && f.streamId === 2 && (f.flags & Flag.FIN) !== 0, 'FIN on stream 2');
      const d1 = dataOf(peer2.frames, 1);
      assert.equal(d1.bytes.toString(), '456789', 'stream 1 resumes at byte 4, each byte once');
      assert.equal(d1.finAt, 6, 'the FIN after the replayed bytes');
      const d2 = dataOf(peer2.frames, 2);
      assert.equal(d2.bytes.toString(), 'cde');
      assert.equal(d2.finAt, 3);
      // Every frame of the new link came after the lists: OPEN is not sent again for streams the partner listed.
      assert.equal(peer2.frames.filter(isType(FrameType.OPEN)).length, 0);

      // The stream goes on: the partner acknowledges the FIN, sends more and its own FIN; S forgets the stream.
      raw2.write(
        Buffer.concat([
          encodeWindow(1, Flag.LOCAL | Flag.FIN_RECEIVED, 10, 64 * 1024),
          encodeDataHeader(1, Flag.LOCAL, 2),
          Buffer.from('!?'),
          encodeDataHeader(1, Flag.LOCAL | Flag.FIN, 0),
        ]),
      );
      await changes.until(() => one.sink.ended && s.session.streamCount === 1, 'stream 1 closed and forgotten', all);
      assert.equal(one.sink.data.toString(), 'xyz!?');
      const ack = await peer2.next((f) => f.type === FrameType.WINDOW && f.streamId === 1 && (f.flags & Flag.FIN_RECEIVED) !== 0, 'S acknowledges the FIN');
      assert.equal(ack.flags, Flag.FIN_RECEIVED);
      assert.equal(parseWindow(ack.payload).consumed, 5);
      assert.equal(s.ended, null);
    } finally {
      s.session.destroy('test over');
      for (const link of links) link.destroy();
    }
  });

  test(
    'onResumed reports the bytes sent again (the ones the partner had not received)',
    { timeout: 30_000 },
    async () => {
      const changes = new Changes();
      const [link1, raw1] = await socketPair();
      const peer1 = rawPeer(raw1);
      const s = side('S', link1, changes, SETTINGS);
      const links = [link1, raw1];
      const all = (): string => describeSides(s);
      try {
        s.session.start();
        const one = open(s, changes);
        await peer1.next(isType(FrameType.OPEN, 1), 'OPEN 1');
        raw1.write(encodeAccept(1));
        await changes.until(() => one.sink.accepted, 'stream 1 accepted', all);
        one.stream.write(Buffer.from('0123456789'));
        await peer1.next((f) => f.type === FrameType.DATA && f.streamId === 1, 'DATA on stream 1');
        raw1.destroy();
        await changes.until(() => s.held !== null, 'S held', all);
        // Written while held: never sent before, so not "sent again".
        one.stream.write(Buffer.from('ABC'));
        const [link2, raw2] = await socketPair();
        links.push(link2, raw2);
        const peer2 = rawPeer(raw2);
        s.session.resumeOn(link2, newDecoder(), PEER);
        await peer2.next(isType(FrameType.RESUME), "S's DONE");
        raw2.write(Buffer.concat([encodeResumedWindow(1, Flag.LOCAL | Flag.ACCEPTED, 4, 64 * 1024, 4), encodeResume(ResumeKind.DONE, u32(0))]));
        await changes.until(() => s.resumed !== null, 'S resumed', all);
        await peer2.until(() => dataOf(peer2.frames, 1).bytes.length >= 9, 'the 9 bytes on the new link');
        assert.equal(dataOf(peer2.frames, 1).bytes.toString(), '456789ABC');
        assert.deepEqual(s.resumed, { streams: 1, replayedBytes: 6 });
      } finally {
        s.session.destroy('test over');
        for (const link of links) link.destroy();
      }
    },
  );

  test('streams that ended here while the link was down are answered from their tombstones', { timeout: 30_000 }, async () => {
    const changes = new Changes();
    const [link1, raw1] = await socketPair();
    const peer1 = rawPeer(raw1);
    const s = side('S', link1, changes, SETTINGS);
    const links = [link1, raw1];
    const all = (): string => describeSides(s);
    try {
      s.session.start();
      // The partner opens streams 1 and 2 (S is their exit side) and S accepts them.
      raw1.write(Buffer.concat([encodeOpen(1, 0, PORT), encodeOpen(2, 0, PORT), encodeOpen(3, 0, PORT)]));
      await peer1.next(isType(FrameType.ACCEPT, 3), 'ACCEPT 3');
      // Stream 1 closes both ways; S's FIN is acknowledged, so S forgets it (the partner's ack of its FIN is what gets lost).
      const one = s.sinks.get(1) ?? assert.fail('no stream 1');
      one.stream.end();
      raw1.write(Buffer.concat([encodeDataHeader(1, Flag.FIN, 0), encodeWindow(1, Flag.FIN_RECEIVED, 0, 64 * 1024)]));
      await changes.until(() => s.session.streamCount === 2, 'stream 1 forgotten', all);
      await peer1.next((f) => f.type === FrameType.WINDOW && f.streamId === 1 && (f.flags & Flag.FIN_RECEIVED) !== 0, 'S acks FIN 1');
      raw1.destroy();
      await changes.until(() => s.held !== null, 'S held', all);
      // While held, S resets stream 2 (its RESET cannot go out).
      (s.sinks.get(2) ?? assert.fail('no stream 2')).stream.reset(ResetCode.TARGET_UNREACHABLE, 'target went away');
      assert.equal(s.session.streamCount, 1);

      const [link2, raw2] = await socketPair();
      links.push(link2, raw2);
      const peer2 = rawPeer(raw2);
      s.session.resumeOn(link2, newDecoder(), PEER);
      const done = await peer2.next(isType(FrameType.RESUME), 'S\'s DONE');
      const list = peer2.frames.slice(0, peer2.frames.indexOf(done));
      assert.deepEqual(
        list.map((f) => [f.type, f.flags, f.streamId]),
        [[FrameType.WINDOW, Flag.RESUMED | Flag.LOCAL | Flag.ACCEPTED, 3]],
        'only stream 3 is listed, from the exit side: LOCAL and ACCEPTED',
      );
      assert.equal(done.payload.readUInt32BE(1), 3, 'the last stream the partner opened');
      // The partner still holds all three (it missed the ack of its FIN on 1 and the RESET of 2).
      raw2.write(
        Buffer.concat([
          encodeResumedWindow(1, 0, 0, 64 * 1024, 0),
          encodeResumedWindow(2, 0, 0, 64 * 1024, 0),
          encodeResumedWindow(3, 0, 0, 64 * 1024, 0),
          encodeResume(ResumeKind.DONE, u32(0)),
        ]),
      );
      await changes.until(() => s.resumed !== null, 'S resumed', all);
      const closed = await peer2.next(isType(FrameType.WINDOW, 1), 'the answer for stream 1');
      assert.equal(closed.flags, Flag.LOCAL | Flag.FIN_RECEIVED, 'stream 1: "I received your FIN", to the entry side');
      const reset = await peer2.next(isType(FrameType.RESET, 2), 'the answer for stream 2');
      assert.equal(reset.flags, Flag.LOCAL);
      assert.deepEqual(parseCodeAndReason(reset.payload), { code: ResetCode.TARGET_UNREACHABLE, reason: 'target went away' });
      assert.equal(s.resumed?.streams, 1);
      assert.equal(s.ended, null);
      assert.equal(s.session.state, 'live');
    } finally {
      s.session.destroy('test over');
      for (const link of links) link.destroy();
    }
  });

  test('a link lost while resuming holds the session again; it resumes on the next one', { timeout: 30_000 }, async () => {
    const changes = new Changes();
    const [link1, raw1] = await socketPair();
    const peer1 = rawPeer(raw1);
    const s = side('S', link1, changes, SETTINGS);
    const links = [link1, raw1];
    const all = (): string => describeSides(s);
    try {
      s.session.start();
      const one = open(s, changes);
      await peer1.next(isType(FrameType.OPEN, 1), 'OPEN 1');
      raw1.write(encodeAccept(1));
      await changes.until(() => one.sink.accepted, 'stream 1 accepted', all);
      one.stream.write(Buffer.from('0123456789'));
      await peer1.next(isType(FrameType.DATA, 1), 'DATA on stream 1');
      raw1.destroy();
      await changes.until(() => s.held !== null, 'S held', all);
      // Second link: S sends its list, then the link dies before the partner's list comes.
      const [link2, raw2] = await socketPair();
      links.push(link2, raw2);
      const peer2 = rawPeer(raw2);
      s.held = null;
      s.session.resumeOn(link2, newDecoder(), PEER);
      await peer2.next(isType(FrameType.RESUME), "S's DONE on the second link");
      assert.equal(s.session.state, 'resuming');
      raw2.destroy();
      await changes.until(() => s.held !== null, 'S held again', all);
      assert.equal(s.session.state, 'held');
      assert.equal(one.stream.state, 'open');
      one.stream.write(Buffer.from('ABC'));
      // Third link: the partner has 4 bytes.
      const [link3, raw3] = await socketPair();
      links.push(link3, raw3);
      const peer3 = rawPeer(raw3);
      s.session.resumeOn(link3, newDecoder(), PEER);
      const entry = await peer3.next(isType(FrameType.WINDOW, 1), 'the entry on the third link');
      assert.equal(entry.flags, Flag.RESUMED);
      raw3.write(Buffer.concat([encodeResumedWindow(1, Flag.LOCAL | Flag.ACCEPTED, 4, 64 * 1024, 4), encodeResume(ResumeKind.DONE, u32(0))]));
      await peer3.until(() => dataOf(peer3.frames, 1).bytes.length >= 9, 'the bytes on the third link');
      assert.equal(dataOf(peer3.frames, 1).bytes.toString(), '456789ABC');
      assert.equal(s.session.state, 'live');
      assert.equal(s.ended, null);
    } finally {
      s.session.destroy('test over');
      for (const link of links) link.destroy();
    }
  });

  test('resumption frames out of place are protocol errors', { timeout: 30_000 }, async () => {
    const cases: ReadonlyArray<readonly [string, (raw: net.Socket) => void, boolean, RegExp]> = [
      ['a RESUMED entry on a live link', (raw) => raw.write(encodeResumedWindow(1, 0, 0, 1024, 0)), false, /resumed stream entry outside a resumption/],
      ['RESUME DONE on a live link', (raw) => raw.write(encodeResume(ResumeKind.DONE, u32(0))), false, /unexpected RESUME \(kind 5\) on a live link/],
      ['RESUME NEW on a resuming link', (raw) => raw.write(encodeResume(ResumeKind.NEW)), true, /unexpected RESUME \(kind 1\) on a resuming link/],
      ['DONE of the wrong length', (raw) => raw.write(encodeResume(ResumeKind.DONE, Buffer.alloc(3))), true, /unexpected RESUME/],
      ['an entry for a stream this side never opened', (raw) => raw.write(encodeResumedWindow(9, Flag.LOCAL, 0, 1024, 0)), true, /resumed entry for unknown stream 9/],
      [
        'an entry that received more than was sent',
        (raw) => raw.write(encodeResumedWindow(1, Flag.LOCAL, 0, 1024, 1)),
        true,
        /stream 1: resumed at byte 1, outside the 0\.\.0 this side can replay/,
      ],
    ];
    for (const [name, send, resuming, message] of cases) {
      const changes = new Changes();
      const [link1, raw1] = await socketPair();
      const peer1 = rawPeer(raw1);
      const s = side('S', link1, changes, SETTINGS);
      const links = [link1, raw1];
      try {
        s.session.start();
        open(s, changes);
        await peer1.next(isType(FrameType.OPEN, 1), 'OPEN 1');
        let raw = raw1;
        let peer = peer1;
        if (resuming) {
          raw1.destroy();
          await changes.until(() => s.held !== null, `${name}: S held`, () => describeSides(s));
          const [link2, raw2] = await socketPair();
          links.push(link2, raw2);
          raw = raw2;
          peer = rawPeer(raw2);
          s.session.resumeOn(link2, newDecoder(), PEER);
        }
        send(raw);
        const goaway = await peer.next(isType(FrameType.GOAWAY), `${name}: GOAWAY`);
        const { code, reason } = parseCodeAndReason(goaway.payload);
        assert.equal(code, GoAwayCode.PROTOCOL_ERROR, `${name}: ${reason}`);
        assert.match(reason, message, name);
        await changes.until(() => s.ended !== null, `${name}: S ended`, () => describeSides(s));
        assert.equal(s.ended?.error?.code, ErrorCodes.PROTOCOL, name);
      } finally {
        s.session.destroy('test over');
        for (const link of links) link.destroy();
      }
    }
  });
});
