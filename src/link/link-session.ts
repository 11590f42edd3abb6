/**
 * Turns a handshaken link into a running session with its heartbeat; both the
 * server and the client end here.
 */
import type { Duplex } from 'node:stream';
import type { Clock } from '../clock.js';
import { ErrorCodes, ProtocolError } from '../errors.js';
import type { Logger } from '../log/logger.js';
import { Capability, GoAwayCode } from '../protocol/constants.js';
import type { FrameDecoder } from '../protocol/decode.js';
import type { Frame } from '../protocol/frame.js';
import { bothSpeak, type CapabilityRequirement, type HelloInfo } from '../protocol/hello.js';
import { Session, type MuxSettings, type PeerSettings, type ResumeInfo, type SessionEnd } from '../mux/session.js';
import type { Stream } from '../mux/stream.js';
import { Heartbeat } from './heartbeat.js';
import type { KeyShare, ResumeIdentity } from './resume-auth.js';

export interface LinkSettings {
  readonly mux: MuxSettings;
  readonly maxFramePayload: number;
  readonly heartbeatMs: number;
  readonly pingDivisor: number;
  readonly handshakeTimeoutMs: number;
  readonly keepAliveMs: number;
  /** --resume in ms (0: off); resumption needs both sides. */
  readonly resumeGraceMs: number;
  /** Capability ids this side announces in its HELLO (docs/PROTOCOL.md, "Capabilities"). */
  readonly capabilities: readonly number[];
  /** What this side's options need of the partner: a link without it is refused, with the reason on both sides. */
  readonly requirements: readonly CapabilityRequirement[];
}

/** What the endpoints give the link: where streams go, and who hears of sessions. */
export interface LinkHandlers {
  /** The partner opened a stream (`peer.client`: which site's partner, on a server with sites). */
  onStreamRequest(stream: Stream, peer: LinkPeer): void;
  /** A link is up: a new session, or a held one on its new link. */
  onSessionUp(session: Session, peer: LinkPeer): void;
  /** The session ended (its streams are reset). */
  onSessionDown(session: Session, end: SessionEnd, peer: LinkPeer): void;
  /** The link was lost and the resumable session holds its streams. */
  onSessionHeld(session: Session, end: SessionEnd, peer: LinkPeer): void;
  /** A held session's streams flow again on a new link. */
  onSessionResumed(session: Session, peer: LinkPeer, info: ResumeInfo): void;
  /** A datagram frame (capability udp) arrived on the session. */
  onDatagramFrame?(session: Session, frame: Frame): void;
}

export interface LinkPeer {
  readonly address: string;
  readonly hello: HelloInfo;
  /** A server with many sites: the client (site) this partner proved to be. */
  readonly client?: string;
}

/**
 * Closes the transport under a session that ended. After a goodbye of ours
 * (GOAWAY, then end) the link must stay until the frame is out: the session
 * closes it when the partner does, or after a second, and the transport goes
 * with it. Destroying it at once would drop the queued GOAWAY (and reset the
 * connection if bytes were still unread), so the partner would see a reset
 * instead of the reason. After the partner's goodbye or loss: close at once.
 */
export function closeTransport(end: SessionEnd, link: Duplex, socket: Duplex): void {
  if (end.byPeer || link.destroyed) {
    link.destroy();
    socket.destroy();
    return;
  }
  link.once('close', () => socket.destroy());
}

export function helloFor(
  role: HelloInfo['role'],
  settings: LinkSettings,
  software: string,
  resume: { readonly share: KeyShare; readonly sessionId: Buffer | null } | null = null,
): HelloInfo {
  return {
    role,
    initialWindow: settings.mux.initialWindow,
    maxFramePayload: settings.maxFramePayload,
    maxStreams: settings.mux.maxStreams,
    heartbeatMs: settings.heartbeatMs,
    software,
    resumeGraceMs: resume !== null ? settings.resumeGraceMs : 0,
    keyShare: resume?.share.publicKey ?? null,
    sessionId: resume?.sessionId ?? null,
    capabilities: settings.capabilities,
  };
}

/** Both HELLOs listed capability origin: OPEN may carry the user's addresses, both ways. */
export function originNegotiated(settings: LinkSettings, peer: HelloInfo): boolean {
  return bothSpeak(Capability.ORIGIN, settings.capabilities, peer);
}

