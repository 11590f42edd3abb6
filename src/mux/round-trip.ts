/**
 * The session's one round-trip estimator. Every PING answer feeds it: the
 * heartbeat's (every few seconds, on any link) and the link pacer's probes
 * (behind bulk data). Everything that needs a round trip reads it here:
 *
 * - `min`: the smallest sample on this path. Window growth is judged on it
 *   (a smoothed value grows with the queue a bulk stream builds, which would
 *   feed the growth that built it), and it tells the link writer whether the
 *   link is distant enough to hold bursts.
 * - `recentMin`: the smallest sample of the last 10 s, for the link pacer,
 *   which must forget a path that changed.
 * - `smoothed`: the heartbeat's samples smoothed (RFC 6298), for status and
 *   metrics: what a user would measure with a ping beside the traffic.
 *
 * A new link may be a new path (resumption from elsewhere): `newPath` forgets.
 */
import { RoundTripPolicy } from './tunables.js';
import { channels } from '../observe.js';

export type RttSource = 'heartbeat' | 'probe';

/** What readers of the estimator see. */
export interface RoundTripView {
  /** Smallest sample on this path, ms; 0 before the first. */
  readonly min: number;
  /** Heartbeat samples smoothed, ms; 0 before the first. */
  readonly smoothed: number;
  /** Smallest sample within the last 10 s, ms; Infinity before the first. */
  readonly recentMin: number;
  /** The round trip window growth is judged on: `min`, or 1 ms before the first sample. */
  readonly forGrowth: number;
}

export class RoundTrip implements RoundTripView {
  min = 0;
  smoothed = 0;
  recentMin = Infinity;
  private recentMinAt = 0;

  get forGrowth(): number {
    return this.min > 0 ? this.min : 1;
  }

  sample(ms: number, source: RttSource, now: number): void {
    if (source === 'heartbeat') {
      this.smoothed = this.smoothed === 0 ? ms : this.smoothed + (ms - this.smoothed) * RoundTripPolicy.SMOOTHING;
    }
    if (ms > 0 && (this.min === 0 || ms < this.min)) this.min = ms;
    if (ms < this.recentMin || now - this.recentMinAt > RoundTripPolicy.RECENT_MIN_WINDOW_MS) {
      this.recentMin = ms;
      this.recentMinAt = now;
    }
    if (channels.rtt.hasSubscribers) channels.rtt.publish({ source, ms });
  }

  /** The session moved to a new link, perhaps over another path: measure again. */
  newPath(): void {
    this.min = 0;
    this.smoothed = 0;
    this.recentMin = Infinity;
    this.recentMinAt = 0;
  }
}
