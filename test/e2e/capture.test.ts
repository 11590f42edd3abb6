/**
 * What an eavesdropper on the link sees. Two network namespaces, a tcpipe
 * server in `a` (entry port 40000 on its loopback) and a client in `b` (target
 * 127.0.0.1:40000 in b); tcpdump records the link port on a's veth while a
 * recognisable marker is relayed. With a secret the capture must hold neither
 * the marker, nor the secret, nor its PSK; without one (the control) the
 * marker must be there, which proves the capture sees the relayed bytes.
 *
 * Needs root, `ip` and tcpdump; skips with the reason otherwise.
 */
import { describe, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Secret, generateSecret } from '../../src/security/secret.js';
import { childEnv, CLI_MAIN, NODE } from '../helpers/cli.js';
import { createTopology, netnsAvailable, type Topology } from '../helpers/netns.js';
import { outputOf, waitForLine } from '../helpers/output.js';
import { withTimeout } from '../helpers/wait.js';

const LINK_PORT = 50000;
const APP_PORT = 40000;

// Echo server: argv = [host, port].
const ECHO = `
const net = require('node:net');
const [host, port] = process.argv.slice(1);
net.createServer({ allowHalfOpen: true }, (s) => { s.on('error', () => {}); s.pipe(s); })
  .listen(Number(port), host, () => console.log('echo listening'));
`;

// User: argv = [host, port, marker, repeat]. Sends the marker `repeat` times, half-closes,
// checks the echo, prints "ok <bytes>" or "fail <why>".
const USER = `
const net = require('node:net');
const [host, port, marker, repeat] = process.argv.slice(1);
const payload = Buffer.from(marker.repeat(Number(repeat)));
const s = net.connect({ host, port: Number(port), allowHalfOpen: true });
const chunks = [];
s.on('data', (d) => chunks.push(d));
s.on('end', () => {
  const back = Buffer.concat(chunks);
  console.log(back.equals(payload) ? 'ok ' + back.length : 'fail got ' + back.length + ' of ' + payload.length);
  process.exit(0);
});
s.on('error', (e) => { console.log('fail ' + e.message); process.exit(1); });
s.on('connect', () => s.end(payload));
setTimeout(() => { console.log('fail timeout'); process.exit(2); }, 8000);
`;

// Sentinel: argv = [host, port, text]. Writes the text to the link port (the server refuses it).
const SENTINEL = `
const net = require('node:net');
const [host, port, text] = process.argv.slice(1);
const s = net.connect({ host, port: Number(port) }, () => s.write(text));
s.resume();
s.on('error', () => {});
s.on('close', () => process.exit(0));
setTimeout(() => process.exit(0), 3000);
`;

