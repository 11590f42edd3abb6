/**
 * The fault suite's agent: one process inside a network namespace playing
 * user applications, targets or a fake tcpipe partner, driven by the test
 * over stdin/stdout (test/faults/kit.ts, class Agent).
 *
 * Protocol: the test writes one JSON object per line, {id, op, args}; the
 * agent answers each with one line `@@ {"id":..,"ok":true,"result":..}` or
 * `@@ {"id":..,"ok":false,"error":".."}`. Anything else on stdout or stderr
 * is diagnostics.
 *
 * Not a test file (no .test. in its name): the runner never loads it.
 */
import net from 'node:net';
import http from 'node:http';
import { randomBytes } from 'node:crypto';
import { createInterface } from 'node:readline';
import { Buffer } from 'node:buffer';
import { Flags, HEADER_BYTES, decodeHeader, encodeHeader, mismatches, replyKey, slice } from './pattern.js';
import { PREFACE, Flag, FrameType } from '../../src/protocol/constants.js';
import { encodeDataHeader, encodeOpen, encodePing } from '../../src/protocol/encode.js';
import { encodeHelloInfo } from '../../src/protocol/hello.js';
import { FrameDecoder, parseCodeAndReason } from '../../src/protocol/decode.js';

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
type Args = Record<string, Json>;

function num(args: Args, key: string, fallback?: number): number {
  const v = args[key];
  if (typeof v === 'number') return v;
  if (fallback !== undefined) return fallback;
  throw new Error(`argument ${key} must be a number`);
}

function str(args: Args, key: string, fallback?: string): string {
  const v = args[key];
  if (typeof v === 'string') return v;
  if (fallback !== undefined) return fallback;
  throw new Error(`argument ${key} must be a string`);
}

function bool(args: Args, key: string, fallback = false): boolean {
  const v = args[key];
  return typeof v === 'boolean' ? v : fallback;
}

/**
 * libuv reports a TCP reset that arrives after a partial read as an end of
 * stream (POLLHUP). An empty write surfaces the pending error, so a reset is
 * never counted as an orderly end: `onEnd(null)` for a FIN, `onEnd(code)` for a reset.
 */
function probeEnd(socket: net.Socket, onEnd: (err: string | null) => void): void {
  if (!socket.writable) {
    onEnd(null);
    return;
  }
  socket.write(Buffer.alloc(0), (err) => onEnd(err === null || err === undefined ? null : errCode(err)));
}

