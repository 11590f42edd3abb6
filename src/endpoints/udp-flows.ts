/**
 * The UDP flows of one instance, entry and exit alike, with the two bounds
 * the issue asks each side to keep on its own: a flow without a datagram
 * either way for --udp-timeout ends, and at most --udp-max-flows live at
 * once, the one idle longest ending first when a new one comes.
 *
 * The Map's insertion order is the recency order: a flow that carries a
 * datagram is moved to the end, so the oldest-idle flow is always first.
 * One timer sweeps from the front and stops at the first live flow: no timer
 * per flow, and a sweep costs only the flows it ends.
 */
import type { Clock, Timer } from '../clock.js';

export interface TimedFlow {
  /** Clock time of the last datagram either way. */
  lastActiveAt: number;
}

export type FlowEndCause = 'idle' | 'limit';

export class FlowTable<F extends TimedFlow> {
  private readonly flows = new Map<number, F>();
  private timer: Timer | null = null;

  constructor(
    private readonly maxFlows: number,
    private readonly idleMs: number,
    private readonly clock: Clock,
    /** A flow ended by the table (it is already removed). */
    private readonly onEnd: (flow: F, cause: FlowEndCause) => void,
  ) {}

  get size(): number {
    return this.flows.size;
  }

  get(key: number): F | undefined {
    return this.flows.get(key);
  }

  has(key: number): boolean {
    return this.flows.has(key);
  }

  /** Adds a flow; at the cap, the one idle longest ends first. */
  add(key: number, flow: F): void {
    this.flows.delete(key);
    while (this.flows.size >= this.maxFlows) {
      const oldest = this.flows.entries().next();
      if (oldest.done === true) break;
      this.flows.delete(oldest.value[0]);
      this.onEnd(oldest.value[1], 'limit');
    }
    flow.lastActiveAt = this.clock.now();
    this.flows.set(key, flow);
    this.arm();
  }

  /** A datagram went through the flow: it becomes the most recent. */
  touch(key: number, flow: F): void {
    flow.lastActiveAt = this.clock.now();
    this.flows.delete(key);
    this.flows.set(key, flow);
  }

  delete(key: number): boolean {
    return this.flows.delete(key);
  }

  values(): IterableIterator<F> {
    return this.flows.values();
  }

  /** Removes every flow (the caller ends them) and stops the timer. */
  clear(): F[] {
    const all = [...this.flows.values()];
    this.flows.clear();
    this.timer?.cancel();
    this.timer = null;
    return all;
  }

  private arm(): void {
    if (this.timer !== null) return;
    const first = this.flows.values().next();
    if (first.done === true) return;
    // Wake when the oldest flow would expire (at least 10 ms later, to batch the sweeps).
    const wait = Math.max(10, first.value.lastActiveAt + this.idleMs - this.clock.now());
    this.timer = this.clock.setTimer(wait, this.sweep);
  }

  private readonly sweep = (): void => {
    this.timer = null;
    const now = this.clock.now();
    for (const [key, flow] of this.flows) {
      if (now - flow.lastActiveAt < this.idleMs) break;
      this.flows.delete(key);
      this.onEnd(flow, 'idle');
    }
    this.arm();
  };
}
