/**
 * How the session hands small frames to the link socket: a lone frame goes at
 * once, and on a distant link a burst of them spread over several event-loop
 * turns (streams opening one after another) leaves in one write. Counted at the
 * real socket's write calls; time is a manual clock so machine load cannot move
 * a turn across the 2 ms burst gap.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type net from 'node:net';
import { Duplex } from 'node:stream';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { Session, type MuxSettings } from '../../src/mux/session.js';
import type { Stream } from '../../src/mux/stream.js';
import { idleSink } from '../helpers/link-pairs.js';
import { FrameDecoder } from '../../src/protocol/decode.js';
import { Flag, FrameType } from '../../src/protocol/constants.js';
import { encodePing } from '../../src/protocol/encode.js';
import type { Clock } from '../../src/clock.js';
import { DEFAULTS } from '../../src/config/defaults.js';
import { socketPair, withTimeout } from '../helpers/loopback.js';

/** The CLI's defaults: only OPENs are sent here, so only the limits on them matter. */
const SETTINGS: MuxSettings = {
  initialWindow: DEFAULTS.initialWindow,
  maxWindow: DEFAULTS.maxWindow,
  receiveBudget: DEFAULTS.receiveBudget,
  maxStreams: DEFAULTS.maxStreams,
  linkWriteBound: DEFAULTS.linkWriteBound,
  maxOpenRate: DEFAULTS.maxOpenRate,
};


interface Counted {
  session: Session;
  /** System-call-level writes of the link socket so far (_write and _writev calls). */
  writes(): number;
  /** Resolves once the partner has read `count` OPEN frames. */
  opens(count: number): Promise<void>;
  close(): void;
}

/** A started session on `link`. */
function startedSession(link: Duplex, clock: Clock): Session {
  const session = new Session(
    link,
    new FrameDecoder({ maxDataPayload: 64 * 1024, expectPreface: false }),
    SETTINGS,
    { initialWindow: 64 * 1024, maxFramePayload: 16 * 1024, maxStreams: 100 },
    { onStreamRequest: () => undefined, onEnd: () => undefined },
    clock,
  );
  session.start();
  return session;
}

/**
 * The session measures a round trip of `minRttMs` the way it does on a real link: its PING is
 * answered by the partner (`raw`) once the manual clock has moved on by `minRttMs`.
 */
async function measureRtt(session: Session, raw: net.Socket, setNow: (ms: number) => void, minRttMs: number): Promise<void> {
  const decoder = new FrameDecoder({ maxDataPayload: 1 << 20, expectPreface: false });
  const answer = (chunk: Buffer): void => {
    decoder.push(chunk);
    for (let f = decoder.next(); f !== null; f = decoder.next()) {
      if (f.type !== FrameType.PING) continue;
      raw.off('data', answer);
      setNow(minRttMs);
      raw.write(encodePing(Flag.ACK, f.payload));
    }
  };
  raw.on('data', answer);
  const rtt = await withTimeout(session.ping(1000), 2000, 'the PING answered');
  setNow(0);
  assert.equal(rtt, minRttMs);
  assert.equal(session.roundTrip.min, minRttMs);
}

async function countedSession(t: { after(fn: () => void): void }, clock: Clock, setNow: (ms: number) => void, minRttMs: number): Promise<Counted> {
  const [link, raw] = await socketPair();
  link.setNoDelay(true); // as link/transport.ts sets it: each write is a segment of its own
  let writes = 0;
  // Count what the socket hands to the kernel: corked frames leave in one _writev.
  const socket = link as net.Socket & { _write: (...a: unknown[]) => void; _writev: (...a: unknown[]) => void };
  const write = socket._write.bind(socket);
  const writev = socket._writev.bind(socket);
  socket._write = (...a: unknown[]) => (writes++, write(...a));
  socket._writev = (...a: unknown[]) => (writes++, writev(...a));
  const session = startedSession(link, clock);
  await measureRtt(session, raw, setNow, minRttMs);
  writes = 0;
  let seen = 0;
  const waiters: { count: number; resolve: () => void }[] = [];
  const decoder = new FrameDecoder({ maxDataPayload: 1 << 20, expectPreface: false });
  raw.on('data', (chunk: Buffer) => {
    decoder.push(chunk);
    for (let f = decoder.next(); f !== null; f = decoder.next()) if (f.type === FrameType.OPEN) seen++;
    for (const w of waiters.filter((x) => seen >= x.count)) w.resolve();
  });
  const close = (): void => {
    session.destroy('test over');
    raw.destroy();
  };
  t.after(close);
  return {
    session,
    writes: () => writes,
    opens: (count) => withTimeout(new Promise<void>((resolve) => (seen >= count ? resolve() : waiters.push({ count, resolve }))), 2000, `${count} OPENs`),
    close,
  };
}

function open(session: Session): Stream {
  const stream = session.openStream(7000);
  assert.ok(stream !== null);
  stream.attach(idleSink);
  return stream;
}

/** Opens one stream per event-loop turn, at the given clock times. */
async function openInTurns(session: Session, setNow: (ms: number) => void, times: readonly number[]): Promise<void> {
  for (const at of times) {
    setNow(at);
    open(session);
    await nextTurn();
  }
}

