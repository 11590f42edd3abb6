/**
 * The client side of the link, in two parts (as chisel and rathole do):
 * `connectOnce` dials, handshakes and runs one session until it ends;
 * `connectLoop` repeats it with jittered exponential backoff, reset only after
 * a session that lived. Everything stops on the AbortSignal.
 */
import type { Clock } from '../clock.js';
import { ErrorCodes, TcpipeError, errorMessage } from '../errors.js';
import type { Logger } from '../log/logger.js';
import { GoAwayCode } from '../protocol/constants.js';
import { backoffDelay } from './backoff.js';
import { readHello, sendHello } from './handshake.js';
import { encodeGoAway } from '../protocol/encode.js';
import { unmetRequirement } from '../protocol/hello.js';
import { LinkedSession, closeTransport, helloFor, resumeNegotiated, type LinkHandlers, type LinkSettings } from './link-session.js';
import { createKeyShare, deriveIdentity, linkExporter, type ResumeIdentity } from './resume-auth.js';
import { requestResume } from './resume.js';
import type { SessionEnd } from '../mux/session.js';
import { dialTcp, formatAddress, remoteAddress, tuneSocket } from './transport.js';
import { secureClient, type LinkSecurity } from './security.js';
import type { Duplex } from 'node:stream';
import type net from 'node:net';
import { describeProxy, dialViaProxy, type ProxySpec } from './proxy.js';
import type { Session } from '../mux/session.js';

/** Where the client dials: plain TCP (the seed's host:port) or a WebSocket URL. */
export type LinkTarget =
  | { readonly kind: 'tcp'; readonly host: string; readonly port: number }
  | { readonly kind: 'ws'; readonly url: string; readonly host: string; readonly port: number };

export interface LinkClientOptions {
  readonly target: LinkTarget;
  /** Proxy to dial through, or null for a direct connection. */
  readonly proxy: ProxySpec | null;
  /** CA bundle for wss:// (default: the system's). */
  readonly wsCa?: Buffer;
  readonly settings: LinkSettings;
  readonly backoffMinMs: number;
  readonly backoffMaxMs: number;
  readonly backoffResetAfterMs: number;
  readonly software: string;
  readonly security: LinkSecurity;
}

export interface OnceResult {
  /** Clock time the session came up, or null if it never did. */
  readonly upAt: number | null;
  readonly reason: string;
}

export class LinkClient {
  private session: Session | null = null;
  /** The last session, kept across links while it is held for resumption. */
  private linked: LinkedSession | null = null;

  constructor(
    private readonly options: LinkClientOptions,
    private readonly handlers: LinkHandlers,
    private readonly clock: Clock,
    private readonly logger: Logger,
  ) {}

  get currentSession(): Session | null {
    return this.session;
  }

