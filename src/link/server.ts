/**
 * The server side of the link: listens, admits one partner at a time.
 * A newcomer while a partner is attached: the current partner is pinged; if
 * it answers, the newcomer is refused (GOAWAY partner-busy); if not, the
 * newcomer replaces it (admission.ts decides; this carries it out).
 * Admissions run one at a time.
 * With many sites (`identify` given), each client is told apart by the secret
 * or certificate it proved, and has its own current partner: the rule above
 * applies per client, one client never touches another's.
 */
import net from 'node:net';
import type { Duplex } from 'node:stream';
import type { Clock, Timer } from '../clock.js';
import { ErrorCodes, ProtocolError, TcpipeError, errorMessage } from '../errors.js';
import type { Logger } from '../log/logger.js';
import { GoAwayCode, PREFACE } from '../protocol/constants.js';
import { encodeGoAway } from '../protocol/encode.js';
import { unmetRequirement } from '../protocol/hello.js';
import type { Session, SessionEnd } from '../mux/session.js';
import { admissionRequest, decideAdmission, needsPartnerCheck, type CurrentPartner, type OldPartnerFate } from './admission.js';
import { readFirstByte, readHello, sendHello, sendRefusal, type HandshakeResult } from './handshake.js';
import { LinkedSession, closeTransport, helloFor, resumeNegotiated, type LinkHandlers, type LinkSettings } from './link-session.js';
import { PenaltyBox } from './penalty.js';
import { createKeyShare, deriveIdentity, linkExporter, type KeyShare, type LinkBinding } from './resume-auth.js';
import { readResumeRequest, requestProves, sendFresh, sendResumed, type ResumeRequest } from './resume.js';
import { TLS_HANDSHAKE_BYTE, secureServerIdentified, type LinkSecurity, type PeerIdentity } from './security.js';
import { remoteAddress, tuneSocket } from './transport.js';
import type { WsAcceptor } from './websocket.js';

/** 'G' of an HTTP GET: a WebSocket upgrade (or some other HTTP request). */
const HTTP_GET_BYTE = 0x47;

/** The partner's session (live, or held while it may resume), with its current link's address and socket. */
interface CurrentLink {
  readonly linked: LinkedSession;
  readonly address: string;
  readonly socket: net.Socket;
}

/** Resumption's part of a server handshake: our key share, the link binding and the client's request. */
interface ResumeOffer {
  readonly share: KeyShare;
  readonly binding: LinkBinding;
  readonly request: ResumeRequest;
}

interface Established {
  /** The client (site) it proved to be; '' for the one partner of a server without sites. */
  readonly client: string;
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
  /** Many sites: the client a proved identity belongs to; throws an AUTH error for none. Absent: one partner. */
  readonly identify?: (identity: PeerIdentity) => string;
}

export class LinkServer {
  private readonly server: net.Server;
  /** Each client's partner session ('' without sites): live, or held (its link lost) while it may resume. */
  private readonly current = new Map<string, CurrentLink>();
  /** Many sites: the clients of the configuration in force (null: not tracked). */
  private knownClients: ReadonlySet<string> | null = null;
  /** The security in force: a reload may change the sites' secrets. */
  private security: LinkSecurity;
  /** Admissions run one at a time per client: one client's partner check never delays another's. */
  private readonly admissions = new Map<string, Promise<void>>();
  private pendingHandshakes = 0;
  private readonly sockets = new Set<net.Socket>();
  private stopped = false;
  private readonly penalty: PenaltyBox;
  /** Handshake errors already answered with a GOAWAY on the link (they get a moment to leave before the close). */
  private readonly answered = new WeakSet<Error>();
  /** Loaded on the first WebSocket upgrade: `ws` and `http` cost memory a plain server does not need. */
  private wsAcceptor: Promise<WsAcceptor> | null = null;

  constructor(
    private readonly options: LinkServerOptions,
    private readonly handlers: LinkHandlers,
    private readonly clock: Clock,
    private readonly logger: Logger,
  ) {
    this.penalty = new PenaltyBox(clock);
    this.security = options.security;
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
    return this.current.get('')?.linked.session ?? null;
  }

  /** New links are checked against this from now on (a reload changed the sites' secrets). */
  setSecurity(security: LinkSecurity, clients: ReadonlySet<string> | null = null): void {
    this.security = security;
    this.knownClients = clients;
  }