function errCode(err: unknown): string {
  if (err instanceof Error) return (err as NodeJS.ErrnoException).code ?? err.message;
  return String(err);
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Resolves when the socket can take more (drain) or is gone. */
function writable(socket: net.Socket): Promise<void> {
  if (socket.destroyed) return Promise.resolve();
  return new Promise((resolve) => {
    const done = (): void => {
      socket.off('drain', done);
      socket.off('close', done);
      resolve();
    };
    socket.on('drain', done);
    socket.on('close', done);
  });
}

// ---------------------------------------------------------------------------
// Targets
// ---------------------------------------------------------------------------

interface TargetRecord {
  key: number;
  recv: number;
  bad: number;
  sent: number;
  replySize: number;
  flags: number;
  resetAt: number;
  sawEnd: boolean;
  err: string | null;
  didReset: boolean;
  closed: boolean;
  /** Date.now() at 'close', or -1. */
  closedAt: number;
  /**
   * The end arrived after this side had sent its own FIN: Node cannot tell a
   * reset from a FIN then (no write left to probe with), so sawEnd is ambiguous.
   */
  endUnprobed: boolean;
}

interface TargetState {
  readonly port: number;
  readonly mode: string;
  readonly server: net.Server;
  readonly sockets: Set<net.Socket>;
  paused: boolean;
  accepted: number;
  /** Connections whose peer's FIN arrived (silent mode). */
  ends: number;
  /** Bytes read, all connections (every mode). */
  recvBytes: number;
  records: TargetRecord[];
  /** Pattern mode: each open connection by its stream key, with its record. */
  readonly byKey: Map<number, { socket: net.Socket; record: TargetRecord }>;
}

const targets = new Map<number, TargetState>();

function patternTarget(state: TargetState, socket: net.Socket): void {
  let head = Buffer.alloc(0);
  let record: TargetRecord | null = null;
  let replyDone = false;
  let sawEnd = false;
  const pending: TargetRecord = {
    key: -1,
    recv: 0,
    bad: 0,
    sent: 0,
    replySize: 0,
    flags: 0,
    resetAt: 0,
    sawEnd: false,
    err: null,
    didReset: false,
    closed: false,
    closedAt: -1,
    endUnprobed: false,
  };
  const maybeEnd = (): void => {
    if (record === null || !replyDone || socket.destroyed) return;
    if ((record.flags & Flags.TARGET_RESET) !== 0) return;
    if ((record.flags & Flags.TARGET_WAIT_EOF) !== 0 && !sawEnd) return;
    if (!socket.writableEnded) socket.end();
  };
  const sendReply = async (r: TargetRecord): Promise<void> => {
    const key = replyKey(r.key);
    const paced = (r.flags & Flags.PACED) !== 0;
    while (r.sent < r.replySize && !socket.destroyed) {
      const n = Math.min(r.replySize - r.sent, paced ? 4096 + Math.floor(Math.random() * 12288) : 64 * 1024);
      const ok = socket.write(slice(key, r.sent, n));
      r.sent += n;
      if (!ok) await writable(socket);
      if (paced) await delay(5 + Math.floor(Math.random() * 10));
    }
    replyDone = true;
    maybeEnd();
  };
  const onPayload = (chunk: Buffer): void => {
    if (record === null) return;
    record.bad += mismatches(record.key, record.recv, chunk);
    record.recv += chunk.length;
    if ((record.flags & Flags.TARGET_RESET) !== 0 && record.recv >= record.resetAt && !socket.destroyed) {
      record.didReset = true;
      socket.resetAndDestroy();
    }
  };
  socket.on('data', (chunk: Buffer) => {
    state.recvBytes += chunk.length;
    if (record !== null) return onPayload(chunk);
    head = Buffer.concat([head, chunk]);
    if (head.length < HEADER_BYTES) return;
    const h = decodeHeader(head);
    if (h === null) {
      pending.err = 'BAD_HEADER';
      socket.destroy();
      return;
    }
    record = Object.assign(pending, { key: h.key, replySize: h.replySize, flags: h.flags, resetAt: h.resetAt });
    state.records.push(record);
    state.byKey.set(h.key, { socket, record });
    socket.once('close', () => state.byKey.delete(h.key));
    const rest = head.subarray(HEADER_BYTES);
    head = Buffer.alloc(0);
    void sendReply(record);
    if (rest.length > 0) onPayload(rest);
  });
  socket.on('end', () =>
    probeEnd(socket, (err) => {
      if (err !== null) {
        pending.err ??= err;
        return;
      }
      sawEnd = true;
      pending.sawEnd = true;
      pending.endUnprobed = !socket.writable;
      maybeEnd();
    }),
  );
  socket.on('error', (err) => {
    pending.err ??= errCode(err);
  });
  socket.on('close', () => {
    pending.closed = true;
    pending.closedAt = Date.now();
  });
}

function startTarget(args: Args): Promise<Json> {
  const port = num(args, 'port');
  const host = str(args, 'host', '0.0.0.0');
  const mode = str(args, 'mode');
  const greeting = num(args, 'greeting', 0);
  const sockets = new Set<net.Socket>();
  const server = net.createServer({ allowHalfOpen: true });
  const state: TargetState = { port, mode, server, sockets, paused: bool(args, 'paused'), accepted: 0, ends: 0, recvBytes: 0, records: [], byKey: new Map() };
  server.on('connection', (socket) => {
    state.accepted++;
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
    switch (mode) {
      case 'pattern': {
        patternTarget(state, socket);
        if (state.paused) socket.pause();
        // A slow reader: after each chunk read, nothing for slowMs.
        const slowMs = num(args, 'slowMs', 0);
        if (slowMs > 0) {
          socket.on('data', () => {
            socket.pause();
            setTimeout(() => {
              if (!state.paused) socket.resume();
            }, slowMs);
          });
        }
        // A reader that stops for stallMs once it has read stallAt bytes (then reads on).
        const stallAt = num(args, 'stallAt', 0);
        const stallMs = num(args, 'stallMs', 0);
        if (stallAt > 0) {
          let seen = 0;
          let stalled = false;
          socket.on('data', (d: Buffer) => {
            seen += d.length;
            if (stalled || seen < stallAt) return;
            stalled = true;
            socket.pause();
            setTimeout(() => {
              if (!state.paused) socket.resume();
            }, stallMs);
          });
        }
        // A slow start: the target reads nothing for its first pauseMs.
        const pauseMs = num(args, 'pauseMs', 0);
        if (pauseMs > 0) {
          socket.pause();
          setTimeout(() => {
            if (!state.paused) socket.resume();
          }, pauseMs);
        }
        break;
      }
      case 'echo':
        socket.setNoDelay(true);
        socket.on('data', (d: Buffer) => (state.recvBytes += d.length));
        socket.pipe(socket);
        break;
      case 'reset':
        socket.resetAndDestroy();
        break;
      case 'silent':
        // Reads (so the user's bytes are accepted) and never answers, never closes.
        socket.on('data', (d: Buffer) => (state.recvBytes += d.length));
        socket.on('end', () => state.ends++);
        if (greeting > 0) socket.write(slice(state.port, 0, greeting));
        break;
      case 'flood': {
        // Writes its pattern as fast as the connection takes it, never reads.
        socket.pause();
        let at = 0;
        const pump = async (): Promise<void> => {
          while (!socket.destroyed) {
            const ok = socket.write(slice(state.port, at, 64 * 1024));
            at += 64 * 1024;
            if (!ok) await writable(socket);
          }
        };
        void pump();
        break;
      }
      default:
        socket.destroy();
    }
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen({ port, host, backlog: 4096 }, () => {
      server.off('error', reject);
      targets.set(port, state);
      resolve({ port });
    });
  });
}

function target(args: Args): TargetState {
  const port = num(args, 'port');
  const state = targets.get(port);
  if (state === undefined) throw new Error(`no target on port ${port}`);
  return state;
}

function targetStats(args: Args): Json {
  const state = target(args);
  const records = state.records;
  const summary = {
    accepted: state.accepted,
    ends: state.ends,
    open: state.sockets.size,
    recvBytes: state.recvBytes,
    streams: records.length,
    bad: records.reduce((s, r) => s + r.bad, 0),
  };
  const out: Json = bool(args, 'records') ? { ...summary, records: records.map((r) => ({ ...r })) } : summary;
  if (bool(args, 'clear')) state.records = [];
  return out;
}

// ---------------------------------------------------------------------------
// Users
// ---------------------------------------------------------------------------

interface StreamPlan {
  key: number;
  size: number;
  replySize: number;
  flags: number;
  /** Target resets after this many bytes (with Flags.TARGET_RESET). */
  resetAt: number;
  /** The user resets after sending this many bytes (and receiving at least one), or -1. */
  userResetAt: number;
  /** The user stops after this many bytes until released (hold), or -1. */
  holdAt: number;
  /** The user sends its payload only after the target's FIN. */
  sendAfterEnd: boolean;
  timeoutMs: number;
}

export interface UserRecord {
  key: number;
  size: number;
  replySize: number;
  flags: number;
  userReset: boolean;
  /** Bytes handed to the socket (header excluded). */
  sent: number;
  /** Bytes the kernel took (write callbacks), header excluded. */
  accepted: number;
  recv: number;
  bad: number;
  sawEnd: boolean;
  err: string | null;
  connected: boolean;
  /** The user reset its connection as planned. */
  didReset: boolean;
  /** ms from start to connect, to the reply complete (ready), to close. */
  connectMs: number;
  readyMs: number;
  ms: number;
  /** Date.now() at 'close', or -1. */
  closedAt: number;
  /** As TargetRecord.endUnprobed: the end came after this user's own FIN. */
  endUnprobed: boolean;
}

function runStream(
  host: string,
  port: number,
  plan: StreamPlan,
  release: Promise<void> | null,
  onReady: () => void,
): { record: UserRecord; done: Promise<UserRecord> } {
  const started = performance.now();
  const record: UserRecord = {
    key: plan.key,
    size: plan.size,
    replySize: plan.replySize,
    flags: plan.flags,
    userReset: plan.userResetAt >= 0,
    sent: 0,
    accepted: 0,
    recv: 0,
    bad: 0,
    sawEnd: false,
    err: null,
    connected: false,
    didReset: false,
    connectMs: -1,
    readyMs: -1,
    ms: -1,
    closedAt: -1,
    endUnprobed: false,
  };
  const socket = net.connect({ host, port, allowHalfOpen: true });
  socket.setNoDelay(true);
  const replyKeyed = replyKey(plan.key);
  let readyFired = false;
  const ready = (): void => {
    if (readyFired) return;
    readyFired = true;
    record.readyMs = performance.now() - started;
    onReady();
  };
  let gotFirstByte: (() => void) | null = null;
  let gotEnd: (() => void) | null = null;
  socket.on('data', (chunk: Buffer) => {
    record.bad += mismatches(replyKeyed, record.recv, chunk);
    record.recv += chunk.length;
    if (gotFirstByte !== null) gotFirstByte();
    if (record.recv >= plan.replySize) ready();
  });
  socket.on('end', () =>
    probeEnd(socket, (err) => {
      if (err !== null) {
        record.err ??= err;
        return;
      }
      record.sawEnd = true;
      record.endUnprobed = !socket.writable;
      if (gotEnd !== null) gotEnd();
    }),
  );
  socket.on('error', (err) => {
    record.err ??= errCode(err);
  });
  const timer = setTimeout(() => {
    record.err ??= 'TIMEOUT';
    socket.destroy();
  }, plan.timeoutMs);
  const paced = (plan.flags & Flags.PACED) !== 0;
  const send = async (upTo: number): Promise<void> => {
    while (record.sent < upTo && !socket.destroyed) {
      if (plan.userResetAt >= 0 && record.sent >= plan.userResetAt) return;
      let n = Math.min(upTo - record.sent, paced ? 4096 + Math.floor(Math.random() * 12288) : 64 * 1024);
      if (plan.userResetAt >= 0) n = Math.min(n, Math.max(1, plan.userResetAt - record.sent));
      const ok = socket.write(slice(plan.key, record.sent, n), (err) => {
        if (err === null || err === undefined) record.accepted += n;
      });
      record.sent += n;
      if (!ok) await writable(socket);
      if (paced) await delay(5 + Math.floor(Math.random() * 10));
    }
  };
  const done = new Promise<UserRecord>((resolve) => {
    socket.once('close', () => {
      clearTimeout(timer);
      record.ms = performance.now() - started;
      record.closedAt = Date.now();
      if (record.recv >= plan.replySize && record.err === null) ready();
      resolve(record);
    });
  });
  socket.once('connect', () => {
    record.connected = true;
    record.connectMs = performance.now() - started;
    void (async () => {
      socket.write(encodeHeader({ key: plan.key, replySize: plan.replySize, flags: plan.flags, resetAt: plan.resetAt }));
      if (plan.sendAfterEnd) {
        if (!record.sawEnd) await new Promise<void>((resolve) => (gotEnd = resolve));
      }
      if (plan.holdAt >= 0) {
        await send(plan.holdAt);
        if (release !== null) await release;
      }
      await send(plan.size);
      if (socket.destroyed) return;
      if (plan.userResetAt >= 0) {
        if (record.recv === 0) await new Promise<void>((resolve) => (gotFirstByte = resolve));
        record.didReset = true;
        socket.resetAndDestroy();
        return;
      }
      socket.end();
    })().catch((err: unknown) => {
      record.err ??= errCode(err);
      socket.destroy();
    });
  });
  return { record, done };
}

interface Load {
  readonly id: string;
  readonly records: UserRecord[];
  readonly live: Set<UserRecord>;
  started: number;
  finished: number;
  ready: number;
  stopping: boolean;
  releaseAll: () => void;
  kick: () => void;
  readonly finishedAll: Promise<void>;
  readonly startedAt: number;
  readonly args: Args;
}

const loads = new Map<string, Load>();

function randomBetween(min: number, max: number, logScale: boolean): number {
  if (max <= min) return min;
  if (!logScale || min <= 0) return Math.floor(min + Math.random() * (max - min + 1));
  return Math.floor(Math.exp(Math.log(min) + Math.random() * (Math.log(max) - Math.log(min))));
}

/**
 * Runs streams to host:port: up to `count` of them (-1: unbounded), at most
 * `concurrency` pending at once (a held stream stops being pending once its
 * reply is in), until `durationMs` (-1: none) has passed or load-stop.
 */
function loadStart(args: Args): Json {
  const id = str(args, 'id');
  const host = str(args, 'host');
  const port = num(args, 'port');
  const count = num(args, 'count', -1);
  const concurrency = num(args, 'concurrency', 1);
  const durationMs = num(args, 'durationMs', -1);
  const keyBase = num(args, 'keyBase', Math.floor(Math.random() * 0x7fffffff));
  const sizeMin = num(args, 'sizeMin', 0);
  const sizeMax = num(args, 'sizeMax', sizeMin);
  const replyMin = num(args, 'replyMin', 0);
  const replyMax = num(args, 'replyMax', replyMin);
  const pUserReset = num(args, 'pUserReset', 0);
  /** Every stream: the target resets after this many bytes (-1: as pTargetReset says). */
  const fixedTargetResetAt = num(args, 'targetResetAt', -1);
  const pTargetReset = num(args, 'pTargetReset', 0);
  const baseFlags = num(args, 'flags', 0);
  const hold = bool(args, 'hold');
  const holdFraction = num(args, 'holdFraction', 1);
  const sendAfterEnd = bool(args, 'sendAfterEnd');
  const gapOnFailMs = num(args, 'gapOnFailMs', 0);
  const timeoutMs = num(args, 'timeoutMs', 60_000);
  const logScale = bool(args, 'logScale', true);
  let releaseAll: () => void = () => undefined;
  const release = hold ? new Promise<void>((resolve) => (releaseAll = resolve)) : null;
  let finishedAllResolve: () => void = () => undefined;
  const load: Load = {
    id,
    records: [],
    live: new Set(),
    started: 0,
    finished: 0,
    ready: 0,
    stopping: false,
    releaseAll: () => releaseAll(),
    kick: () => undefined,
    finishedAll: new Promise<void>((resolve) => (finishedAllResolve = resolve)),
    startedAt: performance.now(),
    args,
  };
  loads.set(id, load);
  let pending = 0;
  let wake: (() => void) | null = null;
  const kick = (): void => {
    const w = wake;
    wake = null;
    if (w !== null) w();
  };
  load.kick = kick;
  const more = (): boolean =>
    !load.stopping && (count < 0 || load.started < count) && (durationMs < 0 || performance.now() - load.startedAt < durationMs);
  void (async () => {
    while (more()) {
      if (pending >= concurrency) {
        await new Promise<void>((resolve) => (wake = resolve));
        continue;
      }
      const n = load.started++;
      const key = (keyBase + n) >>> 0;
      const size = randomBetween(sizeMin, sizeMax, logScale);
      let replySize = randomBetween(replyMin, replyMax, logScale);
      let flags = baseFlags;
      let resetAt = 0;
      let userResetAt = -1;
      const roll = Math.random();
      if (fixedTargetResetAt >= 0) {
        flags |= Flags.TARGET_RESET;
        resetAt = fixedTargetResetAt;
      } else if (roll < pUserReset && size > 1) {
        userResetAt = Math.floor(Math.random() * size);
        replySize = Math.max(replySize, 1024);
      } else if (roll < pUserReset + pTargetReset && size > 1) {
        flags |= Flags.TARGET_RESET;
        resetAt = 1 + Math.floor(Math.random() * (size - 1));
      }
      const plan: StreamPlan = {
        key,
        size,
        replySize,
        flags,
        resetAt,
        userResetAt,
        holdAt: hold ? Math.floor(size * holdFraction) : -1,
        sendAfterEnd,
        timeoutMs,
      };
      pending++;
      let slotFreed = false;
      const free = (): void => {
        if (slotFreed) return;
        slotFreed = true;
        pending--;
        kick();
      };
      const { record, done } = runStream(host, port, plan, release, () => {
        load.ready++;
        if (hold) free();
      });
      load.records.push(record);
      load.live.add(record);
      void done.then((r) => {
        load.live.delete(r);
        load.finished++;
        // After a failure, wait a little before starting another (no partner: do not spin).
        if (gapOnFailMs > 0 && (!r.connected || r.err !== null)) setTimeout(free, gapOnFailMs);
        else free();
        if (load.finished === load.started && !more()) finishedAllResolve();
      });
    }
    if (load.finished === load.started) finishedAllResolve();
  })();
  // Duration: wake the loop when it ends.
  if (durationMs >= 0) setTimeout(kick, durationMs + 1).unref();
  return { id };
}

function load(args: Args): Load {
  const id = str(args, 'id');
  const l = loads.get(id);
  if (l === undefined) throw new Error(`no load ${id}`);
  return l;
}

function loadSummary(l: Load, withRecords: boolean): Json {
  const rs = l.records;
  const errors: Record<string, number> = {};
  for (const r of rs) if (r.err !== null) errors[r.err] = (errors[r.err] ?? 0) + 1;
  const summary: { [key: string]: Json } = {
    started: l.started,
    finished: l.finished,
    ready: l.ready,
    open: l.live.size,
    sent: rs.reduce((s, r) => s + r.sent, 0),
    accepted: rs.reduce((s, r) => s + r.accepted, 0),
    recv: rs.reduce((s, r) => s + r.recv, 0),
    bad: rs.reduce((s, r) => s + r.bad, 0),
    clean: rs.filter((r) => r.err === null && r.sawEnd && r.ms >= 0).length,
    errors,
    elapsedMs: Math.round(performance.now() - l.startedAt),
  };
  if (withRecords) summary.records = rs.map((r) => ({ ...r }));
  return summary;
}

async function loadWait(args: Args): Promise<Json> {
  const l = load(args);
  if (bool(args, 'stop')) l.stopping = true;
  if (bool(args, 'release')) l.releaseAll();
  l.kick();
  const timeoutMs = num(args, 'timeoutMs');
  let timer: NodeJS.Timeout | undefined;
  const timedOut = await Promise.race([
    l.finishedAll.then(() => false),
    new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(true), timeoutMs))),
  ]);
  clearTimeout(timer);
  if (timedOut) {
    // Report what is stuck, then free it so the agent can go on.
    const stuck = [...l.live].slice(0, 5).map((r) => ({ ...r }));
    throw new Error(`load ${l.id}: ${l.live.size} streams still open after ${timeoutMs} ms, e.g. ${JSON.stringify(stuck)}`);
  }
  return loadSummary(l, bool(args, 'records'));
}

