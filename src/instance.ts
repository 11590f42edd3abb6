/**
 * One tcpipe instance: the link (server or client side), its sites (entry
 * ports, exit dialer and session of each partner: site.ts) and the UDP relay
 * (one partner only), wired together. The public API (index.ts) starts one.
 */
import { EventEmitter } from 'node:events';
import type net from 'node:net';
import { systemClock, type Clock } from './clock.js';
import { DEFAULTS } from './config/defaults.js';
import type { Logger } from './log/logger.js';
import { silentLogger } from './log/logger.js';
import type { RouteTable } from './endpoints/routes.js';
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
import type { ClientOptions, Limits, LiveOptions, ReloadableOptions, ServerOptions, SiteOptions, TcpipeEvents, TcpipeStatus } from './options.js';
import { Capability, GoAwayCode, ResetCode } from './protocol/constants.js';
import type { LinkSecurity } from './link/security.js';
import { ErrorCodes, TcpipeError } from './errors.js';
import { listenKey, Site, type SiteSettings } from './site.js';
import { SiteDirectory } from './site-directory.js';
import { applyPortChanges, applySites, listenSpecs, portChange, udpSpecs } from './site-reload.js';

export type {
  ClientOptions,
  CommonOptions,
  Limits,
  RefusalKind,
  RefusedInfo,
  ReloadableOptions,
  RouteSpec,
  ServerOptions,
  SiteOptions,
  LiveOptions,
  ClientStatus,
  StreamCloseInfo,
  StreamInfo,
  TcpipeEvents,
  TcpipeStatus,
} from './options.js';

export class Tcpipe extends EventEmitter<TcpipeEvents> {
  /** One site ('') without `clients`; one per client with them. */
  private readonly sites = new Map<string, Site>();
  /** A server with `clients`: who is who on the link. */
  private directory: SiteDirectory | null = null;
  private linkServer: LinkServer | null = null;
  private linkClient: LinkClient | null = null;
  private readonly abort = new AbortController();
  private loop: Promise<void> = Promise.resolve();
  private serverAddress: net.AddressInfo | null = null;
  private stopping: Promise<void> | null = null;
  private reconfiguring: Promise<unknown> = Promise.resolve();
  private readonly limits: Limits;
  private readonly linkSettings: LinkSettings;
  /** UDP flows: the one partner's only (a server with `clients` takes no /udp ports). */
  private readonly udp: UdpRelay;
  private readonly udpEntry: UdpEntryPorts;
  private readonly udpExit: UdpExitDialer;
  private readonly security: LinkSecurity;
  private readonly logger: Logger;
  private readonly clock: Clock;
  private readonly siteSettings: SiteSettings;

  constructor(
    private readonly role: 'server' | 'client',
    private readonly options: ServerOptions | ClientOptions,
  ) {
    super();
    this.limits = { ...DEFAULTS, ...options.limits };
    if (options.heartbeatSeconds !== undefined) this.limits.heartbeatSeconds = options.heartbeatSeconds;
    this.logger = options.logger ?? silentLogger;
    this.clock = options.clock ?? systemClock;
    const keepAliveMs = Math.max(1000, Math.floor((this.limits.heartbeatSeconds * 1000) / 2));
    this.siteSettings = {
      onePerPort: options.onePerPort ?? false,
      keepAliveMs,
      connectTimeoutMs: this.limits.connectTimeoutMs,
      acceptProxyProtocol: options.acceptProxyProtocol ?? false,
      proxyHeaderTimeoutMs: this.limits.proxyHeaderTimeoutMs,
    };
    const clients = role === 'server' ? ((options as ServerOptions).clients ?? []) : [];
    const requirements = [...requirementsFrom({ ...options, routes: [...(options.routes ?? []), ...clients.flatMap((c) => c.routes ?? [])] }), ...udpRequirement(options)];
    const settings = linkSettingsFrom(this.limits, options.resumeSeconds ?? 0, requirements);
    // A server with clients relays no UDP: it does not offer capability udp, so a site with /udp routes is told so at the handshake.
    this.linkSettings = clients.length > 0 ? { ...settings, capabilities: settings.capabilities.filter((c) => c !== Capability.UDP) } : settings;
    this.udp = new UdpRelay({ maxFlows: this.limits.udpMaxFlows, idleMs: this.limits.udpTimeoutSeconds * 1000 }, this.clock, this.logger);
    this.udpEntry = new UdpEntryPorts(clients.length > 0 ? [] : udpSpecs(options.ports), this.udp, this.clock, this.logger);
    this.udpExit = new UdpExitDialer(udpRouteTable(clients.length > 0 ? {} : options), this.udp, this.clock, this.logger);
    if (clients.length > 0) {
      if (options.secret !== undefined) throw new TcpipeError(ErrorCodes.CONFIG, 'with clients, each client has its own secret: give no top-level secret');
      const udpPort = clients.find((c) => udpSpecs(c.ports).length > 0);
      if (udpPort !== undefined) throw new TcpipeError(ErrorCodes.CONFIG, `client '${udpPort.name}': /udp ports are for a server without clients`);
      if (udpSpecs(options.ports).length > 0) throw new TcpipeError(ErrorCodes.CONFIG, '/udp ports are for a server without clients');
      this.directory = new SiteDirectory(clients, options.tls);
      this.security = this.directory.security;
      for (const c of clients) this.sites.set(c.name, this.newSite(c.name, c));
    } else {
      this.security = securityFrom(options);
      this.sites.set('', this.newSite('', options));
    }
  }

