/**
 * The links a session runs over, as connected pairs of byte streams: an
 * in-memory pair, loopback TCP, TLS 1.3 with a shared secret over TCP, and a
 * WebSocket over TCP, each built with the product's own layers
 * (src/link/security.ts, src/link/websocket.ts). The mux tests run over
 * every kind, as yamux's run over pipes, TCP and TLS.
 */
import { Duplex } from 'node:stream';
import { generateSecret, Secret } from '../../src/security/secret.js';
import { secureClient, secureServer, type LinkSecurity } from '../../src/link/security.js';
import { WsAcceptor, wsConnect } from '../../src/link/websocket.js';
import { socketPair } from './loopback.js';
import type { StreamSink } from '../../src/mux/stream.js';
import { FrameDecoder } from '../../src/protocol/decode.js';
import type { Frame } from '../../src/protocol/frame.js';

export type LinkKind = 'memory' | 'tcp' | 'tls' | 'ws';
export const LINK_KINDS: readonly LinkKind[] = ['memory', 'tcp', 'tls', 'ws'];

/** Two connected ends of a link of `kind`: what one writes, the other reads. */
export async function linkPair(kind: LinkKind): Promise<[Duplex, Duplex]> {
  switch (kind) {
    case 'memory':
      return memoryPair();
    case 'tcp': {
      const [a, b] = await socketPair();
      a.setNoDelay(true);
      b.setNoDelay(true);
      return [a, b];
    }
    case 'tls': {
      const [a, b] = await socketPair();
      const security: LinkSecurity = { kind: 'psk', secrets: [Secret.fromText(generateSecret(), 'test')] };
      const [client, server] = await Promise.all([secureClient(a, security, '127.0.0.1'), secureServer(b, security)]);
      client.on('error', () => undefined);
      server.on('error', () => undefined);
      return [client, server];
    }
    case 'ws': {
      const [a, b] = await socketPair();
      const acceptor = new WsAcceptor('/tcpipe');
      const [client, server] = await Promise.all([wsConnect({ url: 'ws://127.0.0.1/tcpipe', socket: a, timeoutMs: 5000 }), acceptor.accept(b)]);
      client.on('error', () => undefined);
      server.on('error', () => undefined);
      return [client, server];
    }
  }
}

/**
 * One end of an in-memory link. A write is pushed to the other end's readable
 * side; when that side's buffer is full, the write's callback waits until the
 * reader asks for more, so backpressure reaches the writer as on a socket.
 */
class MemoryEnd extends Duplex {
  peer: MemoryEnd | null = null;
  private blocked: (() => void) | null = null;

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    const peer = this.peer;
    if (peer === null || peer.destroyed) {
      callback(new Error('memory link closed'));
      return;
    }
    if (peer.push(chunk)) callback();
    else peer.blocked = () => callback();
  }

  override _read(): void {
    const blocked = this.blocked;
    this.blocked = null;
    blocked?.();
  }

  override _final(callback: (error?: Error | null) => void): void {
    this.peer?.push(null);
    callback();
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    const peer = this.peer;
    this.peer = null;
    // As a reset: the other end sees its stream end abruptly.
    if (peer !== null && !peer.destroyed) peer.destroy();
    callback(error);
  }
}

function memoryPair(): [Duplex, Duplex] {
  const a = new MemoryEnd();
  const b = new MemoryEnd();
  a.peer = b;
  b.peer = a;
  a.on('error', () => undefined);
  b.on('error', () => undefined);
  return [a, b];
}

/** A stream sink that ignores everything (streams whose data the test reads elsewhere, or never). */
export const idleSink: StreamSink = Object.freeze({
  onData: () => undefined,
  onEnd: () => undefined,
  onReset: () => undefined,
  onAccept: () => undefined,
  onWritable: () => undefined,
});

/**
 * A link whose every write is decoded into frames and handed to `onFrame` at
 * once: the test is the partner, reading what a session writes, with no socket
 * and no turn of the event loop in between.
 */
export function frameSink(onFrame: (frame: Frame) => void): Duplex {
  const decoder = new FrameDecoder({ maxDataPayload: 1 << 20, expectPreface: false });
  const take = (chunk: Buffer): void => {
    decoder.push(chunk);
    for (let f = decoder.next(); f !== null; f = decoder.next()) onFrame(f);
  };
  return new Duplex({
    read: () => undefined,
    write: (chunk: Buffer, _encoding, callback) => {
      take(chunk);
      callback();
    },
    writev: (chunks, callback) => {
      for (const { chunk } of chunks) take(chunk as Buffer);
      callback();
    },
  });
}
