/**
 * The server side of the link: listens, admits one partner at a time.
 * A newcomer while a partner is attached: the current partner is pinged; if
 * it answers, the newcomer is refused (GOAWAY partner-busy); if not, the
 * newcomer replaces it. Admissions run one at a time.
 */
import net from 'node:net';
import type { Clock } from '../clock.js';
import { ErrorCodes, TcpipeError, errorMessage } from '../errors.js';
import type { Logger } from '../log/logger.js';
import { GoAwayCode } from '../protocol/constants.js';
import type { Session } from '../mux/session.js';
import { readHello, sendHello, sendRefusal } from './handshake.js';
import { helloFor, runSession, type LinkHandlers, type LinkSettings } from './link-session.js';
import { remoteAddress, tuneSocket } from './transport.js';

export interface LinkServerOptions {
  readonly host?: string;
  readonly port: number;
  readonly settings: LinkSettings;
  readonly partnerCheckTimeoutMs: number;
  readonly maxPendingHandshakes: number;
  readonly software: string;
}

export class LinkServer {
  private readonly server: net.Server;
  private current: { session: Session; address: string; socket: net.Socket } | null = null;
  private admission: Promise<void> = Promise.resolve();
  private pendingHandshakes = 0;
  private readonly sockets = new Set<net.Socket>();
  private stopped = false;

  constructor(
    private readonly options: LinkServerOptions,
    private readonly handlers: LinkHandlers,
    private readonly clock: Clock,
    private readonly logger: Logger,
  ) {
    this.server = net.createServer({ allowHalfOpen: false, pauseOnConnect: true }, (socket) => this.handleConnection(socket));
    this.server.on('error', (err) => this.logger.error('link_listen_error', `link listener error: ${errorMessage(err)}`));
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
    return this.current?.session ?? null;
  }

  /** Stops listening and closes the link with a goodbye. */
  stop(reason: string): void {
    this.stopped = true;
    this.server.close();
    const linkSocket = this.current?.socket;
    this.current?.session.goAway(GoAwayCode.SHUTDOWN, reason);
    // Links still in their handshake have no session to say goodbye to.
    for (const socket of this.sockets) if (socket !== linkSocket) socket.destroy();
  }

  private handleConnection(socket: net.Socket): void {
    const address = remoteAddress(socket);
    if (this.stopped) {
      socket.destroy();
      return;
    }
    this.sockets.add(socket);
    socket.once('close', () => this.sockets.delete(socket));
    socket.on('error', () => undefined); // reported through the handshake or the session
    if (this.pendingHandshakes >= this.options.maxPendingHandshakes) {
      this.logger.warn('link_refused', `refused link from ${address}: ${this.pendingHandshakes} handshakes already pending`);
      socket.destroy();
      return;
    }
    tuneSocket(socket, this.options.settings.keepAliveMs);
    this.pendingHandshakes++;
    const { settings } = this.options;
    readHello(socket, settings.maxFramePayload, settings.handshakeTimeoutMs, this.clock).then(
      (result) => {
        this.pendingHandshakes--;
        this.admission = this.admission.then(() => this.admit(socket, address, result));
      },
      (err: unknown) => {
        this.pendingHandshakes--;
        this.logger.warn('link_refused', `refused link from ${address}: ${errorMessage(err)}`);
        if (err instanceof TcpipeError && err.code === ErrorCodes.PROTOCOL && !socket.destroyed) {
          sendRefusal(socket, GoAwayCode.PROTOCOL_ERROR, err.message);
          this.clock.setTimer(1000, () => socket.destroy());
        } else {
          socket.destroy();
        }
      },
    );
  }

  private async admit(socket: net.Socket, address: string, result: Awaited<ReturnType<typeof readHello>>): Promise<void> {
    if (socket.destroyed || this.stopped) {
      socket.destroy();
      return;
    }
    const current = this.current;
    if (current !== null && !current.session.isEnded) {
      const rtt = await current.session.ping(this.options.partnerCheckTimeoutMs);
      if (rtt !== null && !current.session.isEnded) {
        const reason = `this server already has a live partner (${current.address})`;
        this.logger.warn('partner_refused', `refused partner ${address}: already paired with ${current.address}, which answered in ${rtt.toFixed(1)} ms`);
        sendRefusal(socket, GoAwayCode.PARTNER_BUSY, reason);
        this.clock.setTimer(1000, () => socket.destroy());
        return;
      }
      if (!current.session.isEnded) {
        this.logger.warn(
          'partner_replaced',
          `partner ${current.address} did not answer within ${this.options.partnerCheckTimeoutMs / 1000}s: replacing it with ${address}`,
        );
        current.session.goAway(GoAwayCode.NORMAL, 'replaced by a new partner');
      }
    }
    if (socket.destroyed || this.stopped) {
      socket.destroy();
      return;
    }
    sendHello(socket, helloFor('server', this.options.settings, this.options.software));
    const session = runSession(
      socket,
      result.decoder,
      { address, hello: result.peer },
      this.options.settings,
      this.handlers,
      this.clock,
      this.logger,
      () => {
        if (this.current !== null && this.current.socket === socket) this.current = null;
        socket.destroy();
      },
    );
    if (!session.isEnded) this.current = { session, address, socket };
  }
}
