/**
 * The session's one sender: every frame that leaves goes through it. It owns
 * the send queue (streams that have bytes and credit but must wait their
 * turn), the link writer (how bytes reach the socket), the link pacer (how
 * many bytes may be in flight) and the only judge of "small" and
 * "interactive". Streams see it as a StreamSender; the session attaches and
 * detaches links and opens it to data once a link is live.
 *
 * The walk of one DATA frame (docs/ARCHITECTURE.md): a stream's write()
 * calls schedule(); a small send, or any send on an uncongested link with
 * nobody queued, flushes at once; otherwise the stream joins the queue, which
 * drains one frame per stream per turn whenever the link drains or a probe's
 * answer lowers the bytes in flight below the pacer's cap.
 */
import type { Duplex } from 'node:stream';
import type { Clock } from '../clock.js';
import { HEADER_LENGTH } from '../protocol/constants.js';
import { encodePing } from '../protocol/encode.js';
import { channels } from '../observe.js';
import { LinkPacer } from './link-pacer.js';
import { LinkWriter } from './link-writer.js';
import type { RoundTrip } from './round-trip.js';
import { SendPolicy } from './tunables.js';

/** What a stream may ask of the sender. */
export interface StreamSender {
  /** Largest DATA payload the partner accepts. */
  readonly maxFrame: number;
  /** Streams stop sending: the link socket is full, or the pacer's cap is reached. */
  readonly congested: boolean;
  /** DATA and FIN may go out (the link is live, not held or resuming). */
  readonly dataOpen: boolean;
  sendData(streamId: number, flags: number, payload: Buffer): void;
  /** A control frame (WINDOW, ACCEPT, RESET...): goes out whenever a link is attached. */
  sendFrame(frame: Buffer): void;
  /** The stream has bytes to send: send them now or queue the stream. */
  schedule(stream: SendingStream): void;
}

/** What the sender reads of a stream to decide when it sends. */
export interface SendingStream {
  /** Bytes written by the socket and not yet sent. */
  readonly bufferedToSend: number;
  /** Payload bytes sent since the stream opened. */
  readonly sentBytes: number;
  readonly openedAt: number;
  /**
   * Sends up to `frames` DATA frames within its credit; true when it has bytes and credit left.
   * A reset stream sends nothing; any other may have bytes, even closed (a resumed link's replay).
   */
  flush(frames: number): boolean;
}

export class Sender implements StreamSender {
  maxFrame: number;
  /** DATA payload bytes written, over every link of the session. */
  bytesOut = 0;
  private dataAllowed = false;
  /** Datagrams are dropped once the link socket holds this much (1.5 times the link write bound). */
  private readonly datagramBound: number;
  private readonly queue = new Set<SendingStream>();
  private readonly writer: LinkWriter;
  private pacer: LinkPacer;

  constructor(
    private readonly clock: Clock,
    private readonly roundTrip: RoundTrip,
    writeBound: number,
    maxFrame: number,
  ) {
    this.maxFrame = maxFrame;
    this.datagramBound = writeBound * 1.5;
    this.writer = new LinkWriter(clock, roundTrip, writeBound, () => this.flushQueue());
    this.pacer = new LinkPacer(roundTrip);
  }

  // ---- the session's controls -------------------------------------------

  /** A link is up (new, or resuming): control frames go out; data waits for open(). */
  attach(link: Duplex, maxFrame: number): void {
    this.maxFrame = maxFrame;
    this.pacer = new LinkPacer(this.roundTrip);
    this.writer.attach(link);
  }

  /** The link is live: data flows, the queue drains. */
  open(): void {
    this.dataAllowed = true;
    this.flushQueue();
  }

  /** The link is gone: nothing is written until the next; queued streams stay queued. */
  detach(): void {
    this.dataAllowed = false;
    this.writer.detach();
  }

  /** The session ended. */
  close(): void {
    this.detach();
    this.queue.clear();
  }

  /** Frames written until `uncork` leave in one write. */
  cork(): Duplex | null {
    return this.writer.cork();
  }

