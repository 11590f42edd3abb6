/**
 * The WebSocket transport: the link's bytes in binary WebSocket messages, so
 * it passes web-only firewalls, HTTP proxies and reverse proxies (nginx).
 * `ws` is the well-kept standard for WebSocket in Node.
 *
 * WebSocketDuplex turns a WebSocket into the byte stream the layers above
 * expect, with backpressure both ways; its _writev sends a corked frame
 * header and payload as one message.
 */
import http from 'node:http';
import { isIP, type Socket as NetSocket } from 'node:net';
import tls from 'node:tls';
import { Duplex } from 'node:stream';
import { WebSocket, WebSocketServer, type RawData } from 'ws';
import { ErrorCodes, TcpipeError, errorMessage } from '../errors.js';

/** Largest WebSocket message accepted: a tcpipe frame or a TLS record, with room. */
const MAX_MESSAGE = 4 * 1024 * 1024;
/** Chunks of a corked write below this size are joined into one message; larger ones are sent as they are. */
const JOIN_BELOW = 2048;
/**
 * Largest message sent. The receiving ws copies every message that spans two
 * of its socket reads (64 KiB): with 64 KiB messages that was nearly every
 * byte; with 16 KiB, about one message in four reads. Measured on one bulk
 * stream: relay CPU per GiB 1.26x the plain link's at 64 KiB, 1.06x at 16 KiB
 * (docs/BENCHMARKS.md).
 */
const MESSAGE_SIZE = 16 * 1024;
const SEND_OPTIONS = Object.freeze({ binary: true, compress: false });

const noop = (): void => undefined;

export class WebSocketDuplex extends Duplex {
  constructor(private readonly ws: WebSocket) {
    super({ allowHalfOpen: false, writableHighWaterMark: 64 * 1024, readableHighWaterMark: 256 * 1024 });
    ws.on('message', (data: RawData) => {
      const buf = Array.isArray(data) ? Buffer.concat(data) : Buffer.isBuffer(data) ? data : Buffer.from(data);
      if (!this.push(buf)) ws.pause();
    });
    ws.on('close', () => {
      this.push(null);
      this.destroy();
    });
    ws.on('error', (err) => this.destroy(err));
  }

  override _read(): void {
    if (this.ws.isPaused) this.ws.resume();
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.sendMessages(chunk.length <= MESSAGE_SIZE ? [chunk] : pieces(chunk), callback);
  }

  /**
   * A corked frame header and its payload. The receiver wants bytes, not
   * message boundaries: large chunks are sent as they are, never copied
   * (Buffer.concat of each 64 KiB payload was a fifth of the sending side's
   * CPU); only runs of small chunks are joined.
   */
  override _writev(chunks: { chunk: Buffer }[], callback: (error?: Error | null) => void): void {
    const messages: Buffer[] = [];
    let small: Buffer[] = [];
    let smallBytes = 0;
    const flushSmall = (): void => {
      if (small.length === 0) return;
      messages.push(small.length === 1 ? (small[0] as Buffer) : Buffer.concat(small, smallBytes));
      small = [];
      smallBytes = 0;
    };
    for (const { chunk } of chunks) {
      if (chunk.length < JOIN_BELOW) {
        small.push(chunk);
        smallBytes += chunk.length;
        if (smallBytes >= JOIN_BELOW) flushSmall();
      } else {
        flushSmall();
        if (chunk.length <= MESSAGE_SIZE) messages.push(chunk);
        else messages.push(...pieces(chunk));
      }
    }
    flushSmall();
    this.sendMessages(messages, callback);
  }

  override _final(callback: (error?: Error | null) => void): void {
    if (this.ws.readyState === WebSocket.OPEN) this.ws.close(1000);
    callback();
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    if (this.ws.readyState !== WebSocket.CLOSED) this.ws.terminate();
    callback(error);
  }

  /** For socket-level logs and options; null once closed. */
  get underlyingSocket(): NetSocket | null {
    return (this.ws as unknown as { _socket?: NetSocket })._socket ?? null;
  }

  /** One binary message each, corked: they leave in one writev. `callback` after the last. */
  private sendMessages(messages: readonly Buffer[], callback: (error?: Error | null) => void): void {
    if (this.ws.readyState !== WebSocket.OPEN) {
      callback(new TcpipeError(ErrorCodes.LINK_CLOSED, 'WebSocket closed'));
      return;
    }
    const last = messages.length - 1;
    const socket = last > 0 ? this.underlyingSocket : null;
    socket?.cork();
    try {
      // Messages are written in order: the last one's callback comes after the others' (or with their error).
      for (let i = 0; i <= last; i++) {
        this.ws.send(messages[i] as Buffer, SEND_OPTIONS, i === last ? (err?: Error) => callback(err ?? null) : noop);
      }
    } finally {
      socket?.uncork();
    }
  }
}

/** Views of MESSAGE_SIZE bytes (the last one shorter), no copy. */
function pieces(buf: Buffer): Buffer[] {
  const out: Buffer[] = [];
  for (let at = 0; at < buf.length; at += MESSAGE_SIZE) out.push(buf.subarray(at, Math.min(buf.length, at + MESSAGE_SIZE)));
  return out;
}

export interface WsClientOptions {
  readonly url: string;
  /** An established byte stream to the WebSocket server (direct or through a proxy). */
  readonly socket: NetSocket;
  /** wss://: verify the server's certificate against these CAs (default: the system's). */
  readonly ca?: Buffer;
  readonly timeoutMs: number;
}

