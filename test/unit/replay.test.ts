import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ReplayBuffer } from '../../src/mux/replay.js';

/** 200 chunks of 10 bytes: byte i of the stream is i % 251. */
function filled(): { replay: ReplayBuffer; all: Buffer } {
  const all = Buffer.from(Array.from({ length: 2000 }, (_, i) => i % 251));
  const replay = new ReplayBuffer();
  for (let at = 0; at < all.length; at += 10) replay.push(all.subarray(at, at + 10));
  return { replay, all };
}

test('replay buffer: acknowledgements forget exactly the bytes below them, across compactions', () => {
  const { replay, all } = filled();
  for (const to of [3, 10, 10, 15, 700, 1333]) replay.ackTo(to);
  assert.equal(replay.start, 1333);
  assert.deepEqual(Buffer.concat(replay.takeFrom(1500)), all.subarray(1500));
  assert.equal(replay.start, 1500);
  assert.deepEqual(replay.takeFrom(1500), []);
});

test('replay buffer: an acknowledgement below the start changes nothing; one past the end empties it', () => {
  const { replay, all } = filled();
  replay.ackTo(500);
  replay.ackTo(100);
  assert.equal(replay.start, 500);
  assert.deepEqual(Buffer.concat(replay.takeFrom(500)), all.subarray(500));
  const again = filled().replay;
  again.ackTo(2000);
  assert.deepEqual(again.takeFrom(2000), []);
});
