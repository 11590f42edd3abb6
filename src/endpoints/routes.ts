/**
 * Where the exit side connects for each port the partner asks for. Pure.
 *
 * A request for port P is accepted when P passes --allow (if given) and P has
 * somewhere to go: its own route (-t P=HOST[:TPORT]) or the default host (-t
 * HOST, on the same port, as in the seed). Routes without a default host act
 * as a list of the only ports served. The partner only ever names a port.
 * Each route may write a PROXY header to its target: its own choice
 * (-t P=HOST,proxy-protocol=v2), else --proxy-protocol's.
 */
export type ProxyVersion = 'v1' | 'v2';

export interface Route {
  readonly host: string;
  readonly port: number;
  /** The route's own PROXY header choice (null: none); absent: the table's default. */
  readonly proxyProtocol?: ProxyVersion | null;
}

/** A route as the exit side dials it: the PROXY header choice settled (absent: no header). */
export interface ResolvedRoute {
  readonly host: string;
  readonly port: number;
  readonly proxyProtocol?: ProxyVersion;
}

export interface RouteConfig {
  /** -t HOST: every port goes to HOST, same port number. */
  readonly defaultHost: string | null;
  /** -t PORT=HOST[:TPORT]. */
  readonly routes: ReadonlyMap<number, Route>;
  /** --allow: the only ports the partner may ask for; null allows any. */
  readonly allow: ReadonlySet<number> | null;
  /** --proxy-protocol: the header written to targets of routes that do not choose (null: none). */
  readonly proxyProtocol?: ProxyVersion | null;
}

export type RouteDecision = { readonly ok: true; readonly route: ResolvedRoute } | { readonly ok: false; readonly reason: string };

export class RouteTable {
  constructor(readonly config: RouteConfig) {}

  resolve(port: number): RouteDecision {
    const { allow, routes, defaultHost } = this.config;
    if (allow !== null && !allow.has(port)) return { ok: false, reason: `port ${port} is not in --allow` };
    const fallback = this.config.proxyProtocol ?? null;
    const dial = (host: string, targetPort: number, header: ProxyVersion | null): RouteDecision => ({
      ok: true,
      route: header === null ? { host, port: targetPort } : { host, port: targetPort, proxyProtocol: header },
    });
    const route = routes.get(port);
    if (route !== undefined) return dial(route.host, route.port, route.proxyProtocol === undefined ? fallback : route.proxyProtocol);
    if (defaultHost !== null) return dial(defaultHost, port, fallback);
    return {
      ok: false,
      reason: routes.size > 0 ? `no route for port ${port}` : 'this side has no target (-t)',
    };
  }

  /** One line per difference, for the reload log. */
  describeChanges(next: RouteTable): string[] {
    const changes: string[] = [];
    const a = this.config;
    const b = next.config;
    if (a.defaultHost !== b.defaultHost) changes.push(`default target ${a.defaultHost ?? 'none'} -> ${b.defaultHost ?? 'none'}`);
    const pp = (c: RouteConfig): string => c.proxyProtocol ?? 'none';
    if (pp(a) !== pp(b)) changes.push(`proxy-protocol ${pp(a)} -> ${pp(b)}`);
    const ports = new Set([...a.routes.keys(), ...b.routes.keys()]);
    for (const port of [...ports].sort((x, y) => x - y)) {
      const before = a.routes.get(port);
      const after = b.routes.get(port);
      const header = (r: Route): string => (r.proxyProtocol === undefined ? '' : `,proxy-protocol=${r.proxyProtocol ?? 'none'}`);
      const show = (r: Route | undefined): string => (r === undefined ? 'none' : `${r.host}:${r.port}${header(r)}`);
      if (show(before) !== show(after)) changes.push(`route ${port}: ${show(before)} -> ${show(after)}`);
    }
    const allow = (s: ReadonlySet<number> | null): string => (s === null ? 'any' : [...s].sort((x, y) => x - y).join(','));
    if (allow(a.allow) !== allow(b.allow)) changes.push(`allow ${allow(a.allow)} -> ${allow(b.allow)}`);
    return changes;
  }
}
