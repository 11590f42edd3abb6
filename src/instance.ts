/**
 * One tcpipe instance: the link (server or client side), the entry ports and
 * the exit dialer, wired together. The public API (index.ts) starts one.
 */
import { EventEmitter } from 'node:events';
import type net from 'node:net';
import { systemClock, type Clock } from './clock.js';
import { DEFAULTS } from './config/defaults.js';
import type { Logger } from './log/logger.js';
import { silentLogger } from './log/logger.js';
import { EntryPorts } from './endpoints/entry.js';
import { ExitDialer } from './endpoints/exit.js';
import type { StreamPipe } from './endpoints/pipe.js';
import { LinkClient } from './link/client.js';
import { describeProxy } from './link/proxy.js';
import { clientProxy, clientTarget, linkSettingsFrom, requirementsFrom, routeTable, securityFrom, udpRequirement, udpRouteTable } from './config/resolve.js';
import { UdpRelay, type UdpStats } from './endpoints/udp-relay.js';
import { UdpEntryPorts } from './endpoints/udp-entry.js';
import { UdpExitDialer } from './endpoints/udp-exit.js';
import { originNegotiated, type LinkHandlers, type LinkPeer, type LinkSettings } from './link/link-session.js';
import { LinkServer } from './link/server.js';
import type { ResumeInfo, Session, SessionEnd } from './mux/session.js';
import { LinkReport } from './link-report.js';
import type { Stream } from './mux/stream.js';
import { VERSION } from './version.js';
import type {
  ClientOptions,
  Limits,
  RefusalKind,
  ReloadableOptions,
  ServerOptions,
  StreamCloseInfo,
  TcpipeEvents,
  TcpipeStatus,
} from './options.js';
import { ResetCode } from './protocol/constants.js';
import type { LinkSecurity } from './link/security.js';
import { formatAddress } from './link/transport.js';

const KIND_BY_RESET: Readonly<Record<number, RefusalKind>> = Object.freeze({
  [ResetCode.TARGET_REFUSED]: 'target_refused',
  [ResetCode.TARGET_UNREACHABLE]: 'target_unreachable',
  [ResetCode.NOT_ALLOWED]: 'not_allowed',
  [ResetCode.LIMIT]: 'limit',
});



export type {
  ClientOptions,
  CommonOptions,
  Limits,
  RefusalKind,
  RefusedInfo,
  ReloadableOptions,
  RouteSpec,
  ServerOptions,
  StreamCloseInfo,
  StreamInfo,
  TcpipeEvents,
  TcpipeStatus,
} from './options.js';

export class Tcpipe extends EventEmitter<TcpipeEvents> {
  private session: Session | null = null;
  private readonly entry: EntryPorts;
  private readonly exit: ExitDialer;
  private readonly udp: UdpRelay;
  private readonly udpEntry: UdpEntryPorts;
  private readonly udpExit: UdpExitDialer;
  private readonly pipes = new Map<StreamPipe, string>();
  private linkServer: LinkServer | null = null;
  private linkClient: LinkClient | null = null;
  private readonly abort = new AbortController();
  private loop: Promise<void> = Promise.resolve();
  private serverAddress: net.AddressInfo | null = null;
  private stopping: Promise<void> | null = null;
  private linkPeer = '';
  private linkUpSince = 0;
  private linksUp = 0;
  private streamsTotal = 0;
  private pastBytesIn = 0;
  private pastBytesOut = 0;
  private readonly limits: Limits;
  private readonly linkSettings: LinkSettings;
  /** Sessions whose HELLOs both listed capability origin. */
  private readonly originSessions = new WeakSet<Session>();
  private readonly security: LinkSecurity;
  private readonly logger: Logger;
  private readonly clock: Clock;

