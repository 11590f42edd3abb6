/**
 * The agent's users: loads of pattern streams (many connections, each with
 * its own plan: sizes, resets, holds), run in the background and summarised.
 */
import net from 'node:net';
import { num, str, bool, probeEnd, errCode, delay, type Json, type Args, type Op } from './common.js';
import { writable } from '../users.js';
import { Flags, encodeHeader, mismatches, replyKey, slice } from '../pattern.js';

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

export const loadOps: Readonly<Record<string, Op>> = {
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
};
