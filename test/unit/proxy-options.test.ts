/**
 * The PROXY protocol options: --proxy-protocol, --accept-proxy-protocol, the
 * route option `,proxy-protocol=v1|v2|none` (command line and TOML `target`
 * strings alike), the route table's choice per port, and the capability
 * requirement they bring.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { parseCommandLine, type RunCommand } from '../../src/cli/args.js';
import { UsageError } from '../../src/errors.js';
import { configValues } from '../../src/config/file.js';
import { linkSettingsFrom, requirementsFrom, routeTable } from '../../src/config/resolve.js';
import { DEFAULTS } from '../../src/config/defaults.js';
import { Capability } from '../../src/protocol/constants.js';

function run(argv: readonly string[], file?: Record<string, unknown>): RunCommand {
  const command = parseCommandLine(argv, file === undefined ? {} : { loadConfig: (path) => configValues(file, path) });
  assert.equal(command.kind, 'run');
  if (command.kind !== 'run') throw new Error('unreachable');
  return command;
}

function rejects(argv: readonly string[], expected: RegExp, file?: Record<string, unknown>): void {
  assert.throws(
    () => parseCommandLine(argv, file === undefined ? {} : { loadConfig: (path) => configValues(file, path) }),
    (err: unknown) => err instanceof UsageError && expected.test(err.message) && !err.message.includes('\n'),
  );
}

describe('command line', () => {
  test('--proxy-protocol and per-route options', () => {
    const c = run(['-c', 'h:1', '-t', 'appli2', '--proxy-protocol=v1', '-t', '5432=db:15432,proxy-protocol=v2', '-t', '22=[::1],proxy-protocol=none']);
    assert.equal(c.proxyProtocol, 'v1');
    assert.deepEqual(c.routes, [
      { port: 5432, host: 'db', targetPort: 15432, proxyProtocol: 'v2' },
      { port: 22, host: '::1', proxyProtocol: 'none' },
    ]);
    assert.equal(c.acceptProxyProtocol, false);
    assert.equal(run(['-s', '1', '-p', '40000', '--accept-proxy-protocol']).acceptProxyProtocol, true);
    assert.equal(run(['-s', '1', '-t', 'x']).proxyProtocol, undefined);
  });

  test('bad values: one line each', () => {
    rejects(['-s', '1', '--proxy-protocol=v3'], /^--proxy-protocol must be v1 or v2, not 'v3'$/);
    rejects(['-s', '1', '--proxy-protocol'], /needs a value/);
    rejects(['-s', '1', '-t', '5432=db,proxy-protocol=v4'], /proxy-protocol must be v1, v2 or none, not 'v4'/);
    rejects(['-s', '1', '-t', '5432=db,proxy-protocol'], /proxy-protocol must be v1, v2 or none, not ''/);
    rejects(['-s', '1', '-t', '5432=db,send-proxy'], /unknown route option 'send-proxy'/);
    rejects(['-s', '1', '-t', '5432=db,proxy-protocol=v1,proxy-protocol=v2'], /given twice/);
    rejects(['-s', '1', '-t', 'appli2,proxy-protocol=v2'], /options follow a route .* use --proxy-protocol/);
    rejects(['-s', '1', '--accept-proxy-protocol'], /--accept-proxy-protocol applies to the entry ports: give -p too/);
  });

  test('the TOML file: the long names, and target strings with the route option', () => {
    const c = run(['--config=x.toml'], {
      server: 50000,
      ports: [40000],
      target: ['appli2', '5432=db:15432,proxy-protocol=v2'],
      'proxy-protocol': 'v1',
      'accept-proxy-protocol': true,
    });
    assert.equal(c.proxyProtocol, 'v1');
    assert.equal(c.acceptProxyProtocol, true);
    assert.deepEqual(c.routes, [{ port: 5432, host: 'db', targetPort: 15432, proxyProtocol: 'v2' }]);
    rejects(['--config=x.toml'], /^config x\.toml: key 'proxy-protocol': must be v1 or v2, not 'v9'$/, { server: 1, 'proxy-protocol': 'v9' });
    rejects(['--config=x.toml'], /key 'accept-proxy-protocol' must be true or false/, { server: 1, 'accept-proxy-protocol': 'yes' });
  });
});

describe('routes and requirements', () => {
  test('each route settles its header: its own choice, else --proxy-protocol', () => {
    const table = routeTable({
      target: 'appli2',
      proxyProtocol: 'v1',
      routes: [
        { port: 5432, host: 'db', targetPort: 15432, proxyProtocol: 'v2' },
        { port: 22, host: 'bastion', proxyProtocol: 'none' },
        { port: 80, host: 'web' },
      ],
    });
    assert.deepEqual(table.resolve(5432), { ok: true, route: { host: 'db', port: 15432, proxyProtocol: 'v2' } });
    assert.deepEqual(table.resolve(22), { ok: true, route: { host: 'bastion', port: 22 } });
    assert.deepEqual(table.resolve(80), { ok: true, route: { host: 'web', port: 80, proxyProtocol: 'v1' } });
    assert.deepEqual(table.resolve(40000), { ok: true, route: { host: 'appli2', port: 40000, proxyProtocol: 'v1' } });
    assert.deepEqual(routeTable({ target: 'appli2' }).resolve(1), { ok: true, route: { host: 'appli2', port: 1 } });
    assert.deepEqual(table.describeChanges(routeTable({ target: 'appli2', routes: [{ port: 5432, host: 'db', targetPort: 15432 }] })), [
      'proxy-protocol v1 -> none',
      'route 22: bastion:22,proxy-protocol=none -> none',
      'route 80: web:80 -> none',
      'route 5432: db:15432,proxy-protocol=v2 -> db:15432',
    ]);
  });

  test('every side announces origin; one that writes headers requires it', () => {
    assert.deepEqual(linkSettingsFrom({ ...DEFAULTS }, 0).capabilities, [Capability.ORIGIN, Capability.UDP]);
    assert.deepEqual(requirementsFrom({ target: 'x' }), []);
    assert.deepEqual(requirementsFrom({ routes: [{ port: 1, host: 'x', proxyProtocol: 'none' }] }), []);
    const needed = [{ capability: Capability.ORIGIN, neededBy: '--proxy-protocol' }];
    assert.deepEqual(requirementsFrom({ proxyProtocol: 'v2' }), needed);
    assert.deepEqual(requirementsFrom({ routes: [{ port: 1, host: 'x', proxyProtocol: 'v1' }] }), needed);
  });
});
