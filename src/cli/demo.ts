/**
 * `tcpipe demo`: both ends of a pair, an echo target and some traffic, all on
 * loopback. The entry port and the target share one port number, as in the
 * seed, on two loopback addresses (127.0.0.1 for the entry, 127.0.0.2 for the
 * target) so that one machine can play both hosts.
 */
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import net from 'node:net';
import { startClient, startServer } from '../index.js';
import { createLogger, type LogLevel } from '../log/logger.js';
import { errorMessage } from '../errors.js';
import { generateSecret } from '../security/secret.js';

const ENTRY_HOST = '127.0.0.1';
const TARGET_HOST = '127.0.0.2';
const STREAMS = 8;
const BYTES_PER_STREAM = 16 * 1024 * 1024;

function say(line: string): void {
  process.stdout.write(line + '\n');
}

function echoServer(): net.Server {
  return net.createServer({ allowHalfOpen: true }, (socket) => {
    socket.on('error', () => undefined);
    socket.pipe(socket);
  });
}

/** Listens the echo target on a port that is also free on the entry address. */
async function listenTarget(): Promise<{ server: net.Server; port: number }> {
  for (let attempt = 0; attempt < 20; attempt++) {
    const server = echoServer();
    server.listen(0, TARGET_HOST);
    await once(server, 'listening');
    const port = (server.address() as net.AddressInfo).port;
    const probe = net.createServer();
    const free = await new Promise<boolean>((resolve) => {
      probe.once('error', () => resolve(false));
      probe.listen(port, ENTRY_HOST, () => probe.close(() => resolve(true)));
    });
    if (free) return { server, port };
    server.close();
  }
  throw new Error('no free port pair found on loopback');
}

/** Sends `size` random bytes, reads them back, and checks them. */
async function echoRound(port: number, size: number): Promise<{ ok: boolean; ms: number }> {
  const payload = randomBytes(size);
  const want = createHash('sha256').update(payload).digest('hex');
  const started = performance.now();
  const socket = net.connect({ host: ENTRY_HOST, port, allowHalfOpen: true });
  const hash = createHash('sha256');
  let received = 0;
  socket.on('data', (chunk: Buffer) => {
    hash.update(chunk);
    received += chunk.length;
  });
  await once(socket, 'connect');
  socket.end(payload);
  await once(socket, 'close');
  return { ok: received === size && hash.digest('hex') === want, ms: performance.now() - started };
}

async function pingPong(port: number, rounds: number): Promise<number[]> {
  const socket = net.connect({ host: ENTRY_HOST, port });
  socket.setNoDelay(true);
  await once(socket, 'connect');
  const times: number[] = [];
  const message = Buffer.alloc(64, 0x61);
  for (let i = 0; i < rounds; i++) {
    const started = performance.now();
    socket.write(message);
    let got = 0;
    while (got < message.length) {
      const [chunk] = (await once(socket, 'data')) as [Buffer];
      got += chunk.length;
    }
    times.push((performance.now() - started) * 1000);
  }
  socket.end();
  await once(socket, 'close');
  return times;
}

export async function runDemo(verbosity: 'quiet' | 'normal' | 'verbose'): Promise<number> {
  const level: LogLevel = verbosity === 'verbose' ? 'debug' : verbosity === 'quiet' ? 'warn' : 'info';
  const write = (line: string): void => void process.stdout.write(line);
  const target = await listenTarget();
  const secret = generateSecret();
  say(`tcpipe demo: an echo target on ${TARGET_HOST}:${target.port}; the pair relays port ${target.port}`);
  say('  both ends share a fresh secret from `tcpipe keygen`: the link is TLS 1.3, keyed by it');
  const server = await startServer({
    port: 0,
    secret,
    host: '127.0.0.1',
    ports: [{ host: ENTRY_HOST, port: target.port }],
    logger: createLogger({ level, format: 'text', write, name: 'server' }),
  });
  const linkPort = server.linkAddress?.port ?? 0;
  say(`  server: TCPIPE_SECRET=... tcpipe -s ${linkPort} -p ${ENTRY_HOST}:${target.port}`);
  say(`  client: TCPIPE_SECRET=... tcpipe -c 127.0.0.1:${linkPort} -t ${TARGET_HOST}`);
  const up = once(server, 'link-up');
  const client = await startClient({
    host: '127.0.0.1',
    port: linkPort,
    secret,
    target: TARGET_HOST,
    logger: createLogger({ level, format: 'text', write, name: 'client' }),
  });
  let status = 0;
  try {
    await up;
    say('link up');
    const rtts = (await pingPong(target.port, 200)).sort((a, b) => a - b);
    say(`64-byte round trips through the pair: p50 ${rtts[100]?.toFixed(0)} µs, p99 ${rtts[198]?.toFixed(0)} µs`);
    const started = performance.now();
    const results = await Promise.all(Array.from({ length: STREAMS }, () => echoRound(target.port, BYTES_PER_STREAM)));
    const seconds = (performance.now() - started) / 1000;
    const bytes = STREAMS * BYTES_PER_STREAM * 2;
    const good = results.filter((r) => r.ok).length;
    say(`${STREAMS} streams at once, ${BYTES_PER_STREAM / 1024 / 1024} MiB each way per stream, checked by SHA-256: ${good}/${STREAMS} intact`);
    say(`moved ${(bytes / 1024 / 1024).toFixed(0)} MiB through the pair in ${seconds.toFixed(2)}s: ${((bytes * 8) / seconds / 1e9).toFixed(2)} Gbit/s (both directions, one 2-core machine)`);
    if (good !== STREAMS) status = 1;
  } catch (err) {
    say(`demo failed: ${errorMessage(err)}`);
    status = 1;
  } finally {
    await Promise.all([client.stop('demo over'), server.stop('demo over')]);
    target.server.close();
  }
  say(status === 0 ? 'demo finished: everything relayed intact' : 'demo FAILED');
  return status;
}