/** Polls the capture file until it holds `needle` (bounded): every packet before it is on disk then. */
async function waitForCaptured(path: string, needle: Buffer, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    let bytes: Buffer;
    try {
      bytes = readFileSync(path);
    } catch {
      bytes = Buffer.alloc(0);
    }
    if (bytes.indexOf(needle) >= 0) return;
    if (Date.now() > deadline) throw new Error(`the capture ${path} does not show ${needle.toString()} after ${timeoutMs} ms (${bytes.length} bytes)`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

function tcpdumpPath(): string | null {
  try {
    return execFileSync('sh', ['-c', 'command -v tcpdump'], { encoding: 'utf8' }).trim() || null;
  } catch {
    return null;
  }
}

async function skipReason(): Promise<string | false> {
  const avail = await netnsAvailable();
  if (!avail.ok) return avail.reason;
  if (tcpdumpPath() === null) return 'tcpdump is not installed';
  return false;
}

function exited(child: ChildProcess, ms: number): Promise<number | null> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(child.exitCode);
  return withTimeout(
    new Promise<number | null>((resolve) => child.once('close', (code) => resolve(code))),
    ms,
    `process ${String(child.pid)} to exit`,
  );
}

interface Capture {
  readonly pcap: Buffer;
  readonly marker: string;
  readonly tcpdumpOutput: string;
  readonly logs: string;
  /** Where the sentinel starts: the link's own packets are all before it. */
  readonly sentinelAt: number;
}

/** Runs the pair with or without a secret, relays the marker, returns the capture. */
async function captureRun(t: TestContext, secret: string | undefined): Promise<Capture> {
  const started = performance.now();
  const times: Record<string, number> = {};
  const mark = (what: string): void => {
    times[what] = Math.round(performance.now() - started);
  };
  const dir = mkdtempSync(join(tmpdir(), 'tcpipe-capture-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const topo: Topology<'a' | 'b'> = await createTopology({ hosts: ['a', 'b'] });
  t.after(() => topo.destroy());
  const env = childEnv();
  const secretArgs: string[] = [];
  if (secret !== undefined) {
    const file = join(dir, 'tcpipe.key');
    writeFileSync(file, `${secret}\n`);
    chmodSync(file, 0o600);
    secretArgs.push(`--secret-file=${file}`);
  }

  const echo = topo.spawn('b', NODE, ['-e', ECHO, '127.0.0.1', String(APP_PORT)], { env });
  await waitForLine(echo, /echo listening/, 5000);

  const veth = topo.host('a').interfaces[0]?.name;
  assert.ok(veth !== undefined, 'a has a veth');
  const pcapPath = join(dir, 'link.pcap');
  const tcpdump = topo.spawn('a', 'tcpdump', ['-i', veth, '-n', '-U', '--immediate-mode', '-s', '0', '-Z', 'root', '-w', pcapPath, 'tcp', 'port', String(LINK_PORT)], { env });
  await waitForLine(tcpdump, /listening on/, 5000);

  const server = topo.spawn('a', NODE, [CLI_MAIN, '-s', String(LINK_PORT), '-p', `127.0.0.1:${APP_PORT}`, '-v', ...secretArgs], { env });
  await waitForLine(server, /server: link port/, 5000);
  const client = topo.spawn('b', NODE, [CLI_MAIN, '-c', `${topo.addr('a', 'b')}:${LINK_PORT}`, '-t', '127.0.0.1', '-v', ...secretArgs], { env });
  await waitForLine(server, /link up with/, 8000);
  await waitForLine(client, /link up with/, 8000);
  mark('link up');

  const marker = `TCPIPE-MARKER-${randomBytes(12).toString('hex')}-`;
  const user = await topo.exec('a', NODE, ['-e', USER, '127.0.0.1', String(APP_PORT), marker, '400'], { timeoutMs: 10_000 });
  assert.match(user.stdout, /^ok \d+/, `the marker was relayed: ${user.stdout}${user.stderr}`);
  // The stream's close is logged once both sides are done with it: every byte has crossed the link by then.
  await waitForLine(server, /stream \d+ closed on port/, 5000);
  await waitForLine(client, /stream \d+ closed on port/, 5000);
  mark('relayed');

  // A last, recognisable packet on the link port: once the file shows it, everything before it is there too.
  const sentinel = `CAPTURE-SENTINEL-${randomBytes(8).toString('hex')}`;
  await topo.exec('b', NODE, ['-e', SENTINEL, topo.addr('a', 'b'), String(LINK_PORT), sentinel], { timeoutMs: 5000 });
  mark('sentinel sent');
  await waitForCaptured(pcapPath, Buffer.from(sentinel), 5000);
  mark('sentinel captured');

  tcpdump.kill('SIGINT');
  await exited(tcpdump, 5000);
  mark('tcpdump stopped');
  const pcap = readFileSync(pcapPath);
  t.diagnostic(`timings: ${JSON.stringify(times)}`);
  return { pcap, marker, tcpdumpOutput: outputOf(tcpdump), logs: outputOf(server) + outputOf(client), sentinelAt: pcap.indexOf(Buffer.from(sentinel)) };
}

describe('the link on the wire (tcpdump in a namespace)', { skip: await skipReason() }, () => {
  test('with a secret: the capture holds neither the relayed marker, the secret nor its PSK', { timeout: 40_000 }, async (t) => {
    const secret = generateSecret();
    const cap = await captureRun(t, secret);
    // A pcap header is 24 bytes; the link's packets must be there, with room for 400 markers.
    assert.ok(cap.pcap.length > 24 + 400 * cap.marker.length, `capture of ${cap.pcap.length} bytes; tcpdump: ${cap.tcpdumpOutput}`);
    const psk = Secret.fromText(secret, 'test').psk();
    const forbidden: [string, Buffer][] = [
      ['marker', Buffer.from(cap.marker)],
      ['marker without its random part', Buffer.from('TCPIPE-MARKER-')],
      ['secret text', Buffer.from(secret)],
      ['secret raw bytes', Buffer.from(secret, 'base64url')],
      ['PSK raw bytes', psk],
      ['PSK hex', Buffer.from(psk.toString('hex'))],
      ['PSK base64', Buffer.from(psk.toString('base64'))],
      ['PSK base64url', Buffer.from(psk.toString('base64url'))],
      ['tcpipe preface', Buffer.from('TCPIPE\u0000\u0001', 'latin1')],
    ];
    // The sentinel's own connection gets a plaintext refusal (preface + GOAWAY): look only before it.
    assert.ok(cap.sentinelAt > 0);
    const link = cap.pcap.subarray(0, cap.sentinelAt);
    for (const [what, bytes] of forbidden) assert.equal(link.indexOf(bytes), -1, `the capture contains the ${what}`);
    // It is TLS: a handshake record (0x16 0x03) is on the wire.
    assert.ok(cap.pcap.indexOf(Buffer.from([0x16, 0x03, 0x01])) >= 0 || cap.pcap.indexOf(Buffer.from([0x16, 0x03, 0x03])) >= 0, 'a TLS handshake record');
    assert.ok(!cap.logs.includes(secret), 'the logs do not hold the secret either');
  });

  test('control, without a secret: the capture does hold the marker', { timeout: 40_000 }, async (t) => {
    const cap = await captureRun(t, undefined);
    const count = cap.pcap.toString('latin1').split(cap.marker).length - 1;
    assert.ok(count >= 100, `the marker appears ${count} times in the capture (of 400 relayed, each way)`);
    assert.ok(cap.pcap.indexOf(Buffer.from('TCPIPE\u0000\u0001', 'latin1')) >= 0, 'the plaintext preface is on the wire');
  });
});
