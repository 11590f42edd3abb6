// The real `tcpipe` command (dist/src/cli/main.js) as a user runs it: exit
// statuses, what goes to stdout and stderr, and no stack traces.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { HELP_TEXT, USAGE } from '../../src/cli/help.js';
import { runCli, type CliRun } from '../helpers/cli.js';
import { freePort } from '../helpers/net.js';

const PACKAGE_VERSION = (JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string }).version;

type Result = Omit<CliRun, 'code'> & { readonly status: number | null };

/** Runs the CLI with `args`; fails if it has not exited within `timeoutMs`. */
async function tcpipe(args: readonly string[], timeoutMs = 10_000): Promise<Result> {
  const { code, ...rest } = await runCli(args, {}, timeoutMs);
  if (rest.signal === 'SIGKILL') {
    assert.fail(`tcpipe ${args.join(' ')} did not exit within ${timeoutMs} ms\nstdout: ${rest.stdout}\nstderr: ${rest.stderr}`);
  }
  return { status: code, ...rest };
}

function noStackTrace(r: Result, what: string): void {
  assert.ok(!r.stdout.includes('    at ') && !r.stderr.includes('    at '), `${what}: a stack trace was printed:\n${r.stderr}${r.stdout}`);
}

/** A listener that holds a port; closed by the caller. */
async function occupy(host?: string): Promise<{ server: net.Server; port: number }> {
  const server = net.createServer((s) => s.destroy());
  server.listen(0, host);
  await once(server, 'listening');
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('no address');
  return { server, port: address.port };
}

// [argv, the one-line reason after 'tcpipe: ']
const BAD_COMMAND_LINES: readonly (readonly [readonly string[], string])[] = [
  [[], 'a mode is required: -c <host>:<port> or -s <port>'],
  [['-c', 'host1:50000', '-s', '50000'], '-c and -s cannot be used together: choose client or server mode'],
  [['-s', '0'], '-s/--server: port 0 is outside 1-65535'],
  [['-s', '65536'], '-s/--server: port 65536 is outside 1-65535'],
  [['-s', 'abc'], "-s/--server: 'abc' is not a port number (1-65535)"],
  [['-c', 'host1:0'], '-c/--client: port 0 is outside 1-65535'],
  [['-s', '50000', '-p', '65536'], '-p/--ports: port 65536 is outside 1-65535'],
  [['-c', 'host1'], "-c/--client: 'host1' needs a port, as <host>:<port>"],
  [['-c', '::1:50000'], '-c/--client: write an IPv6 address in brackets, as [::1]:50000'],
  [['-s', '50000', '--bogus'], "unknown option '--bogus'"],
  [['-s', '50000', '-p', '40000,,40001'], "-p/--ports: empty entry in '40000,,40001'"],
  [['-s', '50000', '-p', '40000,'], "-p/--ports: empty entry in '40000,'"],
  [['-s', '50000', '-p', '40000,40000'], '-p/--ports: port 40000 is listed twice'],
  [['-s', '50000', '-v', '-q'], '-v/--verbose and -q/--quiet cannot be used together'],
  [['-s', '50000', '--heartbeat=abc'], "--heartbeat must be a number of seconds between 0.3 and 3600, not 'abc'"],
  [['-s', '50000', '--heartbeat=0'], "--heartbeat must be a number of seconds between 0.3 and 3600, not '0'"],
  [['-s', '50000', 'extra'], "unexpected argument 'extra'"],
  [['-s'], "option '-s, --server <value>' needs a value"],
  [['-s', '50000', '--log-format=xml'], "--log-format must be text or json, not 'xml'"],
];

describe('tcpipe CLI', { concurrency: true }, () => {
  test('every bad command line: status 2, one reason line then the usage on stderr, nothing on stdout', async () => {
    const results = await Promise.all(BAD_COMMAND_LINES.map(async ([argv, reason]) => ({ argv, reason, r: await tcpipe(argv) })));
    for (const { argv, reason, r } of results) {
      const what = `tcpipe ${argv.join(' ')}`;
      assert.equal(r.status, 2, `${what}: exit status\n${r.stderr}`);
      assert.equal(r.stdout, '', `${what}: stdout`);
      assert.equal(r.stderr, `tcpipe: ${reason}\n${USAGE}\n`, `${what}: stderr`);
      noStackTrace(r, what);
    }
  });

  test('--help and -h print the help on stdout and exit 0', async () => {
    for (const flag of ['--help', '-h']) {
      const r = await tcpipe([flag]);
      assert.equal(r.status, 0, r.stderr);
      assert.equal(r.stdout, HELP_TEXT + '\n');
      assert.equal(r.stderr, '');
    }
    // The help names the seed's syntax.
    assert.match(HELP_TEXT, /-c, --client=<host>:<port>/);
    assert.match(HELP_TEXT, /-s, --server=<port>/);
    assert.match(HELP_TEXT, /-p, --ports=<port>\[,<port>\.\.\.\]/);
    assert.match(HELP_TEXT, /-t, --target=<host>/);
  });

  test('-V and --version print tcpipe <version from package.json>', async () => {
    for (const flag of ['-V', '--version']) {
      const r = await tcpipe([flag]);
      assert.equal(r.status, 0, r.stderr);
      assert.equal(r.stdout, `tcpipe ${PACKAGE_VERSION}\n`);
      assert.equal(r.stderr, '');
    }
  });

  test('link port already in use: exit 1 with one clear error line', async () => {
    const { server, port } = await occupy();
    try {
      const r = await tcpipe(['-s', String(port), '-p', String(await freePort('::'))]);
      checkPortInUse(r, port, `tcpipe -s ${port}`);
    } finally {
      server.close();
    }
  });

  test('entry port already in use: exit 1 with one clear error line', async () => {
    const { server, port } = await occupy('127.0.0.1');
    try {
      for (const spec of [`127.0.0.1:${port}`, String(port)]) {
        const r = await tcpipe(['-s', String(await freePort('::')), '-p', spec]);
        checkPortInUse(r, port, `tcpipe -p ${spec}`);
      }
    } finally {
      server.close();
    }
  });

  test('tcpipe demo exits 0 and reports the data intact', { timeout: 60_000 }, async () => {
    const r = await tcpipe(['demo'], 50_000);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /intact/);
    assert.doesNotMatch(r.stdout, /NOT intact|corrupt|mismatch/i);
    noStackTrace(r, 'tcpipe demo');
  });
});

function checkPortInUse(r: Result, port: number, what: string): void {
  assert.equal(r.status, 1, `${what}: exit status\n${r.stderr}`);
  noStackTrace(r, what);
  assert.equal(r.stdout, '', `${what}: stdout`);
  const errors = r.stderr.split('\n').filter((line) => /\bERROR\b|^tcpipe: /.test(line));
  assert.equal(errors.length, 1, `${what}: expected exactly one error line, got ${errors.length}:\n${r.stderr}`);
  const line = errors[0] ?? '';
  assert.match(line, new RegExp(`\\b${port}\\b`), `${what}: the error names the port`);
  assert.match(line, /in use|EADDRINUSE/i, `${what}: the error says the port is in use`);
  assert.doesNotMatch(r.stderr, /link up|server: link port/, `${what}: must not claim to have started`);
}