  /** A client removed (or its secret changed): its link and session end with this reason. */
  dropClient(client: string, reason: string): void {
    const link = this.current.get(client);
    if (link === undefined) return;
    this.current.delete(client);
    if (!link.linked.session.isEnded) {
      this.logger.warn('client_removed', `closing the link of client '${client}' (${link.address}): ${reason}`, { client, peer: link.address, reason });
      link.linked.session.goAway(GoAwayCode.NORMAL, reason);
    }
  }

  /** Stops listening and closes the link with a goodbye. */
  stop(reason: string): void {
    this.stopped = true;
    this.server.close();
    const linkSockets = new Set([...this.current.values()].map((c) => c.socket));
    for (const c of this.current.values()) c.linked.session.goAway(GoAwayCode.SHUTDOWN, reason);
    // Links still in their handshake have no session to say goodbye to.
    for (const socket of this.sockets) if (!linkSockets.has(socket)) socket.destroy();
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
      ({ client, link, hello, resume }) => {
        cancelTimer();
        this.pendingHandshakes--;
        this.penalty.recordSuccess(source);
        const queued = (this.admissions.get(client) ?? Promise.resolve()).then(() => this.admit(client, socket, link, address, hello, resume));
        this.admissions.set(client, queued);
        const settled = (): void => {
          if (this.admissions.get(client) === queued) this.admissions.delete(client);
        };
        queued.then(settled, settled);
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
        if (err instanceof Error && this.answered.has(err) && !timedOut) this.clock.setTimer(1000, () => socket.destroy());
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
    const { client, link, hello } = await this.negotiate(stream, first);
    const { settings } = this.options;
    if (!resumeNegotiated(settings, hello.peer)) return { client, link, hello, resume: null };
    // Resumption: HELLO and the client's RESUME cross before admission, under the handshake
    // deadline, so a client that stalls here never holds up the admission of others.
    const share = createKeyShare();
    sendHello(link, helloFor('server', settings, this.options.software, { share, sessionId: null }));
    const binding = { clientShare: hello.peer.keyShare ?? Buffer.alloc(0), serverShare: share.publicKey, exporter: linkExporter(link) };
    try {
      const request = await readResumeRequest(link, hello.decoder, settings.handshakeTimeoutMs, this.clock);
      return { client, link, hello, resume: { share, binding, request } };
    } catch (err) {
      // Our HELLO is out: a refusal is a bare GOAWAY now.
      if (err instanceof ProtocolError && !link.destroyed) {
        link.end(encodeGoAway(err.goAwayCode, err.message));
        this.answered.add(err);
      }
      throw err;
    }
  }

  /** The security layer by the first byte, then the HELLO. */
  private async negotiate(stream: Duplex, first: number): Promise<{ client: string; link: Duplex; hello: HandshakeResult }> {
    const { settings } = this.options;
    const security = this.security;
    let link: Duplex;
    let client = '';
    if (first === TLS_HANDSHAKE_BYTE) {
      if (security.kind === 'none') {
        throw new TcpipeError(ErrorCodes.AUTH, 'the client speaks TLS (it has a secret or a certificate) and this server has neither');
      }
      const secured = await secureServerIdentified(stream, security);
      link = secured.link;
      link.on('error', () => undefined);
      // An identity of no client is refused as a wrong secret (the caller closes the socket).
      if (this.options.identify !== undefined) client = this.options.identify(secured.identity);
    } else if (first === PREFACE[0] && security.kind !== 'none') {
      throw this.refuse(
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
      return { client, link, hello };
    } catch (err) {
      throw err instanceof ProtocolError ? this.refuse(link, err) : err;
    }
  }

  /** Tells a partner that speaks our framing why it is refused: the preface, then a GOAWAY. */
  private refuse(link: Duplex, err: ProtocolError): ProtocolError {
    if (!link.destroyed) sendRefusal(link, err.goAwayCode, err.message);
    this.answered.add(err);
    return err;
  }

  private async admit(
    client: string,
    socket: net.Socket,
    link: Duplex,
    address: string,
    result: HandshakeResult,
    resume: ResumeOffer | null,
  ): Promise<void> {
    // A client removed by a reload while its handshake ran is not admitted.
    const removed = client !== '' && this.knownClients !== null && !this.knownClients.has(client);
    if (socket.destroyed || this.stopped || removed) {
      socket.destroy();
      return;
    }
    const { settings } = this.options;
    const currentLink = this.current.get(client);
    const live = currentLink !== undefined && !currentLink.linked.session.isEnded ? currentLink : null;
    const identity = live?.linked.identity ?? null;
    const claimsCurrent = resume?.request.kind === 'resume' && identity !== null && resume.request.id.equals(identity.id);
    const request = admissionRequest(resume?.request.kind ?? null, claimsCurrent);
    let current: CurrentPartner = live === null ? 'none' : live.linked.session.isHeld ? 'held' : 'live';
    if (live !== null && needsPartnerCheck(current, request)) {
      const rtt = await live.linked.session.ping(this.options.partnerCheckTimeoutMs);
      current = live.linked.session.isEnded ? 'none' : rtt !== null ? 'answering' : 'silent';
      if (rtt !== null) {
        this.logger.warn('partner_refused', `refused partner ${address}: already paired with ${live.address}, which answered in ${rtt.toFixed(1)} ms`);
      }
    }
    const proofValid = resume !== null && identity !== null && request === 'resume-current' && requestProves(resume.request, identity, resume.binding);
    const decision = decideAdmission({ current, currentResumable: identity !== null, request, proofValid });
    // With resumption our HELLO is already out (see establish): a refusal is then a bare GOAWAY.
    const refuseWith = (code: number, reason: string): void => {
      if (resume === null) sendRefusal(link, code, reason);
      else if (!link.destroyed) link.end(encodeGoAway(code, reason));
      this.clock.setTimer(1000, () => socket.destroy());
    };
    if (socket.destroyed || this.stopped) {
      socket.destroy();
      return;
    }
    const peer = { address, hello: result.peer, ...(client !== '' ? { client } : {}) };
    const onLinkGone = (end: SessionEnd): void => {
      const mine = this.current.get(client);
      if (mine !== undefined && mine.socket === socket && mine.linked.session.isEnded) this.current.delete(client);
      closeTransport(end, link, socket);
    };
    switch (decision.kind) {
      case 'refuse-busy':
        refuseWith(
          GoAwayCode.PARTNER_BUSY,
          client === '' ? `this server already has a live partner (${live?.address ?? '?'})` : `client '${client}' already has a live link (${live?.address ?? '?'})`,
        );
        return;
      case 'refuse-proof': {
        const delay = this.penalty.recordFailure(socket.remoteAddress ?? '?');
        this.logger.warn('resume_refused', `refused resume from ${address}: proof does not match${delay > 0 ? `; its next links are refused for ${delay / 1000}s` : ''}`, {
          peer: address,
        });
        refuseWith(GoAwayCode.RESUME_REFUSED, 'resume refused: proof does not match');
        return;
      }
      case 'resume': {
        if (live === null || identity === null || resume === null) return; // decided only with all three
        sendResumed(link, identity, resume.binding);
        const session = live.linked.session;
        // The partner gave up on the old link; it may not know yet here.
        if (!session.isHeld) session.linkFailed(new TcpipeError(ErrorCodes.LINK_CLOSED, 'the partner resumed on a new link'));
        if (session.isEnded) {
          socket.destroy();
          return;
        }
        this.current.set(client, { linked: live.linked, address, socket });
        live.linked.resume(link, result.decoder, peer, onLinkGone);
        return;
      }
      case 'fresh': {
        if (resume !== null) {
          sendFresh(link, request === 'resume-other' ? 'the partner has no state for this session (it restarted, or its grace ran out)' : 'new session');
        }
        this.retire(live, decision.old, address);
        if (resume === null) sendHello(link, helloFor('server', settings, this.options.software));
        const newIdentity = resume !== null ? deriveIdentity(resume.share, resume.binding.clientShare, resume.binding) : null;
        const linked = new LinkedSession(link, result.decoder, peer, settings, this.handlers, this.clock, this.logger, onLinkGone, newIdentity);
        if (!linked.session.isEnded) this.current.set(client, { linked, address, socket });
        return;
      }
    }
  }

  /** The current partner gives way to a newcomer that starts a fresh session. */
  private retire(live: CurrentLink | null, fate: OldPartnerFate, newcomer: string): void {
    if (live === null || live.linked.session.isEnded) return;
    if (fate.kind === 'replace') {
      const silentFor = `${this.options.partnerCheckTimeoutMs / 1000}s`;
      this.logger.warn('partner_replaced', `partner ${live.address} did not answer within ${silentFor}: replacing it with ${newcomer}`);
      live.linked.session.goAway(GoAwayCode.NORMAL, 'replaced by a new partner');
    } else if (fate.kind === 'abandon') {
      live.linked.session.abandon(new TcpipeError(ErrorCodes.RESUME_FAILED, fate.reason), fate.reason);
    }
  }
}
