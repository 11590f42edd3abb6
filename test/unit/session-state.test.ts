/** The session's state table (src/mux/session-state.ts). */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SessionState, hasLink, nextSessionState, type SessionEvent } from '../../src/mux/session-state.js';

test('the transitions the table allows, and nothing else', () => {
  const allowed = new Map<string, string>([
    ['live/link-lost', 'held'],
    ['live/end', 'ended'],
    ['held/resume', 'resuming'],
    ['held/end', 'ended'],
    ['resuming/lists-crossed', 'live'],
    ['resuming/link-lost', 'held'],
    ['resuming/end', 'ended'],
  ]);
  const events: SessionEvent[] = ['link-lost', 'resume', 'lists-crossed', 'end'];
  for (const state of Object.values(SessionState)) {
    for (const event of events) {
      assert.equal(nextSessionState(state, event), allowed.get(`${state}/${event}`) ?? null, `${state} on ${event}`);
    }
  }
});

test('a link is attached while live or resuming', () => {
  assert.deepEqual(
    Object.values(SessionState).filter(hasLink),
    [SessionState.LIVE, SessionState.RESUMING],
  );
});
