/**
 * How frames reach the link socket: batched per event-loop turn (cork), held
 * a millisecond in a burst on a distant link, followed by the link pacer's
 * probes, and stopped at the link write bound until 'drain'. The session
 * decides what to send and when a stream may; this decides how the bytes go.
 */
import type { Duplex } from 'node:stream';
import type { Clock } from '../clock.js';
import { HEADER_LENGTH } from '../protocol/constants.js';
import { encodeDataHeader, encodePing } from '../protocol/encode.js';
import { LinkPacer } from './link-pacer.js';

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

export class LinkWriter {
  /** The link socket holds the write bound (or there is no link): streams wait for 'drain'. */
  full = false;
  /** Bounds the bytes in flight on the current link (see link-pacer.ts). */
  pacer = new LinkPacer();
  /** DATA payload bytes written, over every link of the session. */
  bytesOut = 0;
  /** The link's round trip is long enough for bursts to be held (set from the heartbeat's smallest RTT). */
  private distant = false;
  private link: Duplex | null;
  /** The link corked for this turn of the event loop, if any (see corkForTurn). */
  private corkedLink: Duplex | null = null;
  /** A turn of the event loop has written to the link (endTurn is scheduled). */
  private inTurn = false;
  /** Clock time of the last turn that began with a small frame on an idle link (see corkForTurn). */
  private lastSmallTurnAt = -Infinity;

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
  }

  writeData(streamId: number, flags: number, payload: Buffer): void {
    const link = this.link;
    if (link === null) return;
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
   * link of 16 ms or more, a turn that begins less than 2 ms after the last
   * such one is held for 1 ms instead, so a burst spread over many turns
   * shares segments too.
   */
  private corkForTurn(link: Duplex, bytes: number): void {
    if (this.corkedLink !== null) return;
    if (this.inTurn) {
      this.corkedLink = link;
      link.cork();
      return;
    }
    this.inTurn = true;
    if (bytes < DIRECT_FRAME_BYTES && link.writableLength === 0) {
      const now = this.clock.now();
      const burst = this.distant && now - this.lastSmallTurnAt < BURST_GAP_MS;
      this.lastSmallTurnAt = now;
      if (!burst) {
        setImmediate(this.endTurn); // this frame goes at once; the rest of the turn is corked
        return;
      }
      this.clock.setTimer(BURST_HOLD_MS, this.endTurn);
    } else setImmediate(this.endTurn);
    this.corkedLink = link;
    link.cork();
  }

  private readonly endTurn = (): void => {
    this.inTurn = false;
    const link = this.corkedLink;
    this.corkedLink = null;
    if (link !== null && !link.destroyed) link.uncork();
  };
}
