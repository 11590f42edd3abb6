/**
 * Slows down sources whose link attempts fail (bad secret, garbage, a
 * handshake left unfinished): from the third failure on, the source's new
 * links are closed unread for a delay that doubles per failure, from 1 s up
 * to 60 s. Two free failures spare a client that tried once with a stale
 * setting, and a probe that shares its address.
 * Bounded: at most `maxEntries` sources are remembered, oldest forgotten first.
 * The live session is never affected.
 */
import type { Clock } from '../clock.js';

export interface PenaltyOptions {
  /** Failures that cost nothing before the delays start. */
  readonly freeFailures: number;
  readonly baseMs: number;
  readonly maxMs: number;
  /** A source with no failure for this long starts again from the base delay. */
  readonly forgetAfterMs: number;
  readonly maxEntries: number;
}

export const PENALTY_DEFAULTS: PenaltyOptions = Object.freeze({
  freeFailures: 2,
  baseMs: 1000,
  maxMs: 60_000,
  forgetAfterMs: 10 * 60_000,
  maxEntries: 4096,
});

interface Entry {
  failures: number;
  lastFailureAt: number;
  blockedUntil: number;
}

export class PenaltyBox {
  private readonly entries = new Map<string, Entry>();

  constructor(
    private readonly clock: Clock,
    private readonly options: PenaltyOptions = PENALTY_DEFAULTS,
  ) {}

  /** Is this source inside its penalty delay? */
  isBlocked(source: string): boolean {
    const entry = this.entries.get(source);
    return entry !== undefined && this.clock.now() < entry.blockedUntil;
  }

  /** Records a failed attempt; returns the delay now imposed, in ms. */
  recordFailure(source: string): number {
    const now = this.clock.now();
    let entry = this.entries.get(source);
    if (entry === undefined || now - entry.lastFailureAt > this.options.forgetAfterMs) {
      entry = { failures: 0, lastFailureAt: now, blockedUntil: 0 };
    }
    this.entries.delete(source); // re-insert: Map order is the eviction order
    entry.failures++;
    entry.lastFailureAt = now;
    const paid = entry.failures - this.options.freeFailures;
    const delay = paid <= 0 ? 0 : Math.min(this.options.maxMs, this.options.baseMs * 2 ** Math.min(paid - 1, 20));
    entry.blockedUntil = now + delay;
    this.entries.set(source, entry);
    if (this.entries.size > this.options.maxEntries) {
      const oldest = this.entries.keys().next().value;
      if (oldest !== undefined) this.entries.delete(oldest);
    }
    return delay;
  }

  recordSuccess(source: string): void {
    this.entries.delete(source);
  }

  get size(): number {
    return this.entries.size;
  }
}
