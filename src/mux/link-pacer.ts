/**
 * Keeps the queue in front of the link short (docs/PROTOCOL.md, "The link's
 * send queue").
 *
 * The kernel takes whatever the stream windows allow into the link socket's
 * send buffer, which autotuning grows to several times the path's
 * bandwidth-delay product; an interactive frame written behind megabytes of
 * bulk waits for all of them. Node cannot set TCP_NOTSENT_LOWAT on a socket,
 * so the session bounds the bytes in flight on the link itself: the bytes
 * written to the link that the partner has not read yet.
 *
 * It learns what the partner has read from PING probes: every eighth of the
 * cap (and eighth of a round trip) a PING goes out behind the data, and the partner, which answers PINGs in
 * order as it reads them, acknowledges everything written before it. The
 * answer also gives a round trip that includes the time the probe waited in
 * the send buffer. The cap on the bytes in flight follows a delay target
 * (as LEDBAT and Copa do): it grows while the standing round trip (the
 * smallest of the last few) stays within TARGET_QUEUE_MS of the smallest
 * seen in the last 10 s, and shrinks when it rises above it. The kernel's
 * congestion control keeps the path full; this loop only keeps the backlog
 * behind it to a few milliseconds.
 *
 * Pure logic: the sender feeds it bytes written, probes and answers, with
 * times from its clock; each answer's round trip goes to the session's one
 * estimator (round-trip.ts), whose recent minimum the pacer steers by.
 */
import type { RoundTrip } from './round-trip.js';
import { PacerPolicy, RoundTripPolicy } from './tunables.js';

const {
  TARGET_QUEUE_MS,
  MIN_CAP,
  MAX_CAP,
  INITIAL_CAP,
  MIN_PROBE_SPACING,
  MIN_PROBE_INTERVAL_MS,
  MAX_PROBES,
  STEADY_GAIN,
  RATE_HISTORY,
  ENFORCE_MS,
  STANDING_SAMPLES,
} = PacerPolicy;
const MIN_RTT_WINDOW_MS = RoundTripPolicy.RECENT_MIN_WINDOW_MS;

/** First four bytes of a probe's 8-byte PING payload ("pace"); the last four are its sequence number. */
const PROBE_MAGIC = 0x70616365;

export class LinkPacer {
  /** Bytes in flight allowed on the link. */
  cap = INITIAL_CAP;
  private written = 0;
  private acked = 0;
  private lastProbeAt = 0;
  private lastProbeTime = -Infinity;
  private nextSeq = 1;
  /** Outstanding probes: sequence, bytes written before it, when it was written. */
  private readonly probeSeq: number[] = [];
  private readonly probeOffset: number[] = [];
  private readonly probeSentAt: number[] = [];
  private readonly recent: number[] = [];
  private enforcing = false;
  private enforceUntil = 0;
  /** Until the queue first passes the target, the cap may double each round trip. */
  private startup = true;
  /** Highest recent delivery rate (bytes/ms, see rateWindow): the cap never drops below what it needs. */
  maxRate = 0;
  private maxRateAt = 0;
  /** Recent answers: when, and the bytes acknowledged by then. */
  private readonly ackTimes: number[] = [];
  private readonly ackOffsets: number[] = [];

  constructor(private readonly rtt: RoundTrip) {}

  /** The smallest round trip of the last 10 s, ms (Infinity before the first sample). */
  get minRtt(): number {
    return this.rtt.recentMin;
  }

  /** Bytes written to the link that the partner has not read yet (as far as the probes tell). */
  get inFlight(): number {
    return this.written - this.acked;
  }

  /**
   * The cap is reached while it holds: bulk data waits for the next answer.
   * It holds only for a while after an interactive send met a backlog
   * (contended): a lone bulk transfer keeps the kernel's whole send buffer,
   * since on a lossy path the partner's reads come in bursts that read as a
   * queue, and the cap would cost throughput that no one waits for.
   * Only an answer reopens it, so it holds only while a probe is in flight:
   * with none (MAX_PROBES were out when the cap was reached, or the cap shrank
   * below the bytes written after the last probe), the next frame goes, and a
   * probe behind it (issue 17: every bulk stream of a side stopped for good).
   */
  get closed(): boolean {
    return this.enforcing && this.inFlight >= this.cap && this.probeSeq.length > 0;
  }

  /** The cap would be exceeded: a small send now waits behind bulk. */
  get backlogged(): boolean {
    return this.inFlight > this.cap;
  }

  /** The cap is held (an interactive send met a backlog less than ENFORCE_MS before the last answer). */
  get holding(): boolean {
    return this.enforcing;
  }

  /** A small send met a backlog, or came while the cap holds: hold the cap for a while (longer). */
  contended(now: number): void {
    this.enforcing = true;
    this.enforceUntil = now + ENFORCE_MS;
  }

  /** Counts bytes written to the link (every frame, header included). */
  wrote(bytes: number): void {
    this.written += bytes;
  }

  /** Enough bytes went out since the last probe, and few enough probes are pending. */
  get probeDue(): boolean {
    const spacing = this.cap >>> 3 > MIN_PROBE_SPACING ? this.cap >>> 3 : MIN_PROBE_SPACING;
    return this.written - this.lastProbeAt >= spacing && this.probeSeq.length < MAX_PROBES;
  }

