/**
 * A reload (SIGHUP) of a server's sites: removed clients lose their ports,
 * connections and link; added ones get theirs; a changed client gets its new
 * ports, routes and (a changed secret or certificate name) loses its link;
 * every other client is left alone. Ports are unbound everywhere before any
 * is bound, so a port may move from one client to another in one reload.
 */
import { errorMessage } from './errors.js';
import type { ListenSpec } from './endpoints/entry.js';
import type { RouteTable } from './endpoints/routes.js';
import type { Logger } from './log/logger.js';
import type { SiteOptions } from './options.js';
import { listenKey, type Site } from './site.js';
import type { SiteDirectory } from './site-directory.js';

export interface SiteReload {
  readonly sites: Map<string, Site>;
  readonly before: SiteDirectory;
  readonly after: SiteDirectory;
  newSite(options: SiteOptions): Site;
  /** A client's route table (with the server's --proxy-protocol). */
  routes(options: SiteOptions): RouteTable;
  /** The new directory takes effect for new links. */
  commit(directory: SiteDirectory): void;
  dropClient(name: string, reason: string): void;
  readonly logger: Logger;
}

/** The TCP entry ports of a list (a site's; the /udp ones are the instance's UdpEntryPorts). */
export function listenSpecs(ports: readonly (number | ListenSpec)[] | undefined): ListenSpec[] {
  return (ports ?? []).map((p) => (typeof p === 'number' ? { port: p } : p)).filter((p) => p.protocol !== 'udp');
}

/** The /udp entry ports of a list. */
export function udpSpecs(ports: readonly (number | ListenSpec)[] | undefined): ListenSpec[] {
  return (ports ?? []).flatMap((p) => (typeof p !== 'number' && p.protocol === 'udp' ? [p] : []));
}

const shown = (key: string): string => key.replace(/^\*:/, '');

/** A port plan: what each site unbinds, then binds. */
export interface PortChange {
  readonly site: Site;
  readonly unbind: readonly string[];
  readonly bind: readonly ListenSpec[];
}

export function portChange(site: Site, specs: readonly ListenSpec[]): PortChange {
  const wanted = new Set(specs.map(listenKey));
  return { site, unbind: site.listening.filter((k) => !wanted.has(k)), bind: specs.filter((s) => !site.listening.includes(listenKey(s))) };
}

/** Unbinds, then binds; a port that cannot be bound is logged and listed, the rest applies. */
export async function applyPortChanges(changes: readonly PortChange[], logger: Logger): Promise<string[]> {
  const lines: string[] = [];
  const label = (site: Site): string => (site.name === '' ? '' : `client '${site.name}': `);
  for (const { site, unbind } of changes) {
    site.unlisten(unbind, 'its port was removed from the configuration');
    for (const key of unbind) lines.push(`${label(site)}port ${shown(key)} closed`);
  }
  for (const { site, bind } of changes) {
    for (const spec of bind) {
      try {
        await site.listen([spec]);
        lines.push(`${label(site)}port ${shown(listenKey(spec))} opened`);
      } catch (err) {
        logger.error('reload_listen_failed', `reload: ${label(site)}${errorMessage(err)}`, { ...site.field, port: spec.port });
        lines.push(`${label(site)}port ${shown(listenKey(spec))} NOT opened (${errorMessage(err)})`);
      }
    }
  }
  return lines;
}

export async function applySites(reload: SiteReload, clients: readonly SiteOptions[]): Promise<string[]> {
  const { sites, before, after, logger } = reload;
  const lines: string[] = [];
  const wanted = new Map(clients.map((c) => [c.name, c]));
  reload.commit(after);
  const plans: PortChange[] = [];
  for (const [name, site] of [...sites]) {
    if (wanted.has(name)) continue;
    // Removed: its ports, its connections, its link.
    plans.push({ site, unbind: site.listening, bind: [] });
    sites.delete(name);
    lines.push(`client '${name}' removed`);
  }
  for (const c of clients) {
    let site = sites.get(c.name);
    if (site === undefined) {
      site = reload.newSite(c);
      sites.set(c.name, site);
      lines.push(`client '${c.name}' added`);
    } else {
      const routes = reload.routes(c);
      for (const change of site.routes.describeChanges(routes)) lines.push(`client '${c.name}': ${change}`);
      site.setRoutes(routes);
      if (before.credentials.get(c.name) !== after.credentials.get(c.name)) {
        reload.dropClient(c.name, `the secret of client '${c.name}' changed`);
        lines.push(`client '${c.name}': secret changed, its link closed`);
      }
    }
    plans.push(portChange(site, listenSpecs(c.ports)));
  }
  lines.push(...(await applyPortChanges(plans, logger)));
  for (const plan of plans) {
    if (sites.has(plan.site.name)) continue;
    reload.dropClient(plan.site.name, `client '${plan.site.name}' was removed from the configuration`);
    plan.site.abortAll('its client was removed from the configuration');
  }
  return lines;
}
