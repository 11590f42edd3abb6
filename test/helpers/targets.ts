/**
 * Targets on 127.0.0.3:P whose port P is held free on 127.0.0.2 for the entry
 * listener (echo, hash, dead, or any behaviour). Each registers its own
 * cleanup with t.after.
 */
import { createHash, randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import net from 'node:net';
import type { TestContext } from 'node:test';
import { ENTRY_HOST, TARGET_HOST, listen } from './net.js';
import { sha256, writeInChunks } from './users.js';
import { waitForEvent } from './wait.js';

export interface Target {
  readonly server: net.Server;
  /** The port on 127.0.0.3, also reserved on 127.0.0.2 until `releaseEntry`. */
  readonly port: number;
  /** Connections accepted so far, in order. */
  readonly sockets: net.Socket[];
  /** Emits 'connection' (socket) for each accepted connection. */
  readonly events: EventEmitter;
  /** The next accepted connection (or the n-th overall, if already accepted), within `ms`. */
  connection(index: number, ms: number): Promise<net.Socket>;
  /** Frees 127.0.0.2:port for the entry listener (idempotent). */
  releaseEntry(): void;
  /** Stops listening and destroys its connections. */
  close(): Promise<void>;
}

/**
 * A target on 127.0.0.3:P (P from port 0) such that 127.0.0.2:P is free; a
 * placeholder holds 127.0.0.2:P until `releaseEntry()`. Up to 20 tries.
 */
export async function startTarget(t: TestContext, onConnection: (socket: net.Socket) => void): Promise<Target> {
  for (let attempt = 0; attempt < 20; attempt++) {
    const sockets: net.Socket[] = [];
    const events = new EventEmitter();
    const server = net.createServer({ allowHalfOpen: true }, (socket) => {
      sockets.push(socket);
      socket.on('error', () => undefined);
      onConnection(socket);
      events.emit('connection', socket);
    });
    await listen(server, TARGET_HOST, 0);
    const port = (server.address() as net.AddressInfo).port;
    const placeholder = net.createServer();
    const reserved = await listen(placeholder, ENTRY_HOST, port).then(
      () => true,
      () => false,
    );
    if (!reserved) {
      server.close();
      continue;
    }
    let closed = false;
    const target: Target = {
      server,
      port,
      sockets,
      events,
      connection: async (index, ms) => {
        const have = sockets[index];
        if (have !== undefined) return have;
        await waitForEvent(events, 'connection', ms, () => sockets.length > index).catch(() => {
          throw new Error(`timed out after ${ms} ms waiting for connection #${index + 1} to the target on port ${port}`);
        });
        return sockets[index] as net.Socket;
      },
      releaseEntry: () => {
        if (placeholder.listening) placeholder.close();
      },
      close: () => {
        target.releaseEntry();
        for (const s of sockets) s.destroy();
        if (closed) return Promise.resolve();
        closed = true;
        return new Promise<void>((resolve) => server.close(() => resolve()));
      },
    };
    t.after(() => target.close());
    return target;
  }
  throw new Error('no port free on both 127.0.0.2 and 127.0.0.3 after 20 tries');
}

/** Echoes everything; half-closes after the user does. */
export function startEchoTarget(t: TestContext): Promise<Target> {
  return startTarget(t, (socket) => socket.pipe(socket));
}

/**
 * A port whose target is not listening: 127.0.0.3:P closed, 127.0.0.2:P
 * reserved for the entry listener (release it before starting the instance).
 */
export async function startDeadTarget(t: TestContext): Promise<Target> {
  const target = await startTarget(t, (socket) => socket.destroy());
  await new Promise<void>((resolve) => target.server.close(() => resolve()));
  return target;
}

export interface HashRecord {
  /** The 4-byte id the user sent first (-1 until read). */
  id: number;
  receivedBytes: number;
  receivedHash: string;
  sentBytes: number;
  sentHash: string;
  /** Read to EOF and finished writing. */
  done: boolean;
}

export interface HashTarget extends Target {
  /** By the id each user sends in its first 4 bytes. */
  readonly records: Map<number, HashRecord>;
  /** Resolves once `count` connections have read to EOF and finished writing, within `ms`. */
  allDone(count: number, ms: number): Promise<void>;
}

/**
 * Reads to EOF, hashing what it receives (the first 4 bytes are the user's
 * id, included in the hash), while it writes `size()` random bytes in random
 * chunks (respecting backpressure), then half-closes. Both at once.
 */
export async function startHashTarget(t: TestContext, size: () => number): Promise<HashTarget> {
  const records = new Map<number, HashRecord>();
  const target: Target = await startTarget(t, (socket) => {
    const record: HashRecord = { id: -1, receivedBytes: 0, receivedHash: '', sentBytes: 0, sentHash: '', done: false };
    const hash = createHash('sha256');
    let head = Buffer.alloc(0);
    let readDone = false;
    let writeDone = false;
    const finish = (): void => {
      if (!readDone || !writeDone) return;
      record.done = true;
      socket.destroy();
      target.events.emit('done', record);
    };
    socket.on('data', (chunk: Buffer) => {
      hash.update(chunk);
      record.receivedBytes += chunk.length;
      if (record.id < 0) {
        head = Buffer.concat([head, chunk]);
        if (head.length >= 4) {
          record.id = head.readUInt32BE(0);
          records.set(record.id, record);
        }
      }
    });
    socket.on('end', () => {
      record.receivedHash = hash.digest('hex');
      readDone = true;
      finish();
    });
    const payload = randomBytes(size());
    record.sentBytes = payload.length;
    record.sentHash = sha256(payload);
    void writeInChunks(socket, payload).then(() => {
      socket.end(() => {
        writeDone = true;
        finish();
      });
    });
  });
  const doneCount = (): number => [...records.values()].filter((r) => r.done).length;
  const allDone = async (count: number, ms: number): Promise<void> => {
    if (doneCount() >= count) return;
    await waitForEvent(target.events, 'done', ms, () => doneCount() >= count).catch(() => {
      throw new Error(`timed out after ${ms} ms: ${doneCount()} of ${count} connections done at the target on port ${target.port}`);
    });
  };
  return Object.assign(target, { records, allDone });
}
