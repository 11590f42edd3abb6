/**
 * Liveness of one session: a PING every interval (a third of the timeout);
 * the link is declared dead at the first tick that finds no PONG for
 * timeout - interval, so detection lands between 2/3 and all of the timeout. Counting PONGs rather than any
 * received byte also catches a partner that still sends but stopped reading.
 */
import type { Clock, Timer } from '../clock.js';
import type { Session } from '../mux/session.js';

export interface HeartbeatOptions {
  readonly timeoutMs: number;
  readonly intervalMs: number;
  readonly onDead: (silentMs: number) => void;
}

export class Heartbeat {
  private timer: Timer | null = null;
  private lastAnswerAt: number;
  private stopped = false;

  constructor(
    private readonly session: Session,
    private readonly clock: Clock,
    private readonly options: HeartbeatOptions,
  ) {
    this.lastAnswerAt = clock.now();
  }

  start(): void {
    this.tick();
  }

  stop(): void {
    this.stopped = true;
    this.timer?.cancel();
    this.timer = null;
  }

  private tick(): void {
    if (this.stopped || this.session.isEnded) return;
    const silent = this.clock.now() - this.lastAnswerAt;
    if (silent >= this.options.timeoutMs - this.options.intervalMs) {
      this.stop();
      this.options.onDead(silent);
      return;
    }
    void this.session.ping(this.options.timeoutMs).then((rtt) => {
      if (rtt === null || this.stopped) return;
      // The session fed the round trip to its estimator.
      this.lastAnswerAt = this.clock.now();
    });
    this.timer = this.clock.setTimer(this.options.intervalMs, () => this.tick());
  }
}
