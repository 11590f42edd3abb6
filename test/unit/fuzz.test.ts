/**
 * Fuzzing, bounded in time for CI.
 *
 * (a) The frame decoder, fed random bytes and mutated valid frame streams in
 *     random chunkings for ~3 s: only ProtocolError may be thrown, it never
 *     spins (next() calls are bounded by the bytes pushed), it never holds
 *     more bytes than were pushed, and unmutated streams decode to exactly the
 *     frames encoded.
 * (b) The handshake over real sockets: two CLI servers (with and without a
 *     secret) get ~200 mutated handshakes each (a valid preface+HELLO, a real
 *     recorded TLS ClientHello, a WebSocket upgrade carrying a HELLO, random
 *     bytes) from fresh loopback sources (never 127.0.0.1) for ~5 s. The
 *     processes must stay up, log no crash, keep their RSS bounded, return to
 *     their open-fd count, and pair with a correct client afterwards.
 *
 * Inputs that ever failed live in test/fixtures/fuzz-corpus/ as hex
 * (`decoder-*.hex`, `handshake-*.hex`; '#' starts a comment) and are replayed
 * first. A failing run writes its input there as `<target>-found-<hash>.hex`.
 * TCPIPE_FUZZ_SEED=<n> replays a run's random choices (the corpus replay and the
 * socket timing are not part of it); TCPIPE_FUZZ_SKIP_WS=1 leaves the
 * WebSocket seeds out of the mutated run.
 */
