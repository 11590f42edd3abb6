import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LinkPacer } from '../../src/mux/link-pacer.js';
import { RoundTrip } from '../../src/mux/round-trip.js';
import { PacerPolicy } from '../../src/mux/tunables.js';

const { INITIAL_CAP, MIN_CAP, TARGET_QUEUE_MS } = PacerPolicy;

const KiB = 1024;

/**
 * Drives a pacer over a simulated path: `chunk` bytes written per step, a probe
 * whenever one is due, each probe answered `rttOf(inFlight)` ms after it left.
 * Returns the pacer and the answers' round trips.
 */
interface Path {
  now: number;
  readonly pending: { at: number; payload: Buffer }[];
}

function drive(
  pacer: LinkPacer,
  steps: number,
  rttOf: (inFlight: number) => number,
  options: { chunk?: number; stepMs?: number; respectCap?: boolean; path?: Path } = {},
): number[] {
  const chunk = options.chunk ?? 16 * KiB;
  const stepMs = options.stepMs ?? 0.1;
  const path = options.path ?? { now: 0, pending: [] };
  const { pending } = path;
  const rtts: number[] = [];
  let now = path.now;
  for (let i = 0; i < steps; i++) {
    now += stepMs;
    while (pending.length > 0 && (pending[0]?.at ?? Infinity) <= now) {
      const answer = pending.shift();
      if (answer !== undefined) assert.equal(pacer.answered(answer.payload, now), true);
    }
    if (options.respectCap === true && pacer.inFlight >= pacer.cap) continue;
    pacer.wrote(chunk);
    const probe = pacer.probeDue ? pacer.probe(now) : null;
    if (probe !== null) {
      const rtt = rttOf(pacer.inFlight);
      rtts.push(rtt);
      pending.push({ at: now + rtt, payload: probe });
    }
  }
  path.now = now;
  return rtts;
}

test('link pacer: a probe goes out after an eighth of the cap, and its answer acknowledges the bytes written before it', () => {
  const pacer = new LinkPacer(new RoundTrip());
  pacer.wrote(100 * KiB);
  assert.equal(pacer.probeDue, false);
  pacer.wrote(INITIAL_CAP / 8 - 60 * KiB);
  assert.equal(pacer.probeDue, true);
  const probe = pacer.probe(0);
  assert.ok(probe !== null);
  assert.equal(probe.length, 8);
  assert.equal(pacer.probeDue, false);
  // The next one waits at least 1 ms below the cap; at the cap it goes at once.
  pacer.wrote(200 * KiB);
  assert.equal(pacer.probeDue, true);
  assert.equal(pacer.probe(0.5), null);
  pacer.wrote(INITIAL_CAP);
  assert.ok(pacer.probe(0.6) !== null);
  assert.equal(pacer.inFlight, INITIAL_CAP / 8 + 240 * KiB + INITIAL_CAP);
  assert.equal(pacer.answered(probe, 20), true);
  assert.equal(pacer.inFlight, 200 * KiB + INITIAL_CAP, 'the answer acknowledges the bytes written before the probe');
  assert.equal(pacer.minRtt, 20);
  // A heartbeat ping's answer is not the pacer's.
  assert.equal(pacer.answered(Buffer.from('8 bytes!'), 21), false);
  // A probe answered twice (or from an older link) changes nothing.
  assert.equal(pacer.answered(probe, 22), true);
  assert.equal(pacer.inFlight, 200 * KiB + INITIAL_CAP);
});

test('link pacer: the cap holds only after an interactive send met a backlog', () => {
  const pacer = new LinkPacer(new RoundTrip());
  pacer.wrote(INITIAL_CAP * 3);
  // As LinkWriter does after each DATA frame: the probe is due (only an answer to one reopens the cap).
  assert.notEqual(pacer.probe(0), null);
  assert.equal(pacer.backlogged, true);
  assert.equal(pacer.closed, false, 'a lone bulk transfer is not held back');
  pacer.contended(0);
  assert.equal(pacer.closed, true);
});

test('link pacer: the cap grows while the round trip stays at its minimum, and stops the backlog at the target', () => {
  // A path that moves 100 KiB per ms with a 20 ms round trip: whatever is in flight beyond
  // its 2,000 KiB waits in a queue, which adds to the round trip.
  const rate = 100 * KiB;
  const base = 20;
  const rttOf = (inFlight: number): number => base + Math.max(0, inFlight - rate * base) / rate;
  const pacer = new LinkPacer(new RoundTrip());
  pacer.contended(0);
  const rtts = drive(pacer, 20_000, rttOf, { respectCap: true, stepMs: 0.1, chunk: 16 * KiB });
  assert.ok(pacer.cap > INITIAL_CAP, `the cap grew from ${INITIAL_CAP} to ${pacer.cap}`);
  // Once settled (the last quarter), the queue the probes saw stays near the target.
  const settled = rtts.slice(Math.floor(rtts.length * 0.75));
  const worstQueue = Math.max(...settled) - base;
  assert.ok(worstQueue <= TARGET_QUEUE_MS * 3, `queue up to ${worstQueue.toFixed(1)} ms once settled`);
  // And the cap still covers the path, so the path stays full.
  assert.ok(pacer.cap >= rate * base, `cap ${pacer.cap} covers the path's ${rate * base} bytes`);
});

test('link pacer: a backlog above the target shrinks the cap, never below the minimum', () => {
  const pacer = new LinkPacer(new RoundTrip());
  pacer.contended(0);
  const path: Path = { now: 0, pending: [] };
  drive(pacer, 100, () => 20, { chunk: 40 * KiB, stepMs: 1, path });
  const before = pacer.cap;
  // Then the partner reads slowly (2 KiB per ms): every probe waits 200 ms although the smallest round trip was 20.
  drive(pacer, 4_000, () => 200, { chunk: 2 * KiB, stepMs: 1, path });
  assert.ok(pacer.cap < before, `cap ${pacer.cap} < ${before}`);
  assert.ok(pacer.cap >= MIN_CAP);
});

test('link pacer: the cap stays at what the best recent delivery rate needs, whatever the round trips say', () => {
  // A lossy path: most answers come late (retransmissions hold delivery back), yet the path
  // delivers 50 KiB per ms at best. The cap must not fall below rate × (min RTT + target).
  const pacer = new LinkPacer(new RoundTrip());
  pacer.contended(0);
  let n = 0;
  drive(pacer, 30_000, () => (n++ % 3 === 0 ? 20 : 90), { chunk: 5 * KiB, stepMs: 0.1 });
  const floor = pacer.maxRate * (pacer.minRtt + TARGET_QUEUE_MS);
  assert.ok(pacer.maxRate > 0);
  assert.ok(pacer.cap >= Math.min(floor, 128 * 1024 * 1024) - 1, `cap ${pacer.cap} ≥ floor ${floor}`);
});
