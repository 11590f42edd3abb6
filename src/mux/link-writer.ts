/**
 * How frames reach the link socket: batched per event-loop turn (cork), held
 * a little longer in a burst on a distant link, followed by the link pacer's
 * probes, and stopped at the link write bound until 'drain'. The session
 * decides what to send and when a stream may; this decides how the bytes go.
 */
import type { Duplex } from 'node:stream';
import type { Clock } from '../clock.js';
import { HEADER_LENGTH } from '../protocol/constants.js';
import { encodeDataHeader, encodePing, encodeSmallData } from '../protocol/encode.js';
import { LinkPacer } from './link-pacer.js';

/** A first frame of a turn smaller than this goes out at once (see corkForTurn). */
const DIRECT_FRAME_BYTES = 2048;

/**
 * Small frames that follow one another within BURST_GAP_MS (or a 32nd of the
 * round trip, if longer) on a link whose round trip is at least
 * BURST_MIN_RTT_MS are a burst (many streams opening at once): they are held
 * so that they share segments, BURST_HOLD_MS at first, twice as long at each
 * further turn of the same burst, up to a sixteenth of the round trip.
 */
const BURST_GAP_MS = 2;
const BURST_GAP_RTT_SHARE = 1 / 32;
const BURST_HOLD_MS = 1;
const BURST_MIN_RTT_MS = 16;
const BURST_HOLD_RTT_SHARE = 1 / 16;

export class LinkWriter {
  /** The link socket holds the write bound (or there is no link): streams wait for 'drain'. */
  full = false;
  /** Bounds the bytes in flight on the current link (see link-pacer.ts). */
  pacer = new LinkPacer();
  /** DATA payload bytes written, over every link of the session. */
  bytesOut = 0;
  /** The link's round trip is long enough for bursts to be held (set from the heartbeat's smallest RTT). */
  private distant = false;
  /** The longest a burst turn is held: a sixteenth of the smallest round trip. */
  private maxHoldMs = BURST_HOLD_MS;
  /** Small turns closer than this belong to one burst. */
  private burstGapMs = BURST_GAP_MS;
  /** Held turns in the current burst (the next one is held twice as long). */
  private burstTurns = 0;
  private link: Duplex | null;
  /** The link corked for this turn of the event loop, if any (see corkForTurn). */
  private corkedLink: Duplex | null = null;
  /** A turn of the event loop has written to the link (endTurn is scheduled). */
  private inTurn = false;
  /** Clock time of the last turn that began with a small frame, or of the end of the last held turn (see corkForTurn). */
  private lastSmallTurnAt = -Infinity;
  /** The turn now corked is a held burst turn. */
  private held = false;

  constructor(
    link: Duplex,
    private readonly clock: Clock,
    private readonly writeBound: number,
  ) {
    this.link = link;
  }

  /** A new link (resumption): a new pacer, since the path may differ. */
  attach(link: Duplex): void {
    this.link = link;
    this.pacer = new LinkPacer();
  }

  /** The link is gone: nothing can be written until the next one. */
  detach(): void {
    this.link = null;
    this.full = true;
  }

  /** Streams stop sending: the link socket is full, or the link pacer's cap is reached. */
  get congested(): boolean {
    return this.full || this.pacer.closed;
  }

  minRttChanged(minRttMs: number): void {
    this.distant = minRttMs >= BURST_MIN_RTT_MS;
    this.maxHoldMs = Math.max(BURST_HOLD_MS, minRttMs * BURST_HOLD_RTT_SHARE);
    this.burstGapMs = Math.max(BURST_GAP_MS, minRttMs * BURST_GAP_RTT_SHARE);
  }

  writeData(streamId: number, flags: number, payload: Buffer): void {
    const link = this.link;
    if (link === null) return;
    if (this.corkForTurn(link, payload.length)) {
      link.write(encodeDataHeader(streamId, flags, payload.length));
      if (payload.length > 0) link.write(payload);
    } else {
      // A small frame that goes at once goes in one write: header and payload in one segment.
      link.write(encodeSmallData(streamId, flags, payload));
    }
    this.bytesOut += payload.length;
    const pacer = this.pacer;
    pacer.wrote(HEADER_LENGTH + payload.length);
    if (pacer.probeDue) {
      const probe = pacer.probe(this.clock.now());
      if (probe !== null) this.writeFrame(encodePing(0, probe));
    }
    if (link.writableLength >= this.writeBound) this.full = true;
  }

  writeFrame(frame: Buffer): void {
    const link = this.link;
    if (link === null) return;
    this.corkForTurn(link, frame.length);
    link.write(frame);
    this.pacer.wrote(frame.length);
  }

  /**
   * Frames written in one turn of the event loop leave in one write: the link
   * stays corked until the I/O callbacks of this turn have run (setImmediate).
   * A hundred streams opened at once are then a few segments, not two hundred
   * that a fresh congestion window would spread over several round trips, and
   * bulk DATA goes out in fewer system calls. The first small frame of a turn
   * on an idle link goes at once: a lone ping or keystroke pays no wait. On a
   * link of 16 ms or more, a turn that begins with a small frame less than
   * 2 ms (or RTT/32) after the last such one (or after the end of the last
   * held turn) is held instead, idle link or not, 1 ms,
   * then 2, 4, ... up to a sixteenth of the round trip while the burst goes
   * on, so a burst spread over many turns shares a few segments: a link that
   * has been idle or is new has a congestion window of about 10 segments,
   * and every segment beyond it waits a round trip. Returns false when this
   * frame goes at once (uncorked).
   */
  private corkForTurn(link: Duplex, bytes: number): boolean {
    if (this.corkedLink !== null) return true;
    if (this.inTurn) return this.cork(link);
    this.inTurn = true;
    const small = bytes < DIRECT_FRAME_BYTES;
    // Whether or not the link is idle: a TLS link's writableLength stays above 0 until its
    // encrypted bytes are flushed, so a burst test on idle links alone never sees one there.
    if (small && this.distant && this.burstContinues()) {
      const hold = Math.min(BURST_HOLD_MS * 2 ** this.burstTurns, this.maxHoldMs);
      if (hold < this.maxHoldMs) this.burstTurns++;
      this.held = true;
      this.clock.setTimer(hold, this.endTurn);
      return this.cork(link);
    }
    setImmediate(this.endTurn);
    // This frame goes at once; the rest of the turn is corked.
    if (small && link.writableLength === 0) return false;
    return this.cork(link);
  }

  /** A small frame begins a turn on a distant link: is it within the gap of the last one? */
  private burstContinues(): boolean {
    const now = this.clock.now();
    const burst = now - this.lastSmallTurnAt < this.burstGapMs;
    this.lastSmallTurnAt = now;
    if (!burst) this.burstTurns = 0;
    return burst;
  }

  private cork(link: Duplex): true {
    this.corkedLink = link;
    link.cork();
    return true;
  }

  private readonly endTurn = (): void => {
    this.inTurn = false;
    if (this.held) {
      // The burst goes on if the next small frame comes within the gap of this write.
      this.held = false;
      this.lastSmallTurnAt = this.clock.now();
    }
    const link = this.corkedLink;
    this.corkedLink = null;
    if (link !== null && !link.destroyed) link.uncork();
  };
}
