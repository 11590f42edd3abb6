/**
 * The UDP flow table (src/endpoints/udp-flows.ts) on a manual clock: the
 * idle timeout swept by one timer, and the cap ending the flow idle longest.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Clock, Timer } from '../../src/clock.js';
import { FlowTable, type FlowEndCause } from '../../src/endpoints/udp-flows.js';

/** A clock whose time moves only when told; due timers fire in order. */
function manualClock(): Clock & { advance(ms: number): void; pending(): number } {
  let now = 0;
  let timers: { at: number; fire: () => void; live: boolean }[] = [];
  return {
    now: () => now,
    setTimer(ms: number, fire: () => void): Timer {
      const timer = { at: now + ms, fire, live: true };
      timers.push(timer);
      return { cancel: () => void (timer.live = false) };
    },
    advance(ms: number) {
      const end = now + ms;
      for (;;) {
        const due = timers.filter((t) => t.live && t.at <= end).sort((a, b) => a.at - b.at)[0];
        if (due === undefined) break;
        now = due.at;
        due.live = false;
        due.fire();
      }
      now = end;
      timers = timers.filter((t) => t.live);
    },
    pending: () => timers.filter((t) => t.live).length,
  };
}

interface Flow {
  name: string;
  lastActiveAt: number;
}

function table(max: number, idleMs: number) {
  const clock = manualClock();
  const ended: string[] = [];
  const flows = new FlowTable<Flow>(max, idleMs, clock, (f: Flow, cause: FlowEndCause) => ended.push(`${f.name}:${cause}`));
  return { clock, ended, flows };
}

test('a flow idle for the timeout ends; traffic keeps it; one timer for all', () => {
  const { clock, ended, flows } = table(10, 1000);
  flows.add(1, { name: 'a', lastActiveAt: 0 });
  clock.advance(400);
  flows.add(2, { name: 'b', lastActiveAt: 0 });
  assert.equal(clock.pending(), 1);
  clock.advance(500);
  const a = flows.get(1);
  assert.ok(a !== undefined);
  flows.touch(1, a); // a active at 900
  clock.advance(500); // 1400: b (added at 400) is idle 1000 ms
  assert.deepEqual(ended, ['b:idle']);
  clock.advance(499);
  assert.deepEqual(ended, ['b:idle']);
  clock.advance(1);
  assert.deepEqual(ended, ['b:idle', 'a:idle']);
  assert.equal(flows.size, 0);
  assert.equal(clock.pending(), 0, 'no timer left once the table is empty');
});

test('at the cap the flow idle longest ends, not the oldest', () => {
  const { clock, ended, flows } = table(3, 60_000);
  for (const [key, name] of [[1, 'a'], [2, 'b'], [3, 'c']] as const) {
    flows.add(key, { name, lastActiveAt: 0 });
    clock.advance(10);
  }
  const a = flows.get(1);
  assert.ok(a !== undefined);
  flows.touch(1, a);
  flows.add(4, { name: 'd', lastActiveAt: 0 });
  assert.deepEqual(ended, ['b:limit']);
  flows.add(5, { name: 'e', lastActiveAt: 0 });
  assert.deepEqual(ended, ['b:limit', 'c:limit']);
  assert.equal(flows.size, 3);
  assert.deepEqual([...flows.values()].map((f) => f.name), ['a', 'd', 'e']);
});

test('clear hands back every flow and stops the timer', () => {
  const { clock, flows } = table(3, 1000);
  flows.add(1, { name: 'a', lastActiveAt: 0 });
  flows.add(2, { name: 'b', lastActiveAt: 0 });
  assert.deepEqual(flows.clear().map((f) => f.name), ['a', 'b']);
  assert.equal(clock.pending(), 0);
  assert.equal(flows.size, 0);
});