/** Until `ready` streams have their reply (or all finished); for held loads. */
async function loadReady(args: Args): Promise<Json> {
  const l = load(args);
  const want = num(args, 'ready');
  const timeoutMs = num(args, 'timeoutMs');
  const deadline = performance.now() + timeoutMs;
  while (l.ready < want && !(l.finished === l.started && l.started > 0 && l.live.size === 0 && l.ready + l.finished >= want)) {
    if (performance.now() > deadline) {
      throw new Error(`load ${l.id}: ${l.ready} of ${want} streams ready after ${timeoutMs} ms (${l.started} started, ${l.finished} finished)`);
    }
    await delay(20);
  }
  return loadSummary(l, false);
}

// ---------------------------------------------------------------------------
// Ping-pong
// ---------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------
// Plain connections (fate only)
// ---------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------
// A fake tcpipe partner
// ---------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------
// A recording TCP forwarder, and a replayer
// ---------------------------------------------------------------------------

interface ForwardConn {
  id: number;
  /** The upstream connection was made (bytes could flow). */
  upstreamConnected: boolean;
  /** Date.now() when the upstream connection was made, or -1. */
  connectedAt: number;
  /** The first `recordBytes` bytes the downstream side sent (towards upstream). */
  recorded: Buffer[];
  recordedBytes: number;
  /** All bytes the downstream side sent. */
  total: number;
  closed: boolean;
}

