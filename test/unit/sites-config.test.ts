// [[client]] tables in a server's configuration file, and port ranges.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseCommandLine, parsePortList } from '../../src/cli/args.js';
import { UsageError } from '../../src/errors.js';
import { generateSecret } from '../../src/security/secret.js';

function withDir(body: (dir: string) => void): void {
  const dir = mkdtempSync(join(tmpdir(), 'tcpipe-sites-'));
  try {
    body(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function keyFile(dir: string, name: string, secret = generateSecret()): string {
  const path = join(dir, `${name}.key`);
  writeFileSync(path, secret + '\n');
  chmodSync(path, 0o600);
  return path;
}

const usage = (pattern: RegExp) => (err: unknown) => err instanceof UsageError && pattern.test(err.message) && !err.message.includes('\n');

test('port ranges: -p A-B, BIND:A-B and --allow ranges; at most 1000 ports; backwards or overlapping ranges refused', () => {
  assert.deepEqual(parsePortList('40000-40002', true), [{ port: 40000 }, { port: 40001 }, { port: 40002 }]);
  assert.deepEqual(parsePortList('127.0.0.1:41000-41001,42000', true), [
    { host: '127.0.0.1', port: 41000 },
    { host: '127.0.0.1', port: 41001 },
    { port: 42000 },
  ]);
  assert.equal(parsePortList('40000-40999', true).length, 1000);
  assert.throws(() => parsePortList('40000-41000', true), usage(/range 40000-41000 has 1001 ports \(at most 1000\)/));
  assert.throws(() => parsePortList('40010-40000', true), usage(/goes backwards/));
  assert.throws(() => parsePortList('40000-40010,40005', true), usage(/port 40005 is listed twice/));
  const command = parseCommandLine(['-s', '50000', '-p', '40000-40019', '--allow=5000-5002,22']);
  assert.equal(command.kind, 'run');
  if (command.kind !== 'run') return;
  assert.equal(command.ports.length, 20);
  assert.deepEqual(command.allow, [5000, 5001, 5002, 22]);
});

test('port ranges with /udp: the suffix applies to the range; TCP and UDP ranges on the same ports do not clash', () => {
  assert.deepEqual(parsePortList('40000-40001/udp', true), [
    { port: 40000, protocol: 'udp' },
    { port: 40001, protocol: 'udp' },
  ]);
  assert.deepEqual(parsePortList('[::1]:40000-40001/udp', true), [
    { host: '::1', port: 40000, protocol: 'udp' },
    { host: '::1', port: 40001, protocol: 'udp' },
  ]);
  assert.equal(parsePortList('40000-40009,40000-40009/udp', true).length, 20);
  assert.throws(() => parsePortList('40000-40009/udp,40005/udp', true), usage(/port 40005\/udp is listed twice/));
  assert.throws(() => parsePortList('40000-40009/tcp,40005', true), usage(/port 40005 is listed twice/));
  assert.throws(() => parsePortList('40000-41000/udp', true), usage(/has 1001 ports/));
  const command = parseCommandLine(['-s', '50000', '-p', '40000-40002,40000-40002/udp', '--allow=5000-5001,53-54/udp']);
  assert.equal(command.kind, 'run');
  if (command.kind !== 'run') return;
  assert.equal(command.ports.filter((p) => p.protocol === 'udp').length, 3);
  assert.deepEqual(command.allow, [5000, 5001]);
  assert.deepEqual(command.allowUdp, [53, 54]);
});

test('[[client]] tables: each client with its secret, ports (ranges too), target and allow', () => {
  withDir((dir) => {
    const a = keyFile(dir, 'a');
    const b = keyFile(dir, 'b');
    const path = join(dir, 'hub.toml');
    writeFileSync(
      path,
      `server = 50000\n[[client]]\nname = "site-a"\nsecret-file = "${a}"\nports = [40000, "40010-40019"]\ntarget = ["10.0.0.5", "5433=db:5432"]\nallow = [5432, "6000-6001"]\n` +
        `[[client]]\nname = "site-b"\nsecret-file = "${b}"\nports = [41000]\n`,
    );
    const command = parseCommandLine([`--config=${path}`]);
    assert.equal(command.kind, 'run');
    if (command.kind !== 'run') return;
    const sites = command.sites ?? [];
    assert.deepEqual(sites.map((s) => s.name), ['site-a', 'site-b']);
    assert.equal(sites[0]?.ports?.length, 11);
    assert.equal(sites[0]?.target, '10.0.0.5');
    assert.deepEqual(sites[0]?.routes, [{ port: 5433, host: 'db', targetPort: 5432 }]);
    assert.deepEqual(sites[0]?.allow, [5432, 6000, 6001]);
    assert.equal(sites[1]?.target, undefined);
    assert.equal(sites[0]?.secret?.length, 1);
  });
});

test('bad [[client]] tables: one line naming the file, the client and the key', () => {
  withDir((dir) => {
    const a = keyFile(dir, 'a');
    const secret = generateSecret();
    const same1 = keyFile(dir, 's1', secret);
    const same2 = keyFile(dir, 's2', secret);
    const b = keyFile(dir, 'b');
    const path = join(dir, 'hub.toml');
    const client = (name: string, key: string, more = ''): string => `[[client]]\nname = "${name}"\nsecret-file = "${key}"\n${more}`;
    const cases: [string, RegExp][] = [
      [`server = 50000\n${client('x', join(dir, 'missing.key'))}`, /client 'x': key 'secret-file': cannot read the secret file/],
      [`server = 50000\n${client('x', a)}${client('x', b)}`, /client 'x': key 'name': two clients are named 'x'/],
      [`server = 50000\n${client('x', same1)}${client('y', same2)}`, /client 'y': key 'secret-file': the same secret as client 'x'/],
      [`server = 50000\n${client('x', a, 'ports = ["40000-40010"]\n')}${client('y', b, 'ports = [40005]\n')}`, /client 'y': key 'ports': port 40005 is also in client 'x'/],
      [`server = 50000\n${client('x', a, 'ports = ["40000-41000"]\n')}`, /client 'x': key 'ports': range 40000-41000 has 1001 ports/],
      [`server = 50000\n[[client]]\nsecret-file = "${a}"\n`, /client 1: key 'name': missing/],
      [`server = 50000\n${client('x', a, 'port = 1\n')}`, /client 'x': key 'port': unknown key/],
      [`server = 50000\nports = [40000]\n${client('x', a)}`, /ports, target and allow go in each client's table/],
      [`server = 50000\n${client('x', a, 'ports = [40000, "5353/udp"]\n')}`, /client 'x': key 'ports': 5353\/udp: a client's ports are TCP only/],
      [`server = 50000\n${client('x', a, 'target = ["53/udp=dns:53"]\n')}`, /client 'x': key 'target': 53\/udp: a client's routes are TCP only/],
      [`server = 50000\n${client('x', a, 'allow = ["53/udp"]\n')}`, /client 'x': key 'allow': 53\/udp: a client's allowed ports are TCP only/],
      [`server = 50000\nallow = ["53/udp"]\n${client('x', a)}`, /ports, target and allow go in each client's table/],
      [`server = 50000\n${client('x', a)}`.replace('[[client]]', '[[client]]').replace(`secret-file = "${a}"\n`, ''), /client 'x': key 'secret-file': missing/],
    ];
    for (const [text, pattern] of cases) {
      writeFileSync(path, text);
      assert.throws(() => parseCommandLine([`--config=${path}`]), (err: unknown) => {
        const ok = usage(pattern)(err) && err instanceof UsageError && err.message.includes(path);
        if (!ok) assert.fail(`for ${JSON.stringify(text)}: ${err instanceof Error ? err.message : String(err)}`);
        return true;
      });
    }
    // [[client]] in a client's configuration.
    writeFileSync(path, `${client('x', a)}`);
    assert.throws(() => parseCommandLine([`--config=${path}`, '-c', 'hub:50000']), usage(/\[\[client\]\] tables are for a server/));
  });
});
