/**
 * Bounded waits: every wait in the tests has a deadline, and nothing sleeps to
 * wait for a state. A wait on an event is `waitForEvent`; a state only a
 * reading can show (a descriptor count, an agent's counters) is `pollUntil`;
 * `observationWindow` bounds a window in which something must NOT happen.
 */
import type { EventEmitter } from 'node:events';
import type { TestContext } from 'node:test';

/** Rejects with `what` if `promise` does not settle within `ms`. */
export function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/**
 * Marks a promise as handled so that a wait set up in advance, and left
 * behind by a test that already failed, does not also fail the whole file
 * as an unhandled rejection. Whoever awaits it still gets the rejection.
 */
export function handled<T>(promise: Promise<T>): Promise<T> {
  promise.catch(() => undefined);
  return promise;
}

type Listener = (...args: unknown[]) => void;

/** The first `name` event of `emitter` whose arguments pass `filter`, within `ms`. */
export function waitForEvent(
  emitter: EventEmitter,
  name: string,
  ms: number,
  filter: (...args: unknown[]) => boolean = () => true,
): Promise<unknown[]> {
  return handled(
    new Promise((resolve, reject) => {
      const listener: Listener = (...args) => {
        if (!filter(...args)) return;
        clearTimeout(timer);
        emitter.off(name, listener);
        resolve(args);
      };
      const timer = setTimeout(() => {
        emitter.off(name, listener);
        reject(new Error(`timed out after ${ms} ms waiting for '${name}'`));
      }, ms);
      emitter.on(name, listener);
    }),
  );
}

/** Whether `emitter` emits `name` within `ms` (false after `ms`: for waits whose timeout is an answer, not a failure). */
export function eventWithin(emitter: EventEmitter, name: string, ms: number): Promise<boolean> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      emitter.off(name, onEvent);
      resolve(false);
    }, ms);
    const onEvent = (): void => {
      clearTimeout(timer);
      resolve(true);
    };
    emitter.once(name, onEvent);
  });
}

/** Resolves after `ms`: bounds an observation window (something must not happen in it), never a wait for a state. */
export function observationWindow(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * Polls `read` every `intervalMs` until `done(value)` holds; rejects after
 * `ms` with the last value. For states only a reading can show (a process's
 * descriptor count, say).
 */
export async function pollUntil<T>(read: () => T | Promise<T>, done: (value: T) => boolean, ms: number, what: string, intervalMs = 100): Promise<T> {
  const deadline = Date.now() + ms;
  let last = await read();
  while (!done(last)) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}; last reading ${JSON.stringify(last)}`);
    await observationWindow(intervalMs);
    last = await read();
  }
  return last;
}

/**
 * Resolves with `progress()` once it has not changed over a whole `quietMs`
 * window; rejects after `maxMs`. Finds the point where a flow has stalled:
 * the quiet window is an observation, not a wait for a state.
 */
export function untilStalled(progress: () => number, quietMs: number, maxMs: number, what: string): Promise<number> {
  return new Promise((resolve, reject) => {
    let last = progress();
    const deadline = setTimeout(() => {
      clearInterval(check);
      reject(new Error(`timed out after ${maxMs} ms waiting for ${what} to stall (still moving at ${progress()})`));
    }, maxMs);
    const check = setInterval(() => {
      const now = progress();
      if (now !== last) {
        last = now;
        return;
      }
      clearInterval(check);
      clearTimeout(deadline);
      resolve(now);
    }, quietMs);
  });
}

/** Asserts that `ms` is under `limit`, and reports the measure as a test diagnostic. */
export function assertWithin(t: TestContext, ms: number, limit: number, what: string): void {
  t.diagnostic(`${what}: ${ms.toFixed(0)} ms (limit ${limit} ms)`);
  if (!(ms < limit)) throw new Error(`${what} took ${ms.toFixed(0)} ms (limit ${limit} ms)`);
}