  constructor(
    private readonly role: 'server' | 'client',
    private readonly options: ServerOptions | ClientOptions,
  ) {
    super();
    this.limits = { ...DEFAULTS, ...options.limits };
    if (options.heartbeatSeconds !== undefined) this.limits.heartbeatSeconds = options.heartbeatSeconds;
    this.logger = options.logger ?? silentLogger;
    this.clock = options.clock ?? systemClock;
    this.security = securityFrom(options);
    this.linkSettings = linkSettingsFrom(this.limits, options.resumeSeconds ?? 0, [...requirementsFrom(options), ...udpRequirement(options)]);
    const keepAliveMs = Math.max(1000, Math.floor((this.limits.heartbeatSeconds * 1000) / 2));
    const listen = (options.ports ?? []).map((p) => (typeof p === 'number' ? { port: p } : p));
    this.udp = new UdpRelay({ maxFlows: this.limits.udpMaxFlows, idleMs: this.limits.udpTimeoutSeconds * 1000 }, this.clock, this.logger);
    this.udpEntry = new UdpEntryPorts(listen.filter((p) => p.protocol === 'udp'), this.udp, this.clock, this.logger);
    this.udpExit = new UdpExitDialer(udpRouteTable(options), this.udp, this.clock, this.logger);
    this.entry = new EntryPorts(
      {
        listen: listen.filter((p) => p.protocol !== 'udp'),
        onePerPort: options.onePerPort ?? false,
        keepAliveMs,
        acceptProxyProtocol: options.acceptProxyProtocol ?? false,
        proxyHeaderTimeoutMs: this.limits.proxyHeaderTimeoutMs,
      },
      {
        currentSession: () => this.session,
        carriesOrigin: (session) => this.originSessions.has(session),
        onBadProxyHeader: (port, peer, reason) => {
          this.logger.warn('proxy_header', `closed connection on port ${port} from ${peer}: ${reason}`, { port, peer, reason });
          this.emit('refused', { port, peer, reason, kind: 'bad_proxy_header' });
        },
        onRefused: (port, peer, reason, session) => {
          this.logger.warn('stream_refused', `refused connection on port ${port} from ${peer}: ${reason}`, { port, peer, reason });
          this.emit('refused', { port, peer, reason, kind: session === null ? 'no_partner' : 'link_full' });
        },
        onPipe: (pipe, peer) => this.pipeOpened(pipe, peer),
        onClosed: (pipe, reason) => this.pipeClosed(pipe, reason),
      },
      this.clock,
      this.logger,
    );
    this.exit = new ExitDialer(
      {
        routes: routeTable(options),
        connectTimeoutMs: this.limits.connectTimeoutMs,
        keepAliveMs,
      },
      {
        onRefused: (stream, reason) => {
          this.logger.warn('stream_refused', `refused stream ${stream.id} for port ${stream.port} from the partner: ${reason}`, {
            port: stream.port,
            stream: stream.id,
            reason,
          });
          this.emit('refused', { port: stream.port, peer: 'partner', reason, kind: 'not_allowed' });
        },
        onPipe: (pipe, peer) => this.pipeOpened(pipe, peer),
        onClosed: (pipe, reason) => this.pipeClosed(pipe, reason),
      },
    );
  }

  /** The link listener's address (server only). */
  get linkAddress(): net.AddressInfo | null {
    return this.serverAddress;
  }

  /** The entry ports' bound addresses, in the order given. */
  get entryAddresses(): net.AddressInfo[] {
    return this.entry.addresses();
  }

  /** The /udp entry ports' bound addresses, in the order given. */
  get udpAddresses(): net.AddressInfo[] {
    return this.udpEntry.addresses();
  }

  get linkUp(): boolean {
    return this.session !== null && !this.session.isEnded && !this.session.isHeld;
  }

  get openStreams(): number {
    return this.pipes.size;
  }

