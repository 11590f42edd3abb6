/**
 * The session's budget for receive windows: streams start with the initial
 * window and grow (receive-window.ts) only as far as this budget lends them,
 * summed over streams. When it runs short, streams that received nothing for
 * a while give their growth back (their advertised credit stays valid).
 */
import type { Stream } from './stream.js';
import type { WindowBudget } from './receive-window.js';
import { ReceivePolicy } from './tunables.js';

export class SessionWindows implements WindowBudget {
  /** Window granted beyond the initial windows, summed over streams. */
  grown = 0;

  constructor(
    private readonly budget: number,
    private readonly now: () => number,
    private readonly streams: () => Iterable<Stream>,
  ) {}

  growWindow(wanted: number): number {
    if (this.grown + wanted > this.budget) this.reclaimIdle();
    const room = this.budget - this.grown;
    const granted = wanted < room ? wanted : room > 0 ? room : 0;
    this.grown += granted;
    return granted;
  }

  /** A stream ended: its growth returns to the budget. */
  returned(bytes: number): void {
    this.grown -= bytes;
  }

  private reclaimIdle(): void {
    const idleBefore = this.now() - ReceivePolicy.IDLE_WINDOW_MS;
    for (const stream of this.streams()) {
      const window = stream.receiveWindow;
      if (window.grownBy > 0 && window.lastUpdateAt < idleBefore) this.grown -= window.shrink();
    }
  }
}
