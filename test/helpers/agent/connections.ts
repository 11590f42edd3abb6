/**
 * The agent's single connections: a ping-pong that measures round trips,
 * and a plain connect that reports only the connection's fate.
 */
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import { num, str, errCode, type Json, type Args, type Op } from './common.js';

async function pingpong(args: Args): Promise<Json> {
  const host = str(args, 'host');
  const port = num(args, 'port');
  const rounds = num(args, 'rounds');
  const size = num(args, 'size', 64);
  const timeoutMs = num(args, 'timeoutMs', 30_000);
  /** Stop after this long (-1: after `rounds`). */
  const durationMs = num(args, 'durationMs', -1);
  const socket = net.connect({ host, port });
  socket.setNoDelay(true);
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  const samples: number[] = [];
  const payload = randomBytes(size);
  let got = 0;
  let wake: (() => void) | null = null;
  socket.on('data', (d: Buffer) => {
    got += d.length;
    if (wake !== null && got >= size) {
      const w = wake;
      wake = null;
      w();
    }
  });
  let failure: string | null = null;
  socket.on('error', (err) => (failure ??= errCode(err)));
  socket.on('close', () => {
    failure ??= 'CLOSED';
    const w = wake;
    wake = null;
    if (w !== null) w();
  });
  const deadline = performance.now() + timeoutMs;
  const stopAt = durationMs >= 0 ? performance.now() + durationMs : Infinity;
  for (let i = 0; i < rounds && failure === null && performance.now() < deadline && performance.now() < stopAt; i++) {
    got = 0;
    const t0 = performance.now();
    const answered = new Promise<void>((resolve) => (wake = resolve));
    socket.write(payload);
    await answered;
    if (failure !== null) break;
    samples.push(performance.now() - t0);
  }
  socket.destroy();
  const sorted = [...samples].sort((a, b) => a - b);
  const pct = (p: number): number => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? -1;
  return {
    n: samples.length,
    error: failure,
    p50: pct(50),
    p90: pct(90),
    p99: pct(99),
    max: sorted[sorted.length - 1] ?? -1,
  };
}


/** Connects, optionally sends `send` bytes, and reports the fate within `timeoutMs`. */
async function probeConnect(args: Args): Promise<Json> {
  const host = str(args, 'host');
  const port = num(args, 'port');
  const timeoutMs = num(args, 'timeoutMs', 5000);
  const send = num(args, 'send', 0);
  const started = performance.now();
  const socket = net.connect({ host, port, allowHalfOpen: true });
  let err: string | null = null;
  let sawEnd = false;
  let recv = 0;
  let connected = false;
  socket.on('connect', () => {
    connected = true;
    if (send > 0) socket.write(randomBytes(send));
  });
  socket.on('data', (d: Buffer) => (recv += d.length));
  socket.on('end', () => (sawEnd = true));
  socket.on('error', (e) => (err ??= errCode(e)));
  const closed = await new Promise<boolean>((resolve) => {
    const timer = setTimeout(() => resolve(false), timeoutMs);
    socket.once('close', () => {
      clearTimeout(timer);
      resolve(true);
    });
  });
  socket.destroy();
  return { connected, closed, err, sawEnd, recv, ms: Math.round(performance.now() - started) };
}

export const connectionOps: Readonly<Record<string, Op>> = {
  pingpong,
  'probe-connect': probeConnect,
};
