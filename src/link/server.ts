/**
 * The server side of the link: listens, admits one partner at a time.
 * A newcomer while a partner is attached: the current partner is pinged; if
 * it answers, the newcomer is refused (GOAWAY partner-busy); if not, the
 * newcomer replaces it. Admissions run one at a time.
 */
import net from 'node:net';
import type { Clock, Timer } from '../clock.js';
import { ErrorCodes, ProtocolError, TcpipeError, errorMessage } from '../errors.js';
import type { Logger } from '../log/logger.js';
import { GoAwayCode, PREFACE } from '../protocol/constants.js';
import type { Session } from '../mux/session.js';
import type { Duplex } from 'node:stream';
import { readFirstByte, readHello, sendHello, sendRefusal, type HandshakeResult } from './handshake.js';
import { unmetRequirement } from '../protocol/hello.js';
import { PenaltyBox } from './penalty.js';
import type { WsAcceptor } from './websocket.js';

/** Errors already answered with a GOAWAY on the link. */
const answered = new WeakSet<Error>();

/** Tells a partner that speaks our framing why it is refused: the preface, then a GOAWAY. */
function refuse(link: Duplex, err: ProtocolError): ProtocolError {
  if (!link.destroyed) sendRefusal(link, err.goAwayCode, err.message);
  answered.add(err);
  return err;
}

/** 'G' of an HTTP GET: a WebSocket upgrade (or some other HTTP request). */
const HTTP_GET_BYTE = 0x47;
import { TLS_HANDSHAKE_BYTE, secureServer, type LinkSecurity } from './security.js';
import { LinkedSession, closeTransport, helloFor, resumeNegotiated, type LinkHandlers, type LinkSettings } from './link-session.js';
import { createKeyShare, deriveIdentity, linkExporter, type KeyShare, type LinkBinding, type ResumeIdentity } from './resume-auth.js';
import { encodeGoAway } from '../protocol/encode.js';
import { readResumeRequest, requestProves, sendFresh, sendResumed, type ResumeRequest } from './resume.js';
import type { SessionEnd } from '../mux/session.js';
import { remoteAddress, tuneSocket } from './transport.js';

/** Resumption's part of a server handshake: our key share, the link binding and the client's request. */
interface ResumeOffer {
  readonly share: KeyShare;
  readonly binding: LinkBinding;
  readonly request: ResumeRequest;
}

interface Established {
  readonly link: Duplex;
  readonly hello: HandshakeResult;
  readonly resume: ResumeOffer | null;
}

export interface LinkServerOptions {
  readonly host?: string;
  readonly port: number;
  readonly settings: LinkSettings;
  readonly partnerCheckTimeoutMs: number;
  readonly maxPendingHandshakes: number;
  readonly software: string;
  readonly security: LinkSecurity;
  /** Link transports accepted on the port; both by default, told apart by the first byte. */
  readonly transports: ReadonlySet<'tcp' | 'ws'>;
  readonly wsPath: string;
}

export class LinkServer {
  private readonly server: net.Server;
  /** The partner's session: live, or held (its link lost) while it may resume. */
  private current: { linked: LinkedSession; address: string; socket: net.Socket } | null = null;
  private admission: Promise<void> = Promise.resolve();
  private pendingHandshakes = 0;
  private readonly sockets = new Set<net.Socket>();
  private stopped = false;
  private readonly penalty: PenaltyBox;
  /** Loaded on the first WebSocket upgrade: `ws` and `http` cost memory a plain server does not need. */
  private wsAcceptor: Promise<WsAcceptor> | null = null;

  constructor(
    private readonly options: LinkServerOptions,
    private readonly handlers: LinkHandlers,
    private readonly clock: Clock,
    private readonly logger: Logger,
  ) {
    this.penalty = new PenaltyBox(clock);
    this.server = net.createServer({ allowHalfOpen: false, pauseOnConnect: true }, (socket) => this.handleConnection(socket));
    // Errors while binding are reported by listen(); this one is for a listener that was up.
    this.server.on('error', (err) => {
      if (this.server.listening) this.logger.error('link_listen_error', `link listener error: ${errorMessage(err)}`);
    });
  }

