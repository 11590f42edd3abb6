/**
 * The session's read gate: what comes in passes here. It owns the link's
 * 'data' listener and the decoder that turns bytes into frames (a resumed
 * link brings its own), and the receive budget: while the bytes delivered to
 * streams and not yet consumed exceed it, the link is paused, whatever the
 * partner does; below half of it, the link reads again.
 */
import type { Duplex } from 'node:stream';
import type { FrameDecoder } from '../protocol/decode.js';
import type { Frame } from '../protocol/frame.js';

export class ReadGate {
  /** Payload bytes of DATA frames received, on every link of the session. */
  bytesIn = 0;
  /** Bytes delivered to streams and not consumed yet. */
  buffered = 0;
  private paused = false;
  private link: Duplex | null = null;
  private decoder: FrameDecoder | null = null;

  constructor(
    private readonly budget: number,
    /** Bytes arrived: the session takes the frames they complete (next()). */
    private readonly onBytes: () => void,
  ) {}

  /** Starts reading a link; frames its decoder already holds are taken first. */
  attach(link: Duplex, decoder: FrameDecoder): void {
    this.link = link;
    this.decoder = decoder;
    this.paused = false;
    link.on('data', this.onData);
  }

  /** Stops reading the link (it is gone): whatever link comes next starts reading. */
  detach(): void {
    this.link?.off('data', this.onData);
    this.link = null;
    this.paused = false;
  }

  /** Reads on (after attach, once the session is ready for frames). */
  resume(): void {
    if (!this.paused) this.link?.resume();
  }

  next(): Frame | null {
    return this.decoder?.next() ?? null;
  }

  /** A DATA frame's payload: counted in, and buffered when a stream takes it. */
  received(bytes: number, delivered: boolean): void {
    this.bytesIn += bytes;
    if (!delivered) return;
    this.buffered += bytes;
    if (this.buffered > this.budget && !this.paused) {
      this.paused = true;
      this.link?.pause();
    }
  }

  /** `bytes` left the receive buffers (consumed or dropped): below half the budget, a paused link reads again. */
  release(bytes: number): void {
    this.buffered -= bytes;
    if (this.paused && this.buffered <= this.budget / 2) {
      this.paused = false;
      this.link?.resume();
    }
  }

  private readonly onData = (chunk: Buffer): void => {
    this.decoder?.push(chunk);
    this.onBytes();
  };
}