  /** The payload of a probe to write now, or null when the last one left too recently. */
  probe(now: number): Buffer | null {
    // At the cap a probe always goes: the bytes behind the last one would wait a round trip for the next.
    const eighth = this.minRtt / 8;
    const interval = eighth > MIN_PROBE_INTERVAL_MS ? eighth : MIN_PROBE_INTERVAL_MS;
    if (now - this.lastProbeTime < interval && this.inFlight < this.cap) return null;
    this.lastProbeTime = now;
    const seq = this.nextSeq;
    this.nextSeq = (seq + 1) >>> 0;
    this.probeSeq.push(seq);
    this.probeOffset.push(this.written);
    this.probeSentAt.push(now);
    this.lastProbeAt = this.written;
    const payload = Buffer.allocUnsafe(8);
    payload.writeUInt32BE(PROBE_MAGIC, 0);
    payload.writeUInt32BE(seq, 4);
    return payload;
  }

  /**
   * A PING answer arrived. Returns false when it answers no probe of this
   * pacer (a heartbeat ping's answer), true when it was consumed here.
   */
  answered(payload: Buffer, now: number): boolean {
    if (payload.length !== 8 || payload.readUInt32BE(0) !== PROBE_MAGIC) return false;
    const seq = payload.readUInt32BE(4);
    const at = this.probeSeq.indexOf(seq);
    if (at < 0) return true;
    const offset = this.probeOffset[at] ?? this.acked;
    const sentAt = this.probeSentAt[at] ?? now;
    // The partner answers in order: older probes are answered or lost with their link.
    this.probeSeq.splice(0, at + 1);
    this.probeOffset.splice(0, at + 1);
    this.probeSentAt.splice(0, at + 1);
    const delivered = offset - this.acked;
    if (delivered <= 0) return true;
    const wasUsed = this.inFlight >= this.cap >>> 1;
    this.acked = offset;
    this.sample(now - sentAt, now, delivered, wasUsed);
    return true;
  }

  /** The round trip of the last answer that acknowledged bytes, ms (-1 before the first): for observers. */
  lastSampleMs = -1;

  private sample(rtt: number, now: number, delivered: number, wasUsed: boolean): void {
    this.lastSampleMs = rtt;
    if (this.enforcing && now > this.enforceUntil) this.enforcing = false;
    this.rtt.sample(rtt, 'probe', now);
    this.measureRate(now);
    if (this.recent.length === STANDING_SAMPLES) this.recent.shift();
    this.recent.push(rtt);
    let standing = rtt;
    for (const r of this.recent) if (r < standing) standing = r;
    // Our own queue shows in the round trip; so do a retransmission holding back delivery and a
    // partner busy for a moment. The bytes in flight tell ours apart: more than the best recent
    // delivery rate moves in one smallest round trip is a queue, fewer is not.
    let queue = standing - this.minRtt;
    if (this.maxRate > 0) {
      const byBytes = this.inFlight / this.maxRate - this.minRtt;
      if (byBytes < queue) queue = byBytes;
    }
    let cap = this.cap;
    if (queue <= TARGET_QUEUE_MS) {
      // Grows only while the cap is in use: at start-up by up to the bytes delivered (doubling
      // per round trip), then gently, since the delay it adds shows a round trip later.
      if (wasUsed) cap += (delivered * (this.startup ? 1 : STEADY_GAIN) * (TARGET_QUEUE_MS - queue)) / TARGET_QUEUE_MS;
    } else {
      this.startup = false;
      const over = (queue - TARGET_QUEUE_MS) / TARGET_QUEUE_MS;
      cap -= (delivered * (over < 1 ? over : 1)) / 2;
    }
    // A delay that is not ours (a retransmission holding back delivery, a partner busy for a
    // moment) must not shrink the cap below what the best recent delivery rate needs.
    const floor = this.maxRate * (this.minRtt + TARGET_QUEUE_MS);
    if (cap < floor) cap = floor;
    this.cap = cap < MIN_CAP ? MIN_CAP : cap > MAX_CAP ? MAX_CAP : Math.round(cap);
  }

  /** The delivery rate's maximum is kept for ten smallest round trips (0.1 s to 10 s), as BBR keeps its bandwidth. */
  private rateWindow(): number {
    const w = this.minRtt * 10;
    return w < 100 ? 100 : w > MIN_RTT_WINDOW_MS ? MIN_RTT_WINDOW_MS : w;
  }

  /** Delivery rate over the latest span of at least one smallest round trip, and its 10 s maximum. */
  private measureRate(now: number): void {
    const times = this.ackTimes;
    const offsets = this.ackOffsets;
    if (times.length === RATE_HISTORY) {
      times.shift();
      offsets.shift();
    }
    times.push(now);
    offsets.push(this.acked);
    const span = this.minRtt > 1 ? this.minRtt : 1;
    for (let i = times.length - 2; i >= 0; i--) {
      const elapsed = now - (times[i] ?? now);
      if (elapsed < span) continue;
      const rate = (this.acked - (offsets[i] ?? this.acked)) / elapsed;
      if (rate >= this.maxRate || now - this.maxRateAt > this.rateWindow()) {
        this.maxRate = rate;
        this.maxRateAt = now;
      }
      return;
    }
  }
}
