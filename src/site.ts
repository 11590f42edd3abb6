/**
 * One site of an instance: its entry ports, its routes, its current session
 * and the connections relayed through it. An instance without sites is one
 * site named ''; a server with `[[client]]` tables has one per client, and a
 * site's entry ports relay to its own session only, its partner's streams go
 * through its own routes only.
 */
import type { EventEmitter } from 'node:events';
import type net from 'node:net';
import type { Clock } from './clock.js';
import type { Logger } from './log/logger.js';
import { EntryPorts, type ListenSpec } from './endpoints/entry.js';
import { ExitDialer } from './endpoints/exit.js';
import type { StreamPipe } from './endpoints/pipe.js';
import type { RouteTable } from './endpoints/routes.js';
import type { LinkPeer } from './link/link-session.js';
import { formatAddress } from './link/transport.js';
import type { Session } from './mux/session.js';
import type { Stream } from './mux/stream.js';
import type { ClientStatus, RefusalKind, StreamCloseInfo, StreamInfo, TcpipeEvents } from './options.js';
import { ResetCode } from './protocol/constants.js';

const KIND_BY_RESET: Readonly<Record<number, RefusalKind>> = Object.freeze({
  [ResetCode.TARGET_REFUSED]: 'target_refused',
  [ResetCode.TARGET_UNREACHABLE]: 'target_unreachable',
  [ResetCode.NOT_ALLOWED]: 'not_allowed',
  [ResetCode.LIMIT]: 'limit',
});

export interface SiteSettings {
  readonly onePerPort: boolean;
  readonly keepAliveMs: number;
  readonly connectTimeoutMs: number;
  /** --accept-proxy-protocol: entry connections start with a load balancer's PROXY header. */
  readonly acceptProxyProtocol: boolean;
  readonly proxyHeaderTimeoutMs: number;
}

/** A listener's key: a port bound on one address or on all. */
export function listenKey(spec: ListenSpec): string {
  return `${spec.host ?? '*'}:${spec.port}`;
}

export class Site {
  session: Session | null = null;
  /** Each open connection and its peer's address. */
  readonly pipes = new Map<StreamPipe, string>();
  private readonly entries = new Map<string, EntryPorts>();
  /** Entry connections, by the listener that accepted them (to close them with it). */
  private readonly entryOf = new Map<StreamPipe, string>();
  private readonly exit: ExitDialer;
  private peer = '';
  private upSince = 0;
  private downSince: number;
  linksUp = 0;
  streamsTotal = 0;
  private pastBytesIn = 0;
  private pastBytesOut = 0;
  /** Sessions whose HELLOs both listed capability origin: their OPENs carry the user's addresses. */
  private readonly originSessions = new WeakSet<Session>();

  constructor(
    /** '' for the one partner of an instance without sites. */
    readonly name: string,
    routes: RouteTable,
    private readonly settings: SiteSettings,
    private readonly events: EventEmitter<TcpipeEvents>,
    private readonly clock: Clock,
    private readonly logger: Logger,
  ) {
    this.downSince = Date.now();
    this.exit = new ExitDialer(
      { routes, connectTimeoutMs: settings.connectTimeoutMs, keepAliveMs: settings.keepAliveMs },
      {
        onRefused: (stream, reason) => {
          this.logger.warn('stream_refused', `refused stream ${stream.id} for port ${stream.port} from the ${this.partner}: ${reason}`, {
            ...this.field,
            port: stream.port,
            stream: stream.id,
            reason,
          });
          this.events.emit('refused', { ...this.field, port: stream.port, peer: 'partner', reason, kind: 'not_allowed' });
        },
        onPipe: (pipe, peer) => this.pipeOpened(pipe, peer),
        onClosed: (pipe, reason) => this.pipeClosed(pipe, reason),
      },
    );
  }

  /** `{ client }` for log fields and events of a named site; nothing for the one partner. */
  get field(): { client?: string } {
    return this.name === '' ? {} : { client: this.name };
  }

  private get partner(): string {
    return this.name === '' ? 'partner' : `partner of client '${this.name}'`;
  }

