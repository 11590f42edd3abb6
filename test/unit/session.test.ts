/**
 * The multiplexer alone, over each kind of link (in memory, loopback TCP,
 * TLS, WebSocket), against a raw peer that writes frames by hand: limits,
 * illegal frames, batching, window growth.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { Duplex } from 'node:stream';
import { LINK_KINDS, linkPair, type LinkKind } from '../helpers/link-pairs.js';
import { Session, type MuxSettings, type SessionEnd } from '../../src/mux/session.js';
import type { Stream, StreamSink } from '../../src/mux/stream.js';
import { FrameDecoder, parseCodeAndReason, parseWindow } from '../../src/protocol/decode.js';
import { encodeAccept, encodeDataHeader, encodeOpen, encodePing, encodeReset } from '../../src/protocol/encode.js';
import { Flag, FrameType, GoAwayCode } from '../../src/protocol/constants.js';
import type { Frame } from '../../src/protocol/frame.js';
import { systemClock, type Clock } from '../../src/clock.js';

/** Time stands still: every WINDOW is sent 'within two round trips', so growth never depends on machine load. */
const frozenClock: Clock = { now: () => 0, setTimer: (ms, cb) => systemClock.setTimer(ms, cb) };

const SETTINGS: MuxSettings = {
  initialWindow: 64 * 1024,
  maxWindow: 64 * 1024,
  receiveBudget: 1024 * 1024,
  maxStreams: 100,
  linkWriteBound: 256 * 1024,
  maxOpenRate: 1000,
};

interface Harness {
  session: Session;
  raw: Duplex;
  frames: Frame[];
  requests: Stream[];
  ended: Promise<SessionEnd>;
  nextFrame(predicate: (f: Frame) => boolean, timeoutMs?: number): Promise<Frame>;
  close(): void;
}

/** A session on one end of a link of `kind`; the test drives the other end by hand. */
async function harness(kind: LinkKind, settings: Partial<MuxSettings> = {}, onRequest?: (s: Stream) => void, clock: Clock = systemClock): Promise<Harness> {
  const [raw, link] = await linkPair(kind);
  const frames: Frame[] = [];
  const waiters: { predicate: (f: Frame) => boolean; resolve: (f: Frame) => void }[] = [];
  const decoder = new FrameDecoder({ maxDataPayload: 1 << 20, expectPreface: false });
  raw.on('data', (chunk: Buffer) => {
    decoder.push(chunk);
    let frame: Frame | null;
    while ((frame = decoder.next()) !== null) {
      const copy = { ...frame, payload: Buffer.from(frame.payload) };
      frames.push(copy);
      for (const w of [...waiters]) {
        if (w.predicate(copy)) {
          waiters.splice(waiters.indexOf(w), 1);
          w.resolve(copy);
        }
      }
    }
  });
  const requests: Stream[] = [];
  let resolveEnd: (e: SessionEnd) => void = () => undefined;
  const ended = new Promise<SessionEnd>((r) => (resolveEnd = r));
  const session = new Session(
    link,
    new FrameDecoder({ maxDataPayload: 64 * 1024, expectPreface: false }),
    { ...SETTINGS, ...settings },
    { initialWindow: 64 * 1024, maxFramePayload: 16 * 1024, maxStreams: 100 },
    {
      onStreamRequest: (s) => {
        requests.push(s);
        if (onRequest) onRequest(s);
        else s.attach(nullSink(s));
      },
      onEnd: (e) => resolveEnd(e),
    },
    clock,
  );
  session.start();
  return {
    session,
    raw,
    frames,
    requests,
    ended,
    nextFrame(predicate, timeoutMs = 2000) {
      const found = frames.find(predicate);
      if (found) return Promise.resolve(found);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('frame not seen in time')), timeoutMs);
        waiters.push({ predicate, resolve: (f) => (clearTimeout(timer), resolve(f)) });
      });
    },
    close() {
      raw.destroy();
      link.destroy();
    },
  };
}

function nullSink(stream: Stream): StreamSink {
  return {
    onData: (c) => stream.consume(c.length),
    onEnd: () => undefined,
    onReset: () => undefined,
    onAccept: () => undefined,
    onWritable: () => undefined,
  };
}

const goAway = (f: Frame): boolean => f.type === FrameType.GOAWAY;

async function expectGoAway(h: Harness, code: number, reason: RegExp): Promise<void> {
  const frame = await h.nextFrame(goAway);
  const parsed = parseCodeAndReason(frame.payload);
  assert.equal(parsed.code, code, parsed.reason);
  assert.match(parsed.reason, reason);
  const end = await h.ended;
  assert.match(end.reason, reason);
  assert.equal(h.session.isEnded, true);
}