interface Forwarder {
  readonly server: net.Server;
  readonly conns: ForwardConn[];
  readonly sockets: Set<net.Socket>;
  /** Open connections: [downstream, upstream]. */
  readonly pairs: Set<[net.Socket, net.Socket]>;
}

const forwarders = new Map<number, Forwarder>();

/**
 * Listens on host:port and forwards each connection to toHost:toPort, both
 * ways, half-closes included; records the first `recordBytes` bytes each
 * connection sent towards toHost (a man in the middle's capture).
 */
function forwardStart(args: Args): Promise<Json> {
  const port = num(args, 'port');
  const host = str(args, 'host', '127.0.0.1');
  const toHost = str(args, 'toHost');
  const toPort = num(args, 'toPort');
  const recordBytes = num(args, 'recordBytes', 64 * 1024);
  const conns: ForwardConn[] = [];
  const sockets = new Set<net.Socket>();
  const pairs = new Set<[net.Socket, net.Socket]>();
  const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: true }, (down) => {
    const conn: ForwardConn = { id: conns.length + 1, upstreamConnected: false, connectedAt: -1, recorded: [], recordedBytes: 0, total: 0, closed: false };
    conns.push(conn);
    // Nothing is read before the upstream connection is made (a 'data' listener would start the flow).
    down.pause();
    const up = net.connect({ host: toHost, port: toPort, allowHalfOpen: true });
    for (const s of [down, up]) {
      sockets.add(s);
      s.on('error', () => undefined);
    }
    const pair: [net.Socket, net.Socket] = [down, up];
    pairs.add(pair);
    down.on('close', () => {
      sockets.delete(down);
      pairs.delete(pair);
      conn.closed = true;
      up.destroy();
    });
    up.on('close', () => {
      sockets.delete(up);
      down.destroy();
    });
    down.on('data', (chunk: Buffer) => {
      conn.total += chunk.length;
      if (conn.recordedBytes < recordBytes) {
        const part = Buffer.from(chunk.subarray(0, recordBytes - conn.recordedBytes));
        conn.recorded.push(part);
        conn.recordedBytes += part.length;
      }
    });
    up.once('connect', () => {
      conn.upstreamConnected = true;
      conn.connectedAt = Date.now();
      up.setNoDelay(true);
      down.setNoDelay(true);
      down.pipe(up);
      up.pipe(down);
      down.resume();
    });
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen({ port, host }, () => {
      server.off('error', reject);
      forwarders.set(port, { server, conns, sockets, pairs });
      resolve({ port });
    });
  });
}