  /** Binds the entry ports and the link (server) or starts dialing (client). */
  async start(): Promise<void> {
    if (this.security.kind === 'none') {
      this.logger.warn(
        'insecure',
        'no secret: the link is neither authenticated nor encrypted, and anyone who can reach it can pose as the partner (see tcpipe keygen)',
      );
    }
    await this.entry.listen();
    try {
      await this.udpEntry.listen();
    } catch (err) {
      this.entry.stop();
      throw err;
    }
    const settings = this.linkSettings;
    const handlers = this.linkHandlers();
    const software = `tcpipe/${VERSION} node/${process.versions.node}`;
    if (this.role === 'server') {
      const o = this.options as ServerOptions;
      this.linkServer = new LinkServer(
        {
          port: o.port,
          ...(o.host !== undefined ? { host: o.host } : {}),
          settings,
          partnerCheckTimeoutMs: this.limits.partnerCheckTimeoutMs,
          maxPendingHandshakes: this.limits.maxPendingHandshakes,
          software,
          security: this.security,
          transports: new Set(o.transports ?? ['tcp', 'ws']),
          wsPath: o.wsPath ?? '/tcpipe',
        },
        handlers,
        this.clock,
        this.logger,
      );
      try {
        this.serverAddress = await this.linkServer.listen();
      } catch (err) {
        this.entry.stop();
        this.udpEntry.stop();
        throw err;
      }
    } else {
      const o = this.options as ClientOptions;
      const target = clientTarget(o);
      const proxy = clientProxy(o, target);
      if (proxy !== null) this.logger.info('proxy', `dialing through proxy ${describeProxy(proxy.spec)}${proxy.from}`);
      this.linkClient = new LinkClient(
        {
          target,
          proxy: proxy?.spec ?? null,
          ...(o.wsCa !== undefined ? { wsCa: o.wsCa } : {}),
          settings,
          backoffMinMs: this.limits.backoffMinMs,
          backoffMaxMs: this.limits.backoffMaxMs,
          backoffResetAfterMs: this.limits.backoffResetAfterMs,
          software,
          security: this.security,
        },
        handlers,
        this.clock,
        this.logger,
      );
      this.loop = this.linkClient.connectLoop(this.abort.signal);
    }
  }

  /**
   * Replaces the routes, default target and allowed ports. The link and the open
   * streams stay; new streams follow the new table. Returns the changes made.
   */
  reload(options: ReloadableOptions): string[] {
    const next = routeTable(options);
    const nextUdp = udpRouteTable(options);
    const changes = this.exit.routeTable.describeChanges(next);
    for (const change of this.udpExit.routeTable.describeChanges(nextUdp)) changes.push(`udp: ${change}`);
    this.exit.setRoutes(next);
    this.udpExit.setRoutes(nextUdp);
    return changes;
  }

  /** Stops accepting, says goodbye to the partner, closes every connection. */
  stop(reason = 'shutting down'): Promise<void> {
    this.stopping ??= this.doStop(reason);
    return this.stopping;
  }

  private async doStop(reason: string): Promise<void> {
    this.entry.stop();
    this.udpEntry.stop();
    this.udp.stop();
    this.linkServer?.stop(reason);
    this.abort.abort();
    await this.loop;
    for (const pipe of [...this.pipes.keys()]) pipe.abort(ResetCode.SHUTDOWN, reason);
    if (this.pipes.size === 0) return;
    await new Promise<void>((resolve) => {
      const timer = this.clock.setTimer(this.limits.shutdownGraceMs, resolve);
      const check = (): void => {
        if (this.pipes.size > 0) return;
        timer.cancel();
        this.off('stream-close', check);
        resolve();
      };
      this.on('stream-close', check);
    });
  }

  private linkHandlers(): LinkHandlers {
    const report = new LinkReport(this.logger, this, this.options.resumeSeconds ?? 0);
    return {
      onStreamRequest: (stream: Stream) => this.exit.handleStreamRequest(stream),
      onSessionUp: (session: Session, peer: LinkPeer) => {
        this.udp.sessionUp(session, peer.hello);
        this.session = session;
        if (originNegotiated(this.linkSettings, peer.hello)) this.originSessions.add(session);
        else this.originSessions.delete(session);
        this.linkPeer = peer.address;
        this.linkUpSince = Date.now();
        this.linksUp++;
        report.up(peer);
      },
      onSessionDown: (session: Session, end: SessionEnd, peer: LinkPeer) => {
        if (this.session === session) this.session = null;
        this.udp.sessionDown(session);
        this.pastBytesIn += session.bytesIn;
        this.pastBytesOut += session.bytesOut;
        report.down(peer, end, this.pipes.size);
      },
      onSessionHeld: (session: Session, end: SessionEnd, peer: LinkPeer) => report.held(peer, end, session.streamCount),
      onSessionResumed: (_session: Session, peer: LinkPeer, info: ResumeInfo) => report.resumed(peer, info),
      onDatagramFrame: (_session: Session, frame) => this.udp.handleFrame(frame),
    };
  }

  /** UDP counters (cheap: no flow list), for the metrics. */
  udpStats(): UdpStats {
    return this.udp.stats();
  }

