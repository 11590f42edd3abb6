/**
 * The requests the bench sends to its two application processes (bench/apps.ts)
 * over the Node IPC channel, and their answers. Times are microseconds of
 * `process.hrtime` (CLOCK_MONOTONIC), which every process on the host shares,
 * so a start taken in the user process and an end taken in the target process
 * can be subtracted.
 */

/** First byte of every benchmark connection: what the target does with it. */
export const Mode = {
  /** Count bytes until FIN (bulk throughput, measured at the sink). */
  BULK: 0x42, // 'B'
  /** Discard bytes, count nothing (the saturating stream of the fairness test). */
  DISCARD: 0x44, // 'D'
  /** Echo every byte (ping-pong RTT, readiness probe). */
  ECHO: 0x45, // 'E'
  /** Answer one byte, then close when the client closes (connection rate). */
  CONNECT: 0x43, // 'C'
  /** Answer one byte, then hold the connection open (idle streams). */
  IDLE: 0x49, // 'I'
  /** Read at a fixed slow rate (slow reader). */
  SLOW: 0x53, // 'S'
} as const;

export interface Endpoint {
  readonly host: string;
  readonly port: number;
}

/** Requests to the target (sink) process and their results. */
export interface TargetApi {
  listen: { args: Endpoint & { slowBytesPerSecond: number }; result: { port: number } };
  /** Zeroes the bulk counters of the server on `port`. */
  bulkReset: { args: { port: number }; result: null };
  /** Resolves once `streams` bulk streams ended (FIN) on `port`, or after `timeoutMs`. */
  bulkWait: {
    args: { port: number; streams: number; timeoutMs: number };
    result: { streams: number; bytes: number; firstAt: number; lastAt: number };
  };
  stats: { args: null; result: { open: number; slowBytes: number } };
  /** Closes the slow readers' connections (else they would read what is in flight at 1 MB/s first). */
  dropSlow: { args: null; result: null };
  /** Resolves when at most `open` connections remain, or after `timeoutMs`. */
  waitOpen: { args: { open: number; timeoutMs: number }; result: { open: number } };
}

/** Requests to the user (load generator) process and their results. */
export interface UserApi {
  /** One echo round trip on a new connection: the path is up end to end. */
  probe: { args: Endpoint; result: null };
  /** `streams` streams (opened at most 64 at a time, each answered by the sink before it sends) share `bytes`. */
  bulk: {
    args: Endpoint & { streams: number; bytes: number };
    result: { startAt: number; writtenAt: number; failed: number; firstError: string };
  };
  /** Ping-pong of `size` bytes on each stream; the first `warmup` round trips of each are not recorded. */
  rtt: { args: Endpoint & { streams: number; durationMs: number; size: number; warmup: number }; result: { samples: number[] } };
  connRate: {
    args: Endpoint & { workers: number; durationMs: number };
    result: { connections: number; errors: number; elapsedMs: number };
  };
  idleOpen: {
    args: Endpoint & { count: number; concurrency: number };
    result: { opened: number; failed: number; held: number; elapsedMs: number; firstError: string };
  };
  idleClose: { args: null; result: { closed: number } };
  slow: { args: Endpoint & { bytes: number; durationMs: number }; result: { written: number } };
  /** Starts one stream that sends as fast as the path takes it, until bulkStop. */
  bulkStart: { args: Endpoint; result: null };
  bulkStop: { args: null; result: { bytes: number; ms: number } };
}

export type Api = TargetApi | UserApi;

export interface RequestMessage {
  readonly id: number;
  readonly op: string;
  readonly args: unknown;
}

export type ResponseMessage =
  | { readonly id: number; readonly ok: true; readonly result: unknown }
  | { readonly id: number; readonly ok: false; readonly error: string };

/** Monotonic microseconds, comparable between processes of one host. */
export function nowUs(): number {
  return Number(process.hrtime.bigint() / 1000n);
}
