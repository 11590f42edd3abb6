/**
 * Turns a handshaken link into a running session with its heartbeat; both the
 * server and the client end here.
 */
import type { Duplex } from 'node:stream';
import type { Clock } from '../clock.js';
import { ErrorCodes, ProtocolError } from '../errors.js';
import type { Logger } from '../log/logger.js';
import { GoAwayCode } from '../protocol/constants.js';
import type { FrameDecoder } from '../protocol/decode.js';
import type { HelloInfo } from '../protocol/hello.js';
import { Session, type MuxSettings, type SessionEnd } from '../mux/session.js';
import type { Stream } from '../mux/stream.js';
import { Heartbeat } from './heartbeat.js';

export interface LinkSettings {
  readonly mux: MuxSettings;
  readonly maxFramePayload: number;
  readonly heartbeatMs: number;
  readonly pingDivisor: number;
  readonly handshakeTimeoutMs: number;
  readonly keepAliveMs: number;
}

/** What the endpoints give the link: where streams go, and who hears of sessions. */
export interface LinkHandlers {
  onStreamRequest(stream: Stream): void;
  onStreamFinished(stream: Stream): void;
  onSessionUp(session: Session, peer: LinkPeer): void;
  onSessionDown(session: Session, end: SessionEnd, peer: LinkPeer): void;
}

export interface LinkPeer {
  readonly address: string;
  readonly hello: HelloInfo;
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

export function helloFor(role: HelloInfo['role'], settings: LinkSettings, software: string): HelloInfo {
  return {
    role,
    initialWindow: settings.mux.initialWindow,
    maxFramePayload: settings.maxFramePayload,
    maxStreams: settings.mux.maxStreams,
    heartbeatMs: settings.heartbeatMs,
    software,
  };
}

export function runSession(
  link: Duplex,
  decoder: FrameDecoder,
  peer: LinkPeer,
  settings: LinkSettings,
  handlers: LinkHandlers,
  clock: Clock,
  logger: Logger,
  onEnd: (end: SessionEnd) => void,
): Session {
  let heartbeat: Heartbeat | null = null;
  const session: Session = new Session(
    link,
    decoder,
    settings.mux,
    {
      initialWindow: peer.hello.initialWindow,
      maxFramePayload: Math.min(peer.hello.maxFramePayload, settings.maxFramePayload),
      maxStreams: peer.hello.maxStreams,
    },
    {
      onStreamRequest: (stream) => handlers.onStreamRequest(stream),
      onStreamFinished: (stream) => handlers.onStreamFinished(stream),
      onEnd: (end) => {
        heartbeat?.stop();
        handlers.onSessionDown(session, end, peer);
        onEnd(end);
      },
    },
    clock,
  );
  // The shorter of the two heartbeats rules, so both sides agree on when the link is dead.
  const timeoutMs = peer.hello.heartbeatMs > 0 ? Math.min(settings.heartbeatMs, peer.hello.heartbeatMs) : settings.heartbeatMs;
  heartbeat = new Heartbeat(session, clock, {
    timeoutMs,
    intervalMs: Math.max(50, Math.floor(timeoutMs / settings.pingDivisor)),
    onDead: (silentMs) => {
      logger.debug('heartbeat_timeout', `no answer from ${peer.address} for ${(silentMs / 1000).toFixed(1)}s`);
      session.fail(
        new ProtocolError(
          GoAwayCode.HEARTBEAT_TIMEOUT,
          `heartbeat timeout: no answer from the partner for ${(silentMs / 1000).toFixed(1)}s`,
          ErrorCodes.HEARTBEAT_TIMEOUT,
        ),
      );
      link.destroy();
    },
  });
  handlers.onSessionUp(session, peer);
  session.start();
  if (!session.isEnded) heartbeat.start();
  return session;
}
