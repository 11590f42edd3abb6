/**
 * The receiving half of a session: decodes the link's bytes into frames and
 * routes each one to its stream. It checks what the partner may not do (an
 * unknown stream, a reused id, OPENs beyond the limits) and keeps the receive
 * budget: the link is paused while the bytes delivered to streams and not yet
 * consumed exceed it. What is not a stream's (a PING, a GOAWAY, a resumed
 * link's stream list) goes back to the session through ReceiveOwner.
 */
import type { Duplex } from 'node:stream';
import type { Clock } from '../clock.js';
import { ErrorCodes, ProtocolError, TcpipeError, errorMessage } from '../errors.js';
import { Flag, FrameType, GoAwayCode, ResumeKind } from '../protocol/constants.js';
import { parseCodeAndReason, parseOpenPort, parseWindow, type FrameDecoder } from '../protocol/decode.js';
import type { Frame } from '../protocol/frame.js';
import { TokenBucket } from './rate.js';
import type { Stream } from './stream.js';
import { GOAWAY_ERRORS, type LinkState, type MuxSettings } from './types.js';

/**
 * The session as its receiver sees it. The session builds it once, so that
 * none of this needs to be public on the session itself.
 */
export interface ReceiveOwner {
  /** The session's streams by Stream.key. */
  readonly streams: ReadonlyMap<number, Stream>;
  readonly ended: boolean;
  readonly linkState: LinkState;
  /** The current link, if any: the receive budget pauses and resumes it. */
  readonly link: Duplex | null;
  /** Ids below this one were opened by this side. */
  readonly nextStreamId: number;
  /** Streams the partner opened that are not finished yet. */
  readonly peerOpenStreams: number;
  /** The partner opened stream `id` to `port`, within the limits: create it and offer it. */
  openPeerStream(id: number, port: number): void;
  /** A PING without ACK: answer it. */
  answerPing(payload: Buffer): void;
  /** A PING with ACK: the answer to one of this side's pings or link pacer probes. */
  pingAnswered(payload: Buffer): void;
  /** One entry of the partner's stream list on a resuming link. */
  resumedEntry(frame: Frame): void;
  /** The partner's stream list is complete; it had opened streams up to `peerLastOpened`. */
  resumeDone(peerLastOpened: number): void;
  /** A frame of capability udp: handed to the session's owner as it is. */
  datagramFrame(frame: Frame): void;
  /** The partner said goodbye: the session ends and the link closes. */
  partnerLeft(error: TcpipeError | null, reason: string): void;
  /** A frame broke the protocol (or handling it failed): the session ends with a GOAWAY. */
  fail(error: TcpipeError): void;
}

export class Receiver {
  /** The current link's decoder (a resumed link brings its own). */
  decoder: FrameDecoder;
  /** Payload bytes of DATA frames received, on every link of the session. */
  bytesIn = 0;
  /** Highest stream id the partner opened. */
  lastPeerStreamId = 0;
  /** Bytes delivered to streams and not consumed yet. */
  private buffered = 0;
  private readPaused = false;
  /** Limits the partner's OPENs per second. */
  private readonly openRate: TokenBucket;

  constructor(
    decoder: FrameDecoder,
    private readonly owner: ReceiveOwner,
    private readonly settings: MuxSettings,
    private readonly clock: Clock,
    now: number,
  ) {
    this.decoder = decoder;
    this.openRate = new TokenBucket(settings.maxOpenRate, now);
  }

  get bufferedBytes(): number {
    return this.buffered;
  }

  receive(chunk: Buffer): void {
    this.decoder.push(chunk);
    this.drainDecoder();
  }

  /** Handles every frame the decoder holds, until the session ends. */
  drainDecoder(): void {
    try {
      let frame: Frame | null;
      while (!this.owner.ended && (frame = this.decoder.next()) !== null) this.dispatch(frame);
    } catch (err) {
      if (err instanceof TcpipeError) this.owner.fail(err);
      else this.owner.fail(new ProtocolError(GoAwayCode.INTERNAL_ERROR, `internal error: ${errorMessage(err)}`));
    }
  }

  /** `bytes` left the receive buffers (consumed or dropped): below half the budget, a paused link reads again. */
  release(bytes: number): void {
    this.buffered -= bytes;
    if (this.readPaused && this.buffered <= this.settings.receiveBudget / 2) {
      this.readPaused = false;
      if (!this.owner.ended) this.owner.link?.resume();
    }
  }

  /** The session let go of its link: whatever link comes next starts reading. */
  linkDetached(): void {
    this.readPaused = false;
  }