  get routes(): RouteTable {
    return this.exit.routeTable;
  }

  setRoutes(routes: RouteTable): void {
    this.exit.setRoutes(routes);
  }

  get linkUp(): boolean {
    return this.session !== null && !this.session.isEnded && !this.session.isHeld;
  }

  /** The listeners' keys, in the order they were bound. */
  get listening(): string[] {
    return [...this.entries.keys()];
  }

  addresses(): net.AddressInfo[] {
    return [...this.entries.values()].flatMap((e) => e.addresses());
  }

  /** Binds more entry ports; rejects (binding none of them) if one cannot be bound. */
  async listen(specs: readonly ListenSpec[]): Promise<void> {
    const bound: string[] = [];
    try {
      for (const spec of specs) {
        const key = listenKey(spec);
        if (this.entries.has(key)) continue;
        const entry = this.entryPorts(spec, key);
        this.entries.set(key, entry);
        bound.push(key);
        await entry.listen();
      }
    } catch (err) {
      this.unlisten(bound, '');
      throw err;
    }
  }

  /** Unbinds entry ports and closes their open connections with `reason`. */
  unlisten(keys: readonly string[], reason: string): void {
    for (const key of keys) {
      const entry = this.entries.get(key);
      if (entry === undefined) continue;
      entry.stop();
      this.entries.delete(key);
      for (const [pipe, k] of [...this.entryOf]) if (k === key) pipe.abort(ResetCode.SHUTDOWN, reason);
    }
  }

  /** Stops every listener (shutdown, or the site is removed). */
  stopListening(): void {
    for (const entry of this.entries.values()) entry.stop();
  }

  /** Closes every connection of this site. */
  abortAll(reason: string): void {
    for (const pipe of [...this.pipes.keys()]) pipe.abort(ResetCode.SHUTDOWN, reason);
  }

  handleStreamRequest(stream: Stream): void {
    this.exit.handleStreamRequest(stream);
  }

  sessionUp(session: Session, peer: LinkPeer, carriesOrigin: boolean): void {
    this.session = session;
    if (carriesOrigin) this.originSessions.add(session);
    else this.originSessions.delete(session);
    this.peer = peer.address;
    this.upSince = Date.now();
    this.linksUp++;
  }

  sessionDown(session: Session): void {
    if (this.session === session) {
      this.session = null;
      this.downSince = Date.now();
    }
    this.pastBytesIn += session.bytesIn;
    this.pastBytesOut += session.bytesOut;
  }

  /** The session lost its link and holds its streams: down, as far as status says. */
  sessionHeld(): void {
    this.downSince = Date.now();
  }

  get current(): Session | null {
    const session = this.session;
    return session !== null && !session.isEnded && !session.isHeld ? session : null;
  }

  get bytes(): { readonly bytesIn: number; readonly bytesOut: number } {
    const current = this.current;
    return { bytesIn: this.pastBytesIn + (current?.bytesIn ?? 0), bytesOut: this.pastBytesOut + (current?.bytesOut ?? 0) };
  }

  linkStatus(): { peer: string; upSince: number; rttMs: number; bytesIn: number; bytesOut: number; bufferedBytes: number } | null {
    const current = this.current;
    if (current === null) return null;
    return {
      peer: this.peer,
      upSince: this.upSince,
      rttMs: current.roundTrip.smoothed,
      bytesIn: current.bytesIn,
      bytesOut: current.bytesOut,
      bufferedBytes: current.bufferedBytes,
    };
  }

  clientStatus(): ClientStatus {
    const link = this.linkStatus();
    return {
      name: this.name,
      link: link === null ? null : { peer: link.peer, upSince: link.upSince, rttMs: link.rttMs, bufferedBytes: link.bufferedBytes },
      linksUp: this.linksUp,
      downSince: link === null ? this.downSince : null,
      openStreams: this.pipes.size,
      ...this.bytes,
    };
  }

