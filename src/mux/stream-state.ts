/**
 * The stream state machine (docs/PROTOCOL.md, "Stream states"). Every state
 * change goes through `nextState`; an event a state does not allow returns
 * null, and the session treats that as a protocol error.
 *
 *            entry: send OPEN / exit: receive OPEN
 *                          |
 *                       opening ---------------------------+
 *                          | ACCEPT (sent or received)     |
 *                          v                               |
 *        send FIN       open        receive FIN            |
 *      +-------------- /    \ ----------------+            | RESET (any state
 *      v                                      v            |  but closed)
 *  local-closed                         remote-closed      |
 *      | receive FIN                 send FIN |            v
 *      +-----------------> closed <-----------+          reset
 *
 * The entry side may send DATA while opening (the exit side buffers it
 * until the target answers) but sends FIN only once the stream is open.
 */
export const StreamState = Object.freeze({
  OPENING: 'opening',
  OPEN: 'open',
  LOCAL_CLOSED: 'local-closed',
  REMOTE_CLOSED: 'remote-closed',
  CLOSED: 'closed',
  RESET: 'reset',
} as const);
export type StreamStateValue = (typeof StreamState)[keyof typeof StreamState];

export type StreamEvent = 'accept' | 'send-fin' | 'recv-fin' | 'reset';

const TABLE: Readonly<Record<StreamStateValue, Partial<Record<StreamEvent, StreamStateValue>>>> = Object.freeze({
  opening: { accept: StreamState.OPEN, reset: StreamState.RESET },
  open: { 'send-fin': StreamState.LOCAL_CLOSED, 'recv-fin': StreamState.REMOTE_CLOSED, reset: StreamState.RESET },
  'local-closed': { 'recv-fin': StreamState.CLOSED, reset: StreamState.RESET },
  'remote-closed': { 'send-fin': StreamState.CLOSED, reset: StreamState.RESET },
  closed: {},
  reset: {},
});

export function nextState(state: StreamStateValue, event: StreamEvent): StreamStateValue | null {
  return TABLE[state][event] ?? null;
}

/** May this side still send DATA in this state? */
export function canSend(state: StreamStateValue): boolean {
  return state === StreamState.OPENING || state === StreamState.OPEN || state === StreamState.REMOTE_CLOSED;
}

/** May the partner still send DATA in this state? (The exit side accepts DATA while opening.) */
export function canReceive(state: StreamStateValue): boolean {
  return state === StreamState.OPENING || state === StreamState.OPEN || state === StreamState.LOCAL_CLOSED;
}

export function isFinished(state: StreamStateValue): boolean {
  return state === StreamState.CLOSED || state === StreamState.RESET;
}