function forwardConns(args: Args): Json {
  const f = forwarders.get(num(args, 'port'));
  if (f === undefined) throw new Error(`no forwarder on port ${num(args, 'port')}`);
  return f.conns.map((c) => ({
    id: c.id,
    upstreamConnected: c.upstreamConnected,
    connectedAt: c.connectedAt,
    total: c.total,
    closed: c.closed,
    recorded: Buffer.concat(c.recorded).toString('base64'),
  }));
}

/**
 * Drops every open forwarded connection as a middlebox would: mode 'rst'
 * resets both of its sockets, 'fin' stops forwarding and closes both
 * orderly (a FIN each way, no goodbye from either end).
 */
function forwardDrop(args: Args): Json {
  const f = forwarders.get(num(args, 'port'));
  if (f === undefined) throw new Error(`no forwarder on port ${num(args, 'port')}`);
  const mode = str(args, 'mode', 'rst');
  let dropped = 0;
  for (const [down, up] of [...f.pairs]) {
    dropped++;
    if (mode === 'rst') {
      down.resetAndDestroy();
      up.resetAndDestroy();
    } else {
      down.unpipe(up);
      up.unpipe(down);
      // Read and discard what either end still sends.
      down.resume();
      up.resume();
      down.end();
      up.end();
      // Whatever either end still sends is not forwarded; closed for good after a moment.
      setTimeout(() => {
        down.destroy();
        up.destroy();
      }, 2000).unref();
    }
  }
  return { dropped };
}

