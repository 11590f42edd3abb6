// Unit tests of the command-line parser (src/cli/args.ts) against the seed's syntax:
//   tcpipe <mode> [<ports>] [<target>]
//   <client> ::= -c <host>:<port> | --client="<host>:<port>"
//   <server> ::= -s <port> | --server="<port>"
//   <ports>  ::= -p <port_list> | --ports="<port_list>"
//   <target> ::= -t <host> | --target="<host>"
// plus tcpipe's own options. Every error must be a UsageError (the CLI turns it
// into exit status 2) carrying a one-line reason; the reasons are pinned here.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { parseCommandLine, type Command, type RunCommand } from '../../src/cli/args.js';
import { ErrorCodes, UsageError } from '../../src/errors.js';

function run(argv: readonly string[]): RunCommand {
  const command: Command = parseCommandLine(argv);
  assert.equal(command.kind, 'run', `${argv.join(' ')} should parse as a run command, got ${JSON.stringify(command)}`);
  if (command.kind !== 'run') throw new Error('unreachable');
  return command;
}

/** Asserts that `argv` is rejected with a UsageError whose message is `expected` (a string: exact; a RegExp: matched). */
function rejects(argv: readonly string[], expected: string | RegExp): void {
  let caught: unknown = null;
  let returned: Command | null = null;
  try {
    returned = parseCommandLine(argv);
  } catch (err) {
    caught = err;
  }
  assert.ok(returned === null, `${JSON.stringify(argv)} should be rejected, but parsed as ${JSON.stringify(returned)}`);
  assert.ok(caught instanceof UsageError, `${JSON.stringify(argv)} should throw a UsageError, threw ${String(caught)}`);
  assert.equal(caught.code, ErrorCodes.USAGE);
  assert.ok(!caught.message.includes('\n'), `the reason must be one line: ${JSON.stringify(caught.message)}`);
  if (typeof expected === 'string') assert.equal(caught.message, expected, `message for ${JSON.stringify(argv)}`);
  else assert.match(caught.message, expected, `message for ${JSON.stringify(argv)}`);
}

describe('parseCommandLine: the seed example', () => {
  test('host1: tcpipe -s 50000 -p 40000,40001', () => {
    const c = run(['-s', '50000', '-p', '40000,40001']);
    assert.equal(c.mode, 'server');
    assert.equal(c.linkPort, 50000);
    assert.equal(c.linkHost, undefined);
    assert.deepEqual(c.ports, [{ port: 40000 }, { port: 40001 }]);
    assert.equal(c.target, undefined);
    assert.deepEqual(c.routes, []);
  });

  test('host2: tcpipe -c host1:50000 -t appli2', () => {
    const c = run(['-c', 'host1:50000', '-t', 'appli2']);
    assert.equal(c.mode, 'client');
    assert.equal(c.linkHost, 'host1');
    assert.equal(c.linkPort, 50000);
    assert.equal(c.linkUrl, undefined);
    assert.deepEqual(c.ports, []);
    assert.equal(c.target, 'appli2');
  });

  test('defaults when only a mode is given', () => {
    const c = run(['-s', '50000']);
    assert.deepEqual(c.ports, []);
    assert.equal(c.target, undefined);
    assert.equal(c.onePerPort, false);
    assert.equal(c.heartbeatSeconds, undefined);
    assert.equal(c.verbosity, 'normal');
    assert.equal(c.logFormat, 'text');
    assert.equal(c.secretFile, undefined);
    assert.equal(c.tls, undefined);
    assert.equal(c.allow, undefined);
  });
});

