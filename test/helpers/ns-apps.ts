/**
 * User applications for tests in network namespaces, run as `node -e SCRIPT`
 * inside a host of a topology (the test process is outside every namespace).
 */
import assert from 'node:assert/strict';
import { NODE } from './cli.js';
import type { Topology } from './netns.js';

// A user 'client' application. argv: addr port payload timeoutMs
// payload: 'rand:<size>' (random bytes) or 'text:<string>' (the string, 200 times).
// Sends it, half-closes, reads until the other side closes, prints one JSON line.
const ECHO_USER = `
const net = require('node:net');
const crypto = require('node:crypto');
const [addr, port, spec, ms] = process.argv.slice(1);
const payload = spec.startsWith('text:') ? Buffer.from(spec.slice(5).repeat(200)) : crypto.randomBytes(Number(spec.slice(5)));
const hash = (b) => crypto.createHash('sha256').update(b).digest('hex');
const chunks = [];
let finished = false;
const done = (error) => {
  if (finished) return;
  finished = true;
  const all = Buffer.concat(chunks);
  const nl = all.indexOf(10);
  const header = nl < 0 ? '' : all.subarray(0, nl).toString();
  const body = nl < 0 ? all : all.subarray(nl + 1);
  console.log(JSON.stringify({ error, header, sent: payload.length, got: body.length, sentHash: hash(payload), gotHash: hash(body) }));
  process.exit(0);
};
const s = net.connect({ host: addr, port: Number(port), allowHalfOpen: true });
s.on('connect', () => s.end(payload));
s.on('data', (d) => chunks.push(d));
s.on('end', () => done(null));
s.on('error', (e) => done(e.code || e.message));
setTimeout(() => done('timeout'), Number(ms));
`;

export interface EchoResult {
  error: string | null;
  header: string;
  sent: number;
  got: number;
  sentHash: string;
  gotHash: string;
}

/**
 * Runs the echo user in `from` against addr:port: `payload` is 'rand:<size>'
 * or 'text:<string>'; resolves with its one JSON line.
 */
export async function echoFrom<H extends string>(topo: Topology<H>, from: H, addr: string, port: number, payload: string, timeoutMs = 8000): Promise<EchoResult> {
  const r = await topo.exec(from, NODE, ['-e', ECHO_USER, addr, String(port), payload, String(timeoutMs)], { timeoutMs: timeoutMs + 4000 });
  const line = r.stdout.trim().split('\n').pop() ?? '';
  try {
    return JSON.parse(line) as EchoResult;
  } catch {
    throw new Error(`echo user produced no result (code ${String(r.code)}): ${r.stdout} ${r.stderr}`);
  }
}

/** The round came back whole after the target's greeting line. */
export function assertIntact(r: EchoResult, greeting: string, what: string): void {
  assert.equal(r.error, null, `${what}: ${JSON.stringify(r)}`);
  assert.equal(r.header, greeting, `${what}: greeting`);
  assert.equal(r.got, r.sent, `${what}: bytes back`);
  assert.equal(r.gotHash, r.sentHash, `${what}: SHA-256 of the bytes back`);
}
