/** Time source and timers, injected so tests and the library share one seam. */
export interface Timer {
  cancel(): void;
}

export interface Clock {
  /** Milliseconds, monotonic, sub-millisecond resolution. */
  now(): number;
  /** A timer that does not keep the process alive. */
  setTimer(ms: number, callback: () => void): Timer;
}

export const systemClock: Clock = Object.freeze({
  now: () => performance.now(),
  setTimer(ms: number, callback: () => void): Timer {
    const handle = setTimeout(callback, ms);
    handle.unref();
    return { cancel: () => clearTimeout(handle) };
  },
});