  /** The bytes in the link socket's own buffer, for observers (-1 without a link). */
  get linkQueued(): number {
    return this.writer.queued;
  }

  /** The pacer as observers see it (observe.ts SessionSnapshot). */
  get pacerView(): { readonly cap: number; readonly inFlight: number; readonly holding: boolean } {
    const pacer = this.pacer;
    return { cap: pacer.cap, inFlight: pacer.inFlight, holding: pacer.holding };
  }

  /**
   * A PING answer: a pacer probe's (true; the lower bytes in flight may let
   * the queue go on), or not (false: a heartbeat's, for the session).
   */
  probeAnswered(payload: Buffer): boolean {
    const pacer = this.pacer;
    if (!pacer.answered(payload, this.clock.now())) return false;
    if (channels.pace.hasSubscribers && pacer.lastSampleMs >= 0) {
      channels.pace.publish({ rttMs: pacer.lastSampleMs, minRttMs: pacer.minRtt, cap: pacer.cap, inFlight: pacer.inFlight });
    }
    if (this.queue.size > 0 && !this.congested) this.flushQueue();
    return true;
  }

  // ---- StreamSender -----------------------------------------------------

  get congested(): boolean {
    return this.writer.full || this.pacer.closed;
  }

  get dataOpen(): boolean {
    return this.dataAllowed;
  }

  sendData(streamId: number, flags: number, payload: Buffer): void {
    if (!this.dataAllowed) return;
    this.writer.writeData(streamId, flags, payload);
    this.bytesOut += payload.length;
    const pacer = this.pacer;
    pacer.wrote(HEADER_LENGTH + payload.length);
    if (pacer.probeDue) {
      const probe = pacer.probe(this.clock.now());
      if (probe !== null) this.sendFrame(encodePing(0, probe));
    }
  }

  sendFrame(frame: Buffer): void {
    this.writer.writeFrame(frame);
    this.pacer.wrote(frame.length);
  }

  /**
   * A datagram frame (capability udp) goes now or never: datagrams never wait in the session,
   * late is worse than lost. It passes the pacer and the write bound where streams stop
   * (a bulk stream that keeps the socket at its bound must not crowd datagrams out), up to
   * half of it again; beyond that it is dropped.
   */
  sendDatagram(frame: Buffer): boolean {
    if (!this.dataAllowed || this.writer.queued >= this.datagramBound) return false;
    this.sendFrame(frame);
    return true;
  }

  schedule(stream: SendingStream): void {
    if (!this.dataAllowed) {
      this.queue.add(stream);
      return;
    }
    // A small send passes the pacer's cap and the queue: the cap is for bulk, which would bury it.
    const small = stream.bufferedToSend <= SendPolicy.SMALL_SEND_BYTES;
    const pacer = this.pacer;
    // Met a backlog, or keeps sending while the cap holds: an interactive stream that is
    // still active keeps the cap held, or bulk would refill the send buffer between its sends.
    if (small && (pacer.backlogged || pacer.holding)) {
      const now = this.clock.now();
      if (isInteractive(stream, now)) pacer.contended(now);
    }
    if (!this.writer.full && (small || (this.queue.size === 0 && !pacer.closed))) {
      if (stream.flush(Infinity)) this.queue.add(stream);
      return;
    }
    this.queue.add(stream);
  }

  /** Streams take turns, one frame each, while the link takes more. */
  private flushQueue(): void {
    if (!this.dataAllowed || this.queue.size === 0) return;
    const link = this.writer.cork();
    const queue = this.queue;
    for (const stream of queue) {
      if (this.congested) break;
      queue.delete(stream);
      // Set iteration visits a stream added back at the end again, so this is round robin.
      if (stream.flush(SendPolicy.FLUSH_QUANTUM_FRAMES)) queue.add(stream);
    }
    link?.uncork();
  }
}

/** Interactive: has sent less than 1 MB per second of its life (a bulk stream's small tail does not count). */
function isInteractive(stream: SendingStream, now: number): boolean {
  return stream.sentBytes < (now - stream.openedAt + 1) * SendPolicy.INTERACTIVE_BYTES_PER_MS;
}
