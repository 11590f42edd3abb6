/** The public API's types: options, events, status. */
import type { Clock } from './clock.js';
import type { DEFAULTS } from './config/defaults.js';
import type { Logger } from './log/logger.js';
import type { ListenSpec } from './endpoints/entry.js';
import type { Secret } from './security/secret.js';
import type { UdpFlowInfo, UdpStats } from './endpoints/udp-relay.js';

export type Limits = {
  -readonly [K in keyof typeof DEFAULTS]: number;
};

export interface CommonOptions {
  /** Ports this instance listens on for user applications (the entry side). */
  readonly ports?: readonly (number | ListenSpec)[];
  /** Host this instance connects to when the partner opens a stream (the exit side), on the same port. */
  readonly target?: string;
  /** Per-port routes (-t PORT=HOST[:TPORT]): the partner's port P goes to host:port instead. */
  readonly routes?: readonly RouteSpec[];
  /**
   * Exit side: write a PROXY protocol header (HAProxy's v1 text or v2 binary)
   * to every target before any relayed byte, naming the user's address and
   * the entry address it connected to. A route may say otherwise (RouteSpec).
   * The partner must speak capability origin: an older one is refused.
   */
  readonly proxyProtocol?: 'v1' | 'v2';
  /**
   * Entry side: every connection on the entry ports starts with a PROXY
   * header (v1 or v2) from a load balancer; the address it names is the
   * user's. A connection without a valid header is closed and logged.
   */
  readonly acceptProxyProtocol?: boolean;
  /** Ports the partner may ask for; default any. */
  readonly allow?: readonly number[];
  /** UDP ports the partner may open flows for (--allow=N/udp). When `allow` or this is given, a UDP port not listed here is refused. */
  readonly allowUdp?: readonly number[];
  /** The seed's exact behaviour: one connection at a time per port. */
  readonly onePerPort?: boolean;
  /** Link declared dead after this many seconds without an answer. */
  readonly heartbeatSeconds?: number;
  /**
   * Stream resumption: when the link drops, hold the user connections this
   * many seconds for the next link instead of closing them (0 or absent: off,
   * the seed's behaviour). Used only when both sides give it.
   */
  readonly resumeSeconds?: number;
  /**
   * The shared secret (see `tcpipe keygen`), or several: the first dials, all
   * are accepted. With a secret the link is TLS 1.3 with the secret as PSK.
   */
  readonly secret?: string | readonly (string | Secret)[];
  /** Mutual TLS with certificates instead of a secret (PEM contents). */
  readonly tls?: { readonly cert: Buffer; readonly key: Buffer; readonly ca: Buffer; readonly serverName?: string };
  readonly limits?: Partial<Limits>;
  readonly logger?: Logger;
  readonly clock?: Clock;
}

export interface RouteSpec {
  readonly port: number;
  readonly host: string;
  /** Default: the same port. */
  readonly targetPort?: number;
  /** The PROXY header written to this route's target; default: proxyProtocol's; 'none': no header. */
  readonly proxyProtocol?: 'v1' | 'v2' | 'none';
  /** 'udp': a route for UDP flows on this port (-t P/udp=HOST[:TPORT]); default 'tcp'. */
  readonly protocol?: 'tcp' | 'udp';
}

/** What SIGHUP (or `reload`) may change without touching the link. */
export type ReloadableOptions = Pick<CommonOptions, 'target' | 'routes' | 'allow' | 'allowUdp' | 'proxyProtocol'>;

/**
 * One site of a server that serves many (`[[client]]` in the file): the client
 * that proves this secret (or presents a certificate with this name) is this
 * site; the site's entry ports relay to it alone, and its streams go through
 * its own target, routes and allowed ports.
 */
export interface SiteOptions {
  /** Names the site in logs, metrics (`client` label) and status. */
  readonly name: string;
  /** The site's secret (or several, for rotation): its TLS PSK identity tells the server who dialed. */
  readonly secret?: readonly (string | Secret)[];
  /** With certificates: the name in the site's certificate (subject CN or a DNS SAN). */
  readonly certName?: string;
  readonly ports?: readonly (number | ListenSpec)[];
  readonly target?: string;
  readonly routes?: readonly RouteSpec[];
  readonly allow?: readonly number[];
}

/** What `Tcpipe.reconfigure` (SIGHUP) applies in place: entry ports too, and the sites. */
export interface LiveOptions extends ReloadableOptions {
  /** The one partner's entry ports (absent: unchanged). */
  readonly ports?: readonly (number | ListenSpec)[];
  /** A server with clients: the whole new list. */
  readonly clients?: readonly SiteOptions[];
}

