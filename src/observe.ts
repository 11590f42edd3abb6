/**
 * What tcpipe publishes for observers (benchmarks, traces, `--diagnose`), on
 * node:diagnostics_channel, as undici publishes `undici:request:create`. An
 * observer subscribes by name in the same process (`node --import`); nothing
 * outside src reads a private field, so a change here is a compile error in
 * the observer, never a silent NaN. Publishing costs one boolean check when
 * nobody listens (`hasSubscribers`), so the data path guards every publish.
 */
import diagnostics from 'node:diagnostics_channel';

/** A stream as observers name it: its id and 'e' (entry side) or 'x' (exit side). */
export type StreamTag = string;

/** A receiving stream sent a WINDOW: its window before and after growth, bytes consumed, the round trip growth was judged on. */
export interface WindowMessage {
  readonly stream: StreamTag;
  readonly before: number;
  readonly after: number;
  readonly consumed: number;
  readonly rttMs: number;
}

/** A sending stream has bytes and cannot send them: no credit ('window'), or the link is congested ('link'). */
export interface BlockedMessage {
  readonly stream: StreamTag;
  readonly why: 'window' | 'link';
}

/** A blocked stream sends again (or ended). */
export interface UnblockedMessage {
  readonly stream: StreamTag;
}

/** A stream is finished and forgotten by its session (closed both ways and acknowledged, or reset). */
export interface FinishedMessage {
  readonly stream: StreamTag;
}

/** A round-trip sample: 'heartbeat' (a PING's answer) or 'probe' (the link pacer's, see link-pacer.ts). */
export interface RttMessage {
  readonly source: 'heartbeat' | 'probe';
  readonly ms: number;
}

/** The link pacer took an answered probe: its cap on bytes in flight and what it measures. */
export interface PaceMessage {
  readonly rttMs: number;
  readonly minRttMs: number;
  readonly cap: number;
  readonly inFlight: number;
}

/** A session's counters at one moment. */
export interface SessionSnapshot {
  readonly ended: boolean;
  /** Smoothed heartbeat round trip, ms (0 before the first). */
  readonly rttMs: number;
  /** Bytes delivered to streams and not consumed yet. */
  readonly buffered: number;
  /** Receive window granted beyond the initial windows, summed over streams. */
  readonly grown: number;
  /** Bytes waiting in the link socket's user-space buffer (-1 without a link). */
  readonly linkQueued: number;
  readonly congested: boolean;
  readonly bytesIn: number;
  readonly bytesOut: number;
  readonly streams: number;
  /** The link pacer (link-pacer.ts): its cap on bytes in flight, the bytes in flight, whether the cap holds. */
  readonly pacer: { readonly cap: number; readonly inFlight: number; readonly holding: boolean };
}

/** A session started: observers keep `snapshot` to sample it. */
export interface SessionMessage {
  readonly snapshot: () => SessionSnapshot;
}

export const channels = Object.freeze({
  session: diagnostics.channel('tcpipe:session:start'),
  window: diagnostics.channel('tcpipe:stream:window'),
  blocked: diagnostics.channel('tcpipe:stream:blocked'),
  unblocked: diagnostics.channel('tcpipe:stream:unblocked'),
  finished: diagnostics.channel('tcpipe:stream:finished'),
  rtt: diagnostics.channel('tcpipe:link:rtt'),
  pace: diagnostics.channel('tcpipe:link:pace'),
});

/** Channel names and their message types, for subscribers (`subscribe('tcpipe:link:rtt', ...)`). */
export interface ChannelMessages {
  'tcpipe:session:start': SessionMessage;
  'tcpipe:stream:window': WindowMessage;
  'tcpipe:stream:blocked': BlockedMessage;
  'tcpipe:stream:unblocked': UnblockedMessage;
  'tcpipe:stream:finished': FinishedMessage;
  'tcpipe:link:rtt': RttMessage;
  'tcpipe:link:pace': PaceMessage;
}

/** Subscribes to one of tcpipe's channels with its message type; returns the unsubscribe. */
export function subscribe<K extends keyof ChannelMessages>(name: K, onMessage: (message: ChannelMessages[K]) => void): () => void {
  const listener = (message: unknown): void => onMessage(message as ChannelMessages[K]);
  diagnostics.subscribe(name, listener);
  return () => diagnostics.unsubscribe(name, listener);
}
