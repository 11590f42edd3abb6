/**
 * The multiplexer over one link at a time: it owns the stream map, routes
 * what the partner sends (receive.ts) and moves between the states of
 * session-state.ts (live, held, resuming, ended) in one place, `enter`.
 * What goes out goes through its sender (sender.ts); what comes in through
 * its read gate (read-gate.ts); every round trip through its estimator
 * (round-trip.ts). Streams are given a StreamContext, never the session.
 * It sees the link only as a Duplex of bytes, whatever transport and
 * security carry it.
 */
import type { Duplex } from 'node:stream';
import type { Clock, Timer } from '../clock.js';
import { ErrorCodes, ProtocolError, TcpipeError } from '../errors.js';
import { Flag, GoAwayCode, MAX_STREAM_ID, ResetCode } from '../protocol/constants.js';
import { encodeGoAway, encodeOpenWithOrigin, encodePing } from '../protocol/encode.js';
import type { Origin } from '../protocol/frame.js';
import type { FrameDecoder } from '../protocol/decode.js';
import { channels, type SessionSnapshot } from '../observe.js';
import { LinkWatch } from './link-watch.js';
import { PingTracker } from './pings.js';
import { ReadGate } from './read-gate.js';
import { FrameRouter, type FrameOwner } from './receive.js';
import { Resumption, type HeldStreams } from './resumption.js';
import { RoundTrip, type RoundTripView } from './round-trip.js';
import { Sender } from './sender.js';
import { SessionState, hasLink, nextSessionState, type SessionEvent, type SessionStateValue } from './session-state.js';
import { Stream, type StreamContext, type StreamWindows } from './stream.js';
import { ReceivePolicy } from './tunables.js';
import type { MuxSettings, PeerSettings, SessionEnd, SessionHooks } from './types.js';
import { SessionWindows } from './window-budget.js';

export type { MuxSettings, PeerSettings, ResumeInfo, SessionEnd, SessionHooks } from './types.js';
export { SessionState, type SessionStateValue } from './session-state.js';

export class Session {
  /** Both sides announced resumption: a lost link holds the streams instead of ending the session. */
  readonly resumable: boolean;
  private stateValue: SessionStateValue = SessionState.LIVE;
  private readonly streams = new Map<number, Stream>();
  private nextStreamId = 1;
  private peerOpenStreams = 0;
  private link: Duplex | null;
  private peer: PeerSettings;
  /** The windows a new stream starts with: the partner's initial window, ours, and our maximum. */
  private newStreamWindows: StreamWindows;
  private graceTimer: Timer | null = null;
  /** Called once per link when that link is gone (held or ended): closes its transport. */
  private linkGone: ((end: SessionEnd) => void) | null = null;
  private readonly rtt = new RoundTrip();
  private readonly sender: Sender;
  private readonly gate: ReadGate;
  private readonly router: FrameRouter;
  private readonly windows: SessionWindows;
  private readonly pings: PingTracker;
  private readonly resumption = new Resumption();
  private readonly streamContext: StreamContext;
  /** The first link's decoder, until start() reads with it. */
  private firstDecoder: FrameDecoder | null;

