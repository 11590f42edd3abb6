/**
 * A server's `[[client]]` tables next to the rest of its command: which
 * top-level settings they exclude, and the command line's own value parsers
 * for their keys.
 */
import { UsageError } from '../errors.js';
import type { RunCommand } from '../cli/args.js';
import { parsePortList, parseTargets } from '../cli/args.js';
import type { SiteOptions } from '../options.js';
import { resolveSites, type ClientTables } from './sites.js';

export function sitesOf(command: RunCommand, raw: ClientTables): readonly SiteOptions[] {
  const where = `config ${raw.path}: [[client]]`;
  if (command.mode !== 'server') throw new UsageError(`${where} tables are for a server (-s); a client's configuration cannot hold them`);
  if (command.ports.length > 0 || command.target !== undefined || command.routes.length > 0 || command.allow !== undefined || command.allowUdp !== undefined) {
    throw new UsageError(`${where}: with client tables, ports, target and allow go in each client's table, not at the top`);
  }
  if (command.secretFile !== undefined) throw new UsageError(`${where}: with client tables, each client has its own secret-file; remove the top-level one`);
  return resolveSites(raw, command.tls !== undefined ? 'cert' : 'psk', {
    portList: (text, what) => parsePortList(text, true, what),
    targets: (items, what) => {
      try {
        return parseTargets(items);
      } catch (err) {
        // parseTargets names the option; the file's key says it here.
        throw new UsageError(`${what}: ${err instanceof Error ? err.message.replace(/^-t\/--target:?\s*/, '') : String(err)}`);
      }
    },
  });
}
