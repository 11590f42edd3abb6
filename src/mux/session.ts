/**
 * The multiplexer over one link: owns the streams, keeps the link's send queue
 * short and fair, and holds or resumes its streams when a link is lost. What
 * arrives is decoded and routed by its Receiver (receive.ts). It sees the link
 * only as a Duplex of bytes, whatever transport and security carry it.
 */
import type { Duplex } from 'node:stream';
import type { Clock, Timer } from '../clock.js';
import { ErrorCodes, ProtocolError, TcpipeError, errorMessage } from '../errors.js';
import { Flag, GoAwayCode, MAX_STREAM_ID, ResetCode } from '../protocol/constants.js';
import {
  encodeAccept,
  encodeGoAway,
  encodeOpen,
  encodePing,
  encodeReset,
  encodeWindow,
} from '../protocol/encode.js';
import type { FrameDecoder } from '../protocol/decode.js';
import { Fifo } from './fifo.js';
import { channels, type SessionSnapshot } from '../observe.js';
import { PingTracker } from './pings.js';
import { LinkWriter } from './link-writer.js';
import { Stream, type StreamOwner } from './stream.js';
import { Resumption, type HeldStreams } from './resumption.js';
import { Receiver, type ReceiveOwner } from './receive.js';
import type { LinkState, MuxSettings, PeerSettings, SessionEnd, SessionHooks } from './types.js';

export type { LinkState, MuxSettings, PeerSettings, ResumeInfo, SessionEnd, SessionHooks } from './types.js';


