/**
 * A stream's receive window alone (pure: bytes, times and a budget in; when
 * to send WINDOW and what it says out): the update threshold, growth judged
 * once per half window, the two-round-trip rule, the budget and the limit.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ReceiveWindow, type WindowBudget } from '../../src/mux/receive-window.js';

const KiB = 1024;
const unlimited: WindowBudget = { growWindow: (wanted) => wanted };

/**
 * Consumes `total` bytes in `step`-byte pieces, `msPerStep` apart, sending a
 * WINDOW whenever one is due; returns each WINDOW as (consumed, credit).
 */
function drive(w: ReceiveWindow, total: number, step: number, msPerStep: number, budget = unlimited): { consumed: number; credit: number }[] {
  const out: { consumed: number; credit: number }[] = [];
  let now = 0;
  for (let done = 0; done < total; done += step) {
    now += msPerStep;
    assert.ok(w.receive(step), `received within the limit at ${done}`);
    if (w.consume(step)) out.push({ consumed: w.consumed, credit: w.update(now, 1, budget) });
  }
  return out;
}

test('a WINDOW is due once an eighth of the window is unadvertised', () => {
  const w = new ReceiveWindow(64 * KiB, 64 * KiB, 0);
  assert.equal(w.consume(8 * KiB - 1), false);
  assert.equal(w.consume(1), true, 'due at 8 KiB, not at half the window');
  assert.equal(w.update(0, 1, unlimited), 64 * KiB, 'credit: a whole window beyond consumed');
  assert.equal(w.advertised, 64 * KiB);
});

test('the partner may not pass the advertised limit', () => {
  const w = new ReceiveWindow(64 * KiB, 64 * KiB, 0);
  assert.ok(w.receive(64 * KiB));
  assert.equal(w.receive(1), false);
  assert.equal(w.received, 64 * KiB, 'the refused byte is not counted');
});

test('consumed fast (within two round trips), the window doubles once per half window, up to the maximum', () => {
  const w = new ReceiveWindow(64 * KiB, 1024 * KiB, 0);
  const updates = drive(w, 8 * 1024 * KiB, 4 * KiB, 0.001);
  let window = 64 * KiB;
  let grownAt = 0;
  let growths = 0;
  for (const u of updates) {
    if (u.credit <= window) continue;
    assert.equal(u.credit, 2 * window, `doubles: ${window} -> ${u.credit}`);
    assert.ok(u.consumed - grownAt >= window / 2, `grew at ${u.consumed}, under half of ${window} after the last growth at ${grownAt}`);
    grownAt = u.consumed;
    window = u.credit;
    growths++;
  }
  assert.equal(growths, 4, '64 KiB -> 1 MiB is four doublings');
  assert.equal(w.grownBy, 1024 * KiB - 64 * KiB);
});

test('consumed slowly (half a window takes over two round trips), the window keeps its size', () => {
  const w = new ReceiveWindow(64 * KiB, 1024 * KiB, 0);
  // 4 KiB per ms: half of 64 KiB takes 8 ms, against two round trips of 1 ms.
  const updates = drive(w, 1024 * KiB, 4 * KiB, 1);
  assert.ok(updates.length >= 100, `${updates.length} updates`);
  assert.ok(
    updates.every((u) => u.credit === 64 * KiB),
    `never grew: ${[...new Set(updates.map((u) => u.credit))].join(',')}`,
  );
  assert.equal(w.grownBy, 0);
});

test('growth takes only what the budget allows, and an idle window gives it back', () => {
  let room = 32 * KiB;
  const budget: WindowBudget = {
    growWindow: (wanted) => {
      const granted = Math.min(wanted, room);
      room -= granted;
      return granted;
    },
  };
  const w = new ReceiveWindow(64 * KiB, 1024 * KiB, 0);
  drive(w, 1024 * KiB, 4 * KiB, 0.001, budget);
  assert.equal(w.grownBy, 32 * KiB, 'the initial window plus the budget');
  const limitBefore = w.consumed + w.advertised;
  assert.equal(w.shrink(), 32 * KiB);
  assert.equal(w.grownBy, 0);
  assert.equal(w.consumed + w.advertised, limitBefore, 'what was advertised stays valid');
});

test('a reset drops what was received and not consumed', () => {
  const w = new ReceiveWindow(64 * KiB, 64 * KiB, 0);
  w.receive(10 * KiB);
  w.consume(4 * KiB);
  assert.equal(w.dropUnconsumed(), 6 * KiB);
  assert.equal(w.consumed, w.received);
});
