/** Outstanding PINGs of a session: each resolves with its round trip, or null on timeout or close. */
import { randomBytes } from 'node:crypto';
import type { Clock } from '../clock.js';

export class PingTracker {
  private readonly pending = new Map<string, (at: number | null) => void>();

  constructor(
    private readonly clock: Clock,
    private readonly send: (opaque: Buffer) => void,
  ) {}

  ping(timeoutMs: number): Promise<number | null> {
    return new Promise((resolve) => {
      const opaque = randomBytes(8);
      const key = opaque.toString('hex');
      const sentAt = this.clock.now();
      const timer = this.clock.setTimer(timeoutMs, () => {
        this.pending.delete(key);
        resolve(null);
      });
      this.pending.set(key, (at) => {
        timer.cancel();
        resolve(at === null ? null : at - sentAt);
      });
      this.send(opaque);
    });
  }

  /** A PING with ACK arrived; a late answer to a ping that timed out is ignored. */
  answered(opaque: Buffer): void {
    const key = opaque.toString('hex');
    const resolve = this.pending.get(key);
    if (resolve === undefined) return;
    this.pending.delete(key);
    resolve(this.clock.now());
  }

  /** The session ended: every outstanding ping resolves with null. */
  clear(): void {
    for (const resolve of this.pending.values()) resolve(null);
    this.pending.clear();
  }
}
