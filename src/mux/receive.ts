/**
 * Frame dispatch: routes each frame the read gate decodes to its stream. It
 * checks what the partner may not do (an unknown stream, a reused id, OPENs
 * beyond the limits); what is not a stream's (a PING, a GOAWAY, a resumed
 * link's stream list) goes back to the session through FrameOwner.
 */
import type { Clock } from '../clock.js';
import { ErrorCodes, ProtocolError, TcpipeError, errorMessage, goAwayError } from '../errors.js';
import { Flag, FrameType, GoAwayCode, ResumeKind } from '../protocol/constants.js';
import { parseCodeAndReason, parseOpen, parseWindow } from '../protocol/decode.js';
import type { Frame, Origin } from '../protocol/frame.js';
import type { ReadGate } from './read-gate.js';
import { TokenBucket } from './rate.js';
import { SessionState, type SessionStateValue } from './session-state.js';
import type { Stream } from './stream.js';
import type { MuxSettings } from './types.js';

/**
 * The session as its router sees it. The session builds it once, so that
 * none of this needs to be public on the session itself.
 */
export interface FrameOwner {
  readonly state: SessionStateValue;
  /** Both sides resume: the resumption flags of WINDOW may be used. */
  readonly resumable: boolean;
  /** The stream of a frame, by Stream.key. */
  stream(key: number): Stream | undefined;
  /** Ids below this one were opened by this side. */
  readonly nextStreamId: number;
  /** Streams the partner opened that are not finished yet. */
  readonly peerOpenStreams: number;
  /** The partner opened stream `id` to `port`, within the limits: create it and offer it. */
  openPeerStream(id: number, port: number, origin: Origin | null): void;
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

export class FrameRouter {
  /** Highest stream id the partner opened. */
  lastPeerStreamId = 0;
  /** Limits the partner's OPENs per second. */
  private readonly openRate: TokenBucket;

  constructor(
    private readonly gate: ReadGate,
    private readonly owner: FrameOwner,
    private readonly settings: MuxSettings,
    private readonly clock: Clock,
  ) {
    this.openRate = new TokenBucket(settings.maxOpenRate, clock.now());
  }

  /** Handles every frame the read gate holds, until the session ends. */
  readonly drain = (): void => {
    try {
      let frame: Frame | null;
      while (this.owner.state !== SessionState.ENDED && (frame = this.gate.next()) !== null) this.dispatch(frame);
    } catch (err) {
      if (err instanceof TcpipeError) this.owner.fail(err);
      else this.owner.fail(new ProtocolError(GoAwayCode.INTERNAL_ERROR, `internal error: ${errorMessage(err)}`));
    }
  };

  private dispatch(frame: Frame): void {
    switch (frame.type) {
      case FrameType.DATA: {
        const stream = this.streamFor(frame);
        // A stale frame (the stream ended here while it was in flight) is counted in, and dropped.
        this.gate.received(frame.payload.length, stream !== null);
        if (stream !== null) stream.handleData(frame.payload, (frame.flags & Flag.FIN) !== 0);
        return;
      }
      case FrameType.WINDOW: {
        // The resumption flags belong to resumable sessions; ACCEPTED only to a resumed link's entries.
        if ((frame.flags & RESUMPTION_FLAGS) !== 0 && !this.owner.resumable) throw protocolError('a resumption flag on a WINDOW of a link without resumption');
        if ((frame.flags & (Flag.ACCEPTED | Flag.RESUMED)) === Flag.ACCEPTED) throw protocolError('ACCEPTED on a WINDOW that is not a resumed stream entry');
        if ((frame.flags & Flag.RESUMED) !== 0) {
          if (this.owner.state !== SessionState.RESUMING) throw protocolError('a resumed stream entry outside a resumption');
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
        if (payload[0] !== ResumeKind.DONE || payload.length !== 5 || this.owner.state !== SessionState.RESUMING) {
          throw protocolError(`unexpected RESUME (kind ${payload[0] ?? '?'}) on a ${this.owner.state} link`);
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
        this.owner.partnerLeft(goAwayError(code, `partner said goodbye: ${reason}`), `partner said goodbye: ${reason}`);
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
    const stream = this.owner.stream(frame.streamId * 2 + (ours ? 0 : 1));
    if (stream !== undefined) return stream;
    const known = ours ? frame.streamId < this.owner.nextStreamId : frame.streamId <= this.lastPeerStreamId;
    if (!known) throw protocolError(`frame type ${frame.type} for unknown stream ${frame.streamId}`);
    return null;
  }

  private handleOpen(frame: Frame): void {
    const id = frame.streamId;
    if (id <= this.lastPeerStreamId) throw protocolError(`OPEN reuses stream id ${id}`);
    const { port, origin } = parseOpen(frame.payload);
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
    this.owner.openPeerStream(id, port, origin);
  }
}

const RESUMPTION_FLAGS = Flag.FIN_RECEIVED | Flag.RESUMED | Flag.ACCEPTED;

function protocolError(message: string): ProtocolError {
  return new ProtocolError(GoAwayCode.PROTOCOL_ERROR, message);
}
