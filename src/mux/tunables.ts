/**
 * The multiplexer's policy constants, in one place: what counts as a small
 * send, when a stream is interactive, how frames are batched on the link, how
 * the link pacer steers, and how receive windows are lent out. Each module
 * reads its values from here; none keeps a literal of its own. The figures
 * behind each value are in docs/BENCHMARKS.md and docs/BENCHMARKS-WAN.md.
 */

export const SendPolicy = Object.freeze({
  /** A stream with at most this much to send passes the pacer's cap and the queue (a keystroke, a request, a ping). */
  SMALL_SEND_BYTES: 4096,
  /** A stream that averaged less than this since it opened (1 MB/s) is interactive: its small sends hold the pacer's cap. */
  INTERACTIVE_BYTES_PER_MS: 1000,
  /** Round-robin quantum when streams contend: one frame per stream per turn. */
  FLUSH_QUANTUM_FRAMES: 1,
  /** A frame smaller than this that begins a turn on an idle link goes at once, in one write (header and payload in one segment). */
  DIRECT_FRAME_BYTES: 2048,
});

/**
 * Small frames that follow one another within BURST_GAP_MS (or a 32nd of the
 * round trip, if longer) on a link whose smallest round trip is at least
 * BURST_MIN_RTT_MS are a burst (many streams opening at once): they are held
 * so that they share segments, BURST_HOLD_MS at first, twice as long at each
 * further turn of the same burst, up to a sixteenth of the round trip.
 */
export const BurstPolicy = Object.freeze({
  GAP_MS: 2,
  GAP_RTT_SHARE: 1 / 32,
  HOLD_MS: 1,
  MIN_RTT_MS: 16,
  HOLD_RTT_SHARE: 1 / 16,
});

/** The link pacer (link-pacer.ts): a delay target on the bytes in flight. */
export const PacerPolicy = Object.freeze({
  /** The queueing delay the cap aims for, ms. */
  TARGET_QUEUE_MS: 4,
  MIN_CAP: 64 * 1024,
  MAX_CAP: 128 * 1024 * 1024,
  /** Where the cap starts before the first answer. */
  INITIAL_CAP: 1024 * 1024,
  /** A probe goes out after at least this many bytes, or an eighth of the cap. */
  MIN_PROBE_SPACING: 32 * 1024,
  /** Nor sooner than an eighth of the smallest round trip after the last, and 1 ms at least. */
  MIN_PROBE_INTERVAL_MS: 1,
  /** Probes in flight at most; beyond this none is added until an answer comes. */
  MAX_PROBES: 32,
  /** After start-up, the cap grows by at most this share of the bytes delivered (an eighth per round trip). */
  STEADY_GAIN: 0.125,
  /** Answers kept to measure the delivery rate over at least one round trip. */
  RATE_HISTORY: 64,
  /** The cap holds this long after an interactive send met bulk in front of it. */
  ENFORCE_MS: 2000,
  /** The standing round trip is the smallest of this many latest samples. */
  STANDING_SAMPLES: 4,
});

export const RoundTripPolicy = Object.freeze({
  /** The recent minimum forgets samples older than this (the path may have changed). */
  RECENT_MIN_WINDOW_MS: 10_000,
  /** Weight of a new heartbeat sample in the smoothed round trip (RFC 6298's alpha). */
  SMOOTHING: 0.125,
});

export const ReceivePolicy = Object.freeze({
  /** A stream that sent no WINDOW for this long may lose its grown window to a busier one. */
  IDLE_WINDOW_MS: 1000,
  /** A GOAWAY is given this long to leave before the link is closed for good. */
  GOODBYE_DRAIN_MS: 1000,
});