  /** Dials, handshakes and runs one session; resolves when it ends. */
  async connectOnce(signal: AbortSignal): Promise<OnceResult> {
    const { settings, proxy } = this.options;
    const { host, port } = this.options.target;
    const target = this.options.target.kind === 'ws' ? this.options.target.url : formatAddress(host, port);
    const dial = (h: string, p: number): Promise<net.Socket> => dialTcp(h, p, settings.handshakeTimeoutMs, signal);
    let socket: net.Socket;
    try {
      socket = proxy === null ? await dial(host, port) : await dialViaProxy(proxy, host, port, dial);
    } catch (err) {
      return { upAt: null, reason: errorMessage(err) };
    }
    socket.on('error', () => undefined); // reported through the handshake or the session
    tuneSocket(socket, settings.keepAliveMs);
    const address = proxy === null ? (this.options.target.kind === 'ws' ? target : remoteAddress(socket)) : `${target} via ${describeProxy(proxy)}`;
    let link: Duplex = socket;
    const onAbort = (): void => {
      if (this.session !== null) this.session.goAway(GoAwayCode.SHUTDOWN, 'client shutting down');
      else socket.destroy();
    };
    signal.addEventListener('abort', onAbort, { once: true });
    // One deadline for the whole handshake, TLS included.
    let timedOut = false;
    const timer = this.clock.setTimer(settings.handshakeTimeoutMs, () => {
      timedOut = true;
      socket.destroy();
    });
    try {
      let stream: Duplex = socket;
      if (this.options.target.kind === 'ws') {
        // Loaded only for WebSocket links: `ws` costs memory a plain client does not need.
        const { wsConnect } = await import('./websocket.js');
        stream = await wsConnect({
          url: this.options.target.url,
          socket,
          timeoutMs: settings.handshakeTimeoutMs,
          ...(this.options.wsCa !== undefined ? { ca: this.options.wsCa } : {}),
        });
        stream.on('error', () => undefined);
      }
      link = await secureClient(stream, this.options.security, host);
      link.on('error', () => undefined);
      const held = this.heldSession();
      const share = settings.resumeGraceMs > 0 ? createKeyShare() : null;
      const resumeHello = share !== null ? { share, sessionId: held?.identity?.id ?? null } : null;
      sendHello(link, helloFor('client', settings, this.options.software, resumeHello));
      const result = await readHello(link, settings.maxFramePayload, settings.handshakeTimeoutMs, this.clock);
      const unmet = unmetRequirement(settings.requirements, result.peer);
      if (unmet !== null) {
        // Our HELLO is out: the refusal is a bare GOAWAY, which the server logs as the partner's goodbye.
        link.end(encodeGoAway(GoAwayCode.MISSING_CAPABILITY, unmet));
        throw new TcpipeError(ErrorCodes.HANDSHAKE, `refused the partner: ${unmet}`);
      }
      const peer = { address, hello: result.peer };
      let identity: ResumeIdentity | null = null;
      let resumed = false;
      if (share !== null && resumeNegotiated(settings, result.peer)) {
        const binding = { clientShare: share.publicKey, serverShare: result.peer.keyShare ?? Buffer.alloc(0), exporter: linkExporter(link) };
        const answer = await requestResume(link, result.decoder, held?.identity ?? null, binding, settings.handshakeTimeoutMs, this.clock);
        if (answer.kind === 'resumed') resumed = true;
        else {
          held?.session.abandon(new TcpipeError(ErrorCodes.RESUME_FAILED, `cannot resume: ${answer.reason}`), `cannot resume: ${answer.reason}`);
          identity = deriveIdentity(share, binding.serverShare, binding);
        }
      } else {
        held?.session.abandon(
          new TcpipeError(ErrorCodes.RESUME_FAILED, 'cannot resume: the partner does not resume sessions'),
          'cannot resume: the partner does not resume sessions',
        );
      }
      timer.cancel();
      if (signal.aborted) {
        socket.destroy();
        return { upAt: null, reason: 'stopped' };
      }
      const upAt = this.clock.now();
      const reason = await new Promise<string>((resolve) => {
        const onLinkGone = (end: SessionEnd): void => {
          closeTransport(end, link, socket);
          resolve(end.reason);
        };
        if (resumed && held !== null) {
          this.linked = held;
          held.resume(link, result.decoder, peer, onLinkGone);
        } else {
          this.linked = new LinkedSession(link, result.decoder, peer, settings, this.handlers, this.clock, this.logger, onLinkGone, identity);
        }
        this.session = this.linked.session;
      });
      return { upAt, reason };
    } catch (err) {
      timer.cancel();
      link.destroy();
      socket.destroy();
      if (timedOut) return { upAt: null, reason: `handshake with ${target} not finished within ${settings.handshakeTimeoutMs / 1000}s` };
      if (err instanceof TcpipeError && err.code === ErrorCodes.PARTNER_BUSY) return { upAt: null, reason: errorMessage(err) };
      if (err instanceof TcpipeError && err.code === ErrorCodes.AUTH) {
        return { upAt: null, reason: `authentication failed with ${target}: ${err.message}` };
      }
      return { upAt: null, reason: `handshake with ${target} failed: ${errorMessage(err)}` };
    } finally {
      this.session = null;
      signal.removeEventListener('abort', onAbort);
    }
  }

  /** The session this client holds for resumption, if any (its link is down, it is not over). */
  private heldSession(): LinkedSession | null {
    const linked = this.linked;
    if (linked === null || linked.session.isEnded || !linked.session.isHeld) return null;
    return linked;
  }

  /** Keeps a link up until `signal` aborts. */
  async connectLoop(signal: AbortSignal): Promise<void> {
    const { backoffMinMs, backoffMaxMs, backoffResetAfterMs } = this.options;
    let attempt = 0;
    while (!signal.aborted) {
      const result = await this.connectOnce(signal);
      if (signal.aborted) break;
      if (this.heldSession() !== null) attempt = 0; // a held session wants its link back soon
      if (result.upAt !== null && this.clock.now() - result.upAt >= backoffResetAfterMs) attempt = 0;
      const delay = backoffDelay(attempt++, backoffMinMs, backoffMaxMs);
      const level = result.upAt === null ? 'warn' : 'info';
      this.logger[level]('link_retry', `${result.upAt === null ? 'no link' : 'link lost'}: ${result.reason}; retrying in ${(delay / 1000).toFixed(1)}s`, {
        reason: result.reason,
      });
      await sleep(delay, signal, this.clock);
    }
    // Stopped while a session was held: it ends here, with its streams.
    this.heldSession()?.session.goAway(GoAwayCode.SHUTDOWN, 'client shutting down');
  }
}

function sleep(ms: number, signal: AbortSignal, clock: Clock): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const timer = clock.setTimer(ms, () => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    });
    const onAbort = (): void => {
      timer.cancel();
      resolve();
    };
    signal.addEventListener('abort', onAbort, { once: true });
  });
}
