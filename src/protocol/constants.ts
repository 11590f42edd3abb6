/**
 * Wire constants. Each one quotes docs/PROTOCOL.md; change both together.
 */

/** "Each side opens the link by sending the 8-byte preface `TCPIPE\0` + version." */
export const PREFACE = Buffer.from([0x54, 0x43, 0x50, 0x49, 0x50, 0x45, 0x00, 0x01]);
export const PREFACE_LENGTH = 8;
/** "The last preface byte is the protocol version; this document describes version 1." */
export const PROTOCOL_VERSION = 1;

/** "Every frame starts with a 10-byte header: type u8, flags u8, stream u32, length u32 (big-endian)." */
export const HEADER_LENGTH = 10;

/** Frame types ("Frame types" table). */
export const FrameType = Object.freeze({
  /** "HELLO: the first frame on the link; parameters as TLVs." */
  HELLO: 0x01,
  /** "OPEN (the seed's Connect): the entry side asks the exit side to connect to its target on `port`." */
  OPEN: 0x02,
  /** "ACCEPT: the exit side connected to the target; the stream is open." */
  ACCEPT: 0x03,
  /** "DATA (the seed's Data): payload bytes of one stream; flag FIN half-closes after them." */
  DATA: 0x04,
  /** "WINDOW: the receiver has consumed `consumed` bytes and grants `window` more beyond them." */
  WINDOW: 0x05,
  /** "RESET (the seed's Disconnect, abortive): the stream is torn down in both directions." */
  RESET: 0x06,
  /** "PING: 8 opaque bytes; with flag ACK it is the answer." */
  PING: 0x07,
  /** "GOAWAY: the sender closes the link; code u8 and a UTF-8 reason." */
  GOAWAY: 0x08,
  /** "RESUME: the resumption handshake and the end of a resumed link's stream list; kind u8 first." */
  RESUME: 0x09,
  /** "FLOW_OPEN (capability udp): the entry side opens flow `id` to the exit side's target for `port`." */
  FLOW_OPEN: 0x0a,
  /** "DATAGRAM (capability udp): exactly one datagram of a flow; the frame's payload is the datagram." */
  DATAGRAM: 0x0b,
  /** "FLOW_CLOSE (capability udp): the sender has ended the flow; code u8 and a UTF-8 reason." */
  FLOW_CLOSE: 0x0c,
} as const);
export type FrameTypeValue = (typeof FrameType)[keyof typeof FrameType];
export const MAX_FRAME_TYPE = 0x0c;

export const Flag = Object.freeze({
  /** "FIN (0x01, DATA only): the sender will send no more data on this stream." */
  FIN: 0x01,
  /** "ACK (0x01, PING only): this PING answers one received." */
  ACK: 0x01,
  /** "FIN (0x01, WINDOW): the sender of the WINDOW has received the stream's FIN (resumable links only)." */
  FIN_RECEIVED: 0x01,
  /** "RESUMED (0x02, WINDOW): one entry of a resumed link's stream list; the payload adds received u64." */
  RESUMED: 0x02,
  /** "ACCEPTED (0x04, WINDOW with RESUMED, from the exit side): the stream's target was reached." */
  ACCEPTED: 0x04,
  /**
   * "LOCAL (0x80), the seed's Local indicator: set when the receiver of the frame is the entry side
   * of the stream, i.e. the frame concerns the receiver's connection *from* a user application.
   * The exit side sets it on every stream frame it sends; OPEN never has it, ACCEPT always does."
   */
  LOCAL: 0x80,
} as const);

/** "A receiver rejects any other flag bit for the frame type." */
export const ALLOWED_FLAGS: Readonly<Record<number, number>> = Object.freeze({
  [FrameType.HELLO]: 0,
  [FrameType.OPEN]: 0,
  [FrameType.ACCEPT]: Flag.LOCAL,
  [FrameType.DATA]: Flag.FIN | Flag.LOCAL,
  [FrameType.WINDOW]: Flag.LOCAL | Flag.FIN_RECEIVED | Flag.RESUMED | Flag.ACCEPTED,
  [FrameType.RESET]: Flag.LOCAL,
  [FrameType.PING]: Flag.ACK,
  [FrameType.GOAWAY]: 0,
  [FrameType.RESUME]: 0,
  [FrameType.FLOW_OPEN]: 0,
  [FrameType.DATAGRAM]: Flag.LOCAL,
  [FrameType.FLOW_CLOSE]: Flag.LOCAL,
});

/** "Control frames (all but DATA) carry at most 1,024 payload bytes." */
export const MAX_CONTROL_PAYLOAD = 1024;
/** "DATA payloads are at most the smaller of the two sides' HELLO max-frame values, and never above 1 MiB." */
export const MAX_DATA_PAYLOAD_LIMIT = 1024 * 1024;
/** "A DATAGRAM payload is at most 65,535 bytes (any UDP payload: 65,507 over IPv4, 65,527 over IPv6)." */
export const MAX_DATAGRAM_PAYLOAD = 65535;
/** "Reasons in RESET and GOAWAY are UTF-8, at most 256 bytes." */
export const MAX_REASON_BYTES = 256;
/** "Stream ids are 1..2^32-1, allocated in increasing order by the entry side." */
export const MAX_STREAM_ID = 0xffffffff;

