/**
 * The UDP options of the command line and the config file (issue 20):
 * /udp and /tcp suffixes in -p, -t and --allow, --udp-timeout,
 * --udp-max-flows, and /udp refused with --one-per-port.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseCommandLine, type RunCommand } from '../../src/cli/args.js';
import { configValues } from '../../src/config/file.js';
import { UsageError } from '../../src/errors.js';

function run(argv: string[], file?: Record<string, unknown>): RunCommand {
  const command = parseCommandLine(argv, file === undefined ? {} : { loadConfig: (path) => configValues(file, path) });
  assert.equal(command.kind, 'run');
  return command as RunCommand;
}

function usage(argv: string[], pattern: RegExp): void {
  assert.throws(() => parseCommandLine(argv), (err: unknown) => err instanceof UsageError && pattern.test(err.message), argv.join(' '));
}

test('-p takes /udp and /tcp, with or without a bind address; TCP and UDP may share a port number', () => {
  const c = run(['-s', '50000', '-p', '5353/udp,127.0.0.1:5354/udp,[::1]:5355/udp', '-p', '40000/tcp,40001,5353']);
  assert.deepEqual(c.ports, [
    { port: 5353, protocol: 'udp' },
    { host: '127.0.0.1', port: 5354, protocol: 'udp' },
    { host: '::1', port: 5355, protocol: 'udp' },
    { port: 40000 },
    { port: 40001 },
    { port: 5353 },
  ]);
  usage(['-s', '50000', '-p', '5353/udp,5353/UDP'], /port 5353\/udp is listed twice/);
  usage(['-s', '50000', '-p', '5353/sctp'], /'5353\/sctp': a port takes \/udp or \/tcp/);
  usage(['-s', '50000', '-p', '/udp'], /a port takes \/udp or \/tcp/);
});

test('-t routes TCP and UDP ports apart', () => {
  const c = run(['-c', 'h:1', '-t', '5353/udp=dns.internal:53', '-t', '5353=web', '-t', '51820/udp=[fd00::1]', '-t', 'appli2']);
  assert.deepEqual(c.routes, [
    { port: 5353, host: 'dns.internal', targetPort: 53, protocol: 'udp' },
    { port: 5353, host: 'web' },
    { port: 51820, host: 'fd00::1', protocol: 'udp' },
  ]);
  assert.equal(c.target, 'appli2');
  usage(['-c', 'h:1', '-t', '53/udp=a', '-t', '53/udp=b'], /port 53\/udp has two routes/);
});

test('--allow lists TCP and /udp ports; a port without a suffix stays TCP', () => {
  const c = run(['-c', 'h:1', '-t', 'x', '--allow=53/udp,80,443/tcp']);
  assert.deepEqual(c.allow, [80, 443]);
  assert.deepEqual(c.allowUdp, [53]);
  const tcpOnly = run(['-c', 'h:1', '-t', 'x', '--allow=53']);
  assert.deepEqual(tcpOnly.allowUdp, []);
  assert.equal(run(['-c', 'h:1', '-t', 'x']).allowUdp, undefined);
});

test('--udp-timeout and --udp-max-flows, checked', () => {
  const c = run(['-s', '1', '-p', '53/udp', '--udp-timeout=30', '--udp-max-flows=100']);
  assert.equal(c.udpTimeoutSeconds, 30);
  assert.equal(c.udpMaxFlows, 100);
  usage(['-s', '1', '--udp-timeout=0'], /--udp-timeout must be a number of seconds from 1 to 86400, not '0'/);
  usage(['-s', '1', '--udp-timeout=x'], /--udp-timeout must be/);
  usage(['-s', '1', '--udp-max-flows=0'], /--udp-max-flows must be a whole number from 1 to 1000000/);
  usage(['-s', '1', '--udp-max-flows=1.5'], /--udp-max-flows must be/);
});

test('a /udp port with --one-per-port is a usage error with the reason', () => {
  usage(['-s', '1', '-p', '40000,5353/udp', '--one-per-port'], /--one-per-port is for TCP ports: UDP port 5353\/udp/);
  assert.equal(run(['-s', '1', '-p', '40000', '--one-per-port']).onePerPort, true);
});

test('the config file takes the same keys', () => {
  const c = run(['--config=x.toml'], { server: 50000, ports: ['5353/udp', 40000], target: ['53/udp=dns:53'], allow: ['53/udp'], 'udp-timeout': 20, 'udp-max-flows': 64 });
  assert.deepEqual(c.ports, [{ port: 5353, protocol: 'udp' }, { port: 40000 }]);
  assert.deepEqual(c.routes, [{ port: 53, host: 'dns', targetPort: 53, protocol: 'udp' }]);
  assert.deepEqual(c.allowUdp, [53]);
  assert.equal(c.udpTimeoutSeconds, 20);
  assert.equal(c.udpMaxFlows, 64);
  assert.throws(
    () => parseCommandLine(['--config=x.toml'], { loadConfig: (p) => configValues({ server: 1, 'udp-max-flows': 'lots' }, p) }),
    /config x\.toml: key 'udp-max-flows': must be a whole number/,
  );
});
