import { test } from 'node:test';
import assert from 'node:assert/strict';
import { StreamState, canReceive, canSend, isFinished, nextState, type StreamEvent, type StreamStateValue } from '../../src/mux/stream-state.js';
import { backoffDelay } from '../../src/link/backoff.js';
import { PenaltyBox } from '../../src/link/penalty.js';
import type { Clock } from '../../src/clock.js';

const ALL_STATES = Object.values(StreamState);
const ALL_EVENTS: StreamEvent[] = ['accept', 'send-fin', 'recv-fin', 'reset'];

test('legal transitions follow the diagram in docs/PROTOCOL.md', () => {
  const expected: Record<string, StreamStateValue | null> = {
    'opening accept': 'open',
    'opening reset': 'reset',
    'open send-fin': 'local-closed',
    'open recv-fin': 'remote-closed',
    'open reset': 'reset',
    'local-closed recv-fin': 'closed',
    'local-closed reset': 'reset',
    'remote-closed send-fin': 'closed',
    'remote-closed reset': 'reset',
  };
  for (const state of ALL_STATES) {
    for (const event of ALL_EVENTS) {
      const key = `${state} ${event}`;
      assert.equal(nextState(state, event), expected[key] ?? null, key);
    }
  }
});

test('who may send and receive in each state', () => {
  assert.deepEqual(ALL_STATES.filter(canSend), ['opening', 'open', 'remote-closed']);
  assert.deepEqual(ALL_STATES.filter(canReceive), ['opening', 'open', 'local-closed']);
  assert.deepEqual(ALL_STATES.filter(isFinished), ['closed', 'reset']);
});

test('backoff doubles from the minimum to the cap, with jitter in [base/2, base]', () => {
  const low = (n: number): number => backoffDelay(n, 500, 30_000, () => 0);
  const high = (n: number): number => backoffDelay(n, 500, 30_000, () => 1);
  assert.deepEqual([0, 1, 2, 3].map(high), [500, 1000, 2000, 4000]);
  assert.deepEqual([0, 1, 2].map(low), [250, 500, 1000]);
  assert.equal(high(10), 30_000);
  assert.equal(low(100), 15_000);
  for (let i = 0; i < 200; i++) {
    const d = backoffDelay(4, 500, 30_000);
    assert.ok(d >= 4000 && d <= 8000, String(d));
  }
});

function fakeClock(): Clock & { advance(ms: number): void } {
  let now = 0;
  return {
    now: () => now,
    setTimer: () => ({ cancel: () => undefined }),
    advance(ms: number) {
      now += ms;
    },
  };
}

test('penalty box: each failure doubles the delay, capped, per source', () => {
  const clock = fakeClock();
  const box = new PenaltyBox(clock, { freeFailures: 2, baseMs: 1000, maxMs: 8000, forgetAfterMs: 60_000, maxEntries: 3 });
  assert.equal(box.isBlocked('a'), false);
  assert.equal(box.recordFailure('a'), 0, 'first failure is free');
  assert.equal(box.recordFailure('a'), 0, 'second failure is free');
  assert.equal(box.isBlocked('a'), false);
  assert.equal(box.recordFailure('a'), 1000);
  assert.equal(box.isBlocked('a'), true);
  assert.equal(box.isBlocked('b'), false);
  clock.advance(1000);
  assert.equal(box.isBlocked('a'), false);
  assert.equal(box.recordFailure('a'), 2000);
  assert.equal(box.recordFailure('a'), 4000);
  assert.equal(box.recordFailure('a'), 8000);
  assert.equal(box.recordFailure('a'), 8000);
  box.recordSuccess('a');
  assert.equal(box.isBlocked('a'), false);
  assert.equal(box.recordFailure('a'), 0, 'a success starts the source again');
  clock.advance(61_000);
  assert.equal(box.recordFailure('a'), 0, 'old failures are forgotten');
});

test('penalty box stays bounded: the oldest source is forgotten', () => {
  const clock = fakeClock();
  const box = new PenaltyBox(clock, { freeFailures: 0, baseMs: 1000, maxMs: 8000, forgetAfterMs: 60_000, maxEntries: 3 });
  for (const s of ['a', 'b', 'c', 'd']) box.recordFailure(s);
  assert.equal(box.size, 3);
  assert.equal(box.isBlocked('a'), false);
  assert.equal(box.isBlocked('d'), true);
});
