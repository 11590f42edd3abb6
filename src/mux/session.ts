/**
 * The multiplexer over one link: owns the streams, dispatches frames, keeps
 * the link's send queue short and fair, and bounds what it buffers. It sees
 * the link only as a Duplex of bytes, whatever transport and security carry it.
 */
import type { Duplex } from 'node:stream';
import type { Clock, Timer } from '../clock.js';
import { ErrorCodes, ProtocolError, TcpipeError, errorMessage } from '../errors.js';
import { Flag, FrameType, GoAwayCode, HEADER_LENGTH, MAX_STREAM_ID, ResetCode, ResumeKind } from '../protocol/constants.js';
import {
  encodeAccept,
  encodeDataHeader,
  encodeGoAway,
  encodeOpen,
  encodePing,
  encodeReset,
  encodeWindow,
} from '../protocol/encode.js';
import { parseCodeAndReason, parseOpenPort, parseWindow, type FrameDecoder } from '../protocol/decode.js';
import type { Frame } from '../protocol/frame.js';
import { Fifo } from './fifo.js';
import { TokenBucket } from './rate.js';
import { PingTracker } from './pings.js';
import { LinkPacer } from './link-pacer.js';
import { Stream, type StreamOwner } from './stream.js';
import { Resumption, type HeldStreams } from './resumption.js';
import { GOAWAY_ERRORS, type MuxSettings, type PeerSettings, type SessionEnd, type SessionHooks } from './types.js';

export type { MuxSettings, PeerSettings, ResumeInfo, SessionEnd, SessionHooks } from './types.js';

/** How a session relates to its link: live, held (link lost, resumable) or resuming (new link, stream lists crossing). */
export type LinkState = 'live' | 'held' | 'resuming';


/** A stream that sent no WINDOW for this long may lose its grown window to a busier one. */
const IDLE_WINDOW_MS = 1000;

/** A first frame of a turn smaller than this goes out at once (see corkForTurn). */
const DIRECT_FRAME_BYTES = 2048;

/**
 * Small frames that follow one another within this long on a link whose
 * round trip is at least BURST_MIN_RTT_MS are a burst (many streams opening
 * at once): they are held for BURST_HOLD_MS so that they share segments.
 */
const BURST_GAP_MS = 2;
const BURST_HOLD_MS = 1;
const BURST_MIN_RTT_MS = 16;

/** Round-robin quantum: one frame per stream per turn when streams contend. */
const FLUSH_QUANTUM = 1;

/** A stream with at most this much to send passes the link pacer's cap (a keystroke, a request, a ping). */
const SMALL_SEND_BYTES = 4096;
/** A stream that averaged less than this since it opened (1 MB/s) is interactive for the link pacer. */
const INTERACTIVE_BYTES_PER_MS = 1000;


export class Session implements StreamOwner {
  readonly maxSendFrame: number;
  /** Clock time of the last byte received: the heartbeat reads it. */
  lastReceiveAt: number;
  /** Smoothed round-trip time from PING/PONG, in ms. */
  rtt = 0;
  /** Smallest round trip seen on this link, in ms (0 until the first PONG). */
  minRtt = 0;
  bytesIn = 0;
  bytesOut = 0;

  private readonly streams = new Map<number, Stream>();
  private readonly sendQueue = new Fifo<Stream>();
  private nextStreamId = 1;
  private lastPeerStreamId = 0;
  private peerOpenStreams = 0;
  private buffered = 0;
  private grownWindows = 0;
  private readPaused = false;
  /** Limits the partner's OPENs per second. */
  private readonly openRate: TokenBucket;
  private ended = false;
  private readonly pings: PingTracker;
  private link: Duplex | null;
  private decoder: FrameDecoder;
  private peer: PeerSettings;
  /** Both sides announced resumption: a lost link holds the streams instead of ending the session. */
  readonly resumable: boolean;
  linkState: LinkState = 'live';
  private graceTimer: Timer | null = null;
  /** The link corked for this turn of the event loop, if any (see corkForTurn). */
  private corkedLink: Duplex | null = null;
  /** A turn of the event loop has written to the link (endTurn is scheduled). */
  private inTurn = false;
  /** Clock time of the last turn that began with a small frame on an idle link (see corkForTurn). */
  private lastSmallTurnAt = -Infinity;
  private readonly resumption = new Resumption();
  /** The link socket holds linkWriteBound bytes (or there is no link): streams wait for 'drain'. */
  private linkFull = false;
  /** Bounds the bytes in flight on the current link (see link-pacer.ts). */
  private pacer = new LinkPacer();
  private readonly writeControl = (frame: Buffer): void => this.writeFrame(frame);
  /** Called once per link when that link is gone (held or ended): closes its transport. */
  private linkGone: ((end: SessionEnd) => void) | null = null;

