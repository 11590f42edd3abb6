/**
 * The configuration file (`--config=FILE`, TOML): the same settings as the
 * command line, under the long option names, e.g.
 *
 *   server = 50000
 *   ports = [40000, 40001]
 *   target = ["appli2", "5432=db.internal:15432,proxy-protocol=v2"]
 *   secret-file = "/etc/tcpipe/secret"
 *
 * This module reads the file and checks each key's name and type; the values
 * are then validated exactly like command-line values (cli/args.ts).
 * smol-toml is a small, dependency-free TOML 1.0 parser.
 */
import { readFileSync } from 'node:fs';
import { parse } from 'smol-toml';
import { UsageError, errorMessage } from '../errors.js';
import { isClientTables, type ClientTables } from './sites.js';

/** Where a server's `[[client]]` tables ride along with the values (a symbol: not an option). */
export const CLIENT_TABLES: unique symbol = Symbol('tcpipe [[client]] tables');

/** The shape util.parseArgs gives: what the file's values are turned into. */
export type OptionValues = Record<string, string | boolean | string[] | undefined> & { [CLIENT_TABLES]?: ClientTables };

type Kind = 'string' | 'boolean' | 'list';

/** Every key a file may hold, and how its value is read. */
export const CONFIG_KEYS: Readonly<Record<string, Kind>> = Object.freeze({
  client: 'string',
  server: 'string',
  ports: 'list',
  target: 'list',
  'one-per-port': 'boolean',
  heartbeat: 'string',
  resume: 'string',
  verbose: 'boolean',
  quiet: 'boolean',
  'log-format': 'string',
  'secret-file': 'string',
  'tls-cert': 'string',
  'tls-key': 'string',
  'tls-ca': 'string',
  'tls-server-name': 'string',
  allow: 'list',
  'max-handshakes': 'string',
  'max-window': 'string',
  'session-budget': 'string',
  'udp-timeout': 'string',
  'udp-max-flows': 'string',
  proxy: 'string',
  'proxy-password-file': 'string',
  transport: 'list',
  'ws-path': 'string',
  metrics: 'string',
  'proxy-protocol': 'string',
  'accept-proxy-protocol': 'boolean',
});

function scalar(value: unknown): string | null {
  if (typeof value === 'string') return value;
  if (typeof value === 'number' && Number.isFinite(value)) return String(value);
  if (typeof value === 'bigint') return value.toString();
  return null;
}

/** Reads and checks a config file; every error names the file and the key. */
export function readConfigFile(path: string): OptionValues {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new UsageError(`--config: cannot read ${path}: ${errorMessage(err)}`);
  }
  let table: Record<string, unknown>;
  try {
    table = parse(text) as Record<string, unknown>;
  } catch (err) {
    const first = (errorMessage(err).split('\n')[0] ?? '').trim();
    throw new UsageError(`config ${path}: not valid TOML: ${first}`);
  }
  return configValues(table, path);
}

/** Checks a parsed table (also used by tests on examples/). */
export function configValues(table: Record<string, unknown>, path: string): OptionValues {
  const values: OptionValues = {};
  for (const [key, value] of Object.entries(table)) {
    const kind = CONFIG_KEYS[key];
    const where = `config ${path}: key '${key}'`;
    if (kind === undefined) throw new UsageError(`config ${path}: unknown key '${key}'`);
    if (key === 'client' && isClientTables(value)) {
      values[CLIENT_TABLES] = { path, tables: value };
      continue;
    }
    if (kind === 'boolean') {
      if (typeof value !== 'boolean') throw new UsageError(`${where} must be true or false`);
      values[key] = value;
    } else if (kind === 'string') {
      const text = scalar(value);
      if (text === null) throw new UsageError(`${where} must be a string or a number`);
      values[key] = text;
    } else {
      const items = Array.isArray(value) ? value : [value];
      const texts = items.map(scalar);
      if (texts.some((t) => t === null) || texts.length === 0) throw new UsageError(`${where} must be a string, a number, or a list of them`);
      values[key] = texts.filter((t): t is string => t !== null);
    }
  }
  return values;
}
