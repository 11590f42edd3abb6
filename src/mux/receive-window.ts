/**
 * One stream's receive window: the credit this side grants the partner, when
 * to tell it, and how the window grows (docs/PROTOCOL.md, "Flow control" and
 * "Window growth"). Pure: the stream feeds it bytes received and consumed,
 * with the clock's time and the link's round trip; the session's budget is
 * asked before the window grows.
 */

/** What the window asks of the session when it grows. */
export interface WindowBudget {
  /** Asks for `wanted` more bytes of receive window; returns what the budget allows. */
  growWindow(wanted: number): number;
}

export class ReceiveWindow {
  /** Payload bytes received on the stream. */
  received = 0;
  /** Bytes handed on to the local socket (or dropped with a reset). */
  consumed = 0;
  /** The highest `received` the partner may reach; never decreases. */
  private limit: number;
  private window: number;

  /** The window's current size (it grows up to the maximum): for observers. */
  get size(): number {
    return this.window;
  }
  /** Clock time of the last WINDOW (the stream's last sign of receiving). */
  lastUpdateAt: number;
  /** Growth is judged once per half window consumed: from this many consumed bytes, at this time. */
  private growthFrom = 0;
  private growthAt: number;

  constructor(
    private readonly initial: number,
    private readonly max: number,
    now: number,
  ) {
    this.limit = initial;
    this.window = initial;
    this.lastUpdateAt = now;
    this.growthAt = now;
  }

  /** Counts `length` received bytes; false (and nothing counted) when they overrun the limit. */
  receive(length: number): boolean {
    if (this.received + length > this.limit) return false;
    this.received += length;
    return true;
  }

  /**
   * Counts consumed bytes; true when a WINDOW is due: an eighth of the window
   * is unadvertised. Not half: half-window batches leave the sender a quarter
   * of its window short on average and arrive as bursts that queue in the link
   * socket; on a path of one window per round trip that is a quarter of the
   * throughput.
   */
  consume(bytes: number): boolean {
    this.consumed += bytes;
    return this.consumed + this.window - this.limit >= this.window >>> 3;
  }

  /** What a WINDOW says now: the credit beyond `consumed`. */
  get advertised(): number {
    return this.limit - this.consumed;
  }

  /**
   * A WINDOW goes out now: each time half the window was consumed since the
   * last such point, the window doubles (up to the maximum, within the budget)
   * if that took less than two round trips, since the window is then what
   * limits the stream. Advances the limit; returns the credit to advertise.
   */
  update(now: number, rttMs: number, budget: WindowBudget): number {
    if (this.consumed - this.growthFrom >= this.window / 2) {
      if (this.window < this.max && now - this.growthAt < 2 * rttMs) {
        const wanted = Math.min(this.window, this.max - this.window);
        this.window += budget.growWindow(wanted);
      }
      this.growthFrom = this.consumed;
      this.growthAt = now;
    }
    this.lastUpdateAt = now;
    const limit = this.consumed + this.window;
    if (limit > this.limit) this.limit = limit;
    return this.limit - this.consumed;
  }

  /** Received bytes not consumed are dropped (a reset); returns how many. */
  dropUnconsumed(): number {
    const unconsumed = this.received - this.consumed;
    this.consumed = this.received;
    return unconsumed;
  }

  /** Window granted beyond the initial one, returned to the budget when the stream ends. */
  get grownBy(): number {
    return this.window - this.initial;
  }

  /**
   * An idle stream gives its grown window back to the session's budget. What
   * was advertised stays valid (limits never decrease); the window grows again
   * if the stream becomes the bottleneck. Returns the bytes given back.
   */
  shrink(): number {
    const given = this.window - this.initial;
    this.window = this.initial;
    return given;
  }
}