  private readonly watch = new LinkWatch((error, reason) => this.linkLost(error, reason));

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
    this.newStreamWindows = { sendWindow: peer.initialWindow, receiveWindow: settings.initialWindow, maxWindow: settings.maxWindow };
    this.resumable = (settings.resumeGraceMs ?? 0) > 0;
    this.sender = new Sender(clock, this.rtt, settings.linkWriteBound, peer.maxFramePayload);
    this.firstDecoder = decoder;
    this.gate = new ReadGate(settings.receiveBudget, () => this.router.drain());
    this.router = new FrameRouter(this.gate, this.frameOwner(), settings, clock);
    this.windows = new SessionWindows(settings.receiveBudget, () => clock.now(), () => this.streams.values());
    this.pings = new PingTracker(clock, (opaque) => this.sender.sendFrame(encodePing(0, opaque)));
    this.streamContext = {
      sender: this.sender,
      windows: this.windows,
      released: (bytes) => this.gate.release(bytes),
      roundTrip: this.rtt,
      clock,
      resumable: this.resumable,
      finished: (stream) => this.streamFinished(stream),
    };
    this.sender.attach(link, peer.maxFramePayload);
    this.sender.open();
  }

  /** Starts reading the link; frames the decoder already holds are handled first. */
  start(): void {
    if (channels.session.hasSubscribers) channels.session.publish({ snapshot: () => this.snapshot() });
    const decoder = this.firstDecoder;
    this.firstDecoder = null;
    if (decoder !== null) this.listen(decoder);
  }

  get state(): SessionStateValue {
    return this.stateValue;
  }

  get isEnded(): boolean {
    return this.stateValue === SessionState.ENDED;
  }

  /** The link was lost and the streams wait for the next one. */
  get isHeld(): boolean {
    return this.stateValue === SessionState.HELD;
  }

  get streamCount(): number {
    return this.streams.size;
  }

  /** Bytes delivered to streams and not consumed yet. */
  get bufferedBytes(): number {
    return this.gate.buffered;
  }

  /** Payload bytes received, on every link of the session. */
  get bytesIn(): number {
    return this.gate.bytesIn;
  }

  /** DATA payload bytes sent, over every link of the session. */
  get bytesOut(): number {
    return this.sender.bytesOut;
  }

  /** The round trip as measured on the current path. */
  get roundTrip(): RoundTripView {
    return this.rtt;
  }

  /** Observers' view of the session (observe.ts). */
  snapshot(): SessionSnapshot {
    return {
      ended: this.isEnded,
      rttMs: this.rtt.smoothed,
      buffered: this.gate.buffered,
      grown: this.windows.grown,
      linkQueued: this.sender.linkQueued,
      congested: this.sender.congested,
      bytesIn: this.gate.bytesIn,
      bytesOut: this.sender.bytesOut,
      streams: this.streams.size,
      pacer: this.sender.pacerView,
    };
  }

  /** Who closes the current link's transport once the session lets go of it (held or ended). */
  setLinkGone(callback: (end: SessionEnd) => void): void {
    this.linkGone = callback;
  }

  /** Entry side: opens a stream to the partner's target on `port`; attach a sink before returning to the event loop. */
  openStream(port: number, origin: Origin | null = null): Stream | null {
    if (this.isEnded || this.nextStreamId > MAX_STREAM_ID) return null;
    if (this.streams.size - this.peerOpenStreams >= this.peer.maxStreams) return null;
    // `origin` only when both HELLOs listed capability origin (the caller knows): it goes in the OPEN.
    const stream = new Stream(this.nextStreamId++, true, port, this.streamContext, this.newStreamWindows, origin);
    this.streams.set(stream.key, stream);
    // While the link is down or resuming, the OPEN waits: the resumption sends it in id order.
    if (this.stateValue === SessionState.LIVE) this.sender.sendFrame(encodeOpenWithOrigin(stream.id, 0, port, origin));
    return stream;
  }

  /** One encoded datagram frame (capability udp), written now or not at all (false: the caller counts a drop). */
  sendDatagramFrame(frame: Buffer): boolean {
    return this.stateValue === SessionState.LIVE && this.sender.sendDatagram(frame);
  }

  /** Sends a PING; resolves with the round trip (also fed to the estimator), or null after `timeoutMs` or when the link goes. */
  async ping(timeoutMs: number): Promise<number | null> {
    if (!hasLink(this.stateValue)) return null;
    const rtt = await this.pings.ping(timeoutMs);
    if (rtt !== null) this.rtt.sample(rtt, 'heartbeat', this.clock.now());
    return rtt;
  }

  /** Says goodbye with a reason and closes the link once the frame is out. */
  goAway(code: number, reason: string): void {
    this.sayGoodbye(code, reason, null);
  }

  /** Ends the session on a local error: GOAWAY with the error's code, then close. */
  fail(err: TcpipeError): void {
    this.sayGoodbye(err instanceof ProtocolError ? err.goAwayCode : GoAwayCode.INTERNAL_ERROR, err.message, err);
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
    if (this.isEnded) return;
    if (this.resumable && this.link !== null) this.hold(error, error.message);
    else this.fail(error);
  }

  /**
   * A new link for a held session (the resumption handshake has proved it):
   * each side lists its streams (a WINDOW with RESUMED per stream, then RESUME
   * DONE); data flows again once the partner's list is in (finishResumption).
   */
  resumeOn(link: Duplex, decoder: FrameDecoder, peer: PeerSettings): void {
    if (this.stateValue !== SessionState.HELD) throw new Error(`resumeOn: the session is not held (${this.stateValue})`);
    this.enter('resume');
    this.graceTimer?.cancel();
    this.graceTimer = null;
    this.link = link;
    this.peer = peer;
    this.newStreamWindows = { ...this.newStreamWindows, sendWindow: peer.initialWindow };
    this.rtt.newPath();
    this.sender.attach(link, peer.maxFramePayload);
    const corked = this.sender.cork();
    for (const frame of this.resumption.listFrames(this.heldStreams())) this.sender.sendFrame(frame);
    corked?.uncork();
    this.listen(decoder);
  }

  /** The held session cannot be resumed (the partner has no state, or another partner came): it ends. */
  abandon(error: TcpipeError, reason: string): void {
    this.terminate(error, reason, false);
  }

  /** The one transition point of the session's state. */
  private enter(event: SessionEvent): void {
    const next = nextSessionState(this.stateValue, event);
    if (next === null) throw new Error(`session: ${event} not allowed while ${this.stateValue}`);
    this.stateValue = next;
  }

  /** Reads the current link: frames its decoder already holds are handled first. */
  private listen(decoder: FrameDecoder): void {
    const link = this.link;
    if (link === null || this.isEnded) return;
    this.gate.attach(link, decoder);
    this.watch.watch(link);
    this.router.drain();
    if (!this.isEnded && this.link === link) this.gate.resume();
  }

  private sayGoodbye(code: number, reason: string, error: TcpipeError | null): void {
    if (this.isEnded) return;
    const link = this.link;
    if (link !== null) {
      this.sender.sendFrame(encodeGoAway(code, reason));
      link.end();
      // The partner may never read it: close for good after a while.
      const timer = this.clock.setTimer(ReceivePolicy.GOODBYE_DRAIN_MS, () => link.destroy());
      link.once('close', () => timer.cancel());
    }
    this.terminate(error, reason, false);
  }

  /** The link went away: a resumable session holds, any other ends. */
  private linkLost(error: TcpipeError | null, reason: string): void {
    if (this.isEnded) return;
    if (this.resumable && this.link !== null) this.hold(error, reason);
    else this.terminate(error, reason, true);
  }

  /**
   * Lets go of a lost link and keeps every stream: their sockets stay open,
   * their reads pause as their sends find no link, and the grace timer bounds
   * the wait for the next link.
   */
  private hold(error: TcpipeError | null, reason: string): void {
    this.enter('link-lost');
    const end: SessionEnd = { error, reason, byPeer: true };
    this.detachLink(end);
    this.pings.clear();
    const graceMs = this.settings.resumeGraceMs ?? 0;
    const expired = `resume grace of ${graceMs / 1000}s ran out`;
    this.graceTimer = this.clock.setTimer(graceMs, () => this.terminate(new TcpipeError(ErrorCodes.RESUME_EXPIRED, expired), expired, false));
    this.hooks.onHeld?.(end);
  }

  private detachLink(end: SessionEnd): void {
    const link = this.link;
    if (link === null) return;
    this.link = null;
    this.sender.detach();
    this.gate.detach();
    this.watch.unwatch(link);
    const gone = this.linkGone;
    this.linkGone = null;
    gone?.(end);
  }

  private terminate(error: TcpipeError | null, reason: string, byPeer: boolean): void {
    if (this.isEnded) return;
    const wasLive = this.stateValue === SessionState.LIVE;
    this.enter('end');
    this.graceTimer?.cancel();
    this.graceTimer = null;
    const gone = this.linkGone;
    this.linkGone = null;
    if (this.link !== null) {
      this.watch.unwatch(this.link);
      this.gate.detach();
    }
    this.sender.close();
    this.pings.clear();
    const streams = [...this.streams.values()];
    for (const stream of streams) stream.abort(ResetCode.SHUTDOWN, wasLive ? `link lost: ${reason}` : reason);
    this.streams.clear();
    const end: SessionEnd = { error, reason, byPeer };
    gone?.(end);
    this.hooks.onEnd(end);
  }

  private streamFinished(stream: Stream): void {
    if (this.streams.get(stream.key) !== stream) return;
    this.streams.delete(stream.key);
    if (this.resumable) this.resumption.remember(stream);
    if (!stream.isEntry) this.peerOpenStreams--;
    this.windows.returned(stream.receiveWindow.grownBy);
    if (channels.finished.hasSubscribers) channels.finished.publish({ stream: stream.tag });
  }

  /** Exit side: the partner opened a stream (the router checked the limits); the hooks attach a sink or reset it. */
  private openPeerStream(id: number, port: number, origin: Origin | null): void {
    const stream = new Stream(id, false, port, this.streamContext, this.newStreamWindows, origin);
    this.streams.set(stream.key, stream);
    this.peerOpenStreams++;
    this.hooks.onStreamRequest(stream);
    if (stream.state === 'opening' && !stream.hasSink) stream.reset(ResetCode.INTERNAL, 'no handler for the stream');
  }

  /** The session as its frame router sees it: built once, so that the receive path allocates nothing per frame. */
  private frameOwner(): FrameOwner {
    const session = this;
    return {
      get state() {
        return session.stateValue;
      },
      resumable: this.resumable,
      stream: (key) => this.streams.get(key),
      get nextStreamId() {
        return session.nextStreamId;
      },
      get peerOpenStreams() {
        return session.peerOpenStreams;
      },
      openPeerStream: (id, port, origin) => this.openPeerStream(id, port, origin),
      answerPing: (payload) => this.sender.sendFrame(encodePing(Flag.ACK, payload)),
      pingAnswered: (payload) => {
        if (!this.sender.probeAnswered(payload)) this.pings.answered(payload);
      },
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

  private heldStreams(): HeldStreams {
    return {
      streams: this.streams,
      nextStreamId: this.nextStreamId,
      lastPeerStreamId: this.router.lastPeerStreamId,
      write: (frame) => this.sender.sendFrame(frame),
    };
  }

  /** The partner's list is complete: reopen what it never saw, then let data flow. */
  private finishResumption(peerLastOpened: number): void {
    this.enter('lists-crossed');
    const corked = this.sender.cork();
    const info = this.resumption.finish(peerLastOpened, this.heldStreams());
    this.sender.open();
    for (const stream of [...this.streams.values()]) stream.afterResume();
    corked?.uncork();
    this.hooks.onResumed?.(info);
  }
}