/**
 * Replays captured client bytes (base64 `data`) to host:port on a new
 * connection, as a tcpipe client would send them: the preface and the HELLO
 * first, the rest once the server answered (or at once with split=false).
 * Reports what the server did: the frame types it sent, its GOAWAY, and
 * whether it closed the connection within `timeoutMs`.
 */
async function replay(args: Args): Promise<Json> {
  const host = str(args, 'host');
  const port = num(args, 'port');
  const data = Buffer.from(str(args, 'data'), 'base64');
  const timeoutMs = num(args, 'timeoutMs', 5000);
  const split = bool(args, 'split', true);
  // The preface (8 bytes), then the HELLO frame: a 10-byte header whose length is at offset 6.
  let first = data.length;
  if (split && data.length >= 18) first = Math.min(data.length, 18 + data.readUInt32BE(14));
  const started = performance.now();
  const socket = net.connect({ host, port });
  socket.setNoDelay(true);
  let err: string | null = null;
  let closed = false;
  let recv = 0;
  const frames: number[] = [];
  let goaway: { code: number; reason: string } | null = null;
  let decodeError: string | null = null;
  const { poke, until } = waker();
  const decoder = new FrameDecoder({ maxDataPayload: 1024 * 1024 });
  socket.on('data', (chunk: Buffer) => {
    recv += chunk.length;
    if (decodeError === null) {
      try {
        decoder.push(chunk);
        for (let f = decoder.next(); f !== null; f = decoder.next()) {
          if (frames.length < 64) frames.push(f.type);
          if (f.type === FrameType.GOAWAY) goaway = parseCodeAndReason(f.payload);
        }
      } catch (e) {
        decodeError = e instanceof Error ? e.message : String(e);
      }
    }
    poke();
  });
  socket.on('error', (e) => (err ??= errCode(e)));
  socket.on('close', () => {
    closed = true;
    poke();
  });
  const connected = await new Promise<boolean>((resolve) => {
    socket.once('connect', () => resolve(true));
    socket.once('close', () => resolve(false));
  });
  let sent = 0;
  if (connected) {
    socket.write(data.subarray(0, first));
    sent = first;
    await until(() => closed || frames.length > 0 || decodeError !== null, Math.min(3000, timeoutMs));
    if (!closed && first < data.length) {
      socket.write(data.subarray(first));
      sent = data.length;
    }
    await until(() => closed, timeoutMs);
  }
  const closedByServer = closed;
  socket.destroy();
  return { connected, sent, recv, frames, goaway, decodeError, err, closedByServer, ms: Math.round(performance.now() - started) };
}