export interface ServerOptions extends CommonOptions {
  /** Port the link listens on (0 picks a free one: see `linkAddress`). */
  readonly port: number;
  /**
   * Many sites: one partner per site, told apart by its secret or certificate
   * name. Without it (or empty at start) the server takes one partner, as the seed says;
   * the top-level ports, target, routes and allow are then unused.
   */
  readonly clients?: readonly SiteOptions[];
  readonly host?: string;
  /** Link transports accepted on the port (default both: told apart by the first bytes). */
  readonly transports?: readonly ('tcp' | 'ws')[];
  /** Path of WebSocket upgrades (default /tcpipe). */
  readonly wsPath?: string;
}

export interface ClientOptions extends CommonOptions {
  /** Server to dial over plain TCP (the seed's -c host:port)... */
  readonly host?: string;
  readonly port?: number;
  /** ...or a WebSocket URL: ws://host:port/path or wss://host:port/path. */
  readonly url?: string;
  /**
   * Proxy URL (http://[user:pass@]host:port or socks5://...). Undefined: follow
   * HTTPS_PROXY / HTTP_PROXY / ALL_PROXY / NO_PROXY. Null: never use a proxy.
   */
  readonly proxy?: string | null;
  /** Overrides the password in the proxy URL (read from a file or the environment). */
  readonly proxyPassword?: string;
  /** CA bundle to verify a wss:// server (default: the system's). */
  readonly wsCa?: Buffer;
  /** The environment to read proxy variables from (default process.env). */
  readonly env?: NodeJS.ProcessEnv;
}

export interface StreamInfo {
  /** The site (a server with `clients`); absent otherwise. */
  readonly client?: string;
  readonly id: number;
  readonly port: number;
  /** 'entry': a user application connected here; 'exit': this side connected to the target. */
  readonly side: 'entry' | 'exit';
  readonly peer: string;
}

export interface StreamCloseInfo extends StreamInfo {
  readonly durationMs: number;
  /** Bytes from the partner to the local socket. */
  readonly bytesIn: number;
  /** Bytes from the local socket to the partner. */
  readonly bytesOut: number;
  /** Empty for a clean close in both directions. */
  readonly reason: string;
}

/** Why a connection or stream was refused, as a small fixed set (metric labels). */
export type RefusalKind =
  | 'no_partner'
  | 'link_full'
  | 'not_allowed'
  | 'target_refused'
  | 'target_unreachable'
  | 'limit'
  /** --accept-proxy-protocol: the connection did not start with a valid PROXY header in time. */
  | 'bad_proxy_header'
  | 'other';

export interface RefusedInfo {
  /** The site (a server with `clients`); absent otherwise. */
  readonly client?: string;
  readonly port: number;
  readonly peer: string;
  readonly reason: string;
  readonly kind: RefusalKind;
}

export interface TcpipeStatus {
  readonly role: 'server' | 'client';
  readonly link: {
    readonly peer: string;
    readonly upSince: number;
    readonly rttMs: number;
    readonly bytesIn: number;
    readonly bytesOut: number;
    /** Bytes received from the partner and not yet taken by local sockets (bounded by the receive budget). */
    readonly bufferedBytes: number;
  } | null;
  /** Links established since start. */
  readonly linksUp: number;
  readonly streamsTotal: number;
  /** DATA bytes received from / sent to partners since start. */
  readonly bytesIn: number;
  readonly bytesOut: number;
  readonly streams: readonly (StreamInfo & { readonly ageMs: number; readonly bytesIn: number; readonly bytesOut: number })[];
  /** A server with `clients`: each site's link and traffic. */
  readonly clients?: readonly ClientStatus[];
  /** UDP flows and their counters (in: from the partner, out: to it). */
  readonly udp: UdpStats & { readonly flowList: readonly UdpFlowInfo[] };
}

export interface ClientStatus {
  readonly name: string;
  readonly link: {
    readonly peer: string;
    readonly upSince: number;
    readonly rttMs: number;
    readonly bufferedBytes: number;
  } | null;
  /** Links this client made since start (or since it was added). */
  readonly linksUp: number;
  /** Since when the link has been down (start, or the last link's end); null while up. */
  readonly downSince: number | null;
  readonly openStreams: number;
  /** DATA bytes from / to this site since start. */
  readonly bytesIn: number;
  readonly bytesOut: number;
}

export interface TcpipeEvents {
  'link-up': [{ peer: string; client?: string }];
  'link-down': [{ peer: string; reason: string; client?: string }];
  /** Resumption: the link was lost and `streams` connections are held for the next one. */
  'link-held': [{ peer: string; reason: string; streams: number }];
  /** Resumption: the held connections flow again on a new link. */
  'link-resumed': [{ peer: string; streams: number; replayedBytes: number }];
  'stream-open': [StreamInfo];
  'stream-close': [StreamCloseInfo];
  refused: [RefusedInfo];
}