for (const kind of LINK_KINDS) {
  describe(`session over ${kind}`, () => {
    test('a DATA frame beyond the granted window closes the link', async () => {
      // A sink that never consumes: no credit goes back.
      const h = await harness(kind, {}, (s) => s.attach({ ...nullSink(s), onData: () => undefined }));
      try {
        h.raw.write(encodeOpen(1, 0, 40000));
        const big = Buffer.alloc(16 * 1024);
        for (let i = 0; i < 5; i++) h.raw.write(Buffer.concat([encodeDataHeader(1, 0, big.length), big])); // 80 KiB > 64 KiB
        await expectGoAway(h, GoAwayCode.PROTOCOL_ERROR, /overran its window/);
      } finally {
        h.close();
      }
    });

    test('a frame for a stream that never existed closes the link', async () => {
      const h = await harness(kind);
      try {
        h.raw.write(Buffer.concat([encodeDataHeader(7, 0, 1), Buffer.from('x')]));
        await expectGoAway(h, GoAwayCode.PROTOCOL_ERROR, /unknown stream 7/);
      } finally {
        h.close();
      }
    });

    test('frames for a stream that ended here while they were in flight are dropped', async () => {
      const h = await harness(kind, {}, (s) => s.reset(1, 'refused for the test'));
      try {
        h.raw.write(encodeOpen(1, 0, 40000));
        await h.nextFrame((f) => f.type === FrameType.RESET && f.streamId === 1);
        h.raw.write(Buffer.concat([encodeDataHeader(1, 0, 3), Buffer.from('abc'), encodeReset(1, 0, 0, 'late')]));
        h.raw.write(encodePing(0, Buffer.alloc(8, 7)));
        const pong = await h.nextFrame((f) => f.type === FrameType.PING);
        assert.equal(pong.flags, Flag.ACK);
        assert.deepEqual(pong.payload, Buffer.alloc(8, 7), 'PING is echoed with ACK');
        assert.equal(h.session.isEnded, false);
      } finally {
        h.close();
      }
    });

    test('the partner may not open more streams than announced', async () => {
      const h = await harness(kind, { maxStreams: 2 });
      try {
        for (let id = 1; id <= 3; id++) h.raw.write(encodeOpen(id, 0, 40000));
        await expectGoAway(h, GoAwayCode.LIMIT_EXCEEDED, /more than 2 streams/);
      } finally {
        h.close();
      }
    });

    test('the partner may not open streams faster than the rate limit', async () => {
      const h = await harness(kind, { maxOpenRate: 10 });
      try {
        const burst: Buffer[] = [];
        for (let id = 1; id <= 12; id++) burst.push(encodeOpen(id, 0, 40000), encodeReset(id, 0, 0, 'done'));
        h.raw.write(Buffer.concat(burst));
        await expectGoAway(h, GoAwayCode.LIMIT_EXCEEDED, /faster than 10 per second/);
      } finally {
        h.close();
      }
    });

    test('stream ids must increase', async () => {
      const h = await harness(kind);
      try {
        h.raw.write(Buffer.concat([encodeOpen(5, 0, 40000), encodeOpen(5, 0, 40000)]));
        await expectGoAway(h, GoAwayCode.PROTOCOL_ERROR, /reuses stream id 5/);
      } finally {
        h.close();
      }
    });

    test('ACCEPT for a stream the partner opened is a protocol error', async () => {
      const h = await harness(kind);
      try {
        h.raw.write(encodeOpen(1, 0, 40000));
        // ACCEPT always carries LOCAL: "the receiver opened it"; here the receiver did not.
        h.raw.write(encodeAccept(2));
        await expectGoAway(h, GoAwayCode.PROTOCOL_ERROR, /unknown stream 2/);
      } finally {
        h.close();
      }
    });

    test('DATA from the exit side before ACCEPT is a protocol error', async () => {
      const h = await harness(kind);
      try {
        const stream = h.session.openStream(40000);
        assert.ok(stream);
        stream.attach(nullSink(stream));
        await h.nextFrame((f) => f.type === FrameType.OPEN);
        h.raw.write(Buffer.concat([encodeDataHeader(1, Flag.LOCAL, 2), Buffer.from('hi')]));
        await expectGoAway(h, GoAwayCode.PROTOCOL_ERROR, /DATA on stream 1 in state opening/);
      } finally {
        h.close();
      }
    });

    test('window updates are batched: about one per eighth of the window consumed', async () => {
      const h = await harness(kind);
      try {
        h.raw.write(encodeOpen(1, 0, 40000));
        const piece = Buffer.alloc(1024, 1);
        const chunks: Buffer[] = [];
        for (let i = 0; i < 64; i++) chunks.push(encodeDataHeader(1, 0, piece.length), piece); // 64 KiB in 64 frames
        h.raw.write(Buffer.concat(chunks));
        const update = await h.nextFrame((f) => f.type === FrameType.WINDOW);
        const { consumed, window } = parseWindow(update.payload);
        // An eighth (8 KiB), not half: half-window batches leave a sender a quarter of its window short.
        assert.ok(consumed >= 8 * 1024 && consumed < 16 * 1024, `first update after an eighth of the window, at ${consumed}`);
        assert.equal(window, 64 * 1024);
        // Let the rest arrive, then count: 64 frames of data gave about 8 updates, not one each.
        h.raw.write(encodePing(0, Buffer.alloc(8, 1)));
        await h.nextFrame((f) => f.type === FrameType.PING);
        const updates = h.frames.filter((f) => f.type === FrameType.WINDOW).length;
        assert.ok(updates >= 4 && updates <= 8, `${updates} WINDOW frames for 64 DATA frames`);
      } finally {
        h.close();
      }
    });

    test('the entry side holds a FIN until ACCEPT, and sends data within the window before it', async () => {
      const h = await harness(kind);
      try {
        const stream = h.session.openStream(40000);
        assert.ok(stream);
        stream.attach(nullSink(stream));
        stream.write(Buffer.from('request'));
        stream.end();
        await h.nextFrame((f) => f.type === FrameType.DATA && f.payload.length > 0);
        h.raw.write(encodePing(0, Buffer.alloc(8, 2)));
        await h.nextFrame((f) => f.type === FrameType.PING);
        assert.equal(h.frames.filter((f) => f.type === FrameType.DATA && (f.flags & Flag.FIN) !== 0).length, 0, 'no FIN before ACCEPT');
        h.raw.write(encodeAccept(1));
        const fin = await h.nextFrame((f) => f.type === FrameType.DATA && (f.flags & Flag.FIN) !== 0);
        assert.equal(fin.payload.length, 0);
        assert.equal(stream.state, 'local-closed');
      } finally {
        h.close();
      }
    });

    /** Feeds stream 1 as fast as the windows allow, for `total` bytes; returns the window values announced. */
    async function feed(h: Harness, total: number): Promise<number[]> {
      h.raw.write(encodeOpen(1, 0, 40000));
      const piece = Buffer.alloc(16 * 1024, 3);
      let sent = 0;
      let limit = 64 * 1024;
      const windows: number[] = [];
      let seen = 0;
      while (sent < total) {
        while (sent < limit && sent < total) {
          h.raw.write(Buffer.concat([encodeDataHeader(1, 0, piece.length), piece]));
          sent += piece.length;
        }
        if (sent >= total) break;
        const index = seen;
        const update = await h.nextFrame((f) => f.type === FrameType.WINDOW && h.frames.filter((g) => g.type === FrameType.WINDOW).indexOf(f) >= index);
        seen = h.frames.filter((g) => g.type === FrameType.WINDOW).indexOf(update) + 1;
        const { consumed, window } = parseWindow(update.payload);
        windows.push(window);
        limit = consumed + window;
      }
      return windows;
    }

    test('a stream that consumes its window within two round trips has it doubled, up to the maximum', async () => {
      const h = await harness(kind, { initialWindow: 64 * 1024, maxWindow: 512 * 1024, receiveBudget: 64 * 1024 * 1024 }, undefined, frozenClock);
      try {
        const windows = await feed(h, 4 * 1024 * 1024);
        assert.ok(windows.length > 0);
        assert.ok(windows.some((w) => w > 64 * 1024), `the window grew: ${windows.join(',')}`);
        assert.ok(windows.every((w) => w <= 512 * 1024), 'never beyond the maximum');
        assert.equal(windows.at(-1), 512 * 1024, `reached the maximum: ${windows.join(',')}`);
      } finally {
        h.close();
      }
    });

    test('window growth stops at the session budget', async () => {
      const h = await harness(kind, { initialWindow: 64 * 1024, maxWindow: 16 * 1024 * 1024, receiveBudget: 64 * 1024 }, undefined, frozenClock);
      try {
        const windows = await feed(h, 2 * 1024 * 1024);
        assert.ok(windows.every((w) => w <= 128 * 1024), `initial 64 KiB + budget 64 KiB at most: ${windows.join(',')}`);
        assert.equal(windows.at(-1), 128 * 1024, `it did grow as far as the budget allows: ${windows.join(',')}`);
      } finally {
        h.close();
      }
    });
  });
}