// ---------------------------------------------------------------------------
// Dispatch
// ---------------------------------------------------------------------------

const ops: Record<string, (args: Args) => Json | Promise<Json>> = {
  ping: () => ({ pid: process.pid }),
  listen: startTarget,
  'target-stats': targetStats,
  'target-resume': (args) => {
    const state = target(args);
    state.paused = false;
    for (const s of state.sockets) s.resume();
    return { resumed: state.sockets.size };
  },
  /** Pattern targets: the connections of streams `keys` send their FIN now (action 'end') or reset (action 'reset'). */
  'target-act': (args) => {
    const state = target(args);
    const keys = args.keys;
    if (!Array.isArray(keys)) throw new Error('argument keys must be an array');
    const action = str(args, 'action');
    let acted = 0;
    for (const k of keys) {
      const c = typeof k === 'number' ? state.byKey.get(k) : undefined;
      if (c === undefined || c.socket.destroyed) continue;
      acted++;
      if (action === 'reset') {
        c.record.didReset = true;
        c.socket.resetAndDestroy();
      } else if (action === 'end') {
        c.socket.end();
      } else {
        throw new Error(`unknown target action ${action}`);
      }
    }
    return { acted };
  },
  'target-close': async (args) => {
    const state = target(args);
    for (const s of state.sockets) s.destroy();
    await new Promise<void>((resolve) => state.server.close(() => resolve()));
    targets.delete(state.port);
    return { closed: true };
  },
  'load-start': loadStart,
  'load-wait': loadWait,
  'load-ready': loadReady,
  'load-stats': (args) => loadSummary(load(args), bool(args, 'records')),
  'load-stop': (args) => {
    const l = load(args);
    l.stopping = true;
    l.kick();
    return { started: l.started };
  },
  pingpong,
  'probe-connect': probeConnect,
  'fake-run': fakeRun,
  'fake-stop': fakeStop,
  'forward-start': forwardStart,
  'forward-conns': forwardConns,
  'forward-drop': forwardDrop,
  replay,
  memory: () => ({ rss: process.memoryUsage().rss }),
  /** GET url: {status, body} (for a tcpipe's --metrics inside this namespace). */
  fetch: (args) =>
    new Promise<Json>((resolve, reject) => {
      const req = http.get(str(args, 'url'), (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => (body += d));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      });
      req.on('error', reject);
      req.setTimeout(num(args, 'timeoutMs', 5000), () => req.destroy(new Error('timeout')));
    }),
};