/** GOAWAY codes ("GOAWAY codes" table). */
export const GoAwayCode = Object.freeze({
  NORMAL: 0,
  SHUTDOWN: 1,
  PROTOCOL_ERROR: 2,
  PARTNER_BUSY: 3,
  LIMIT_EXCEEDED: 4,
  HEARTBEAT_TIMEOUT: 5,
  INTERNAL_ERROR: 6,
  UNSUPPORTED_VERSION: 7,
  AUTH_REQUIRED: 8,
  /** "A resume request that does not prove the session, or a resumption that cannot go on." */
  RESUME_REFUSED: 9,
  /** "The partner lacks a capability this side's configuration needs (see Capabilities)." */
  MISSING_CAPABILITY: 10,
} as const);

/** RESET codes ("RESET codes" table). */
export const ResetCode = Object.freeze({
  /** "The user application or the target reset its connection." */
  PEER_RESET: 0,
  /** "The exit side could not connect: the target refused." */
  TARGET_REFUSED: 1,
  /** "The exit side could not connect: unreachable, unknown host or timeout." */
  TARGET_UNREACHABLE: 2,
  /** "The exit side does not allow this port or has no route for it." */
  NOT_ALLOWED: 3,
  /** "A limit was reached on the exit side (streams, file descriptors)." */
  LIMIT: 4,
  /** "The sender is shutting down." */
  SHUTDOWN: 5,
  /** "Any other local failure." */
  INTERNAL: 6,
} as const);

/** FLOW_CLOSE codes ("FLOW_CLOSE codes" table). */
export const FlowCloseCode = Object.freeze({
  /** "No datagram either way for the sender's --udp-timeout." */
  IDLE: 0,
  /** "The target answered with ICMP port unreachable (or the connected socket reported another error)." */
  TARGET_REFUSED: 1,
  /** "The exit side could not reach the target: unknown host, no route." */
  TARGET_UNREACHABLE: 2,
  /** "The exit side does not allow this port or has no /udp route for it." */
  NOT_ALLOWED: 3,
  /** "The sender's --udp-max-flows was reached: its flow idle longest was ended." */
  LIMIT: 4,
  /** "The sender is shutting down or its session ended." */
  SHUTDOWN: 5,
  /** "A DATAGRAM arrived for a flow the sender does not hold (ended, or never opened)." */
  NO_FLOW: 6,
  /** "Any other local failure." */
  INTERNAL: 7,
} as const);

/** HELLO parameter keys ("HELLO parameters" table). Unknown keys are ignored. */
export const HelloKey = Object.freeze({
  /** "role u8: 0 client (dialed the link), 1 server." */
  ROLE: 1,
  /** "initial-window u32: the window each new stream grants the sender, in bytes." */
  INITIAL_WINDOW: 2,
  /** "max-frame u32: the largest DATA payload the sender of HELLO accepts." */
  MAX_FRAME: 3,
  /** "max-streams u32: the most concurrent streams the sender of HELLO accepts from its partner." */
  MAX_STREAMS: 4,
  /** "heartbeat u32: the sender's liveness timeout in milliseconds." */
  HEARTBEAT_MS: 5,
  /** "software utf8: free text naming the implementation, for logs." */
  SOFTWARE: 6,
  /** "resume u32: the sender holds streams this long (ms) when the link drops; absent or 0: no resumption." */
  RESUME_GRACE_MS: 7,
  /** "key-share (32 bytes): the sender's fresh X25519 public key for this link (with resume)." */
  KEY_SHARE: 8,
  /** "session (16 bytes, client only): the session the client holds and asks to resume." */
  SESSION_ID: 9,
  /** "capabilities (u16 list): the optional features the sender speaks; absent: none." */
  CAPABILITIES: 10,
} as const);

/**
 * Capability ids ("Capabilities" in docs/PROTOCOL.md). "A side announces the
 * ids it speaks in HELLO; an id it does not know in the partner's list is
 * ignored. A feature is used on a link only when both sides announced it."
 */
export const Capability = Object.freeze({
  /** "OPEN may carry the user's source and destination addresses." */
  ORIGIN: 1,
  /** "Datagram streams (UDP flows)." */
  UDP: 2,
  /** "A second link, the fast lane, may join the session." */
  FAST_LANE: 3,
} as const);

/** Names of the capabilities, for log lines. */
export const CAPABILITY_NAMES: Readonly<Record<number, string>> = Object.freeze({
  [Capability.ORIGIN]: 'origin',
  [Capability.UDP]: 'udp',
  [Capability.FAST_LANE]: 'fast-lane',
});

/** RESUME frame kinds (first payload byte; "RESUME" in docs/PROTOCOL.md). */
export const ResumeKind = Object.freeze({
  /** "client: no session to resume, start a new one." */
  NEW: 1,
  /** "client: resume session (16 bytes) with proof (32 bytes)." */
  RESUME: 2,
  /** "server: resumed; its proof (32 bytes) follows." */
  RESUMED: 3,
  /** "server: cannot resume; a new session starts; reason UTF-8 follows." */
  FRESH: 4,
  /** "either side, on a resumed link: my stream list is complete; last stream id I saw opened by you, u32." */
  DONE: 5,
} as const);

/**
 * "With capability origin, OPEN may carry the user's connection after the port:
 * family u8, source and destination address, source and destination port u16:
 * 15 payload bytes for IPv4, 39 for IPv6" ("Origin addresses (capability 1)").
 */
export const OPEN_LENGTH = 2;
export const OPEN_ORIGIN_LENGTH_V4 = 15;
export const OPEN_ORIGIN_LENGTH_V6 = 39;
/** The origin's family byte: PROXY protocol v2's "address family and transport" byte. */
export const OriginFamily = Object.freeze({
  TCP4: 0x11,
  UDP4: 0x12,
  TCP6: 0x21,
  UDP6: 0x22,
} as const);

/** "A resumed link's stream entries: WINDOW with RESUMED carries 20 bytes." */
export const RESUMED_WINDOW_LENGTH = 20;