  private readonly onLinkData = (chunk: Buffer): void => this.receive(chunk);
  private readonly onLinkDrain = (): void => {
    this.linkFull = false;
    this.flushQueue();
  };
  private readonly onLinkEnd = (): void => this.linkLost(null, 'link closed by the partner');
  private readonly onLinkError = (err: Error): void =>
    this.linkLost(new TcpipeError(ErrorCodes.LINK_CLOSED, `link error: ${errorMessage(err)}`), `link error: ${errorMessage(err)}`);
  private readonly onLinkClose = (): void => this.linkLost(null, 'link closed');

  constructor(
    link: Duplex,
    decoder: FrameDecoder,
    private readonly settings: MuxSettings,
    peer: PeerSettings,
    private readonly hooks: SessionHooks,
    private readonly clock: Clock,
  ) {
    this.link = link;
    this.decoder = decoder;
    this.peer = peer;
    this.resumable = (settings.resumeGraceMs ?? 0) > 0;
    this.maxSendFrame = peer.maxFramePayload;
    this.lastReceiveAt = clock.now();
    this.openRate = new TokenBucket(settings.maxOpenRate, this.lastReceiveAt);
    this.pings = new PingTracker(clock, (opaque) => this.writeFrame(encodePing(0, opaque)));
  }

  /** Starts reading the link; frames the decoder already holds are handled first. */
  start(): void {
    const link = this.link;
    if (link === null) return;
    link.on('data', this.onLinkData);
    link.on('drain', this.onLinkDrain);
    link.on('end', this.onLinkEnd);
    link.on('error', this.onLinkError);
    link.on('close', this.onLinkClose);
    this.drainDecoder();
    if (!this.ended && this.link === link) link.resume();
  }

  /** Who closes the current link's transport once the session lets go of it (held or ended). */
  setLinkGone(callback: (end: SessionEnd) => void): void {
    this.linkGone = callback;
  }

  /**
   * A new link for a held session (the resumption handshake has proved it):
   * each side lists its streams (a WINDOW with RESUMED per stream, then RESUME
   * DONE); data flows again once the partner's list is in (finishResumption).
   */
  resumeOn(link: Duplex, decoder: FrameDecoder, peer: PeerSettings): void {
    if (this.ended || this.linkState !== 'held') throw new Error('resumeOn: the session is not held');
    this.graceTimer?.cancel();
    this.graceTimer = null;
    this.link = link;
    this.decoder = decoder;
    this.peer = peer;
    this.linkState = 'resuming';
    this.pacer = new LinkPacer();
    this.lastReceiveAt = this.clock.now();
    link.cork();
    for (const frame of this.resumption.listFrames(this.heldStreams())) link.write(frame);
    link.uncork();
    this.start();
  }

  /** The held session cannot be resumed (the partner has no state, or another partner came): it ends. */
  abandon(error: TcpipeError, reason: string): void {
    this.terminate(error, reason, false);
  }

  get isEnded(): boolean {
    return this.ended;
  }

  get streamCount(): number {
    return this.streams.size;
  }

  get bufferedBytes(): number {
    return this.buffered;
  }