function reply(message: Record<string, Json>): void {
  process.stdout.write(`@@ ${JSON.stringify(message)}\n`);
}

const rl = createInterface({ input: process.stdin });
rl.on('line', (line) => {
  let id = -1;
  void (async () => {
    const msg = JSON.parse(line) as { id: number; op: string; args?: Args };
    id = msg.id;
    const op = ops[msg.op];
    if (op === undefined) throw new Error(`unknown op ${msg.op}`);
    const result = await op(msg.args ?? {});
    reply({ id, ok: true, result });
  })().catch((err: unknown) => {
    reply({ id, ok: false, error: err instanceof Error ? err.message : String(err) });
  });
});
rl.on('close', () => process.exit(0));
process.on('uncaughtException', (err) => {
  process.stderr.write(`agent uncaught: ${err.stack ?? err.message}\n`);
});
reply({ id: 0, ok: true, result: { ready: true, pid: process.pid } });

/** `until(cond, ms)` re-checks `cond` each time `poke()` is called (from socket events), up to `ms`. */
function waker(): { poke(): void; until(cond: () => boolean, ms: number): Promise<boolean> } {
  let wake: (() => void) | null = null;
  return {
    poke(): void {
      const w = wake;
      wake = null;
      if (w !== null) w();
    },
    async until(cond: () => boolean, ms: number): Promise<boolean> {
      const deadline = performance.now() + ms;
      while (!cond()) {
        const left = deadline - performance.now();
        if (left <= 0) return false;
        await new Promise<void>((resolve) => {
          const t = setTimeout(resolve, left);
          wake = () => {
            clearTimeout(t);
            resolve();
          };
        });
      }
      return true;
    },
  };
}
