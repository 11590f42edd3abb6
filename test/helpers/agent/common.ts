/**
 * What every part of the fault agent shares: its JSON arguments, socket
 * waits, and how it tells a reset from an orderly end.
 */
import type net from 'node:net';

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
export type Args = Record<string, Json>;
/** One operation the test can ask of the agent. */
export type Op = (args: Args) => Json | Promise<Json>;

export function num(args: Args, key: string, fallback?: number): number {
  const v = args[key];
  if (typeof v === 'number') return v;
  if (fallback !== undefined) return fallback;
  throw new Error(`argument ${key} must be a number`);
}

export function str(args: Args, key: string, fallback?: string): string {
  const v = args[key];
  if (typeof v === 'string') return v;
  if (fallback !== undefined) return fallback;
  throw new Error(`argument ${key} must be a string`);
}

export function bool(args: Args, key: string, fallback = false): boolean {
  const v = args[key];
  return typeof v === 'boolean' ? v : fallback;
}

/**
 * libuv reports a TCP reset that arrives after a partial read as an end of
 * stream (POLLHUP). An empty write surfaces the pending error, so a reset is
 * never counted as an orderly end: `onEnd(null)` for a FIN, `onEnd(code)` for a reset.
 */
export function probeEnd(socket: net.Socket, onEnd: (err: string | null) => void): void {
  if (!socket.writable) {
    onEnd(null);
    return;
  }
  socket.write(Buffer.alloc(0), (err) => onEnd(err === null || err === undefined ? null : errCode(err)));
}

export function errCode(err: unknown): string {
  if (err instanceof Error) return (err as NodeJS.ErrnoException).code ?? err.message;
  return String(err);
}

export function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** `until(cond, ms)` re-checks `cond` each time `poke()` is called (from socket events), up to `ms`. */
export function waker(): { poke(): void; until(cond: () => boolean, ms: number): Promise<boolean> } {
  let wake: (() => void) | null = null;
  return {
    poke(): void {
      const w = wake;
      wake = null;
      if (w !== null) w();
    },
    async until(cond: () => boolean, ms: number): Promise<boolean> {
      const deadline = performance.now() + ms;
      while (!cond()) {
        const left = deadline - performance.now();
        if (left <= 0) return false;
        await new Promise<void>((resolve) => {
          const t = setTimeout(resolve, left);
          wake = () => {
            clearTimeout(t);
            resolve();
          };
        });
      }
      return true;
    },
  };
}
