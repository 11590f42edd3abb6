/**
 * One stream's send side: the bytes its socket gave and that wait to be sent,
 * the credit the partner granted (bytes up to `limit` may be sent), and, on a
 * resumable session, the bytes sent but not yet acknowledged (replay.ts),
 * which a resumed link sends again. Pure: the stream decides when to send.
 */
import { ReplayBuffer } from './replay.js';

export class SendBuffer {
  /** Payload bytes sent since the stream opened. */
  sent = 0;
  /** Bytes waiting to be sent. */
  waiting = 0;
  /** The partner's credit: bytes up to this stream offset may be sent. */
  private limit: number;
  private readonly chunks: Buffer[] = [];
  private readonly replay = new ReplayBuffer();

  constructor(
    initialWindow: number,
    /** Resumable session: keep what was sent until the partner acknowledges it. */
    private readonly keepsReplay: boolean,
  ) {
    this.limit = initialWindow;
  }

  /** Bytes the credit still allows. */
  get credit(): number {
    return this.limit - this.sent;
  }

  push(chunk: Buffer): void {
    this.chunks.push(chunk);
    this.waiting += chunk.length;
  }

  /** The next piece to send, at most `max` bytes and within the credit (the caller checked credit > 0). */
  take(max: number): Buffer {
    const chunk = this.chunks[0] as Buffer;
    let n = chunk.length;
    const credit = this.limit - this.sent;
    if (n > credit) n = credit;
    if (n > max) n = max;
    let piece: Buffer;
    if (n === chunk.length) {
      piece = chunk;
      this.chunks.shift();
    } else {
      piece = chunk.subarray(0, n);
      this.chunks[0] = chunk.subarray(n);
    }
    this.waiting -= n;
    this.sent += n;
    if (this.keepsReplay) this.replay.push(piece);
    return piece;
  }

  /**
   * The partner consumed up to `consumed` and grants `window` beyond it (a
   * WINDOW frame). Returns true when the credit grew.
   */
  grant(consumed: number, window: number): boolean {
    if (this.keepsReplay) this.replay.ackTo(consumed);
    const limit = consumed + window;
    if (limit <= this.limit) return false;
    this.limit = limit;
    return true;
  }

  /** Everything up to what was sent is acknowledged (the partner confirmed our FIN). */
  acknowledgeAll(): void {
    this.replay.ackTo(this.sent);
  }

  /** The first byte a resumed link could send again: bytes before it are acknowledged and forgotten. */
  get replayStart(): number {
    return this.replay.start;
  }

  /**
   * A resumed link: the partner holds `received` bytes, so what was sent after
   * them waits to be sent again, before what the socket gave since. Returns
   * the bytes to send again.
   */
  rewindTo(received: number): number {
    const again = this.sent - received;
    if (again > 0) {
      this.chunks.unshift(...this.replay.takeFrom(received));
      this.waiting += again;
    } else {
      this.replay.ackTo(received);
    }
    this.sent = received;
    return again;
  }

  /** A reset: nothing is sent any more. */
  clear(): void {
    this.chunks.length = 0;
    this.waiting = 0;
    this.replay.clear();
  }
}
