/**
 * How frames reach the link socket: batched per event-loop turn (cork), held
 * a little longer in a burst on a distant link, and stopped at the link write
 * bound until 'drain'. The sender decides what to send and when a stream may;
 * this decides how the bytes go.
 */
import type { Duplex } from 'node:stream';
import type { Clock } from '../clock.js';
import { encodeDataHeader, encodeSmallData } from '../protocol/encode.js';
import type { RoundTripView } from './round-trip.js';
import { BurstPolicy, SendPolicy } from './tunables.js';

export class LinkWriter {
  /** The link socket holds the write bound (or there is no link): streams wait for 'drain'. */
  full = true;
  /** Held turns in the current burst (the next one is held twice as long). */
  private burstTurns = 0;
  /** The link corked for this turn of the event loop, if any (see corkForTurn). */
  private corkedLink: Duplex | null = null;
  /** A turn of the event loop has written to the link (endTurn is scheduled). */
  private inTurn = false;
  /** Clock time of the last turn that began with a small frame, or of the end of the last held turn (see corkForTurn). */
  private lastSmallTurnAt = -Infinity;
  /** The turn now corked is a held burst turn. */
  private held = false;

  private link: Duplex | null = null;

  constructor(
    private readonly clock: Clock,
    private readonly roundTrip: RoundTripView,
    private readonly writeBound: number,
    /** The link drained after `full`: the sender lets streams send again. */
    private readonly onDrain: () => void,
  ) {}

  attach(link: Duplex): void {
    this.link = link;
    this.full = false;
    link.on('drain', this.drained);
  }

  /** The link is gone: nothing can be written until the next one. */
  detach(): void {
    this.link?.off('drain', this.drained);
    this.link = null;
    this.full = true;
  }

  private readonly drained = (): void => {
    this.full = false;
    this.onDrain();
  };

  /** Bytes in the link socket's own buffer (-1 without a link). */
  get queued(): number {
    return this.link?.writableLength ?? -1;
  }

  /** Frames written until the matching `uncork` leave in one write (a flush of the queue, a stream list). */
  cork(): Duplex | null {
    const link = this.link;
    link?.cork();
    return link;
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
    if (link.writableLength >= this.writeBound) this.full = true;
  }

  writeFrame(frame: Buffer): void {
    const link = this.link;
    if (link === null) return;
    this.corkForTurn(link, frame.length);
    link.write(frame);
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
    if (this.inTurn) return this.corkUntilTurnEnds(link);
    this.inTurn = true;
    const small = bytes < SendPolicy.DIRECT_FRAME_BYTES;
    const minRtt = this.roundTrip.min;
    // Whether or not the link is idle: a TLS link's writableLength stays above 0 until its
    // encrypted bytes are flushed, so a burst test on idle links alone never sees one there.
    if (small && minRtt >= BurstPolicy.MIN_RTT_MS && this.burstContinues(minRtt)) {
      const maxHoldMs = Math.max(BurstPolicy.HOLD_MS, minRtt * BurstPolicy.HOLD_RTT_SHARE);
      const hold = Math.min(BurstPolicy.HOLD_MS * 2 ** this.burstTurns, maxHoldMs);
      if (hold < maxHoldMs) this.burstTurns++;
      this.held = true;
      this.clock.setTimer(hold, this.endTurn);
      return this.corkUntilTurnEnds(link);
    }
    setImmediate(this.endTurn);
    // This frame goes at once; the rest of the turn is corked.
    if (small && link.writableLength === 0) return false;
    return this.corkUntilTurnEnds(link);
  }

  /** A small frame begins a turn on a distant link: is it within the gap of the last one? */
  private burstContinues(minRtt: number): boolean {
    const now = this.clock.now();
    const burst = now - this.lastSmallTurnAt < Math.max(BurstPolicy.GAP_MS, minRtt * BurstPolicy.GAP_RTT_SHARE);
    this.lastSmallTurnAt = now;
    if (!burst) this.burstTurns = 0;
    return burst;
  }

  private corkUntilTurnEnds(link: Duplex): true {
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