  listen(): Promise<net.AddressInfo> {
    return new Promise((resolve, reject) => {
      const onError = (err: NodeJS.ErrnoException): void => {
        reject(new TcpipeError(ErrorCodes.LISTEN, `cannot listen for the link on port ${this.options.port}: ${errorMessage(err)}`));
      };
      this.server.once('error', onError);
      const listenOptions: net.ListenOptions = { port: this.options.port };
      if (this.options.host !== undefined) listenOptions.host = this.options.host;
      this.server.listen(listenOptions, () => {
        this.server.off('error', onError);
        resolve(this.server.address() as net.AddressInfo);
      });
    });
  }

  get session(): Session | null {
    return this.current?.linked.session ?? null;
  }

  /** Stops listening and closes the link with a goodbye. */
  stop(reason: string): void {
    this.stopped = true;
    this.server.close();
    const linkSocket = this.current?.socket;
    this.current?.linked.session.goAway(GoAwayCode.SHUTDOWN, reason);
    // Links still in their handshake have no session to say goodbye to.
    for (const socket of this.sockets) if (socket !== linkSocket) socket.destroy();
  }

  private handleConnection(socket: net.Socket): void {
    const address = remoteAddress(socket);
    const source = socket.remoteAddress ?? '?';
    if (this.stopped) {
      socket.destroy();
      return;
    }
    if (this.penalty.isBlocked(source)) {
      // Recently failed: closed unread, and not logged again (the failure was).
      socket.destroy();
      return;
    }
    if (this.pendingHandshakes >= this.options.maxPendingHandshakes) {
      this.logger.warn('link_refused', `refused link from ${address}: ${this.pendingHandshakes} handshakes already pending`, {
        peer: address,
      });
      socket.destroy();
      return;
    }
    this.sockets.add(socket);
    socket.once('close', () => this.sockets.delete(socket));
    socket.on('error', () => undefined); // reported through the handshake or the session
    tuneSocket(socket, this.options.settings.keepAliveMs);
    this.pendingHandshakes++;
    const timeoutMs = this.options.settings.handshakeTimeoutMs;
    let timedOut = false;
    let timer: Timer | null = null;
    // The deadline settles the handshake whatever state its layers are in, so the slot is always freed.
    const deadline = new Promise<never>((_resolve, reject) => {
      timer = this.clock.setTimer(timeoutMs, () => {
        timedOut = true;
        socket.destroy();
        reject(new TcpipeError(ErrorCodes.HANDSHAKE_TIMEOUT, `handshake not finished within ${timeoutMs / 1000}s`));
      });
    });
    const cancelTimer = (): void => (timer as Timer | null)?.cancel();
    Promise.race([this.establish(socket), deadline]).then(
      ({ link, hello, resume }) => {
        cancelTimer();
        this.pendingHandshakes--;
        this.penalty.recordSuccess(source);
        this.admission = this.admission.then(() => this.admit(socket, link, address, hello, resume));
      },
      (err: unknown) => {
        cancelTimer();
        this.pendingHandshakes--;
        const reason = timedOut ? `handshake not finished within ${timeoutMs / 1000}s` : errorMessage(err);
        const auth = err instanceof TcpipeError && err.code === ErrorCodes.AUTH && !timedOut;
        const delay = this.penalty.recordFailure(source);
        this.logger.warn(
          auth ? 'auth_failed' : 'link_refused',
          `${auth ? 'authentication failed from' : 'refused link from'} ${address}: ${reason}${delay > 0 ? `; its next links are refused for ${delay / 1000}s` : ''}`,
          { peer: address, reason },
        );
        // A refusal (GOAWAY) was written: give it a moment to leave before closing.
        if (err instanceof Error && answered.has(err) && !timedOut) this.clock.setTimer(1000, () => socket.destroy());
        else socket.destroy();
      },
    );
  }