  /** The link listener's address (server only). */
  get linkAddress(): net.AddressInfo | null {
    return this.serverAddress;
  }

  /** The entry ports' bound addresses, in the order given (every site's, by site). */
  get entryAddresses(): net.AddressInfo[] {
    return [...this.sites.values()].flatMap((site) => site.addresses());
  }

  /** One site's entry addresses (a server with `clients`). */
  clientAddresses(name: string): net.AddressInfo[] {
    return this.sites.get(name)?.addresses() ?? [];
  }

  /** The /udp entry ports' bound addresses, in the order given. */
  get udpAddresses(): net.AddressInfo[] {
    return this.udpEntry.addresses();
  }

  /** The link is up (with `clients`: some client's link). */
  get linkUp(): boolean {
    return [...this.sites.values()].some((site) => site.linkUp);
  }

  get openStreams(): number {
    let n = 0;
    for (const site of this.sites.values()) n += site.pipes.size;
    return n;
  }

  /** Binds the entry ports and the link (server) or starts dialing (client). */
  async start(): Promise<void> {
    if (this.security.kind === 'none') {
      this.logger.warn(
        'insecure',
        'no secret: the link is neither authenticated nor encrypted, and anyone who can reach it can pose as the partner (see tcpipe keygen)',
      );
    }
    const clients = this.role === 'server' ? ((this.options as ServerOptions).clients ?? []) : [];
    try {
      if (this.directory === null) await this.sites.get('')?.listen(listenSpecs(this.options.ports));
      else for (const c of clients) await this.sites.get(c.name)?.listen(listenSpecs(c.ports));
      await this.udpEntry.listen();
    } catch (err) {
      for (const site of this.sites.values()) site.stopListening();
      this.udpEntry.stop();
      throw err;
    }
    const settings = this.linkSettings;
    const handlers = this.linkHandlers();
    const software = `tcpipe/${VERSION} node/${process.versions.node}`;
    if (this.role === 'server') {
      const o = this.options as ServerOptions;
      const directory = this.directory;
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
          ...(directory !== null ? { identify: (identity) => (this.directory ?? directory).identify(identity) } : {}),
        },
        handlers,
        this.clock,
        this.logger,
      );
      if (directory !== null) this.linkServer.setSecurity(directory.security, directory.names);
      try {
        this.serverAddress = await this.linkServer.listen();
      } catch (err) {
        for (const site of this.sites.values()) site.stopListening();
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
    const site = this.sites.get('');
    if (site === undefined) throw new TcpipeError(ErrorCodes.CONFIG, 'this server has clients: use reconfigure with the clients');
    const next = routeTable(options);
    const nextUdp = udpRouteTable(options);
    const changes = site.routes.describeChanges(next);
    for (const change of this.udpExit.routeTable.describeChanges(nextUdp)) changes.push(`udp: ${change}`);
    site.setRoutes(next);
    this.udpExit.setRoutes(nextUdp);
    return changes;
  }

  /**
   * SIGHUP: applies a new configuration in place: routes, entry ports and (a server
   * with `clients`) added, removed and changed clients. What did not change is not
   * touched. Rejects, changing nothing, if the new configuration is refused.
   */
  reconfigure(next: LiveOptions): Promise<string[]> {
    const run = this.reconfiguring.then(() => this.applyLive(next));
    this.reconfiguring = run.catch(() => undefined);
    return run;
  }