  /** A snapshot for `tcpipe status` and the metrics. */
  status(): TcpipeStatus {
    const session = this.session;
    const now = this.clock.now();
    const current = session !== null && !session.isEnded && !session.isHeld ? session : null;
    return {
      role: this.role,
      link:
        current === null
          ? null
          : {
              peer: this.linkPeer,
              upSince: this.linkUpSince,
              rttMs: current.roundTrip.smoothed,
              bytesIn: current.bytesIn,
              bytesOut: current.bytesOut,
              bufferedBytes: current.bufferedBytes,
            },
      linksUp: this.linksUp,
      streamsTotal: this.streamsTotal,
      bytesIn: this.pastBytesIn + (current?.bytesIn ?? 0),
      bytesOut: this.pastBytesOut + (current?.bytesOut ?? 0),
      streams: [...this.pipes].map(([pipe, peer]) => ({
        id: pipe.stream.id,
        port: pipe.stream.port,
        side: pipe.stream.isEntry ? ('entry' as const) : ('exit' as const),
        peer,
        ageMs: now - pipe.stream.openedAt,
        bytesIn: pipe.stream.receivedBytes,
        bytesOut: pipe.stream.sentBytes,
      })),
      udp: { ...this.udp.stats(), flowList: this.udp.flows() },
    };
  }

  private pipeOpened(pipe: StreamPipe, peer: string): void {
    this.pipes.set(pipe, peer);
    this.streamsTotal++;
    const { stream } = pipe;
    const side = stream.isEntry ? 'entry' : 'exit';
    // The exit side names the user too when the OPEN carried the origin (capability origin).
    const user = !stream.isEntry && stream.origin !== null ? formatAddress(stream.origin.sourceAddress, stream.origin.sourcePort) : null;
    this.logger.debug('stream_open', `stream ${stream.id} open on port ${stream.port} (${side}, ${peer}${user !== null ? `, user ${user}` : ''})`, {
      stream: stream.id,
      port: stream.port,
      peer,
      ...(user !== null ? { user } : {}),
    });
    this.emit('stream-open', { id: stream.id, port: stream.port, side, peer });
  }

  private pipeClosed(pipe: StreamPipe, reason: string): void {
    const { stream } = pipe;
    const peer = this.pipes.get(pipe);
    const side = stream.isEntry ? 'entry' : 'exit';
    if (peer === undefined) {
      // Never opened: the target could not be reached, or the link refused it.
      if (reason !== '') {
        this.logger.warn('stream_failed', `port ${stream.port}: ${reason}`, { port: stream.port, stream: stream.id, reason });
      }
      this.emit('refused', {
        port: stream.port,
        peer: side === 'entry' ? 'user' : 'partner',
        reason,
        kind: KIND_BY_RESET[pipe.closeCode] ?? 'other',
      });
      return;
    }
    this.pipes.delete(pipe);
    if (side === 'entry' && !pipe.accepted && pipe.closeCode >= 0 && pipe.closeCode !== ResetCode.SHUTDOWN) {
      // The partner refused the stream (or could not reach its target): say so here too.
      this.logger.warn('stream_refused', `connection from ${peer} on port ${stream.port} refused by the partner: ${reason}`, {
        port: stream.port,
        stream: stream.id,
        peer,
        reason,
      });
      this.emit('refused', { port: stream.port, peer, reason, kind: KIND_BY_RESET[pipe.closeCode] ?? 'other' });
    }
    const durationMs = this.clock.now() - stream.openedAt;
    const info: StreamCloseInfo = {
      id: stream.id,
      port: stream.port,
      side,
      peer,
      durationMs,
      bytesIn: stream.receivedBytes,
      bytesOut: stream.sentBytes,
      reason,
    };
    const text = `stream ${stream.id} closed on port ${stream.port} after ${(durationMs / 1000).toFixed(2)}s: ${stream.receivedBytes} B in, ${stream.sentBytes} B out${reason ? ` (${reason})` : ''}`;
    this.logger.debug('stream_close', text, {
      stream: stream.id,
      port: stream.port,
      peer,
      bytes_in: stream.receivedBytes,
      bytes_out: stream.sentBytes,
      reason: reason || undefined,
    });
    this.emit('stream-close', info);
  }
}

