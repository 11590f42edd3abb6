import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseCommandLine, parseSize } from '../../src/cli/args.js';
import { configValues, readConfigFile } from '../../src/config/file.js';
import { UsageError } from '../../src/errors.js';

function withFile(text: string, body: (path: string) => void): void {
  const dir = mkdtempSync(join(tmpdir(), 'tcpipe-config-'));
  try {
    const path = join(dir, 'tcpipe.toml');
    writeFileSync(path, text);
    body(path);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const usage = (pattern: RegExp) => (err: unknown) => err instanceof UsageError && pattern.test(err.message);

test('a config file says what the command line says', () => {
  withFile(
    `server = 50000\nports = [40000, "127.0.0.1:40001"]\ntarget = ["appli2", "5432=db:15432"]\nallow = [40000, 5432]\none-per-port = true\nheartbeat = 5\nlog-format = "json"\n`,
    (path) => {
      const command = parseCommandLine([`--config=${path}`]);
      assert.equal(command.kind, 'run');
      if (command.kind !== 'run') return;
      assert.equal(command.mode, 'server');
      assert.equal(command.linkPort, 50000);
      assert.deepEqual(command.ports, [{ port: 40000 }, { host: '127.0.0.1', port: 40001 }]);
      assert.equal(command.target, 'appli2');
      assert.deepEqual(command.routes, [{ port: 5432, host: 'db', targetPort: 15432 }]);
      assert.deepEqual(command.allow, [40000, 5432]);
      assert.equal(command.onePerPort, true);
      assert.equal(command.heartbeatSeconds, 5);
      assert.equal(command.logFormat, 'json');
    },
  );
});

test('flags on the command line override the file', () => {
  withFile(`server = 50000\nports = [40000]\nheartbeat = 5\n`, (path) => {
    const command = parseCommandLine([`--config=${path}`, '-p', '41000', '--heartbeat=9']);
    assert.equal(command.kind, 'run');
    if (command.kind !== 'run') return;
    assert.deepEqual(command.ports, [{ port: 41000 }]);
    assert.equal(command.heartbeatSeconds, 9);
    assert.equal(command.linkPort, 50000, 'what the command line does not say comes from the file');
  });
});

test('each bad file gives one clear error naming the key', () => {
  const cases: [string, RegExp][] = [
    ['server = 50000\nport = 1\n', /unknown key 'port'/],
    ['server = true\n', /key 'server' must be a string or a number/],
    ['server = 50000\none-per-port = "yes"\n', /key 'one-per-port' must be true or false/],
    ['server = 50000\nports = [{ a = 1 }]\n', /key 'ports' must be a string, a number, or a list of them/],
    ['server = 50000\nports = [0]\n', /key 'ports': port 0 is outside 1-65535/],
    ['server = 50000\nheartbeat = 0\n', /key 'heartbeat': must be a number of seconds/],
    ['client = "host1"\n', /key 'client': 'host1' needs a port/],
    ['server = 50000\ntarget = ["a", "b"]\n', /key 'target': two default hosts/],
    ['server = [50000\n', /not valid TOML/],
  ];
  for (const [text, pattern] of cases) {
    withFile(text, (path) => {
      assert.throws(() => parseCommandLine([`--config=${path}`]), usage(pattern), text);
      assert.throws(() => parseCommandLine([`--config=${path}`]), (err: unknown) => err instanceof Error && err.message.includes(path), 'names the file');
    });
  }
  assert.throws(() => readConfigFile('/nonexistent/tcpipe.toml'), usage(/cannot read \/nonexistent\/tcpipe.toml/));
});

test('a bad value given on the command line is reported as the flag, not the file', () => {
  withFile('server = 50000\n', (path) => {
    assert.throws(() => parseCommandLine([`--config=${path}`, '-p', '0']), usage(/^-p\/--ports: port 0 is outside/));
  });
});

test('configValues turns TOML types into option values', () => {
  assert.deepEqual(configValues({ server: 50000, ports: [1, '2'], verbose: true, allow: 5 }, 'x'), {
    server: '50000',
    ports: ['1', '2'],
    verbose: true,
    allow: ['5'],
  });
});

test('window flags take sizes with K, M, G suffixes, within bounds', () => {
  const command = parseCommandLine(['-s', '50000', '--max-window=4M', '--session-budget=1G']);
  assert.equal(command.kind, 'run');
  if (command.kind !== 'run') return;
  assert.equal(command.maxWindow, 4 * 1024 * 1024);
  assert.equal(command.sessionBudget, 1024 ** 3);
  assert.equal(parseSize('65536', 'x', 1, 1e9), 65536);
  assert.equal(parseSize('512KiB', 'x', 1, 1e9), 512 * 1024);
  for (const bad of ['5x', '1K', '2G', '-1', '']) {
    assert.throws(() => parseCommandLine(['-s', '50000', `--max-window=${bad}`]), usage(/--max-window must be a size/), bad);
  }
});
