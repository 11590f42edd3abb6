/**
 * Requests of the WAN bench to its two application processes (bench/wan/apps.ts):
 * the load generator in namespace A and the sinks in namespace B. Times are
 * microseconds of CLOCK_MONOTONIC (bench/messages.ts nowUs), which both
 * namespaces share, so a start taken in A and an end taken in B subtract.
 */
export { nowUs } from '../messages.js';

/** First byte of every connection: what the sink does with it. */
export const WanMode = {
  /** Answer one byte, then count bytes until FIN (bulk throughput, measured at the sink). */
  BULK: 0x42,
  /** Read and drop (the bulk stream beside the interactive one). */
  DISCARD: 0x44,
  /** Echo every byte (ping-pong, probes). */
  ECHO: 0x45,
  /** Answer one byte (the new-stream round trip), then wait for the close. */
  ONE: 0x31,
} as const;

export interface Endpoint {
  readonly host: string;
  readonly port: number;
}

export interface BulkCount {
  /** Streams that ended (FIN) on the port since the reset. */
  readonly ended: number;
  readonly bytes: number;
  /** First and last byte received, µs. */
  readonly firstAt: number;
  readonly lastAt: number;
}

export interface SinkApi {
  /** Listens on 0.0.0.0 at each port. */
  listen: { args: { ports: readonly number[] }; result: null };
  bulkReset: { args: { port: number }; result: null };
  /** Resolves once `streams` bulk streams ended on `port`, or at `untilUs` with what arrived by then. */
  bulkWait: { args: { port: number; streams: number; untilUs: number }; result: BulkCount };
  /** Resolves when at most `open` connections remain, or after `timeoutMs`. */
  waitOpen: { args: { open: number; timeoutMs: number }; result: { open: number } };
}

export interface UserApi {
  /** One echo round trip on a new connection: the path works end to end. */
  probe: { args: Endpoint & { timeoutMs: number }; result: null };
  /** Opens `streams` bulk streams and waits until the sink answered on each. */
  bulkOpen: { args: Endpoint & { streams: number }; result: { opened: number; failed: number; firstError: string } };
  /**
   * Sends `bytes` in all over the opened streams, as fast as the path takes
   * them; streams still sending at `untilUs` are destroyed (the sink reports
   * what arrived by then).
   */
  bulkSend: {
    args: { bytes: number; untilUs: number };
    result: { startAt: number; completed: number; aborted: number; failed: number; firstError: string };
  };
  /** Opens the interactive connection (ECHO) used by pingRun. */
  pingOpen: { args: Endpoint; result: null };
  /** 64-byte (`size`) ping-pong on the open connection for `durationMs`; the first `warmup` round trips are not kept. Round trips in µs, with when each was sent (nowUs). */
  pingRun: { args: { size: number; durationMs: number; warmup: number; minSamples: number }; result: { samples: number[]; sentAt: number[] } };
  pingClose: { args: null; result: null };
  /** Starts one stream (DISCARD) that sends as fast as the path takes it, until bulkStop. */
  bulkStart: { args: Endpoint; result: null };
  bulkStop: { args: null; result: { bytes: number; ms: number } };
  /** `count` new connections at once, each: connect, 1 byte out, 1 byte back; per-stream time from connect() to the answer, µs. */
  newStreams: {
    args: Endpoint & { count: number; timeoutMs: number };
    result: { times: number[]; failed: number; firstError: string; elapsedUs: number };
  };
}
