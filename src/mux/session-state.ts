/**
 * The session's state machine (docs/PROTOCOL.md, "Resumption"), built like
 * stream-state.ts: every change goes through `nextSessionState`; an event a
 * state does not allow returns null and the session treats it as a bug or a
 * protocol error.
 *
 *   live ----- link lost (resumable) -----> held
 *    ^                                     |   ^
 *    | lists crossed        new link proved|   | link lost again
 *    |                                     v   |
 *    +------------------------------- resuming
 *
 *   any state but ended --- end ---> ended
 *
 * A session that does not resume goes from live straight to ended.
 */
export const SessionState = Object.freeze({
  /** A link carries the streams; data flows. */
  LIVE: 'live',
  /** The link was lost; the streams are held for the next one, within the grace. */
  HELD: 'held',
  /** A new link is up; both stream lists cross before data flows. */
  RESUMING: 'resuming',
  ENDED: 'ended',
} as const);
export type SessionStateValue = (typeof SessionState)[keyof typeof SessionState];

export type SessionEvent = 'link-lost' | 'resume' | 'lists-crossed' | 'end';

const TABLE: Readonly<Record<SessionStateValue, Partial<Record<SessionEvent, SessionStateValue>>>> = Object.freeze({
  live: { 'link-lost': SessionState.HELD, end: SessionState.ENDED },
  held: { resume: SessionState.RESUMING, end: SessionState.ENDED },
  resuming: { 'lists-crossed': SessionState.LIVE, 'link-lost': SessionState.HELD, end: SessionState.ENDED },
  ended: {},
});

export function nextSessionState(state: SessionStateValue, event: SessionEvent): SessionStateValue | null {
  return TABLE[state][event] ?? null;
}

/** A link is attached (live or resuming): control frames may be written. */
export function hasLink(state: SessionStateValue): boolean {
  return state === SessionState.LIVE || state === SessionState.RESUMING;
}