  /**
   * Tells the link's kind by its first byte (TLS handshake or tcpipe preface),
   * enforces that it matches this server's security, and reads the HELLO.
   */
  private async establish(socket: net.Socket): Promise<Established> {
    const { transports } = this.options;
    let stream: Duplex = socket;
    let first = await readFirstByte(socket);
    if (first === HTTP_GET_BYTE) {
      if (!transports.has('ws')) throw new TcpipeError(ErrorCodes.HANDSHAKE, 'an HTTP request, and this server takes no WebSocket links (--transport=tcp)');
      this.wsAcceptor ??= import('./websocket.js').then((m) => new m.WsAcceptor(this.options.wsPath));
      stream = await (await this.wsAcceptor).accept(socket);
      stream.on('error', () => undefined);
      first = await readFirstByte(stream);
    } else if (!transports.has('tcp')) {
      throw new TcpipeError(ErrorCodes.HANDSHAKE, 'a plain TCP link, and this server takes only WebSocket links (--transport=ws)');
    }
    const { link, hello } = await this.negotiate(stream, first);
    const { settings } = this.options;
    if (!resumeNegotiated(settings, hello.peer)) return { link, hello, resume: null };
    // Resumption: HELLO and the client's RESUME cross before admission, under the handshake
    // deadline, so a client that stalls here never holds up the admission of others.
    const share = createKeyShare();
    sendHello(link, helloFor('server', settings, this.options.software, { share, sessionId: null }));
    const binding = { clientShare: hello.peer.keyShare ?? Buffer.alloc(0), serverShare: share.publicKey, exporter: linkExporter(link) };
    try {
      const request = await readResumeRequest(link, hello.decoder, settings.handshakeTimeoutMs, this.clock);
      return { link, hello, resume: { share, binding, request } };
    } catch (err) {
      // Our HELLO is out: a refusal is a bare GOAWAY now.
      if (err instanceof ProtocolError && !link.destroyed) {
        link.end(encodeGoAway(err.goAwayCode, err.message));
        answered.add(err);
      }
      throw err;
    }
  }

  /** The security layer by the first byte, then the HELLO. */
  private async negotiate(stream: Duplex, first: number): Promise<{ link: Duplex; hello: HandshakeResult }> {
    const { security, settings } = this.options;
    let link: Duplex;
    if (first === TLS_HANDSHAKE_BYTE) {
      if (security.kind === 'none') {
        throw new TcpipeError(ErrorCodes.AUTH, 'the client speaks TLS (it has a secret or a certificate) and this server has neither');
      }
      link = await secureServer(stream, security);
      link.on('error', () => undefined);
    } else if (first === PREFACE[0] && security.kind !== 'none') {
      throw refuse(
        stream,
        new ProtocolError(
          GoAwayCode.AUTH_REQUIRED,
          'plaintext link refused: this server requires a secret (TCPIPE_SECRET or --secret-file)',
          ErrorCodes.AUTH,
        ),
      );
    } else {
      link = stream;
    }
    try {
      const hello = await readHello(link, settings.maxFramePayload, settings.handshakeTimeoutMs, this.clock);
      const unmet = unmetRequirement(settings.requirements, hello.peer);
      if (unmet !== null) throw new ProtocolError(GoAwayCode.MISSING_CAPABILITY, unmet, ErrorCodes.HANDSHAKE);
      return { link, hello };
    } catch (err) {
      throw err instanceof ProtocolError ? refuse(link, err) : err;
    }
  }

