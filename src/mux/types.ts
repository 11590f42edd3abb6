/** The session's settings, what the partner announced, and the hooks its owner gives it. */
import type { TcpipeError } from '../errors.js';
import type { Frame } from '../protocol/frame.js';
import type { Stream } from './stream.js';

export interface MuxSettings {
  /** Receive window a new stream grants the partner (announced in HELLO). */
  readonly initialWindow: number;
  readonly maxWindow: number;
  /** Bytes received but not consumed, across streams, before the link is paused. */
  readonly receiveBudget: number;
  /** Streams the partner may hold open at once (announced in HELLO). */
  readonly maxStreams: number;
  /** Bytes queued in the link socket before streams wait their turn. */
  readonly linkWriteBound: number;
  /** New streams per second the partner may open, with a burst of as many. */
  readonly maxOpenRate: number;
  /** Resumable session (both sides announced it): how long streams are held after the link drops (ms). */
  readonly resumeGraceMs?: number;
}

/** What the partner announced in its HELLO. */
export interface PeerSettings {
  readonly initialWindow: number;
  readonly maxFramePayload: number;
  readonly maxStreams: number;
}

export interface SessionEnd {
  readonly error: TcpipeError | null;
  readonly reason: string;
  /** True when the partner ended it (GOAWAY or link closed from its side). */
  readonly byPeer: boolean;
}

export interface SessionHooks {
  /** The partner opened a stream: attach a sink, or reset it. */
  onStreamRequest(stream: Stream): void;
  onEnd(end: SessionEnd): void;
  /** Resumable sessions: the link was lost and the streams are held for the next one. */
  onHeld?(end: SessionEnd): void;
  /** Resumable sessions: both stream lists crossed on a new link and data flows again. */
  onResumed?(info: ResumeInfo): void;
  /** A FLOW_OPEN, DATAGRAM or FLOW_CLOSE (capability udp), undecoded; absent: such a frame is a protocol error. Throwing a ProtocolError closes the link. */
  onDatagramFrame?(frame: Frame): void;
}

export interface ResumeInfo {
  /** Streams carried over to the new link. */
  readonly streams: number;
  /** Bytes sent again because the partner had not received them. */
  readonly replayedBytes: number;
}