describe('parseCommandLine: accepted forms', () => {
  test('client: -c host:port, --client=host:port, --client host:port', () => {
    for (const argv of [['-c', 'host1:50000'], ['--client=host1:50000'], ['--client', 'host1:50000'], ['-chost1:50000']]) {
      const c = run(argv);
      assert.equal(c.mode, 'client', argv.join(' '));
      assert.equal(c.linkHost, 'host1', argv.join(' '));
      assert.equal(c.linkPort, 50000, argv.join(' '));
    }
  });

  test('client: IPv4 address and bracketed IPv6 address', () => {
    const v4 = run(['-c', '10.231.2.1:50000']);
    assert.deepEqual([v4.linkHost, v4.linkPort], ['10.231.2.1', 50000]);
    const v6 = run(['-c', '[::1]:50000']);
    assert.deepEqual([v6.linkHost, v6.linkPort], ['::1', 50000]);
    const v6long = run(['--client=[fe80::1%eth0]:1']);
    assert.deepEqual([v6long.linkHost, v6long.linkPort], ['fe80::1%eth0', 1]);
  });

  test('server: -s port, --server=port, --server port; the port range ends are accepted', () => {
    for (const argv of [['-s', '50000'], ['--server=50000'], ['--server', '50000']]) {
      const c = run(argv);
      assert.equal(c.mode, 'server', argv.join(' '));
      assert.equal(c.linkPort, 50000, argv.join(' '));
    }
    assert.equal(run(['-s', '1']).linkPort, 1);
    assert.equal(run(['-s', '65535']).linkPort, 65535);
  });

  test('ports: -p list, --ports=list, repeated -p', () => {
    const want = [{ port: 40000 }, { port: 40001 }];
    assert.deepEqual(run(['-s', '50000', '-p', '40000,40001']).ports, want);
    assert.deepEqual(run(['-s', '50000', '--ports=40000,40001']).ports, want);
    assert.deepEqual(run(['-s', '50000', '--ports', '40000,40001']).ports, want);
    assert.deepEqual(run(['-s', '50000', '-p', '40000', '-p', '40001']).ports, want);
    assert.deepEqual(run(['-s', '50000', '-p', '40000']).ports, [{ port: 40000 }]);
    // The order given is kept.
    assert.deepEqual(run(['-s', '50000', '-p', '40001,40000']).ports, [{ port: 40001 }, { port: 40000 }]);
  });

  test('ports: bind-address forms 127.0.0.1:40000 and [::1]:40000', () => {
    assert.deepEqual(run(['-s', '50000', '-p', '127.0.0.1:40000']).ports, [{ host: '127.0.0.1', port: 40000 }]);
    assert.deepEqual(run(['-s', '50000', '-p', '[::1]:40000']).ports, [{ host: '::1', port: 40000 }]);
    // The same port on two different addresses is two listeners, not a duplicate.
    assert.deepEqual(run(['-c', 'host1:50000', '--ports=127.0.0.1:40000,[::1]:40000,40001']).ports, [
      { host: '127.0.0.1', port: 40000 },
      { host: '::1', port: 40000 },
      { port: 40001 },
    ]);
  });

  test('target: -t host, --target=host, -t address', () => {
    assert.equal(run(['-c', 'host1:50000', '-t', 'appli2']).target, 'appli2');
    assert.equal(run(['-c', 'host1:50000', '--target=appli2']).target, 'appli2');
    assert.equal(run(['-c', 'host1:50000', '--target', 'appli2.example.com']).target, 'appli2.example.com');
    assert.equal(run(['-c', 'host1:50000', '-t', '10.231.3.2']).target, '10.231.3.2');
    assert.equal(run(['-c', 'host1:50000', '-t', '[::1]']).target, '::1');
  });

  test('both directions in one instance: -p and -t together', () => {
    const c = run(['-s', '50000', '-p', '40000', '-t', '127.0.0.1']);
    assert.deepEqual(c.ports, [{ port: 40000 }]);
    assert.equal(c.target, '127.0.0.1');
  });

  test('--one-per-port', () => {
    assert.equal(run(['-s', '50000', '--one-per-port']).onePerPort, true);
  });

  test('--heartbeat=5, fractions and the range ends', () => {
    assert.equal(run(['-s', '50000', '--heartbeat=5']).heartbeatSeconds, 5);
    assert.equal(run(['-s', '50000', '--heartbeat', '2']).heartbeatSeconds, 2);
    assert.equal(run(['-s', '50000', '--heartbeat=0.5']).heartbeatSeconds, 0.5);
    assert.equal(run(['-s', '50000', '--heartbeat=0.3']).heartbeatSeconds, 0.3);
    assert.equal(run(['-s', '50000', '--heartbeat=3600']).heartbeatSeconds, 3600);
  });

  test('-v, --verbose, -q, --quiet', () => {
    assert.equal(run(['-s', '50000', '-v']).verbosity, 'verbose');
    assert.equal(run(['-s', '50000', '--verbose']).verbosity, 'verbose');
    assert.equal(run(['-s', '50000', '-q']).verbosity, 'quiet');
    assert.equal(run(['-s', '50000', '--quiet']).verbosity, 'quiet');
  });

  test('--log-format=json and =text', () => {
    assert.equal(run(['-s', '50000', '--log-format=json']).logFormat, 'json');
    assert.equal(run(['-s', '50000', '--log-format', 'text']).logFormat, 'text');
  });

  test('options may come in any order', () => {
    const c = run(['-t', 'appli2', '--heartbeat=5', '-v', '-c', 'host1:50000', '--one-per-port', '-p', '40002']);
    assert.equal(c.mode, 'client');
    assert.equal(c.linkHost, 'host1');
    assert.equal(c.target, 'appli2');
    assert.deepEqual(c.ports, [{ port: 40002 }]);
    assert.equal(c.heartbeatSeconds, 5);
    assert.equal(c.verbosity, 'verbose');
    assert.equal(c.onePerPort, true);
  });

  test('demo, demo -v, demo -q', () => {
    assert.deepEqual(parseCommandLine(['demo']), { kind: 'demo', verbosity: 'normal' });
    assert.deepEqual(parseCommandLine(['demo', '-v']), { kind: 'demo', verbosity: 'verbose' });
    assert.deepEqual(parseCommandLine(['-q', 'demo']), { kind: 'demo', verbosity: 'quiet' });
  });

  test('-h, --help, -V, --version', () => {
    assert.deepEqual(parseCommandLine(['-h']), { kind: 'help' });
    assert.deepEqual(parseCommandLine(['--help']), { kind: 'help' });
    assert.deepEqual(parseCommandLine(['-V']), { kind: 'version' });
    assert.deepEqual(parseCommandLine(['--version']), { kind: 'version' });
  });

  test('--help and --version win over an otherwise invalid but well-formed command line', () => {
    assert.deepEqual(parseCommandLine(['-s', '0', '--help']), { kind: 'help' });
    assert.deepEqual(parseCommandLine(['-c', 'a:1', '-s', '2', '-V']), { kind: 'version' });
  });
});