/** A stream that sent no WINDOW for this long may lose its grown window to a busier one. */
const IDLE_WINDOW_MS = 1000;

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

  private readonly streams = new Map<number, Stream>();
  private readonly sendQueue = new Fifo<Stream>();
  private nextStreamId = 1;
  private peerOpenStreams = 0;
  private grownWindows = 0;
  private ended = false;
  private readonly pings: PingTracker;
  private link: Duplex | null;
  /** Decodes and routes what the link brings. */
  private readonly receiver: Receiver;
  private peer: PeerSettings;
  /** Both sides announced resumption: a lost link holds the streams instead of ending the session. */
  readonly resumable: boolean;
  linkState: LinkState = 'live';
  private graceTimer: Timer | null = null;
  private readonly resumption = new Resumption();
  /** How frames reach the link socket: turn cork, burst hold, pacer probes, write bound. */
  private readonly writer: LinkWriter;
  private readonly writeControl = (frame: Buffer): void => this.writeFrame(frame);
  /** Called once per link when that link is gone (held or ended): closes its transport. */
  private linkGone: ((end: SessionEnd) => void) | null = null;

  private readonly onLinkData = (chunk: Buffer): void => {
    this.lastReceiveAt = this.clock.now();
    this.receiver.receive(chunk);
  };
  private readonly onLinkDrain = (): void => {
    this.writer.full = false;
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
    this.peer = peer;
    this.resumable = (settings.resumeGraceMs ?? 0) > 0;
    this.maxSendFrame = peer.maxFramePayload;
    this.lastReceiveAt = clock.now();
    this.writer = new LinkWriter(link, clock, settings.linkWriteBound);
    this.receiver = new Receiver(decoder, this.receiveOwner(), settings, clock, this.lastReceiveAt);
    this.pings = new PingTracker(clock, (opaque) => this.writeFrame(encodePing(0, opaque)));
  }

  /** Observers' view of the session (observe.ts). */
  snapshot(): SessionSnapshot {
    return {
      ended: this.ended,
      rttMs: this.rtt,
      buffered: this.bufferedBytes,
      grown: this.grownWindows,
      linkQueued: this.link?.writableLength ?? -1,
      congested: this.congested,
      bytesIn: this.bytesIn,
      bytesOut: this.bytesOut,
      streams: this.streams.size,
    };
  }

  /** Starts reading the link; frames the decoder already holds are handled first. */
  start(): void {
    if (channels.session.hasSubscribers) channels.session.publish({ snapshot: () => this.snapshot() });
    const link = this.link;
    if (link === null) return;
    link.on('data', this.onLinkData);
    link.on('drain', this.onLinkDrain);
    link.on('end', this.onLinkEnd);
    link.on('error', this.onLinkError);
    link.on('close', this.onLinkClose);
    this.receiver.drainDecoder();
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
    this.receiver.decoder = decoder;
    this.peer = peer;
    this.linkState = 'resuming';
    this.writer.attach(link);
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
    return this.receiver.bufferedBytes;
  }

  /** Payload bytes received, on every link of the session. */
  get bytesIn(): number {
    return this.receiver.bytesIn;
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
    return this.writer.congested;
  }

  /** DATA payload bytes sent, over every link of the session. */
  get bytesOut(): number {
    return this.writer.bytesOut;
  }

  /** Streams send DATA and FIN only on a live link; held data waits in the streams. */
  get linkLive(): boolean {
    return this.linkState === 'live' && !this.ended;
  }

  writeData(streamId: number, flags: number, payload: Buffer): void {
    if (!this.ended && this.linkState === 'live') this.writer.writeData(streamId, flags, payload);
  }

  /**
   * One encoded datagram frame (capability udp), written now or not at all:
   * false when the link is not live or its write buffer holds 1.5x the link write bound (the caller
   * counts a drop). Datagrams never wait in the session.
   */
  sendDatagramFrame(frame: Buffer): boolean {
    const link = this.link;
    if (this.ended || this.linkState !== 'live' || link === null) return false;
    // Past the bound where streams stop (writer.full), by half of it: a bulk stream that keeps
    // the buffer at its bound must not crowd datagrams out. Beyond that they would only be late.
    if (link.writableLength >= this.settings.linkWriteBound * 1.5) return false;
    this.writer.writeFrame(frame);
    return true;
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
    const pacer = this.writer.pacer;
    if (small && (pacer.backlogged || pacer.holding)) {
      // Interactive: has sent less than 1 MB per second of its life (a bulk stream's small tail does not count).
      const now = this.clock.now();
      if (stream.sentBytes < (now - stream.openedAt + 1) * INTERACTIVE_BYTES_PER_MS) pacer.contended(now);
    }
    if (!this.writer.full && (small || (this.sendQueue.length === 0 && !pacer.closed))) {
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
      const window = stream.receiveWindow;
      if (window.grownBy > 0 && window.lastUpdateAt < idleBefore) this.grownWindows -= window.shrink();
    }
  }

  releaseBuffered(bytes: number): void {
    this.receiver.release(bytes);
  }

  streamFinished(stream: Stream): void {
    if (this.streams.get(stream.key) !== stream) return;
    this.streams.delete(stream.key);
    if (this.resumable) this.resumption.remember(stream);
    if (!stream.isEntry) this.peerOpenStreams--;
    this.grownWindows -= stream.receiveWindow.grownBy;
    this.hooks.onStreamFinished?.(stream);
  }

  // ---- receiving (receive.ts routes the frames) -------------------------

  /** The session as its Receiver sees it: built once, so that the receive path allocates nothing per frame. */
  private receiveOwner(): ReceiveOwner {
    const session = this;
    return {
      streams: this.streams,
      get ended() {
        return session.ended;
      },
      get linkState() {
        return session.linkState;
      },
      get link() {
        return session.link;
      },
      get nextStreamId() {
        return session.nextStreamId;
      },
      get peerOpenStreams() {
        return session.peerOpenStreams;
      },
      openPeerStream: (id, port) => this.openPeerStream(id, port),
      answerPing: (payload) => this.writeFrame(encodePing(Flag.ACK, payload)),
      pingAnswered: (payload) => this.pingAnswered(payload),
      resumedEntry: (frame) => this.resumption.applyEntry(frame, this.heldStreams()),
      resumeDone: (peerLastOpened) => this.finishResumption(peerLastOpened),
      partnerLeft: (error, reason) => {
        const link = this.link;
        this.terminate(error, reason, true);
        link?.destroy();
      },
      fail: (error) => this.fail(error),
      datagramFrame: (frame) => {
        if (this.hooks.onDatagramFrame === undefined) throw new ProtocolError(GoAwayCode.PROTOCOL_ERROR, `frame type ${frame.type} without capability udp`);
        this.hooks.onDatagramFrame(frame);
      },
    };
  }

  /** Exit side: the partner opened a stream (the receiver checked the limits); the hooks attach a sink or reset it. */
  private openPeerStream(id: number, port: number): void {
    const stream = new Stream(id, false, port, this, this.windowsForNewStream());
    this.streams.set(stream.key, stream);
    this.peerOpenStreams++;
    this.hooks.onStreamRequest(stream);
    if (stream.state === 'opening' && !stream.hasSink) stream.reset(ResetCode.INTERNAL, 'no handler for the stream');
  }

  /** A PING answer: a link pacer probe's, or a heartbeat ping's. */
  private pingAnswered(payload: Buffer): void {
    const pacer = this.writer.pacer;
    if (pacer.answered(payload, this.clock.now())) {
      if (channels.pace.hasSubscribers && pacer.lastSampleMs >= 0) {
        channels.pace.publish({ rttMs: pacer.lastSampleMs, minRttMs: pacer.minRtt, cap: pacer.cap, inFlight: pacer.inFlight });
      }
      if (this.sendQueue.length > 0 && !this.writer.congested) this.flushQueue();
    } else this.pings.answered(payload);
  }

  /** Records a measured round trip (from the heartbeat's pings). */
  recordRtt(sample: number): void {
    if (channels.rtt.hasSubscribers) channels.rtt.publish({ source: 'heartbeat', ms: sample });
    this.rtt = this.rtt === 0 ? sample : this.rtt * 0.875 + sample * 0.125;
    if (sample > 0 && (this.minRtt === 0 || sample < this.minRtt)) {
      this.minRtt = sample;
      this.writer.minRttChanged(sample);
    }
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
    if (!this.ended) this.writer.writeFrame(frame);
  }

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
    this.receiver.linkDetached();
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
    this.writer.detach();
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
    return { streams: this.streams, nextStreamId: this.nextStreamId, lastPeerStreamId: this.receiver.lastPeerStreamId, write: this.writeControl };
  }

  /** The partner's list is complete: reopen what it never saw, then let data flow. */
  private finishResumption(peerLastOpened: number): void {
    this.linkState = 'live';
    this.writer.full = false;
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