  /** Entry side: opens a stream to the partner's target on `port`; attach a sink before returning to the event loop. */
  openStream(port: number): Stream | null {
    if (this.ended || this.nextStreamId > MAX_STREAM_ID) return null;
    if (this.streams.size - this.peerOpenStreams >= this.peer.maxStreams) return null;
    const stream = new Stream(this.nextStreamId++, true, port, this, this.windowsForNewStream());
    this.streams.set(stream.key, stream);
    // While the link is down or resuming, the OPEN waits: finishResumption sends it in id order.
    if (this.linkState === 'live') this.writeFrame(encodeOpen(stream.id, 0, port));
    return stream;
  }

  /** Sends a PING; resolves with the round-trip time, or null after `timeoutMs` or when the session ends. */
  ping(timeoutMs: number): Promise<number | null> {
    if (this.ended || this.link === null) return Promise.resolve(null);
    return this.pings.ping(timeoutMs);
  }

  /** Says goodbye with a reason and closes the link once the frame is out. */
  goAway(code: number, reason: string): void {
    this.sayGoodbye(code, reason, null);
  }

  /** Ends the session on a local error: GOAWAY with the error's code, then close. */
  fail(err: TcpipeError): void {
    this.sayGoodbye(err instanceof ProtocolError ? err.goAwayCode : GoAwayCode.INTERNAL_ERROR, err.message, err);
  }

  private sayGoodbye(code: number, reason: string, error: TcpipeError | null): void {
    if (this.ended) return;
    const link = this.link;
    if (link !== null) {
      this.writeFrame(encodeGoAway(code, reason));
      link.end();
      // The partner may never read it: close for good after a second.
      const timer = this.clock.setTimer(1000, () => link.destroy());
      link.once('close', () => timer.cancel());
    }
    this.terminate(error, reason, false);
  }

  /** Closes the link at once, without a goodbye. */
  destroy(reason: string): void {
    const link = this.link;
    this.terminate(null, reason, false);
    link?.destroy();
  }

  /**
   * The link is dead (the heartbeat heard nothing): a resumable session holds
   * its streams for the next link; any other ends with a GOAWAY.
   */
  linkFailed(error: TcpipeError): void {
    if (this.ended) return;
    if (this.resumable && this.link !== null) this.hold(error, error.message);
    else this.fail(error);
  }

  // ---- StreamOwner -----------------------------------------------------

  now(): number {
    return this.clock.now();
  }

  /**
   * The round trip window growth is judged on: the smallest PING round trip
   * seen. The smoothed one grows with the queue a bulk stream builds, which
   * would feed the growth that built it. Until the first PONG: 1 ms.
   */
  rttMs(): number {
    return this.minRtt > 0 ? this.minRtt : 1;
  }

  /** Streams stop sending: the link socket is full, or the link pacer's cap is reached. */
  get congested(): boolean {
    return this.linkFull || this.pacer.closed;
  }

  /** Streams send DATA and FIN only on a live link; held data waits in the streams. */
  get linkLive(): boolean {
    return this.linkState === 'live' && !this.ended;
  }

  writeData(streamId: number, flags: number, payload: Buffer): void {
    const link = this.link;
    if (this.ended || link === null || this.linkState !== 'live') return;
    this.corkForTurn(link, payload.length);
    link.write(encodeDataHeader(streamId, flags, payload.length));
    if (payload.length > 0) link.write(payload);
    this.bytesOut += payload.length;
    const pacer = this.pacer;
    pacer.wrote(HEADER_LENGTH + payload.length);
    if (pacer.probeDue) {
      const probe = pacer.probe(this.clock.now());
      if (probe !== null) this.writeFrame(encodePing(0, probe));
    }
    if (link.writableLength >= this.settings.linkWriteBound) this.linkFull = true;
  }

  writeAccept(streamId: number): void {
    this.writeFrame(encodeAccept(streamId));
  }

  writeWindow(streamId: number, flags: number, consumed: number, window: number): void {
    this.writeFrame(encodeWindow(streamId, flags, consumed, window));
  }