describe('parseCommandLine: errors and their messages', () => {
  test('no mode', () => {
    rejects([], 'a mode is required: -c <host>:<port> or -s <port>');
    rejects(['-p', '40000,40001'], 'a mode is required: -c <host>:<port> or -s <port>');
    rejects(['-t', 'appli2', '-v'], 'a mode is required: -c <host>:<port> or -s <port>');
  });

  test('both modes', () => {
    const both = '-c and -s cannot be used together: choose client or server mode';
    rejects(['-c', 'host1:50000', '-s', '50000'], both);
    rejects(['--server=50000', '--client=host1:50000'], both);
  });

  test('server port 0, 65536, abc and other non-numbers', () => {
    rejects(['-s', '0'], '-s/--server: port 0 is outside 1-65535');
    rejects(['-s', '65536'], '-s/--server: port 65536 is outside 1-65535');
    rejects(['--server=99999'], '-s/--server: port 99999 is outside 1-65535');
    rejects(['-s', 'abc'], "-s/--server: 'abc' is not a port number (1-65535)");
    rejects(['-s', ''], "-s/--server: '' is not a port number (1-65535)");
    rejects(['--server=-1'], "-s/--server: '-1' is not a port number (1-65535)");
    rejects(['-s', '-1'], "option '-s' argument is ambiguous");
    rejects(['-s', '1e3'], "-s/--server: '1e3' is not a port number (1-65535)");
    rejects(['-s', '0x10'], "-s/--server: '0x10' is not a port number (1-65535)");
    rejects(['-s', '123456'], "-s/--server: '123456' is not a port number (1-65535)");
  });

  test('client port 0, 65536, abc', () => {
    rejects(['-c', 'host1:0'], '-c/--client: port 0 is outside 1-65535');
    rejects(['-c', 'host1:65536'], '-c/--client: port 65536 is outside 1-65535');
    rejects(['-c', 'host1:abc'], "-c/--client: 'abc' is not a port number (1-65535)");
    rejects(['-c', '[::1]:0'], '-c/--client: port 0 is outside 1-65535');
  });

  test('-p port 0, 65536, abc', () => {
    rejects(['-s', '50000', '-p', '0'], '-p/--ports: port 0 is outside 1-65535');
    rejects(['-s', '50000', '-p', '40000,65536'], '-p/--ports: port 65536 is outside 1-65535');
    rejects(['-s', '50000', '-p', 'abc'], "-p/--ports: 'abc' needs a port, as <host>:<port>");
    rejects(['-s', '50000', '-p', '127.0.0.1:abc'], "-p/--ports: 'abc' is not a port number (1-65535)");
  });

  test('client address without a port', () => {
    rejects(['-c', 'host1'], "-c/--client: 'host1' needs a port, as <host>:<port>");
    rejects(['--client=10.0.0.1'], "-c/--client: '10.0.0.1' needs a port, as <host>:<port>");
    rejects(['-c', 'host1:'], "-c/--client: '' is not a port number (1-65535)");
    rejects(['-c', ':50000'], "-c/--client: ':50000' has no host");
  });

  test('client: a bracketed IPv6 address without a port is told it needs a port', () => {
    // '[::1]' and '[::1]50000' have no ':<port>' after the bracket; the reason must say a port is
    // missing, not suggest a mangled address such as '[[:]:1]'.
    for (const text of ['[::1]', '[::1]50000']) {
      rejects(['-c', text], /needs a port/);
      rejects(['-c', text], /^(?!.*\[\[)/);
    }
  });

  test('IPv6 without brackets', () => {
    rejects(['-c', '::1:50000'], '-c/--client: write an IPv6 address in brackets, as [::1]:50000');
    rejects(['-c', 'fe80::1:50000'], '-c/--client: write an IPv6 address in brackets, as [fe80::1]:50000');
    rejects(['-s', '50000', '-p', '::1:40000'], '-p/--ports: write an IPv6 address in brackets, as [::1]:40000');
  });

  test('client: a bare IPv6 address is not split into a different address and port', () => {
    // '::1' is a complete IPv6 address with no port. Suggesting '[::]:1' (port 1 on ::) is wrong.
    rejects(['-c', '::1'], /^(?!.*\[::\]:1\b)/);
    rejects(['-c', '::1'], /\[::1\]:<port>|needs a port/);
  });

  test('unknown option', () => {
    rejects(['-s', '50000', '--bogus'], "unknown option '--bogus'");
    rejects(['-s', '50000', '-x'], "unknown option '-x'");
    rejects(['--port=40000', '-s', '50000'], "unknown option '--port'");
  });

  test('option without its value; value given to a flag', () => {
    rejects(['-c'], "option '-c, --client <value>' needs a value");
    rejects(['-s'], "option '-s, --server <value>' needs a value");
    rejects(['-s', '50000', '-p'], "option '-p, --ports <value>' needs a value");
    rejects(['-s', '50000', '--heartbeat'], "option '--heartbeat <value>' needs a value");
    rejects(['-s', '50000', '--one-per-port=yes'], "option '--one-per-port' does not take an argument");
  });

  test('malformed port lists: empty entries', () => {
    rejects(['-s', '50000', '-p', '40000,,40001'], "-p/--ports: empty entry in '40000,,40001'");
    rejects(['-s', '50000', '-p', '40000,'], "-p/--ports: empty entry in '40000,'");
    rejects(['-s', '50000', '-p', ',40000'], "-p/--ports: empty entry in ',40000'");
    rejects(['-s', '50000', '--ports='], "-p/--ports: empty entry in ''");
  });

  test('malformed port lists: a space after the comma leaves an extra argument', () => {
    rejects(['-s', '50000', '-p', '40000,', '40001'], "unexpected argument '40001'");
    rejects(['-s', '50000', '-p', '40000', '40001'], "unexpected argument '40001'");
  });

  test('duplicate port', () => {
    const twice = '-p/--ports: port 40000 is listed twice';
    rejects(['-s', '50000', '-p', '40000,40000'], twice);
    rejects(['-s', '50000', '-p', '40000,40001,40000'], twice);
    rejects(['-s', '50000', '-p', '40000', '-p', '40000'], twice);
    rejects(['-s', '50000', '-p', '127.0.0.1:40000,127.0.0.1:40000'], twice);
    rejects(['-s', '50000', '-p', '[::1]:40000,[::1]:40000'], twice);
  });

  test('duplicate port: all addresses and one address on the same port cannot both be bound', () => {
    // '-p 40000,127.0.0.1:40000' passes the parser today, then fails at start-up with
    // EADDRINUSE (the wildcard listener already holds 127.0.0.1:40000): it is a duplicate.
    rejects(['-s', '50000', '-p', '40000,127.0.0.1:40000'], /^-p\/--ports: .*40000/);
    rejects(['-s', '50000', '-p', '[::1]:40000,40000'], /^-p\/--ports: .*40000/);
  });

  test('-v with -q', () => {
    const both = '-v/--verbose and -q/--quiet cannot be used together';
    rejects(['-s', '50000', '-v', '-q'], both);
    rejects(['-s', '50000', '--quiet', '--verbose'], both);
    rejects(['demo', '-v', '-q'], both);
  });

  test('bad --heartbeat', () => {
    for (const bad of ['abc', '0', '0.2', '3601', '-1', '', '1e3', '.5', '5s', ' 5']) {
      rejects(['-s', '50000', `--heartbeat=${bad}`], `--heartbeat must be a number of seconds between 0.3 and 3600, not '${bad}'`);
    }
  });

  test('bad --log-format', () => {
    rejects(['-s', '50000', '--log-format=xml'], "--log-format must be text or json, not 'xml'");
    rejects(['-s', '50000', '--log-format='], "--log-format must be text or json, not ''");
  });

  test('bad target host', () => {
    rejects(['-c', 'host1:50000', '-t', 'a b'], "-t/--target: 'a b' is not a host name or address");
    rejects(['-c', 'host1:50000', '--target='], "-t/--target: '' is not a host name or address");
    rejects(['-c', 'host1:50000', '-t', 'appli2', '-t', 'appli3'], /^-t\/--target: two default hosts \('appli2' and 'appli3'\)/);
  });

  test('bad client host', () => {
    rejects(['-c', 'ho st:50000'], "-c/--client: 'ho st' is not a host name or address");
    rejects(['-c', '[]:50000'], "-c/--client: '[]' is not a host name or address");
  });

  test('extra positional', () => {
    rejects(['-s', '50000', 'extra'], "unexpected argument 'extra'");
    rejects(['extra', '-s', '50000'], "unexpected argument 'extra'");
    rejects(['-c', 'host1:50000', 'appli2'], "unexpected argument 'appli2'");
    rejects(['server'], "unexpected argument 'server'");
  });

  test('extra positional after a command names the extra word, not the command', () => {
    // 'tcpipe demo extra' is rejected, but the reason must point at 'extra'.
    rejects(['demo', 'extra'], "unexpected argument 'extra'");
    rejects(['keygen', 'now'], "unexpected argument 'now'");
  });

  test('demo takes no mode', () => {
    rejects(['demo', '-s', '50000'], 'demo takes no -c or -s: it runs both ends itself');
    rejects(['demo', '-c', 'host1:50000'], 'demo takes no -c or -s: it runs both ends itself');
  });

  test('an unknown option wins over --help (strict parsing comes first)', () => {
    rejects(['-h', '--bogus'], "unknown option '--bogus'");
  });
});
