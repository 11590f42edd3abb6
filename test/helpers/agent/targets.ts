/**
 * The agent's targets: listeners that answer each connection per the
 * pattern protocol (pattern.ts), echo, or hold, recording each stream.
 */
import net from 'node:net';
import { num, str, bool, probeEnd, errCode, delay, type Json, type Args, type Op } from './common.js';
import { writable } from '../users.js';
import { Flags, HEADER_BYTES, decodeHeader, mismatches, replyKey, slice } from '../pattern.js';

export interface TargetRecord {
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

function listenTarget(args: Args): Promise<Json> {
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

function statsOfTarget(args: Args): Json {
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

export const targetOps: Readonly<Record<string, Op>> = {
  listen: listenTarget,
  'target-stats': statsOfTarget,
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
};