  writeReset(streamId: number, flags: number, code: number, reason: string): void {
    this.writeFrame(encodeReset(streamId, flags, code, reason));
  }

  scheduleSend(stream: Stream): void {
    if (this.ended) return;
    if (this.linkState !== 'live') {
      this.enqueue(stream);
      return;
    }
    // A small send passes the pacer's cap and the queue: the cap is for bulk, which would bury it.
    const small = stream.bufferedToSend <= SMALL_SEND_BYTES;
    // Met a backlog, or keeps sending while the cap holds: an interactive stream that is
    // still active keeps the cap held, or bulk would refill the send buffer between its sends.
    if (small && (this.pacer.backlogged || this.pacer.holding)) {
      // Interactive: has sent less than 1 MB per second of its life (a bulk stream's small tail does not count).
      const now = this.clock.now();
      if (stream.sentBytes < (now - stream.openedAt + 1) * INTERACTIVE_BYTES_PER_MS) this.pacer.contended(now);
    }
    if (!this.linkFull && (small || (this.sendQueue.length === 0 && !this.pacer.closed))) {
      if (stream.flush(Infinity)) this.enqueue(stream);
      return;
    }
    this.enqueue(stream);
  }

  growWindow(wanted: number): number {
    if (this.grownWindows + wanted > this.settings.receiveBudget) this.reclaimIdleWindows();
    const room = this.settings.receiveBudget - this.grownWindows;
    const granted = wanted < room ? wanted : room > 0 ? room : 0;
    this.grownWindows += granted;
    return granted;
  }

  /** Takes grown windows back from streams that received nothing for a while. */
  private reclaimIdleWindows(): void {
    const idleBefore = this.clock.now() - IDLE_WINDOW_MS;
    for (const stream of this.streams.values()) {
      if (stream.grownBy > 0 && stream.lastActiveAt < idleBefore) this.grownWindows -= stream.shrinkWindow();
    }
  }

  releaseBuffered(bytes: number): void {
    this.buffered -= bytes;
    if (this.readPaused && this.buffered <= this.settings.receiveBudget / 2) {
      this.readPaused = false;
      if (!this.ended) this.link?.resume();
    }
  }

  streamFinished(stream: Stream): void {
    if (this.streams.get(stream.key) !== stream) return;
    this.streams.delete(stream.key);
    if (this.resumable) this.resumption.remember(stream);
    if (!stream.isEntry) this.peerOpenStreams--;
    this.grownWindows -= stream.grownBy;
    this.hooks.onStreamFinished?.(stream);
  }

  // ---- receiving -------------------------------------------------------

  private receive(chunk: Buffer): void {
    this.lastReceiveAt = this.clock.now();
    this.decoder.push(chunk);
    this.drainDecoder();
  }

