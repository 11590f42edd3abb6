#!/usr/bin/env node
/**
 * The tcpipe conformance kit: speaks docs/PROTOCOL.md to any implementation
 * and prints one line per requirement it checks (PASS, FAIL, SKIP; XFAIL for
 * a check named in --expect-fail). Exit status 0 only if none failed, 1 if
 * one did, 2 for a bad command line.
 *
 *   npm run conformance -- --peer HOST:PORT [--role client|server] [--secret-file F]
 *                           [--echo-port P] [--udp-echo-port P] [--only REGEX] [--expect-fail ID,...] [--timeout MS]
 *
 * --role client (default): the kit dials the peer, a server listening on HOST:PORT.
 * --role server: the kit listens on HOST:PORT and the peer, a client, dials it.
 * --echo-port P: a port the peer relays to an echo server (its target); the
 *   stream checks need it and are skipped without.
 * --udp-echo-port P: a /udp port the peer relays to a UDP echo server; the
 *   datagram echo needs it (and the peer's capability udp) and is skipped without.
 */
import net from 'node:net';
import { parseArgs } from 'node:util';
import { loadSecrets } from '../src/security/secret.js';
import type { LinkSecurity } from '../src/link/security.js';
import { errorMessage } from '../src/errors.js';
import { runChecks } from './check.js';
import { CLIENT_CHECKS, plaintextRefusal, type ClientContext } from './as-client.js';
import { SERVER_CHECKS, type ServerContext } from './as-server.js';

function usage(reason: string): never {
  process.stderr.write(`conformance: ${reason}\nusage: npm run conformance -- --peer HOST:PORT [--role client|server] [--secret-file F] [--echo-port P] [--udp-echo-port P] [--only REGEX] [--expect-fail ID,...] [--timeout MS]\n`);
  process.exit(2);
}

function hostPort(text: string): { host: string; port: number } {
  const match = /^\[?([^\]]*?)\]?:(\d+)$/.exec(text);
  const port = Number(match?.[2]);
  if (match === null || !(port >= 0 && port <= 65535)) usage(`--peer must be HOST:PORT, not '${text}'`);
  return { host: match[1] ?? '', port };
}

async function main(): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      options: {
        peer: { type: 'string' },
        role: { type: 'string', default: 'client' },
        'secret-file': { type: 'string' },
        'echo-port': { type: 'string' },
        'udp-echo-port': { type: 'string' },
        only: { type: 'string' },
        'expect-fail': { type: 'string' },
        timeout: { type: 'string', default: '3000' },
      },
    }));
  } catch (err) {
    usage(errorMessage(err));
  }
  if (values.peer === undefined) usage('--peer is required');
  const { host, port } = hostPort(values.peer);
  const role = values.role;
  if (role !== 'client' && role !== 'server') usage(`--role must be client or server, not '${role}'`);
  const echoPort = values['echo-port'] === undefined ? null : Number(values['echo-port']);
  if (echoPort !== null && !(echoPort >= 1 && echoPort <= 65535)) usage('--echo-port must be a port');
  const udpEchoPort = values['udp-echo-port'] === undefined ? null : Number(values['udp-echo-port']);
  if (udpEchoPort !== null && !(udpEchoPort >= 1 && udpEchoPort <= 65535)) usage('--udp-echo-port must be a port');
  const timeoutMs = Number(values.timeout);
  if (!(timeoutMs >= 100)) usage('--timeout must be at least 100 ms');
  let security: LinkSecurity = { kind: 'none' };
  if (values['secret-file'] !== undefined) {
    try {
      security = { kind: 'psk', secrets: loadSecrets({ file: values['secret-file'], env: undefined }).secrets };
    } catch (err) {
      usage(errorMessage(err));
    }
  }
  let only: RegExp | null = null;
  try {
    only = values.only === undefined ? null : new RegExp(values.only);
  } catch (err) {
    usage(`--only: ${errorMessage(err)}`);
  }
  const options = { only, expectFail: new Set((values['expect-fail'] ?? '').split(',').filter((s) => s !== '')) };
  const print = (line: string): void => void process.stdout.write(`${line}\n`);
  const secured = security.kind === 'none' ? 'plaintext' : 'TLS 1.3 with the shared secret';

  if (role === 'client') {
    print(`tcpipe conformance: dialing the server at ${values.peer} (${secured})`);
    const endpoint = { host, port, security };
    const ctx: ClientContext = { endpoint, echoPort, udpEchoPort, timeoutMs, resume: null };
    const checks = security.kind === 'none' ? CLIENT_CHECKS : [...CLIENT_CHECKS, plaintextRefusal(endpoint)];
    return (await runChecks(checks, ctx, options, print)) ? 0 : 1;
  }
  const server = net.createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host, port }, () => resolve());
  }).catch((err: unknown) => usage(`cannot listen on ${values.peer}: ${errorMessage(err)}`));
  const address = server.address() as net.AddressInfo;
  print(`tcpipe conformance: listening on ${address.address}:${address.port} for the client (${secured})`);
  const ctx: ServerContext = { server, security, echoPort, udpEchoPort, timeoutMs, redialMs: 40_000 };
  const ok = await runChecks(SERVER_CHECKS, ctx, options, print);
  server.close();
  return ok ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`conformance: ${errorMessage(err)}\n`);
    process.exit(1);
  },
);
