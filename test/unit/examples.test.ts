/** Every file in examples/ is loaded and checked, so the examples cannot rot. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { parseCommandLine } from '../../src/cli/args.js';

const examples = fileURLToPath(new URL('../../../examples/', import.meta.url));

test('every example config file is a valid tcpipe configuration', () => {
  const files = readdirSync(examples).filter((f) => f.endsWith('.toml'));
  assert.ok(files.length >= 2, 'examples/ holds a server and a client config');
  for (const file of files) {
    const command = parseCommandLine([`--config=${join(examples, file)}`]);
    assert.equal(command.kind, 'run', file);
    if (command.kind !== 'run') continue;
    assert.equal(command.mode, file.startsWith('server') ? 'server' : 'client', file);
    assert.equal(command.secretFile, '/etc/tcpipe/secret', `${file} uses a secret`);
  }
});

test('the client example routes one port elsewhere and limits the ports', () => {
  const command = parseCommandLine([`--config=${join(examples, 'client.toml')}`]);
  assert.equal(command.kind, 'run');
  if (command.kind !== 'run') return;
  assert.equal(command.target, 'appli2');
  assert.deepEqual(command.routes, [{ port: 5432, host: 'db.internal', targetPort: 15432 }]);
  assert.deepEqual(command.allow, [40000, 40001, 5432]);
});

test('systemd units are hardened, restart, and start a valid command line', () => {
  const dir = join(examples, 'systemd');
  const units = readdirSync(dir).filter((f) => f.endsWith('.service'));
  assert.deepEqual(units.sort(), ['tcpipe-client.service', 'tcpipe-server.service']);
  for (const unit of units) {
    const text = readFileSync(join(dir, unit), 'utf8');
    const keys = new Map<string, string>();
    for (const line of text.split('\n')) {
      const m = /^([A-Za-z]+)=(.*)$/.exec(line);
      if (m !== null && m[1] !== undefined && m[2] !== undefined) keys.set(m[1], m[2]);
    }
    for (const [key, value] of [
      ['DynamicUser', 'yes'],
      ['NoNewPrivileges', 'yes'],
      ['Restart', 'always'],
      ['ProtectSystem', 'strict'],
      ['RestartPreventExitStatus', '2'],
    ]) {
      assert.equal(keys.get(key ?? ''), value, `${unit}: ${key ?? ''}`);
    }
    const exec = keys.get('ExecStart') ?? '';
    const argv = exec.replace('/usr/bin/env tcpipe ', '').replace('%d', '/run/credentials').split(' ');
    const role = unit.includes('server') ? 'server' : 'client';
    const withExampleConfig = argv.map((a) => a.replace(`/etc/tcpipe/${role}.toml`, join(examples, `${role}.toml`)));
    const command = parseCommandLine(withExampleConfig);
    assert.equal(command.kind, 'run', unit);
    if (command.kind === 'run') assert.equal(command.secretFile, '/run/credentials/secret', `${unit}: the credential overrides the file`);
  }
});