  private drainDecoder(): void {
    try {
      let frame: Frame | null;
      while (!this.ended && (frame = this.decoder.next()) !== null) this.dispatch(frame);
    } catch (err) {
      if (err instanceof TcpipeError) this.fail(err);
      else this.fail(new ProtocolError(GoAwayCode.INTERNAL_ERROR, `internal error: ${errorMessage(err)}`));
    }
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
          this.link?.pause();
        }
        return;
      }
      case FrameType.WINDOW: {
        if ((frame.flags & Flag.RESUMED) !== 0) {
          if (this.linkState !== 'resuming') throw protocolError('a resumed stream entry outside a resumption');
          this.resumption.applyEntry(frame, this.heldStreams());
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
        if (payload[0] !== ResumeKind.DONE || payload.length !== 5 || this.linkState !== 'resuming') {
          throw protocolError(`unexpected RESUME (kind ${payload[0] ?? '?'}) on a ${this.linkState} link`);
        }
        this.finishResumption(payload.readUInt32BE(1));
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
        this.handlePing(frame);
        return;
      case FrameType.GOAWAY: {
        const { code, reason } = parseCodeAndReason(frame.payload);
        const errorCode = GOAWAY_ERRORS[code];
        const error = errorCode === undefined ? null : new TcpipeError(errorCode, `partner said goodbye: ${reason}`);
        const link = this.link;
        this.terminate(error, `partner said goodbye: ${reason}`, true);
        link?.destroy();
        return;
      }
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
    const stream = this.streams.get(frame.streamId * 2 + (ours ? 0 : 1));
    if (stream !== undefined) return stream;
    const known = ours ? frame.streamId < this.nextStreamId : frame.streamId <= this.lastPeerStreamId;
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
    if (this.peerOpenStreams >= this.settings.maxStreams) {
      throw new ProtocolError(
        GoAwayCode.LIMIT_EXCEEDED,
        `partner opened more than ${this.settings.maxStreams} streams`,
        ErrorCodes.LIMIT,
      );
    }
    const stream = new Stream(id, false, port, this, this.windowsForNewStream());
    this.streams.set(stream.key, stream);
    this.peerOpenStreams++;
    this.hooks.onStreamRequest(stream);
    if (stream.state === 'opening' && !stream.hasSink) stream.reset(ResetCode.INTERNAL, 'no handler for the stream');
  }

  private handlePing(frame: Frame): void {
    if ((frame.flags & Flag.ACK) === 0) this.writeFrame(encodePing(Flag.ACK, frame.payload));
    else if (this.pacer.answered(frame.payload, this.clock.now())) {
      if (!this.pacer.closed && this.sendQueue.length > 0 && !this.linkFull) this.flushQueue();
    } else this.pings.answered(frame.payload);
  }

  /** Records a measured round trip (from the heartbeat's pings). */
  recordRtt(sample: number): void {
    this.rtt = this.rtt === 0 ? sample : this.rtt * 0.875 + sample * 0.125;
    if (sample > 0 && (this.minRtt === 0 || sample < this.minRtt)) this.minRtt = sample;
  }

  // ---- sending ---------------------------------------------------------

  private windowsForNewStream(): { sendWindow: number; receiveWindow: number; maxWindow: number } {
    return {
      sendWindow: this.peer.initialWindow,
      receiveWindow: this.settings.initialWindow,
      maxWindow: this.settings.maxWindow,
    };
  }

  private writeFrame(frame: Buffer): void {
    const link = this.link;
    if (this.ended || link === null) return;
    this.corkForTurn(link, frame.length);
    link.write(frame);
    this.pacer.wrote(frame.length);
  }

  /**
   * Frames written in one turn of the event loop leave in one write: the link
   * stays corked until the I/O callbacks of this turn have run (setImmediate).
   * A hundred streams opened at once are then a few segments, not two hundred
   * that a fresh congestion window would spread over several round trips, and
   * bulk DATA goes out in fewer system calls. On a link of 16 ms or more, small
   * frames of turns less than 2 ms apart are held for 1 ms, so a burst spread
   * over many turns shares segments too.
   */
  private corkForTurn(link: Duplex, bytes: number): void {
    if (this.corkedLink !== null) return;
    if (!this.inTurn) {
      this.inTurn = true;
      if (bytes < DIRECT_FRAME_BYTES && link.writableLength === 0) {
        const now = this.clock.now();
        const burst = now - this.lastSmallTurnAt < BURST_GAP_MS && this.minRtt >= BURST_MIN_RTT_MS;
        this.lastSmallTurnAt = now;
        if (burst) {
          // Streams opening one after another on a distant link: a fresh congestion
          // window counts segments, so a millisecond's frames leave together.
          this.clock.setTimer(BURST_HOLD_MS, this.endTurn);
          this.corkedLink = link;
          link.cork();
          return;
        }
        // The first small frame of a turn on an idle link goes at once: a lone ping or
        // keystroke pays no wait; what follows it in the same turn is batched.
        setImmediate(this.endTurn);
        return;
      }
      setImmediate(this.endTurn);
    }
    this.corkedLink = link;
    link.cork();
  }

  private readonly endTurn = (): void => {
    this.inTurn = false;
    const link = this.corkedLink;
    this.corkedLink = null;
    if (link !== null && !link.destroyed) link.uncork();
  };

  private enqueue(stream: Stream): void {
    if (stream.queued) return;
    stream.queued = true;
    this.sendQueue.push(stream);
  }

  private flushQueue(): void {
    const link = this.link;
    if (this.ended || link === null || this.linkState !== 'live') return;
    link.cork();
    let stream: Stream | undefined;
    while (!this.congested && (stream = this.sendQueue.shift()) !== undefined) {
      stream.queued = false;
      if (stream.state === 'reset') continue;
      if (stream.flush(FLUSH_QUANTUM)) this.enqueue(stream);
    }
    link.uncork();
  }

  /** The link went away: a resumable session holds, any other ends. */
  private linkLost(error: TcpipeError | null, reason: string): void {
    if (this.ended) return;
    if (this.resumable && this.link !== null) this.hold(error, reason);
    else this.terminate(error, reason, true);
  }

  /**
   * Lets go of a lost link and keeps every stream: their sockets stay open,
   * their reads pause as their sends find no link, and the grace timer bounds
   * the wait for the next link.
   */
  private hold(error: TcpipeError | null, reason: string): void {
    const end: SessionEnd = { error, reason, byPeer: true };
    this.detachLink(end);
    this.linkState = 'held';
    this.linkFull = true;
    this.readPaused = false;
    this.pings.clear();
    for (const stream of this.streams.values()) stream.listedByPeer = false;
    const graceMs = this.settings.resumeGraceMs ?? 0;
    this.graceTimer = this.clock.setTimer(graceMs, () =>
      this.terminate(
        new TcpipeError(ErrorCodes.RESUME_EXPIRED, `resume grace of ${graceMs / 1000}s ran out`),
        `resume grace of ${graceMs / 1000}s ran out`,
        false,
      ),
    );
    this.hooks.onHeld?.(end);
  }

  private detachLink(end: SessionEnd): void {
    const link = this.link;
    if (link === null) return;
    this.link = null;
    this.unlisten(link);
    const gone = this.linkGone;
    this.linkGone = null;
    gone?.(end);
  }

  private unlisten(link: Duplex): void {
    link.off('data', this.onLinkData);
    link.off('drain', this.onLinkDrain);
    link.off('end', this.onLinkEnd);
    link.off('close', this.onLinkClose);
    // Keep an error listener: a late socket error must not crash the process.
    link.off('error', this.onLinkError);
    link.on('error', ignore);
  }

  private terminate(error: TcpipeError | null, reason: string, byPeer: boolean): void {
    if (this.ended) return;
    this.ended = true;
    this.graceTimer?.cancel();
    this.graceTimer = null;
    const gone = this.linkGone;
    this.linkGone = null;
    if (this.link !== null) this.unlisten(this.link);
    this.sendQueue.clear();
    this.pings.clear();
    const streams = [...this.streams.values()];
    const held = this.linkState !== 'live';
    for (const stream of streams) stream.abort(ResetCode.SHUTDOWN, held ? reason : `link lost: ${reason}`);
    this.streams.clear();
    const end: SessionEnd = { error, reason, byPeer };
    gone?.(end);
    this.hooks.onEnd(end);
  }

  // ---- resumption ------------------------------------------------------

  private heldStreams(): HeldStreams {
    return { streams: this.streams, nextStreamId: this.nextStreamId, lastPeerStreamId: this.lastPeerStreamId, write: this.writeControl };
  }

  /** The partner's list is complete: reopen what it never saw, then let data flow. */
  private finishResumption(peerLastOpened: number): void {
    this.linkState = 'live';
    this.linkFull = false;
    const link = this.link;
    link?.cork();
    const info = this.resumption.finish(peerLastOpened, this.heldStreams());
    for (const stream of [...this.streams.values()]) stream.afterResume();
    link?.uncork();
    this.flushQueue();
    this.hooks.onResumed?.(info);
  }
}

function ignore(): void {}

function protocolError(message: string): ProtocolError {
  return new ProtocolError(GoAwayCode.PROTOCOL_ERROR, message);
}
