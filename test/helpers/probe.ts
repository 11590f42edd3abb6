/**
 * Preloaded into the tcpipe processes of the fault suite
 * (`node --expose-gc --import <this> dist/src/cli/main.js ...`): counts the
 * timers the process holds, and on SIGUSR2 prints one line to stderr:
 *
 *   FAULTS-PROBE {"seq":1,"timers":3,"intervals":1,"handles":{...},"heapUsed":...,"rss":...,"fds":...}
 *
 * `timers` counts setTimeout timers created and neither fired nor cleared,
 * unref'd ones included (process.getActiveResourcesInfo() leaves those out,
 * and tcpipe's clock unrefs all of its timers). The heap figure is taken after
 * a full garbage collection. It changes nothing else in the process.
 */
import { readdirSync } from 'node:fs';

type TimerFn = (callback: (...args: unknown[]) => void, ms?: number, ...args: unknown[]) => NodeJS.Timeout;
type ClearFn = (handle: NodeJS.Timeout | string | number | undefined) => void;

const liveTimeouts = new Set<NodeJS.Timeout>();
const liveIntervals = new Set<NodeJS.Timeout>();

const originals = { setTimeout, clearTimeout, setInterval, clearInterval };
const realSetTimeout: TimerFn = (callback, ms, ...args) => originals.setTimeout(callback, ms, ...args);
const realClearTimeout: ClearFn = (handle) => originals.clearTimeout(handle);
const realSetInterval: TimerFn = (callback, ms, ...args) => originals.setInterval(callback, ms, ...args);
const realClearInterval: ClearFn = (handle) => originals.clearInterval(handle);

function isTimeout(handle: unknown): handle is NodeJS.Timeout {
  return typeof handle === 'object' && handle !== null;
}

const wrappedSetTimeout: TimerFn = (callback, ms, ...args) => {
  const handle = realSetTimeout(
    (...a: unknown[]) => {
      liveTimeouts.delete(handle);
      callback(...a);
    },
    ms,
    ...args,
  );
  liveTimeouts.add(handle);
  return handle;
};
const wrappedClearTimeout: ClearFn = (handle) => {
  if (isTimeout(handle)) liveTimeouts.delete(handle);
  realClearTimeout(handle);
};
const wrappedSetInterval: TimerFn = (callback, ms, ...args) => {
  const handle = realSetInterval(callback, ms, ...args);
  liveIntervals.add(handle);
  return handle;
};
const wrappedClearInterval: ClearFn = (handle) => {
  if (isTimeout(handle)) liveIntervals.delete(handle);
  realClearInterval(handle);
};

for (const [name, fn] of [
  ['setTimeout', wrappedSetTimeout],
  ['clearTimeout', wrappedClearTimeout],
  ['setInterval', wrappedSetInterval],
  ['clearInterval', wrappedClearInterval],
] as const) {
  Object.defineProperty(globalThis, name, { value: fn, writable: true, configurable: true });
}

declare global {
  namespace NodeJS {
    interface Process {
      /** Node's own (undocumented) list of the handles keeping the loop alive. */
      _getActiveHandles?(): unknown[];
    }
  }
}

let seq = 0;
process.on('SIGUSR2', () => {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (gc !== undefined) {
    gc();
    gc();
  }
  // The live handles by class (Socket, TLSSocket, Server...): process.getActiveResourcesInfo()
  // names libuv's wraps instead and counts sockets a Socket no longer holds.
  const handles: Record<string, number> = {};
  for (const h of process._getActiveHandles?.() ?? []) {
    const name = typeof h === 'object' && h !== null ? h.constructor.name : typeof h;
    handles[name] = (handles[name] ?? 0) + 1;
  }
  let fds = -1;
  try {
    fds = readdirSync('/proc/self/fd').length - 1; // minus the directory being read
  } catch {
    // not Linux
  }
  const mem = process.memoryUsage();
  const line = {
    seq: ++seq,
    timers: liveTimeouts.size,
    intervals: liveIntervals.size,
    handles,
    heapUsed: mem.heapUsed,
    arrayBuffers: mem.arrayBuffers,
    rss: mem.rss,
    fds,
  };
  process.stderr.write(`FAULTS-PROBE ${JSON.stringify(line)}\n`);
});
