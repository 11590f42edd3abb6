/**
 * Every default and limit in one frozen object. docs/SECURITY.md and the
 * README quote these values; a test checks that they agree.
 */
export const DEFAULTS = Object.freeze({
  /** Link declared dead after this long without a byte from the partner. */
  heartbeatSeconds: 15,
  /** A PING is sent every heartbeat/PING_DIVISOR while the link is up. */
  pingDivisor: 3,
  /** Window a new stream grants its sender. */
  initialWindow: 256 * 1024,
  /** Largest window a stream grows to when it is the bottleneck. */
  maxWindow: 32 * 1024 * 1024,
  /** Bytes received but not yet taken by user sockets, across all streams, before the link is paused. */
  receiveBudget: 64 * 1024 * 1024,
  /** Largest DATA payload this side accepts (announced in HELLO). */
  maxFramePayload: 64 * 1024,
  /** Streams the partner may hold open at once. */
  maxStreams: 65536,
  /** New streams per second the partner may open (a burst of as many is allowed). */
  maxOpenRate: 20_000,
  /** Bytes queued in the link socket (user space) before streams wait their turn. */
  linkWriteBound: 256 * 1024,
  /** Time for a new link to finish its handshake. */
  handshakeTimeoutMs: 10_000,
  /** --accept-proxy-protocol: time for a connection's PROXY header to arrive whole (a load balancer sends it at once). */
  proxyHeaderTimeoutMs: 5_000,
  /** Time for a target connection to be established. */
  connectTimeoutMs: 10_000,
  /** A server asks its current partner for a PONG within this time before replacing it. */
  partnerCheckTimeoutMs: 2_000,
  /** Client reconnect backoff: first delay, cap, and how long a link must live to reset it. */
  backoffMinMs: 500,
  backoffMaxMs: 30_000,
  backoffResetAfterMs: 5_000,
  /** Unauthenticated (handshaking) links held at once by a server. */
  maxPendingHandshakes: 64,
  /** A UDP flow with no datagram either way for this long ends (--udp-timeout), on each side on its own. */
  udpTimeoutSeconds: 60,
  /**
   * UDP flows live at once on this side (--udp-max-flows); at the cap the one idle longest ends.
   * Each exit flow holds a socket: 4,096 keeps a side within a few MiB and within common descriptor
   * limits, yet serves about 68 new flows per second sustained at the 60 s timeout (a busy DNS forwarder).
   */
  udpMaxFlows: 4096,
  /** On SIGINT/SIGTERM, time left to say goodbye before the process exits. */
  shutdownGraceMs: 1_500,
});