  streams(now: number): (StreamInfo & { ageMs: number; bytesIn: number; bytesOut: number })[] {
    return [...this.pipes].map(([pipe, peer]) => ({
      ...this.field,
      id: pipe.stream.id,
      port: pipe.stream.port,
      side: pipe.stream.isEntry ? ('entry' as const) : ('exit' as const),
      peer,
      ageMs: now - pipe.stream.openedAt,
      bytesIn: pipe.stream.receivedBytes,
      bytesOut: pipe.stream.sentBytes,
    }));
  }

  private entryPorts(spec: ListenSpec, key: string): EntryPorts {
    return new EntryPorts(
      {
        listen: [spec],
        onePerPort: this.settings.onePerPort,
        keepAliveMs: this.settings.keepAliveMs,
        acceptProxyProtocol: this.settings.acceptProxyProtocol,
        proxyHeaderTimeoutMs: this.settings.proxyHeaderTimeoutMs,
      },
      {
        currentSession: () => this.session,
        carriesOrigin: (session) => this.originSessions.has(session),
        onBadProxyHeader: (port, peer, reason) => {
          this.logger.warn('proxy_header', `closed connection on port ${port} from ${peer}: ${reason}`, { ...this.field, port, peer, reason });
          this.events.emit('refused', { ...this.field, port, peer, reason, kind: 'bad_proxy_header' });
        },
        onRefused: (port, peer, reason, session) => {
          this.logger.warn('stream_refused', `refused connection on port ${port} from ${peer}: ${reason}`, { ...this.field, port, peer, reason });
          this.events.emit('refused', { ...this.field, port, peer, reason, kind: session === null ? 'no_partner' : 'link_full' });
        },
        onPipe: (pipe, peer) => {
          this.entryOf.set(pipe, key);
          this.pipeOpened(pipe, peer);
        },
        onClosed: (pipe, reason) => {
          this.entryOf.delete(pipe);
          this.pipeClosed(pipe, reason);
        },
      },
      this.clock,
      this.logger,
    );
  }

  private pipeOpened(pipe: StreamPipe, peer: string): void {
    this.pipes.set(pipe, peer);
    this.streamsTotal++;
    const { stream } = pipe;
    const side = stream.isEntry ? 'entry' : 'exit';
    // The exit side names the user too when the OPEN carried the origin (capability origin).
    const user = !stream.isEntry && stream.origin !== null ? formatAddress(stream.origin.sourceAddress, stream.origin.sourcePort) : null;
    this.logger.debug('stream_open', `stream ${stream.id} open on port ${stream.port} (${side}, ${peer}${user !== null ? `, user ${user}` : ''})`, {
      ...this.field,
      stream: stream.id,
      port: stream.port,
      peer,
      ...(user !== null ? { user } : {}),
    });
    this.events.emit('stream-open', { ...this.field, id: stream.id, port: stream.port, side, peer });
  }

  private pipeClosed(pipe: StreamPipe, reason: string): void {
    const { stream } = pipe;
    const peer = this.pipes.get(pipe);
    const side = stream.isEntry ? 'entry' : 'exit';
    if (peer === undefined) {
      // Never opened: the target could not be reached, or the link refused it.
      if (reason !== '') {
        this.logger.warn('stream_failed', `port ${stream.port}: ${reason}`, { ...this.field, port: stream.port, stream: stream.id, reason });
      }
      this.events.emit('refused', {
        ...this.field,
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
      this.logger.warn('stream_refused', `connection from ${peer} on port ${stream.port} refused by the ${this.partner}: ${reason}`, {
        ...this.field,
        port: stream.port,
        stream: stream.id,
        peer,
        reason,
      });
      this.events.emit('refused', { ...this.field, port: stream.port, peer, reason, kind: KIND_BY_RESET[pipe.closeCode] ?? 'other' });
    }
    const durationMs = this.clock.now() - stream.openedAt;
    const info: StreamCloseInfo = {
      ...this.field,
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
      ...this.field,
      stream: stream.id,
      port: stream.port,
      peer,
      bytes_in: stream.receivedBytes,
      bytes_out: stream.sentBytes,
      reason: reason || undefined,
    });
    this.events.emit('stream-close', info);
  }
}