/** Both HELLOs announced resumption. */
export function resumeNegotiated(settings: LinkSettings, peer: HelloInfo): boolean {
  return settings.resumeGraceMs > 0 && (peer.resumeGraceMs ?? 0) > 0 && peer.keyShare !== null && peer.keyShare !== undefined;
}

function peerSettings(settings: LinkSettings, hello: HelloInfo): PeerSettings {
  return {
    initialWindow: hello.initialWindow,
    maxFramePayload: Math.min(hello.maxFramePayload, settings.maxFramePayload),
    maxStreams: hello.maxStreams,
  };
}

/**
 * A session and the links it runs on, one at a time: one link for the seed's
 * sessions, several for a resumable one (a held session resumes on the next).
 * Each link gets its own heartbeat; `onLinkGone` closes that link's transport.
 */
export class LinkedSession {
  readonly session: Session;
  private peer: LinkPeer;
  private heartbeat: Heartbeat | null = null;

  constructor(
    link: Duplex,
    decoder: FrameDecoder,
    peer: LinkPeer,
    private readonly settings: LinkSettings,
    private readonly handlers: LinkHandlers,
    private readonly clock: Clock,
    private readonly logger: Logger,
    onLinkGone: (end: SessionEnd) => void,
    /** Resumable sessions: what both ends derived on the first link (null: not resumable). */
    readonly identity: ResumeIdentity | null,
  ) {
    this.peer = peer;
    if (originNegotiated(settings, peer.hello)) decoder.acceptOpenOrigin();
    const mux: MuxSettings = { ...settings.mux, resumeGraceMs: identity !== null ? settings.resumeGraceMs : 0 };
    this.session = new Session(
      link,
      decoder,
      mux,
      peerSettings(settings, peer.hello),
      {
        onStreamRequest: (stream) => handlers.onStreamRequest(stream, this.peer),
        onEnd: (end) => {
          this.stopHeartbeat();
          handlers.onSessionDown(this.session, end, this.peer);
        },
        onHeld: (end) => {
          this.stopHeartbeat();
          handlers.onSessionHeld(this.session, end, this.peer);
        },
        onResumed: (info) => handlers.onSessionResumed(this.session, this.peer, info),
        ...(handlers.onDatagramFrame !== undefined
          ? { onDatagramFrame: (frame: Frame) => handlers.onDatagramFrame?.(this.session, frame) }
          : {}),
      },
      clock,
    );
    this.session.setLinkGone(onLinkGone);
    handlers.onSessionUp(this.session, peer);
    this.session.start();
    this.startHeartbeat(link);
  }

  get address(): string {
    return this.peer.address;
  }

  /** Carries the held session over to a new link (its resumption handshake succeeded). */
  resume(link: Duplex, decoder: FrameDecoder, peer: LinkPeer, onLinkGone: (end: SessionEnd) => void): void {
    this.peer = peer;
    if (originNegotiated(this.settings, peer.hello)) decoder.acceptOpenOrigin();
    this.session.setLinkGone(onLinkGone);
    this.handlers.onSessionUp(this.session, peer);
    this.session.resumeOn(link, decoder, peerSettings(this.settings, peer.hello));
    this.startHeartbeat(link);
  }

  private startHeartbeat(link: Duplex): void {
    const session = this.session;
    if (session.isEnded || session.isHeld) return;
    const { settings } = this;
    const peer = this.peer;
    // The shorter of the two heartbeats rules, so both sides agree on when the link is dead.
    const timeoutMs = peer.hello.heartbeatMs > 0 ? Math.min(settings.heartbeatMs, peer.hello.heartbeatMs) : settings.heartbeatMs;
    const heartbeat = new Heartbeat(session, this.clock, {
      timeoutMs,
      intervalMs: Math.max(50, Math.floor(timeoutMs / settings.pingDivisor)),
      onDead: (silentMs) => {
        this.logger.debug('heartbeat_timeout', `no answer from ${peer.address} for ${(silentMs / 1000).toFixed(1)}s`);
        session.linkFailed(
          new ProtocolError(
            GoAwayCode.HEARTBEAT_TIMEOUT,
            `heartbeat timeout: no answer from the partner for ${(silentMs / 1000).toFixed(1)}s`,
            ErrorCodes.HEARTBEAT_TIMEOUT,
          ),
        );
        link.destroy();
      },
    });
    this.heartbeat = heartbeat;
    heartbeat.start();
  }

  private stopHeartbeat(): void {
    this.heartbeat?.stop();
    this.heartbeat = null;
  }
}
