/**
 * A server's sites as the link sees them: the security that accepts every
 * site's secret (or the server's certificates), and which site a proved
 * identity belongs to. Pure: rebuilt from the options at start and on reload.
 */
import { ErrorCodes, TcpipeError } from './errors.js';
import type { LinkSecurity, PeerIdentity } from './link/security.js';
import type { CommonOptions, SiteOptions } from './options.js';
import { Secret } from './security/secret.js';

export class SiteDirectory {
  /** Secret key id (PSK identity) or lower-cased certificate name -> site. */
  private readonly owners = new Map<string, string>();
  /** A fingerprint of each site's credentials: a changed one closes that site's link. */
  readonly credentials = new Map<string, string>();
  readonly security: LinkSecurity;
  readonly names: ReadonlySet<string>;

  constructor(sites: readonly SiteOptions[], tls: CommonOptions['tls']) {
    if (sites.length === 0) throw new TcpipeError(ErrorCodes.CONFIG, 'clients: the list is empty');
    const secrets: Secret[] = [];
    const names = new Set<string>();
    for (const site of sites) {
      if (names.has(site.name)) throw new TcpipeError(ErrorCodes.CONFIG, `clients: two clients are named '${site.name}'`);
      names.add(site.name);
      const ids: string[] = [];
      if (tls !== undefined) {
        if (site.certName === undefined) throw new TcpipeError(ErrorCodes.CONFIG, `client '${site.name}': with certificates, give its certName`);
        ids.push(site.certName.toLowerCase());
      } else {
        const texts = site.secret ?? [];
        if (texts.length === 0) throw new TcpipeError(ErrorCodes.CONFIG, `client '${site.name}': give its secret (or certificates and a certName)`);
        for (const [i, t] of texts.entries()) {
          const secret = t instanceof Secret ? t : Secret.fromText(t, `client '${site.name}' secret ${i + 1}`);
          secrets.push(secret);
          ids.push(secret.keyId);
        }
      }
      for (const id of ids) {
        const other = this.owners.get(id);
        if (other !== undefined) throw new TcpipeError(ErrorCodes.CONFIG, `clients '${other}' and '${site.name}' have the same ${tls !== undefined ? 'certificate name' : 'secret'}`);
        this.owners.set(id, site.name);
      }
      this.credentials.set(site.name, ids.join(' '));
    }
    this.names = names;
    this.security = tls !== undefined ? { kind: 'cert', ...tls } : { kind: 'psk', secrets };
  }

  /** The site a proved identity belongs to; an AUTH error (penalty box, as a wrong secret) for none. */
  identify(identity: PeerIdentity): string {
    if (identity.kind === 'psk') {
      const site = this.owners.get(identity.keyId);
      if (site !== undefined) return site;
    } else if (identity.kind === 'cert') {
      for (const name of identity.names) {
        const site = this.owners.get(name.toLowerCase());
        if (site !== undefined) return site;
      }
    }
    const who = identity.kind === 'cert' ? `certificate names ${identity.names.join(', ') || '(none)'}` : 'secret';
    throw new TcpipeError(ErrorCodes.AUTH, `the client's ${who} belong to no [[client]] table`);
  }
}