  private async applyLive(next: LiveOptions): Promise<string[]> {
    const clients = next.clients ?? [];
    if ((clients.length > 0) !== (this.directory !== null)) {
      throw new TcpipeError(ErrorCodes.CONFIG, 'switching between one partner and [[client]] tables needs a restart');
    }
    if (this.directory === null) {
      const site = this.sites.get('');
      if (site === undefined) return [];
      const changes = this.reload(next);
      if (next.ports === undefined) return changes;
      const udpKeys = (ports: LiveOptions['ports']): string => JSON.stringify(udpSpecs(ports).map(listenKey));
      if (udpKeys(next.ports) !== udpKeys(this.options.ports)) {
        this.logger.warn('reload', 'changes to the /udp ports need a restart; they were not applied');
      }
      return [...changes, ...(await applyPortChanges([portChange(site, listenSpecs(next.ports))], this.logger))];
    }
    const directory = new SiteDirectory(clients, this.options.tls);
    return applySites(
      {
        sites: this.sites,
        before: this.directory,
        after: directory,
        newSite: (c) => this.newSite(c.name, c, next.proxyProtocol),
        routes: (c) => siteRoutes(c, next.proxyProtocol),
        commit: (d) => {
          this.directory = d;
          this.linkServer?.setSecurity(d.security, d.names);
        },
        dropClient: (name, reason) => this.linkServer?.dropClient(name, reason),
        logger: this.logger,
      },
      clients,
    );
  }

  /** Stops accepting, says goodbye to the partner, closes every connection. */
  stop(reason = 'shutting down'): Promise<void> {
    this.stopping ??= this.doStop(reason);
    return this.stopping;
  }

  private async doStop(reason: string): Promise<void> {
    for (const site of this.sites.values()) site.stopListening();
    this.udpEntry.stop();
    this.udp.stop();
    this.linkServer?.stop(reason);
    this.abort.abort();
    await this.loop;
    for (const site of this.sites.values()) site.abortAll(reason);
    if (this.openStreams === 0) return;
    await new Promise<void>((resolve) => {
      const timer = this.clock.setTimer(this.limits.shutdownGraceMs, resolve);
      const check = (): void => {
        if (this.openStreams > 0) return;
        timer.cancel();
        this.off('stream-close', check);
        resolve();
      };
      this.on('stream-close', check);
    });
  }

  private newSite(name: string, options: SiteOptions | ReloadableOptions, proxyProtocol = this.options.proxyProtocol): Site {
    return new Site(name, siteRoutes(options, proxyProtocol), this.siteSettings, this, this.clock, this.logger);
  }

  private siteOf(peer: LinkPeer): Site | undefined {
    return this.sites.get(peer.client ?? '');
  }

  private linkHandlers(): LinkHandlers {
    const report = new LinkReport(this.logger, this, this.options.resumeSeconds ?? 0);
    return {
      onStreamRequest: (stream: Stream, peer: LinkPeer) => {
        const site = this.siteOf(peer);
        if (site !== undefined) site.handleStreamRequest(stream);
        else stream.reset(ResetCode.NOT_ALLOWED, 'this client was removed from the configuration');
      },
      onSessionUp: (session: Session, peer: LinkPeer) => {
        const site = this.siteOf(peer);
        if (site === undefined) {
          session.goAway(GoAwayCode.NORMAL, 'this client was removed from the configuration');
          return;
        }
        if (this.directory === null) this.udp.sessionUp(session, peer.hello);
        site.sessionUp(session, peer, originNegotiated(this.linkSettings, peer.hello));
        report.up(peer);
      },
      onSessionDown: (session: Session, end: SessionEnd, peer: LinkPeer) => {
        const site = this.siteOf(peer);
        site?.sessionDown(session);
        this.udp.sessionDown(session);
        report.down(peer, end, site?.pipes.size ?? 0);
      },
      onSessionHeld: (session: Session, end: SessionEnd, peer: LinkPeer) => {
        this.siteOf(peer)?.sessionHeld();
        report.held(peer, end, session.streamCount);
      },
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
    const now = this.clock.now();
    const sites = [...this.sites.values()];
    let linksUp = 0;
    let streamsTotal = 0;
    let bytesIn = 0;
    let bytesOut = 0;
    for (const site of sites) {
      linksUp += site.linksUp;
      streamsTotal += site.streamsTotal;
      bytesIn += site.bytes.bytesIn;
      bytesOut += site.bytes.bytesOut;
    }
    return {
      role: this.role,
      link: this.directory === null ? (this.sites.get('')?.linkStatus() ?? null) : null,
      linksUp,
      streamsTotal,
      bytesIn,
      bytesOut,
      streams: sites.flatMap((site) => site.streams(now)),
      ...(this.directory !== null ? { clients: sites.map((site) => site.clientStatus()) } : {}),
      udp: { ...this.udp.stats(), flowList: this.udp.flows() },
    };
  }
}

/** A site's TCP routes: a client's routes take the server's --proxy-protocol where they do not choose. */
function siteRoutes(options: SiteOptions | ReloadableOptions, proxyProtocol: ReloadableOptions['proxyProtocol']): RouteTable {
  return routeTable({ ...options, ...(proxyProtocol !== undefined ? { proxyProtocol } : {}) });
}