  private async admit(socket: net.Socket, link: Duplex, address: string, result: HandshakeResult, resume: ResumeOffer | null): Promise<void> {
    if (socket.destroyed || this.stopped) {
      socket.destroy();
      return;
    }
    const { settings } = this.options;
    const hello = result.peer;
    // HELLO already sent with resumption (see establish): a refusal is then a bare GOAWAY.
    const refuseWith = (code: number, reason: string): void => {
      if (resume === null) sendRefusal(link, code, reason);
      else if (!link.destroyed) link.end(encodeGoAway(code, reason));
    };
    const current = this.current !== null && !this.current.linked.session.isEnded ? this.current : null;
    // A client naming the current session is checked by its proof below, not by pinging the old link.
    const claimsCurrent =
      resume !== null && resume.request.kind === 'resume' && current?.linked.identity?.id.equals(resume.request.id) === true;
    if (current !== null && current.linked.session.linkState !== 'held' && !claimsCurrent) {
      const rtt = await current.linked.session.ping(this.options.partnerCheckTimeoutMs);
      if (rtt !== null && !current.linked.session.isEnded) {
        const reason = `this server already has a live partner (${current.address})`;
        this.logger.warn('partner_refused', `refused partner ${address}: already paired with ${current.address}, which answered in ${rtt.toFixed(1)} ms`);
        refuseWith(GoAwayCode.PARTNER_BUSY, reason);
        this.clock.setTimer(1000, () => socket.destroy());
        return;
      }
      if (!current.linked.session.isEnded && resume === null) {
        this.logger.warn(
          'partner_replaced',
          `partner ${current.address} did not answer within ${this.options.partnerCheckTimeoutMs / 1000}s: replacing it with ${address}`,
        );
        current.linked.session.goAway(GoAwayCode.NORMAL, 'replaced by a new partner');
      }
    }
    if (socket.destroyed || this.stopped) {
      socket.destroy();
      return;
    }
    if (resume === null) sendHello(link, helloFor('server', settings, this.options.software));
    const peer = { address, hello };
    const onLinkGone = (end: SessionEnd): void => {
      if (this.current !== null && this.current.socket === socket && this.current.linked.session.isEnded) this.current = null;
      closeTransport(end, link, socket);
    };
    let identity: ResumeIdentity | null = null;
    if (resume !== null) {
      const { share, binding, request } = resume;
      const live = this.current !== null && !this.current.linked.session.isEnded ? this.current : null;
      const liveIdentity = live?.linked.identity ?? null;
      if (request.kind === 'resume' && live !== null && liveIdentity !== null && request.id.equals(liveIdentity.id)) {
        if (!requestProves(request, liveIdentity, binding)) {
          const delay = this.penalty.recordFailure(socket.remoteAddress ?? '?');
          this.logger.warn('resume_refused', `refused resume from ${address}: proof does not match${delay > 0 ? `; its next links are refused for ${delay / 1000}s` : ''}`, {
            peer: address,
          });
          refuseWith(GoAwayCode.RESUME_REFUSED, 'resume refused: proof does not match');
          this.clock.setTimer(1000, () => socket.destroy());
          return;
        }
        sendResumed(link, liveIdentity, binding);
        const session = live.linked.session;
        // The partner gave up on the old link; it may not know yet here.
        if (session.linkState !== 'held') session.linkFailed(new TcpipeError(ErrorCodes.LINK_CLOSED, 'the partner resumed on a new link'));
        if (session.isEnded) {
          socket.destroy();
          return;
        }
        this.current = { linked: live.linked, address, socket };
        live.linked.resume(link, result.decoder, peer, onLinkGone);
        return;
      }
      sendFresh(link, request.kind === 'resume' ? 'the partner has no state for this session (it restarted, or its grace ran out)' : 'new session');
      if (live !== null && live.linked.identity === null) {
        this.logger.warn('partner_replaced', `partner ${live.address} did not answer: replacing it with ${address}`);
        live.linked.session.goAway(GoAwayCode.NORMAL, 'replaced by a new partner');
      } else if (live !== null) {
        const reason = request.kind === 'new' ? 'the partner started a new session' : 'the partner asked to resume another session';
        live.linked.session.abandon(new TcpipeError(ErrorCodes.RESUME_FAILED, `cannot resume: ${reason}`), `cannot resume: ${reason}`);
      }
      identity = deriveIdentity(share, binding.clientShare, binding);
    } else if (this.current !== null && !this.current.linked.session.isEnded) {
      // A held session and a partner that does not resume: the held streams cannot go on.
      this.current.linked.session.abandon(
        new TcpipeError(ErrorCodes.RESUME_FAILED, 'cannot resume: the new partner does not resume sessions'),
        'cannot resume: the new partner does not resume sessions',
      );
    }
    const linked = new LinkedSession(link, result.decoder, peer, settings, this.handlers, this.clock, this.logger, onLinkGone, identity);
    if (!linked.session.isEnded) this.current = { linked, address, socket };
  }
}