/** Time moves only when told; timers fire only when told (runTimers), so no turn can outlast the hold. */
function manualClock(): { clock: Clock; setNow(ms: number): void; runTimers(): void; holds: number[] } {
  let now = 0;
  let due: (() => void)[] = [];
  const holds: number[] = [];
  const clock: Clock = {
    now: () => now,
    setTimer: (ms, cb) => {
      holds.push(ms);
      due.push(cb);
      return { cancel: () => (due = due.filter((f) => f !== cb)) };
    },
  };
  const runTimers = (): void => {
    const fire = due;
    due = [];
    for (const f of fire) f();
  };
  return { clock, setNow: (ms) => (now = ms), runTimers, holds };
}

test('on a distant link, streams opened in turns under 2 ms apart leave in one write after the first', async (t) => {
  const { clock, setNow, runTimers } = manualClock();
  const c = await countedSession(t, clock, setNow, 50);
  await openInTurns(c.session, setNow, [0, 0.5, 0.9, 1.3]);
  assert.equal(c.writes(), 1, 'the three later OPENs wait for the hold');
  runTimers();
  await c.opens(4);
  // The first OPEN went at once; the next three waited for the 1 ms hold together.
  assert.equal(c.writes(), 2);
});

test('a lone stream, and streams opened more than 2 ms apart, go at once', async (t) => {
  const { clock, setNow } = manualClock();
  const c = await countedSession(t, clock, setNow, 50);
  await openInTurns(c.session, setNow, [0, 3, 6]);
  await c.opens(3);
  assert.equal(c.writes(), 3);
});

test('on a near link (round trip under 16 ms) a burst is not held: each turn writes', async (t) => {
  const { clock, setNow } = manualClock();
  const c = await countedSession(t, clock, setNow, 0.2);
  await openInTurns(c.session, setNow, [0, 0.5, 0.9, 1.3]);
  await c.opens(4);
  assert.equal(c.writes(), 4);
});

test('a burst that goes on is held longer at each turn, up to a sixteenth of the round trip', async (t) => {
  const { clock, setNow, runTimers, holds } = manualClock();
  const c = await countedSession(t, clock, setNow, 64);
  holds.length = 0; // the measuring PING's timer
  // Each stream opens just after the previous hold ended: one burst of eight turns.
  let now = 0;
  setNow(now);
  open(c.session);
  await nextTurn();
  for (let i = 0; i < 7; i++) {
    now += 0.5;
    setNow(now);
    open(c.session);
    await nextTurn();
    now += holds.at(-1) ?? 0;
    setNow(now);
    runTimers();
  }
  await c.opens(8);
  assert.deepEqual(holds, [1, 2, 4, 4, 4, 4, 4], 'doubling from 1 ms, capped at 64 / 16 ms');
  assert.equal(c.writes(), 8);
});

test('on a long link, small frames a 32nd of the round trip apart are still one burst', async (t) => {
  const { clock, setNow, runTimers } = manualClock();
  const c = await countedSession(t, clock, setNow, 200);
  // 5 ms apart: beyond the 2 ms gap, within 200 / 32 = 6.25 ms.
  await openInTurns(c.session, setNow, [0, 5]);
  assert.equal(c.writes(), 1, 'the second OPEN is held');
  runTimers();
  await c.opens(2);
  assert.equal(c.writes(), 2);
});

test('a lone DATA frame goes at once in one write, header and payload together', async (t) => {
  const { clock, setNow } = manualClock();
  const c = await countedSession(t, clock, setNow, 50);
  const stream = open(c.session);
  await c.opens(1);
  const before = c.writes();
  setNow(10); // well after the OPEN: no burst
  // Give the stream credit as if the partner had accepted it; then one small write.
  stream.handleAccept();
  stream.write(Buffer.from('x'));
  assert.equal(c.writes() - before, 1, 'written at once, not at the end of the turn');
  await nextTurn();
  await nextTurn();
  assert.equal(c.writes() - before, 1, 'one write for the 11-byte frame, not two');
});

test('a burst is held even while the link has bytes waiting (a TLS link until its records are flushed)', async (t) => {
  const { clock, setNow, holds } = manualClock();
  // A link whose writes never complete: its writableLength stays above 0, as a TLS socket's
  // does until the encrypted bytes reach the TCP socket.
  const written = new FrameDecoder({ maxDataPayload: 1 << 20, expectPreface: false });
  const link = new Duplex({ read: () => undefined, write: (chunk: Buffer) => written.push(chunk), writev: () => undefined });
  const session = startedSession(link, clock);
  t.after(() => session.destroy('test over'));
  // The first write, never completed, is the session's PING: answered 50 ms later.
  const measured = session.ping(1000);
  const ping = written.next();
  assert.ok(ping !== null && ping.type === FrameType.PING);
  setNow(50);
  link.push(encodePing(Flag.ACK, ping.payload));
  assert.equal(await withTimeout(measured, 2000, 'the PING answered'), 50);
  setNow(0);
  holds.length = 0; // the measuring PING's timer
  await openInTurns(session, setNow, [0, 0.5, 0.9, 1.3]);
  assert.ok(link.writableLength > 0, 'the link holds bytes');
  assert.ok(holds.length >= 1, `the burst was held (${holds.length} holds)`);
});