  private dispatch(frame: Frame): void {
    switch (frame.type) {
      case FrameType.DATA: {
        const stream = this.streamFor(frame);
        const length = frame.payload.length;
        this.bytesIn += length;
        if (stream === null) return; // stale: the stream ended on this side while the frame was in flight
        this.buffered += length;
        stream.handleData(frame.payload, (frame.flags & Flag.FIN) !== 0);
        if (this.buffered > this.settings.receiveBudget && !this.readPaused) {
          this.readPaused = true;
          this.owner.link?.pause();
        }
        return;
      }
      case FrameType.WINDOW: {
        if ((frame.flags & Flag.RESUMED) !== 0) {
          if (this.owner.linkState !== 'resuming') throw protocolError('a resumed stream entry outside a resumption');
          this.owner.resumedEntry(frame);
          return;
        }
        const stream = this.streamFor(frame);
        if (stream === null) return;
        const update = parseWindow(frame.payload);
        stream.handleWindow(update.consumed, update.window);
        if ((frame.flags & Flag.FIN_RECEIVED) !== 0) stream.handleFinAcked();
        return;
      }
      case FrameType.RESUME: {
        const { payload } = frame;
        if (payload[0] !== ResumeKind.DONE || payload.length !== 5 || this.owner.linkState !== 'resuming') {
          throw protocolError(`unexpected RESUME (kind ${payload[0] ?? '?'}) on a ${this.owner.linkState} link`);
        }
        this.owner.resumeDone(payload.readUInt32BE(1));
        return;
      }
      case FrameType.OPEN:
        this.handleOpen(frame);
        return;
      case FrameType.ACCEPT: {
        if ((frame.flags & Flag.LOCAL) === 0) throw protocolError('ACCEPT without the LOCAL flag');
        const stream = this.streamFor(frame);
        if (stream !== null) stream.handleAccept();
        return;
      }
      case FrameType.RESET: {
        const stream = this.streamFor(frame);
        if (stream === null) return;
        const { code, reason } = parseCodeAndReason(frame.payload);
        stream.handleReset(code, reason);
        return;
      }
      case FrameType.PING:
        if ((frame.flags & Flag.ACK) === 0) this.owner.answerPing(frame.payload);
        else this.owner.pingAnswered(frame.payload);
        return;
      case FrameType.GOAWAY: {
        const { code, reason } = parseCodeAndReason(frame.payload);
        const errorCode = GOAWAY_ERRORS[code];
        const error = errorCode === undefined ? null : new TcpipeError(errorCode, `partner said goodbye: ${reason}`);
        this.owner.partnerLeft(error, `partner said goodbye: ${reason}`);
        return;
      }
      case FrameType.FLOW_OPEN:
      case FrameType.DATAGRAM:
      case FrameType.FLOW_CLOSE:
        this.owner.datagramFrame(frame);
        return;
      case FrameType.HELLO:
        throw protocolError('HELLO after the handshake');
    }
  }

  /**
   * The stream a frame refers to, or null for a stream that already ended
   * here (frames in flight are dropped). An id that never existed is a
   * protocol error.
   */
  private streamFor(frame: Frame): Stream | null {
    // LOCAL set: this side is the entry side, so this side opened the stream.
    const ours = (frame.flags & Flag.LOCAL) !== 0;
    const stream = this.owner.streams.get(frame.streamId * 2 + (ours ? 0 : 1));
    if (stream !== undefined) return stream;
    const known = ours ? frame.streamId < this.owner.nextStreamId : frame.streamId <= this.lastPeerStreamId;
    if (!known) throw protocolError(`frame type ${frame.type} for unknown stream ${frame.streamId}`);
    return null;
  }

  private handleOpen(frame: Frame): void {
    const id = frame.streamId;
    if (id <= this.lastPeerStreamId) throw protocolError(`OPEN reuses stream id ${id}`);
    const port = parseOpenPort(frame.payload);
    this.lastPeerStreamId = id;
    if (!this.openRate.take(this.clock.now())) {
      throw new ProtocolError(
        GoAwayCode.LIMIT_EXCEEDED,
        `partner opened streams faster than ${this.settings.maxOpenRate} per second`,
        ErrorCodes.LIMIT,
      );
    }
    if (this.owner.peerOpenStreams >= this.settings.maxStreams) {
      throw new ProtocolError(
        GoAwayCode.LIMIT_EXCEEDED,
        `partner opened more than ${this.settings.maxStreams} streams`,
        ErrorCodes.LIMIT,
      );
    }
    this.owner.openPeerStream(id, port);
  }
}

function protocolError(message: string): ProtocolError {
  return new ProtocolError(GoAwayCode.PROTOCOL_ERROR, message);
}