/** Opens a WebSocket over `socket` (TLS first for wss://); resolves with the byte stream. */
export function wsConnect(options: WsClientOptions): Promise<WebSocketDuplex> {
  const url = new URL(options.url);
  const secure = url.protocol === 'wss:';
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(options.url, {
      perMessageDeflate: false,
      maxPayload: MAX_MESSAGE,
      handshakeTimeout: options.timeoutMs,
      createConnection: () => {
        if (!secure) return options.socket;
        const host = url.hostname.replace(/^\[|\]$/g, '');
        // `host` is what the certificate is checked against; SNI carries names only, never addresses.
        const tlsOptions: tls.ConnectionOptions = { socket: options.socket, host, servername: isIP(host) === 0 ? host : '' };
        if (options.ca !== undefined) tlsOptions.ca = options.ca;
        return tls.connect(tlsOptions);
      },
    });
    const onUnexpected = (_req: http.ClientRequest, res: http.IncomingMessage): void => {
      // "from nginx": the product, without its version.
      const product = typeof res.headers.server === 'string' ? res.headers.server.split('/')[0]?.replace(/[^\x21-\x7e]/g, '').slice(0, 40) : '';
      const server = product ? ` from ${product}` : '';
      cleanup();
      // terminate() while connecting makes ws emit one more 'error': it must find a listener.
      ws.on('error', () => undefined);
      ws.terminate();
      reject(new TcpipeError(ErrorCodes.LINK_CLOSED, `WebSocket upgrade failed: ${res.statusCode ?? '?'} ${res.statusMessage ?? ''}${server}`.trim()));
    };
    const onError = (err: Error): void => {
      cleanup();
      ws.on('error', () => undefined);
      ws.terminate();
      reject(new TcpipeError(ErrorCodes.LINK_CLOSED, `WebSocket connection failed: ${errorMessage(err)}`));
    };
    const onOpen = (): void => {
      cleanup();
      resolve(new WebSocketDuplex(ws));
    };
    const cleanup = (): void => {
      ws.off('unexpected-response', onUnexpected);
      ws.off('error', onError);
      ws.off('open', onOpen);
    };
    ws.on('unexpected-response', onUnexpected);
    ws.on('error', onError);
    ws.on('open', onOpen);
  });
}

/**
 * Server side: takes a socket whose first bytes were an HTTP request and
 * resolves with the WebSocket byte stream if it is an upgrade on `path`;
 * anything else gets a plain 404 (or 400) and is closed.
 */
export class WsAcceptor {
  private readonly http = http.createServer();
  private readonly wss = new WebSocketServer({ noServer: true, perMessageDeflate: false, maxPayload: MAX_MESSAGE });
  private readonly pending = new Map<NetSocket, { resolve: (d: WebSocketDuplex) => void; reject: (e: Error) => void }>();

  constructor(private readonly path: string) {
    this.http.on('request', (req: http.IncomingMessage, res: http.ServerResponse) => {
      const wanted = (req.url ?? '').split('?')[0] === this.path;
      res.writeHead(wanted ? 400 : 404, { 'content-type': 'text/plain', connection: 'close' });
      res.end(wanted ? 'Bad Request: a WebSocket upgrade is expected here\n' : 'Not Found\n');
      this.fail(req.socket, `HTTP ${req.method ?? '?'} ${sanitize(req.url)}: ${wanted ? 'not a WebSocket upgrade' : 'wrong path'}`);
    });
    this.http.on('upgrade', (req: http.IncomingMessage, socket: NetSocket, head: Buffer) => {
      if ((req.url ?? '').split('?')[0] !== this.path) {
        socket.end('HTTP/1.1 404 Not Found\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
        this.fail(socket, `WebSocket upgrade on the wrong path ${sanitize(req.url)}`);
        return;
      }
      this.wss.handleUpgrade(req, socket, head, (ws) => {
        const waiter = this.pending.get(socket);
        this.pending.delete(socket);
        if (waiter === undefined) {
          ws.terminate();
          return;
        }
        const duplex = new WebSocketDuplex(ws);
        // A bad frame may arrive with the upgrade, before anyone reads: never an unhandled error.
        duplex.on('error', () => undefined);
        waiter.resolve(duplex);
      });
    });
    // ws answers a bad upgrade (no key, wrong version) itself, with a 400; it says why here.
    this.wss.on('wsClientError', (err: Error, socket: NetSocket) => {
      if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
      this.fail(socket, `bad WebSocket upgrade: ${errorMessage(err)}`);
    });
    this.http.on('clientError', (err: Error, socket: NetSocket) => {
      if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n');
      this.fail(socket, `malformed HTTP request: ${errorMessage(err)}`);
    });
  }

  accept(socket: NetSocket): Promise<WebSocketDuplex> {
    return new Promise((resolve, reject) => {
      this.pending.set(socket, { resolve, reject });
      socket.once('close', () => this.fail(socket, 'closed during the WebSocket upgrade'));
      this.http.emit('connection', socket);
      socket.resume();
    });
  }

  private fail(socket: NetSocket, reason: string): void {
    const waiter = this.pending.get(socket);
    if (waiter === undefined) return;
    this.pending.delete(socket);
    waiter.reject(new TcpipeError(ErrorCodes.HANDSHAKE, reason));
  }
}

function sanitize(text: string | undefined): string {
  return (text ?? '').replace(/[^\x21-\x7e]/g, '?').slice(0, 80);
}
