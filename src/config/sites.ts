/**
 * `[[client]]` tables in a server's configuration file: one per site that
 * dials in, each with its own secret (or certificate name), entry ports,
 * target and allowed ports.
 *
 *   [[client]]
 *   name = "site-a"
 *   secret-file = "/etc/tcpipe/site-a.key"
 *   ports = [40000, "40010-40019"]
 *   target = ["10.0.0.5"]
 *   allow = [5432]
 *
 * Every error is one line naming the file, the client and the key; the CLI
 * exits 2 with it, and a reload (SIGHUP) refuses the new file with it.
 */
import { UsageError, errorMessage } from '../errors.js';
import type { ListenSpec } from '../endpoints/entry.js';
import type { RouteSpec, SiteOptions } from '../options.js';
import { loadSecrets, type Secret } from '../security/secret.js';

/** The raw tables, as the TOML parser gives them, with the file they came from. */
export interface ClientTables {
  readonly path: string;
  readonly tables: readonly Record<string, unknown>[];
}

/** What `[[client]]` keys hold: the parsers of the command line's values, passed in (cli/args.ts owns them). */
export interface SiteValueParsers {
  portList(text: string, what: string): readonly ListenSpec[];
  targets(items: readonly string[], what: string): { target: string | undefined; routes: readonly RouteSpec[] };
}

const KEYS = new Set(['name', 'secret-file', 'cert-name', 'ports', 'target', 'allow']);
/** Names appear in logs, metric labels and status: keep them plain. */
const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

function scalars(value: unknown): string[] | null {
  const items = Array.isArray(value) ? value : [value];
  const out: string[] = [];
  for (const item of items) {
    if (typeof item === 'string') out.push(item);
    else if (typeof item === 'number' && Number.isInteger(item)) out.push(String(item));
    else return null;
  }
  return out.length > 0 ? out : null;
}

/** Is this TOML value an array of tables (`[[client]]`), not the client mode's `client = "host:port"`? */
export function isClientTables(value: unknown): value is Record<string, unknown>[] {
  return Array.isArray(value) && value.length > 0 && value.every((v) => typeof v === 'object' && v !== null && !Array.isArray(v));
}

/**
 * Checks and resolves the tables. `security` is the server's own: 'cert' when it
 * has certificates (clients then name theirs with cert-name), otherwise secrets.
 */
export function resolveSites(raw: ClientTables, security: 'psk' | 'cert', parse: SiteValueParsers): SiteOptions[] {
  const { path } = raw;
  const sites: SiteOptions[] = [];
  const names = new Set<string>();
  const owners = new Map<string, string>(); // secret key id or cert name -> client
  const portOwners = new Map<number, { readonly host: string | undefined; readonly name: string }[]>();
  raw.tables.forEach((table, index) => {
    const label = typeof table.name === 'string' ? `client '${table.name}'` : `client ${index + 1}`;
    const fail = (key: string, reason: string): never => {
      throw new UsageError(`config ${path}: ${label}: key '${key}': ${reason}`);
    };
    for (const key of Object.keys(table)) if (!KEYS.has(key)) fail(key, 'unknown key (name, secret-file, cert-name, ports, target, allow)');
    const name = table.name;
    if (typeof name !== 'string') return fail('name', 'missing: each [[client]] needs a name');
    if (!NAME.test(name)) fail('name', `'${name}' must be letters, digits, '.', '_' or '-' (at most 64)`);
    if (names.has(name)) fail('name', `two clients are named '${name}'`);
    names.add(name);

    let secret: readonly Secret[] | undefined;
    let certName: string | undefined;
    const secretFile = table['secret-file'];
    const certKey = table['cert-name'];
    if (security === 'psk') {
      if (certKey !== undefined) fail('cert-name', 'needs certificates on the server (tls-cert, tls-key, tls-ca); with secrets give secret-file');
      if (typeof secretFile !== 'string' || secretFile === '') return fail('secret-file', 'missing: each client needs its own secret file');
      try {
        secret = loadSecrets({ file: secretFile, env: undefined }).secrets;
      } catch (err) {
        return fail('secret-file', errorMessage(err));
      }
      for (const s of secret) {
        const other = owners.get(s.keyId);
        if (other !== undefined) fail('secret-file', `the same secret as client '${other}'`);
        owners.set(s.keyId, name);
      }
    } else {
      if (secretFile !== undefined) fail('secret-file', 'the server uses certificates: name the client\'s certificate with cert-name');
      if (typeof certKey !== 'string' || certKey === '') return fail('cert-name', 'missing: the name in the client\'s certificate (subject CN or a SAN)');
      const other = owners.get(certKey.toLowerCase());
      if (other !== undefined) fail('cert-name', `the same name as client '${other}'`);
      owners.set(certKey.toLowerCase(), name);
      certName = certKey;
    }

    let ports: readonly ListenSpec[] = [];
    if (table.ports !== undefined) {
      const items = scalars(table.ports) ?? fail('ports', 'must be a port, a range "A-B", or a list of them');
      try {
        ports = parse.portList(items.join(','), `config ${path}: ${label}: key 'ports'`);
      } catch (err) {
        throw new UsageError(errorMessage(err));
      }
      const udp = ports.find((p) => p.protocol === 'udp');
      if (udp !== undefined) fail('ports', `${udp.port}/udp: a client's ports are TCP only (UDP is for a server without [[client]] tables)`);
      for (const spec of ports) {
        const holders = portOwners.get(spec.port) ?? [];
        // Two listeners clash on one port when either takes every address, or both take the same one.
        const other = holders.find((h) => h.name !== name && (h.host === undefined || spec.host === undefined || h.host === spec.host));
        if (other !== undefined) fail('ports', `port ${spec.port} is also in client '${other.name}'`);
        holders.push({ host: spec.host, name });
        portOwners.set(spec.port, holders);
      }
    }
    let target: string | undefined;
    let routes: readonly RouteSpec[] = [];
    if (table.target !== undefined) {
      const items = scalars(table.target) ?? fail('target', 'must be a host, PORT=HOST[:TPORT], or a list of them');
      try {
        ({ target, routes } = parse.targets(items, `config ${path}: ${label}: key 'target'`));
      } catch (err) {
        throw new UsageError(errorMessage(err));
      }
      const udp = routes.find((r) => r.protocol === 'udp');
      if (udp !== undefined) fail('target', `${udp.port}/udp: a client's routes are TCP only (UDP is for a server without [[client]] tables)`);
    }
    let allow: number[] | undefined;
    if (table.allow !== undefined) {
      const items = scalars(table.allow) ?? fail('allow', 'must be a port, a range "A-B", or a list of them');
      try {
        allow = parse.portList(items.join(','), `config ${path}: ${label}: key 'allow'`).map((s) => {
          if (s.host !== undefined) fail('allow', `takes port numbers, not '${s.host}:${s.port}'`);
          if (s.protocol === 'udp') fail('allow', `${s.port}/udp: a client's allowed ports are TCP only`);
          return s.port;
        });
      } catch (err) {
        throw err instanceof UsageError ? err : new UsageError(errorMessage(err));
      }
    }
    sites.push({
      name,
      ...(secret !== undefined ? { secret } : {}),
      ...(certName !== undefined ? { certName } : {}),
      ports,
      ...(target !== undefined ? { target } : {}),
      routes,
      ...(allow !== undefined ? { allow } : {}),
    });
  });
  return sites;
}