import { describe, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { startClient } from '../../src/index.js';
import { ProtocolError } from '../../src/errors.js';
import { Flag, FrameType, PREFACE, ResumeKind } from '../../src/protocol/constants.js';
import {
  FrameDecoder,
  parseCodeAndReason,
  parseHello,
  parseOpenPort,
  parseResumedReceived,
  parseWindow,
} from '../../src/protocol/decode.js';
import {
  encodeAccept,
  encodeDataHeader,
  encodeGoAway,
  encodeOpen,
  encodePing,
  encodeReset,
  encodeResume,
  encodeResumedWindow,
  encodeWindow,
} from '../../src/protocol/encode.js';
import { decodeHelloInfo, encodeHelloInfo, type HelloInfo } from '../../src/protocol/hello.js';
import type { Frame } from '../../src/protocol/frame.js';
import { generateSecret } from '../../src/security/secret.js';
import { REPO_ROOT, startCliServer, type CliChild } from '../helpers/cli.js';
import { captureLog } from '../helpers/logs.js';
import { openFds, rssKiB } from '../helpers/proc.js';
import { withTimeout } from '../helpers/wait.js';

const CORPUS_DIR = join(REPO_ROOT, 'test', 'fixtures', 'fuzz-corpus');

// ---------------------------------------------------------------------------
// Deterministic randomness
// ---------------------------------------------------------------------------

class Rng {
  private s: number;
  constructor(seed: number) {
    this.s = seed >>> 0 || 0x9e3779b9;
  }
  /** xorshift32 */
  u32(): number {
    let x = this.s;
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    this.s = x;
    return x;
  }
  int(n: number): number {
    return n <= 0 ? 0 : this.u32() % n;
  }
  chance(p: number): boolean {
    return this.u32() / 0x1_0000_0000 < p;
  }
  bytes(n: number): Buffer {
    const b = Buffer.allocUnsafe(n);
    for (let i = 0; i < n; i++) b[i] = this.u32() & 0xff;
    return b;
  }
  pick<T>(items: readonly T[]): T {
    const item = items[this.int(items.length)];
    if (item === undefined) throw new Error('pick from an empty list');
    return item;
  }
}

const SEED = process.env.TCPIPE_FUZZ_SEED !== undefined ? Number(process.env.TCPIPE_FUZZ_SEED) : randomBytes(4).readUInt32BE(0);

// ---------------------------------------------------------------------------
// Corpus
// ---------------------------------------------------------------------------

interface CorpusEntry {
  readonly name: string;
  readonly bytes: Buffer;
}

function readCorpus(prefix: 'decoder' | 'handshake'): CorpusEntry[] {
  let names: string[];
  try {
    names = readdirSync(CORPUS_DIR);
  } catch {
    return [];
  }
  return names
    .filter((n) => n.startsWith(`${prefix}-`) && n.endsWith('.hex'))
    .sort()
    .map((name) => {
      const hex = readFileSync(join(CORPUS_DIR, name), 'utf8')
        .split('\n')
        .map((line) => line.replace(/#.*/, ''))
        .join('')
        .replace(/\s+/g, '');
      if (!/^([0-9a-fA-F]{2})*$/.test(hex)) throw new Error(`corpus file ${name} is not hex`);
      return { name, bytes: Buffer.from(hex, 'hex') };
    });
}

/** Keeps a failing input for the next runs (and for the developer to commit). */
function saveFinding(prefix: 'decoder' | 'handshake', bytes: Buffer, why: string): string {
  const hash = createHash('sha256').update(bytes).digest('hex').slice(0, 12);
  const name = `${prefix}-found-${hash}.hex`;
  try {
    mkdirSync(CORPUS_DIR, { recursive: true });
    const lines = bytes.toString('hex').match(/.{1,64}/g) ?? [];
    writeFileSync(join(CORPUS_DIR, name), `# found by test/unit/fuzz.test.ts (seed ${SEED}): ${why.split('\n')[0] ?? ''}\n${lines.join('\n')}\n`);
  } catch {
    // read-only checkout: the hex is in the assertion message as well
  }
  return name;
}

// ---------------------------------------------------------------------------
// Inputs
// ---------------------------------------------------------------------------

const HELLO: HelloInfo = {
  role: 'client',
  initialWindow: 256 * 1024,
  maxFramePayload: 64 * 1024,
  maxStreams: 1024,
  heartbeatMs: 15_000,
  software: 'tcpipe-fuzz',
};

/** A valid stream: preface, HELLO, then random well-formed frames. Returns the bytes and the frames. */
function validStream(rng: Rng, frames: number): { bytes: Buffer; expected: Frame[] } {
  const parts: Buffer[] = [PREFACE];
  const expected: Frame[] = [];
  const role = rng.chance(0.5) ? 'client' : 'server';
  // Half the streams announce resumption: grace, key share, and (client) a session to resume.
  const resume: Partial<HelloInfo> = rng.chance(0.5)
    ? { resumeGraceMs: 1 + rng.int(600_000), keyShare: rng.bytes(32), sessionId: role === 'client' && rng.chance(0.5) ? rng.bytes(16) : null }
    : {};
  const hello = encodeHelloInfo({ ...HELLO, role, ...resume });
  parts.push(hello);
  expected.push({ type: FrameType.HELLO, flags: 0, streamId: 0, payload: hello.subarray(10) });
  for (let i = 0; i < frames; i++) {
    const id = 1 + rng.int(1000);
    const local = rng.chance(0.5) ? Flag.LOCAL : 0;
    let frame: Buffer;
    switch (rng.int(9)) {
      case 0:
        frame = encodeOpen(id, 0, 1 + rng.int(65535));
        break;
      case 1:
        frame = encodeAccept(id);
        break;
      case 2: {
        const payload = rng.bytes(rng.chance(0.1) ? rng.int(70_000) % 65_536 : rng.int(300));
        frame = Buffer.concat([encodeDataHeader(id, local | (rng.chance(0.2) ? Flag.FIN : 0), payload.length), payload]);
        break;
      }
      case 3:
        frame = encodeWindow(id, local | (rng.chance(0.2) ? Flag.FIN_RECEIVED : 0), rng.int(1 << 30) * 1024, rng.int(1 << 24));
        break;
      case 7: {
        // A resumed link's stream entry (20 bytes).
        const flags = local | (rng.chance(0.3) ? Flag.FIN_RECEIVED : 0) | (rng.chance(0.5) ? Flag.ACCEPTED : 0);
        const consumed = rng.int(1 << 30) * 1024;
        frame = encodeResumedWindow(id, flags, consumed, rng.int(1 << 24), consumed + rng.int(1 << 24));
        break;
      }
      case 8:
        frame = rng.pick([
          () => encodeResume(ResumeKind.NEW),
          () => encodeResume(ResumeKind.RESUME, rng.bytes(48)),
          () => encodeResume(ResumeKind.RESUMED, rng.bytes(32)),
          () => encodeResume(ResumeKind.FRESH, Buffer.from('fresh '.repeat(rng.int(30)))),
          () => encodeResume(ResumeKind.DONE, rng.bytes(4)),
        ])();
        break;
      case 4:
        frame = encodeReset(id, local, rng.int(7), 'fuzz reset '.repeat(rng.int(30)));
        break;
      case 5:
        frame = encodePing(rng.chance(0.5) ? Flag.ACK : 0, rng.bytes(8));
        break;
      default:
        frame = encodeGoAway(rng.int(9), 'bye'.repeat(rng.int(90)));
    }
    parts.push(frame);
    const type = frame[0] ?? 0;
    expected.push({ type: type as Frame['type'], flags: frame[1] ?? 0, streamId: frame.readUInt32BE(2), payload: frame.subarray(10) });
  }
  return { bytes: Buffer.concat(parts), expected };
}

/** One random mutation, sometimes several. */
function mutate(rng: Rng, input: Buffer, others: readonly Buffer[]): Buffer {
  let out = Buffer.from(input);
  const rounds = 1 + (rng.chance(0.3) ? rng.int(4) : 0);
  for (let r = 0; r < rounds; r++) {
    const at = rng.int(out.length + 1);
    switch (rng.int(9)) {
      case 0: // flip a bit
        if (out.length > 0) {
          const i = rng.int(out.length);
          out[i] = (out[i] ?? 0) ^ (1 << rng.int(8));
        }
        break;
      case 1: // set a byte to an interesting value
        if (out.length > 0) out[rng.int(out.length)] = rng.pick([0x00, 0x01, 0x7f, 0x80, 0xff, 0x16, 0x54, 0x47]);
        break;
      case 2: // set 4 bytes (a length field?) to an interesting u32
        if (out.length >= 4) {
          const i = rng.int(out.length - 3);
          out.writeUInt32BE(rng.pick([0, 1, 0x3ff, 0x400, 0x401, 0xffff, 0x10000, 0x10001, 0x100000, 0x7fffffff, 0xffffffff]), i);
        }
        break;
      case 3: // insert random bytes
        out = Buffer.concat([out.subarray(0, at), rng.bytes(1 + rng.int(16)), out.subarray(at)]);
        break;
      case 4: // delete a range
        out = Buffer.concat([out.subarray(0, at), out.subarray(Math.min(out.length, at + 1 + rng.int(32)))]);
        break;
      case 5: // truncate
        out = out.subarray(0, at);
        break;
      case 6: // duplicate a range
        out = Buffer.concat([out.subarray(0, at), out.subarray(at, at + 1 + rng.int(64)), out.subarray(at)]);
        break;
      case 7: // splice with another input
        if (others.length > 0) {
          const other = rng.pick(others);
          out = Buffer.concat([out.subarray(0, at), other.subarray(rng.int(other.length + 1))]);
        }
        break;
      default: // append random bytes
        out = Buffer.concat([out, rng.bytes(1 + rng.int(64))]);
    }
  }
  return out;
}

/** Random chunk boundaries. */
function chunk(rng: Rng, bytes: Buffer): Buffer[] {
  const out: Buffer[] = [];
  let at = 0;
  while (at < bytes.length) {
    const size = rng.chance(0.3) ? 1 + rng.int(3) : 1 + rng.int(Math.max(1, bytes.length));
    out.push(bytes.subarray(at, at + size));
    at += size;
  }
  return out;
}

// ---------------------------------------------------------------------------
// (a) the decoder
// ---------------------------------------------------------------------------

interface DecodeOutcome {
  readonly frames: Frame[];
  readonly error: ProtocolError | null;
}

/**
 * Feeds `chunks` to a decoder and drains it after each push, the way the
 * session does, and runs the payload parsers the session and the handshake
 * run. Throws (an AssertionError or the unexpected error) on any violation.
 */
function decodeAll(chunks: readonly Buffer[], maxDataPayload = 64 * 1024): DecodeOutcome {
  const decoder = new FrameDecoder({ maxDataPayload });
  const frames: Frame[] = [];
  let pushed = 0;
  let handedOut = 0;
  let calls = 0;
  try {
    for (const c of chunks) {
      decoder.push(c);
      pushed += c.length;
      assert.ok(decoder.bufferedBytes >= 0 && decoder.bufferedBytes <= pushed - handedOut, `buffered ${decoder.bufferedBytes} > pushed ${pushed} - handed out ${handedOut}`);
      for (;;) {
        // Every frame consumes at least one byte (a DATA piece) or ten (a header): more calls than bytes is a spin.
        assert.ok(++calls <= pushed + chunks.length + 2, `next() called ${calls} times for ${pushed} bytes: the decoder spins`);
        const frame = decoder.next();
        if (frame === null) break;
        handedOut += frame.type === FrameType.DATA ? frame.payload.length : 10 + frame.payload.length;
        frames.push(frame);
        assert.ok(decoder.bufferedBytes <= pushed - handedOut, `buffered ${decoder.bufferedBytes} after handing out ${handedOut} of ${pushed}`);
        if (frame.type === FrameType.DATA) assert.ok(frame.payload.length <= maxDataPayload);
        else assert.ok(frame.payload.length <= 1024, `control payload of ${frame.payload.length} bytes`);
        switch (frame.type) {
          case FrameType.HELLO:
            decodeHelloInfo(parseHello(frame.payload));
            break;
          case FrameType.OPEN:
            parseOpenPort(frame.payload);
            break;
          case FrameType.WINDOW:
            parseWindow(frame.payload);
            if ((frame.flags & Flag.RESUMED) !== 0) parseResumedReceived(frame.payload);
            break;
          case FrameType.RESET:
          case FrameType.GOAWAY:
            parseCodeAndReason(frame.payload);
            break;
          default:
        }
      }
    }
  } catch (err) {
    if (err instanceof ProtocolError) return { frames, error: err };
    throw err;
  }
  return { frames, error: null };
}

/** DATA pieces joined back into whole frames, for comparing with what was encoded. */
function joinData(frames: readonly Frame[], expected: readonly Frame[]): Frame[] {
  const out: Frame[] = [];
  for (const f of frames) {
    const last = out[out.length - 1];
    const target = expected[out.length - 1];
    if (
      f.type === FrameType.DATA &&
      last !== undefined &&
      target !== undefined &&
      last.type === FrameType.DATA &&
      last.payload.length < target.payload.length &&
      last.streamId === f.streamId
    ) {
      out[out.length - 1] = { ...last, flags: f.flags, payload: Buffer.concat([last.payload, f.payload]) };
      continue;
    }
    out.push({ ...f, payload: Buffer.from(f.payload) });
  }
  return out;
}

describe('fuzz: frame decoder', () => {
  test('corpus replay: every saved input only ever raises ProtocolError', () => {
    const corpus = readCorpus('decoder');
    assert.ok(corpus.length >= 5, `corpus in ${CORPUS_DIR} (${corpus.length} decoder inputs)`);
    for (const entry of corpus) {
      for (const chunks of [[entry.bytes], [...entry.bytes].map((b) => Buffer.from([b]))]) {
        try {
          decodeAll(chunks);
        } catch (err) {
          assert.fail(`${entry.name}: ${err instanceof Error ? err.stack ?? err.message : String(err)}`);
        }
      }
    }
  });

  test('~3 s of random and mutated frame streams', { timeout: 30_000 }, (t) => {
    const rng = new Rng(SEED);
    t.diagnostic(`seed ${SEED} (TCPIPE_FUZZ_SEED to replay)`);
    const corpus = readCorpus('decoder').map((e) => e.bytes);
    const pool: Buffer[] = [...corpus];
    const deadline = performance.now() + 3000;
    let iterations = 0;
    let roundTrips = 0;
    let protocolErrors = 0;
    const errorKinds = new Set<string>();
    while (performance.now() < deadline && iterations < 200_000) {
      iterations++;
      let input: Buffer;
      const kind = rng.int(10);
      if (kind === 0) {
        input = rng.bytes(rng.int(200));
      } else if (kind === 1) {
        // A valid stream: it must decode to exactly what was encoded, whatever the chunking.
        const { bytes, expected } = validStream(rng, 1 + rng.int(12));
        const outcome = decodeAll(chunk(rng, bytes));
        assert.equal(outcome.error, null, `valid stream rejected: ${outcome.error?.message ?? ''} (seed ${SEED})`);
        const got = joinData(outcome.frames, expected);
        assert.equal(got.length, expected.length);
        got.forEach((f, i) => {
          const e = expected[i];
          assert.ok(e !== undefined);
          assert.equal(f.type, e.type);
          assert.equal(f.flags, e.flags);
          assert.equal(f.streamId, e.streamId);
          assert.ok(f.payload.equals(e.payload), `frame ${i} payload differs`);
        });
        roundTrips++;
        if (pool.length < 64) pool.push(bytes);
        continue;
      } else {
        const base = pool.length > 0 && rng.chance(0.7) ? rng.pick(pool) : validStream(rng, 1 + rng.int(6)).bytes;
        input = mutate(rng, base, pool);
      }
      let outcome: DecodeOutcome;
      try {
        outcome = decodeAll(chunk(rng, input), rng.chance(0.2) ? 1024 : 64 * 1024);
      } catch (err) {
        const why = err instanceof Error ? err.stack ?? err.message : String(err);
        const saved = saveFinding('decoder', input, why);
        assert.fail(`decoder failed on an input (saved as ${saved}, seed ${SEED}):\n${why}\ninput: ${input.toString('hex')}`);
      }
      if (outcome.error !== null) {
        protocolErrors++;
        errorKinds.add(outcome.error.message.replace(/\d+/g, 'N').replace(/0xN?[0-9a-f]*/g, '0x?'));
      }
    }
    t.diagnostic(`${iterations} inputs, ${roundTrips} valid round trips, ${protocolErrors} protocol errors of ${errorKinds.size} kinds`);
    assert.ok(iterations > 1000, `only ${iterations} inputs in 3 s`);
    assert.ok(errorKinds.size >= 8, `mutations reached only ${errorKinds.size} kinds of protocol error: ${[...errorKinds].join('; ')}`);
  });
});

// ---------------------------------------------------------------------------
// (b) the handshake, over real sockets against CLI servers
// ---------------------------------------------------------------------------

/** Records the first bytes a real client sends: a TLS ClientHello (with a secret) or preface+HELLO. */
async function recordClientOpening(secret: string | undefined): Promise<Buffer> {
  const server = net.createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as net.AddressInfo).port;
  const got = new Promise<Buffer>((resolve) => {
    server.once('connection', (socket) => {
      let buf = Buffer.alloc(0);
      socket.on('error', () => undefined);
      socket.on('data', (d: Buffer) => {
        buf = Buffer.concat([buf, d]);
        const need = secret !== undefined ? (buf.length >= 5 ? 5 + buf.readUInt16BE(3) : Infinity) : buf.length >= 18 ? 18 + buf.readUInt32BE(14) : Infinity;
        if (buf.length >= need) {
          socket.destroy();
          resolve(buf.subarray(0, need));
        }
      });
    });
  });
  const log = captureLog('client', 'error');
  const client = await startClient({ host: '127.0.0.1', port, proxy: null, logger: log.logger, ...(secret !== undefined ? { secret } : {}) });
  try {
    return await withTimeout(got, 5000, 'a real client opening');
  } finally {
    await client.stop();
    server.close();
  }
}

/** A WebSocket upgrade to /tcpipe and one masked binary message carrying `payload`. */
function websocketOpening(payload: Buffer): Buffer {
  const request = Buffer.from(
    'GET /tcpipe HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
      'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n',
  );
  const mask = Buffer.from([0x12, 0x34, 0x56, 0x78]);
  const head = payload.length < 126 ? Buffer.from([0x82, 0x80 | payload.length]) : Buffer.from([0x82, 0x80 | 126, payload.length >> 8, payload.length & 0xff]);
  const masked = Buffer.from(payload.map((b, i) => b ^ (mask[i % 4] ?? 0)));
  return Buffer.concat([request, head, mask, masked]);
}

/** Fresh loopback sources, never 127.0.0.1 (the correct client's) nor 127.0.0.x. */
let sourceCounter = 0;
function nextSource(): string {
  const n = sourceCounter++;
  return `127.${20 + ((n >> 16) & 0x3f)}.${(n >> 8) & 0xff}.${(n & 0xff) || 1}`;
}

interface Shot {
  readonly input: Buffer;
  readonly closedByServer: boolean;
}

/** Sends one input from a fresh source, in random chunks; waits up to `holdMs` for the server to close, then closes. */
async function shoot(rng: Rng, port: number, input: Buffer, holdMs: number): Promise<Shot> {
  const socket = net.connect({ host: '127.0.0.1', port, localAddress: nextSource() });
  socket.on('error', () => undefined);
  socket.resume();
  let closed = false;
  const closedP = new Promise<void>((resolve) => socket.once('close', () => {
    closed = true;
    resolve();
  }));
  try {
    await withTimeout(Promise.race([once(socket, 'connect'), closedP]), 3000, 'connect');
  } catch {
    socket.destroy();
    return { input, closedByServer: false };
  }
  for (const c of chunk(rng, input)) {
    if (closed) break;
    socket.write(c);
    if (rng.chance(0.3)) await new Promise((resolve) => setImmediate(resolve));
  }
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([closedP, new Promise((resolve) => (timer = setTimeout(resolve, holdMs)))]);
  clearTimeout(timer);
  const byServer = closed;
  socket.destroy();
  return { input, closedByServer: byServer };
}

interface FuzzTarget {
  readonly name: string;
  readonly cli: CliChild;
  readonly port: number;
  readonly secret: string | undefined;
}

const CRASH_LINE = /TypeError|RangeError|ReferenceError|SyntaxError|Uncaught|unhandled|FATAL|ERR_INTERNAL|^\s+at .+:\d+:\d+\)?$/m;

function alive(cli: CliChild): boolean {
  return cli.child.exitCode === null && cli.child.signalCode === null;
}

function crashOf(cli: CliChild): string | null {
  if (!alive(cli)) return `exited (code ${String(cli.child.exitCode)}, signal ${String(cli.child.signalCode)})`;
  const m = CRASH_LINE.exec(cli.output());
  return m === null ? null : `logged ${m[0].trim()}`;
}

async function startFuzzServer(t: TestContext, secret: string | undefined): Promise<{ cli: CliChild; port: number }> {
  return startCliServer(t, [], secret !== undefined ? { TCPIPE_SECRET: secret } : {});
}

/** Resolves once the child has exited, or after `ms`: a crash shows within a few ms of its input. */
function exitWithin(cli: CliChild, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([cli.exited.then(() => undefined), new Promise<void>((resolve) => (timer = setTimeout(resolve, ms)))]).finally(() =>
    clearTimeout(timer),
  );
}

/**
 * Replays `inputs` one at a time against a fresh server, restarting it after
 * each crash. Returns the inputs that crashed it, with what happened.
 */
async function crashingInputs(
  t: TestContext,
  rng: Rng,
  inputs: readonly Buffer[],
  secret: string | undefined,
  maxFound = Infinity,
): Promise<{ input: Buffer; crash: string }[]> {
  const found: { input: Buffer; crash: string }[] = [];
  let server = await startFuzzServer(t, secret);
  try {
    for (const input of inputs) {
      if (found.length >= maxFound) break;
      await shoot(rng, server.port, input, 250);
      await exitWithin(server.cli, 100);
      const crash = crashOf(server.cli);
      if (crash === null) continue;
      found.push({ input, crash: `${crash}: ${server.cli.output().split('\n').filter((l) => CRASH_LINE.test(l)).slice(0, 3).join(' / ')}` });
      await server.cli.stop();
      server = await startFuzzServer(t, secret);
    }
  } finally {
    await server.cli.stop();
  }
  return found;
}

async function fuzzServer(t: TestContext, target: FuzzTarget, seeds: readonly Buffer[], rng: Rng, budgetMs: number, maxInputs: number): Promise<string> {
  const pid = target.cli.child.pid;
  assert.ok(pid !== undefined);
  const fds0 = openFds(pid);
  const rss0 = rssKiB(pid);
  assert.ok(rss0 !== null, 'the server runs');
  const recent: Buffer[] = [];
  let sent = 0;
  let closedByServer = 0;
  let maxRss = rss0;
  const deadline = performance.now() + budgetMs;
  const worker = async (): Promise<void> => {
    while (performance.now() < deadline && sent < maxInputs && alive(target.cli)) {
      const input = rng.chance(0.1) ? rng.bytes(1 + rng.int(300)) : mutate(rng, rng.pick(seeds), seeds);
      sent++;
      recent.push(input);
      if (recent.length > 48) recent.shift();
      const shot = await shoot(rng, target.port, input, 250);
      if (shot.closedByServer) closedByServer++;
      maxRss = Math.max(maxRss, rssKiB(pid) ?? 0);
    }
  };
  await Promise.all(Array.from({ length: 8 }, () => worker()));
  await exitWithin(target.cli, 100);

  const crash = crashOf(target.cli);
  if (crash !== null) {
    // Find which of the last inputs do it on their own (newest first, a few), keep those in the corpus.
    const culprits = await crashingInputs(t, rng, [...recent].reverse(), target.secret, 2);
    const saved =
      culprits.length > 0
        ? culprits.map((c) => saveFinding('handshake', c.input, `${target.name} server ${c.crash}`))
        : recent.slice(-8).map((input) => saveFinding('handshake', input, `${target.name} server ${crash} (one of the last inputs)`));
    assert.fail(
      `the ${target.name} server ${crash} during the fuzz (seed ${SEED}); ${culprits.length} input(s) reproduce it alone; saved: ${saved.join(', ')}\n` +
        culprits.map((c) => `${c.crash}\n  input ${c.input.toString('hex').slice(0, 400)}`).join('\n') +
        `\n--- server output (tail) ---\n${target.cli.output().slice(-2000)}`,
    );
  }
  // Every connection is released: the fd count comes back (bounded wait: refused sockets close within ~1 s).
  const fdDeadline = performance.now() + 6000;
  let fds = openFds(pid);
  while (fds > fds0 && performance.now() < fdDeadline) {
    await new Promise((resolve) => setTimeout(resolve, 100));
    fds = openFds(pid);
  }
  const rss = rssKiB(pid) ?? 0;
  const summary = `${target.name}: ${sent} inputs, ${closedByServer} closed by the server within 250 ms; fds ${fds0} -> ${fds}; RSS ${(rss0 / 1024).toFixed(0)} -> max ${(maxRss / 1024).toFixed(0)} -> ${(rss / 1024).toFixed(0)} MiB`;
  t.diagnostic(summary);
  assert.ok(sent >= Math.min(maxInputs, 100), `${summary}: too few inputs`);
  assert.ok(fds <= fds0 + 2, `${summary}: open fds did not come back`);
  assert.ok(maxRss - rss0 < 96 * 1024, `${summary}: RSS grew by ${((maxRss - rss0) / 1024).toFixed(0)} MiB`);

  // Still healthy: a correct client (from 127.0.0.1, never used above) pairs.
  const log = captureLog('client', 'info');
  const client = await startClient({ host: '127.0.0.1', port: target.port, proxy: null, logger: log.logger, ...(target.secret !== undefined ? { secret: target.secret } : {}) });
  try {
    await log.waitFor(/link up with/, 8000);
    await target.cli.waitFor(/link up with 127\.0\.0\.1:/, 5000);
  } finally {
    await client.stop();
  }
  assert.ok(alive(target.cli), 'the server is still running');
  return summary;
}

async function handshakeSeeds(secret: string): Promise<Buffer[]> {
  const [clientHello, plainHello] = await Promise.all([recordClientOpening(secret), recordClientOpening(undefined)]);
  assert.equal(clientHello[0], 0x16, 'a TLS handshake record');
  assert.ok(plainHello.subarray(0, 8).equals(PREFACE));
  const seeds = [clientHello, plainHello, Buffer.concat([plainHello, encodePing(0, Buffer.alloc(8)), encodeOpen(1, 0, 40000)])];
  // TCPIPE_FUZZ_SKIP_WS=1 leaves out the WebSocket seeds (to fuzz the rest while a WebSocket bug is open).
  if (process.env.TCPIPE_FUZZ_SKIP_WS !== '1') {
    seeds.push(websocketOpening(plainHello), websocketOpening(clientHello), Buffer.from('GET /tcpipe HTTP/1.1\r\nHost: x\r\n\r\n'));
  }
  return seeds;
}

describe('fuzz: handshakes against live CLI servers', () => {
  test('corpus replay: no saved handshake input crashes a server, with or without a secret', { timeout: 60_000 }, async (t) => {
    const corpus = readCorpus('handshake');
    assert.ok(corpus.length >= 5, `corpus in ${CORPUS_DIR} (${corpus.length} handshake inputs)`);
    const rng = new Rng(SEED);
    const secret = generateSecret();
    const [withSecret, without] = await Promise.all([
      crashingInputs(t, rng, corpus.map((e) => e.bytes), secret),
      crashingInputs(t, rng, corpus.map((e) => e.bytes), undefined),
    ]);
    const name = (input: Buffer): string => corpus.find((e) => e.bytes === input)?.name ?? input.toString('hex').slice(0, 40);
    const report = [
      ...withSecret.map((c) => `server with a secret: ${name(c.input)}: ${c.crash}`),
      ...without.map((c) => `server without a secret: ${name(c.input)}: ${c.crash}`),
    ];
    assert.deepEqual(report, [], `corpus inputs crash the server:\n${report.join('\n')}`);
  });

  test('~200 mutated handshakes each, with and without a secret: no crash, bounded memory, fds released, still pairs', { timeout: 60_000 }, async (t) => {
    t.diagnostic(`seed ${SEED}`);
    const secret = generateSecret();
    const seeds = await handshakeSeeds(secret);
    const [withSecret, without] = await Promise.all([startFuzzServer(t, secret), startFuzzServer(t, undefined)]);
    t.after(() => withSecret.cli.stop());
    t.after(() => without.cli.stop());
    const results = await Promise.allSettled([
      fuzzServer(t, { name: 'secret', cli: withSecret.cli, port: withSecret.port, secret }, seeds, new Rng(SEED ^ 0x5eed), 5000, 200),
      fuzzServer(t, { name: 'plaintext', cli: without.cli, port: without.port, secret: undefined }, seeds, new Rng(SEED ^ 0xfeed), 5000, 200),
    ]);
    for (const r of results) if (r.status === 'rejected') throw r.reason instanceof Error ? r.reason : new Error(String(r.reason));
    // Stops cleanly after all that.
    assert.equal(await withSecret.cli.stop(), 0);
    assert.equal(await without.cli.stop(), 0);
  });
});
