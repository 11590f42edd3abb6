/**
 * A fake tcpipe partner: dials a real tcpipe and speaks the protocol by hand
 * (a HELLO, OPENs, DATA, PINGs) to misbehave on purpose.
 */
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import { PREFACE, Flag, FrameType } from '../../../src/protocol/constants.js';
import { FrameDecoder, parseCodeAndReason } from '../../../src/protocol/decode.js';
import { encodeDataHeader, encodeOpen, encodePing } from '../../../src/protocol/encode.js';
import { encodeHelloInfo } from '../../../src/protocol/hello.js';
import { num, str, errCode, waker, type Json, type Args, type Op } from './common.js';

interface Fake {
  socket: net.Socket;
  pings: number;
  writeError: string | null;
  closedAt: number;
  timer: NodeJS.Timeout | null;
}

const fakes = new Map<string, Fake>();

/**
 * Dials a tcpipe server, speaks the preface and a valid client HELLO, reads
 * the server's, then misbehaves as `mode` says. Returns what the server did:
 * its GOAWAY (code and reason) and whether it closed the link.
 */
async function fakeRun(args: Args): Promise<Json> {
  const host = str(args, 'host');
  const port = num(args, 'port');
  const mode = str(args, 'mode');
  const openPort = num(args, 'openPort', 0);
  const streams = num(args, 'streams', 1);
  const timeoutMs = num(args, 'timeoutMs', 10_000);
  const id = str(args, 'id', mode);
  const socket = net.connect({ host, port });
  socket.on('error', () => undefined);
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  socket.write(PREFACE);
  socket.write(
    encodeHelloInfo({ role: 'client', initialWindow: 256 * 1024, maxFramePayload: 64 * 1024, maxStreams: 65536, heartbeatMs: 60_000, software: 'faults-fake' }),
  );
  const decoder = new FrameDecoder({ maxDataPayload: 1024 * 1024 });
  let helloSeen = false;
  let goaway: { code: number; reason: string } | null = null;
  let closed = false;
  let decodeError: string | null = null;
  const { poke, until } = waker();
  socket.on('data', (chunk: Buffer) => {
    try {
      decoder.push(chunk);
      for (let f = decoder.next(); f !== null; f = decoder.next()) {
        if (f.type === FrameType.HELLO) helloSeen = true;
        else if (f.type === FrameType.GOAWAY) goaway = parseCodeAndReason(f.payload);
        else if (f.type === FrameType.PING && (f.flags & Flag.ACK) === 0 && !socket.destroyed) socket.write(encodePing(Flag.ACK, f.payload));
      }
    } catch (err) {
      decodeError = err instanceof Error ? err.message : String(err);
    }
    poke();
  });
  socket.on('close', () => {
    closed = true;
    poke();
  });
  if (!(await until(() => helloSeen || closed, 5000))) throw new Error('the server sent no HELLO within 5 s');
  if (!helloSeen) throw new Error(`the server closed the link before its HELLO (goaway ${JSON.stringify(goaway)})`);
  const started = performance.now();
  switch (mode) {
    case 'garbage': {
      const junk = randomBytes(4096);
      junk[0] = 0xee; // no such frame type
      socket.write(junk);
      break;
    }
    case 'oversize-data': {
      socket.write(encodeOpen(1, 0, openPort));
      socket.write(encodeDataHeader(1, 0, 16 * 1024 * 1024));
      socket.write(randomBytes(1000));
      break;
    }
    case 'oversize-control': {
      const ping = encodePing(0, Buffer.alloc(8));
      ping.writeUInt32BE(4096, 6);
      socket.write(ping);
      socket.write(randomBytes(4096));
      break;
    }
    case 'unknown-stream': {
      socket.write(encodeDataHeader(4242, 0, 5));
      socket.write(Buffer.from('hello'));
      break;
    }
    case 'stop-reading': {
      // Open streams to a target that floods, stop reading the link for good,
      // and keep sending (pings) so that the link does not look idle.
      for (let s = 1; s <= streams; s++) socket.write(encodeOpen(s, 0, openPort));
      socket.pause();
      socket.removeAllListeners('data');
      const fake: Fake = { socket, pings: 0, writeError: null, closedAt: -1, timer: null };
      socket.on('close', () => {
        if (fake.closedAt < 0) fake.closedAt = performance.now() - started;
      });
      fake.timer = setInterval(() => {
        if (socket.destroyed) return;
        fake.pings++;
        socket.write(encodePing(0, randomBytes(8)), (err) => {
          if (err !== null && err !== undefined) fake.writeError ??= errCode(err);
        });
      }, 200);
      fakes.set(id, fake);
      return { id, opened: streams };
    }
    default:
      throw new Error(`unknown fake mode ${mode}`);
  }
  await until(() => closed, timeoutMs);
  return { goaway, closed, decodeError, ms: Math.round(performance.now() - started) };
}

function fakeStop(args: Args): Json {
  const id = str(args, 'id');
  const fake = fakes.get(id);
  if (fake === undefined) throw new Error(`no fake ${id}`);
  if (fake.timer !== null) clearInterval(fake.timer);
  const result = { pings: fake.pings, writeError: fake.writeError, closed: fake.socket.destroyed, closedAtMs: Math.round(fake.closedAt) };
  fake.socket.destroy();
  fakes.delete(id);
  return result;
}

export const fakeOps: Readonly<Record<string, Op>> = {
  'fake-run': fakeRun,
  'fake-stop': fakeStop,
};
