/**
 * The conformance kit's end of a link: raw bytes out, decoded frames in,
 * nothing of tcpipe's session logic. It answers the peer's PINGs unless told
 * not to (the peer's heartbeat must not end a check that is about something
 * else), and reports how the link ended.
 */
import net from 'node:net';
import type { Duplex } from 'node:stream';
import { Flag, FrameType, PREFACE } from '../src/protocol/constants.js';
import { FrameDecoder, parseCodeAndReason, parseHello } from '../src/protocol/decode.js';
import { encodeGoAway, encodeHello, encodePing, u32, u8 } from '../src/protocol/encode.js';
import type { Frame } from '../src/protocol/frame.js';
import { decodeHelloInfo, type HelloInfo } from '../src/protocol/hello.js';
import { secureClient, secureServer, TLS_HANDSHAKE_BYTE, type LinkSecurity } from '../src/link/security.js';
import { errorMessage } from '../src/errors.js';

/** What the kit saw next: a frame, the end of the link, bytes it could not decode, or nothing in time. */
export type Seen =
  | { readonly kind: 'frame'; readonly frame: Frame }
  | { readonly kind: 'closed'; readonly how: string }
  | { readonly kind: 'malformed'; readonly why: string }
  | { readonly kind: 'timeout' };

export class RawLink {
  private readonly decoder: FrameDecoder;
  private readonly frames: Frame[] = [];
  private ended: string | null = null;
  private malformed: string | null = null;
  private wake: (() => void) | null = null;
  /** Answer the peer's PINGs (on by default). */
  answerPings = true;
  /** Every byte received, for checks about the first bytes. */
  bytesIn = 0;
  readonly firstBytes: Buffer[] = [];

  constructor(
    readonly socket: Duplex,
    expectPreface = true,
  ) {
    this.decoder = new FrameDecoder({ maxDataPayload: 1024 * 1024, expectPreface });
    socket.on('data', (chunk: Buffer) => {
      if (this.bytesIn < 64) this.firstBytes.push(chunk.subarray(0, 64));
      this.bytesIn += chunk.length;
      this.decoder.push(chunk);
      this.drain();
    });
    socket.on('error', (err: Error) => this.end(`reset or error (${errorMessage(err)})`));
    socket.on('end', () => this.end('closed (FIN)'));
    socket.on('close', () => this.end('closed'));
    socket.resume();
  }

  private drain(): void {
    try {
      let frame: Frame | null;
      while ((frame = this.decoder.next()) !== null) {
        if (frame.type === FrameType.PING && (frame.flags & Flag.ACK) === 0 && this.answerPings) {
          this.send(encodePing(Flag.ACK, frame.payload));
        }
        this.frames.push(frame);
      }
    } catch (err) {
      this.malformed ??= errorMessage(err);
    }
    this.poke();
  }

  private end(how: string): void {
    this.ended ??= how;
    this.poke();
  }

  private poke(): void {
    const wake = this.wake;
    this.wake = null;
    wake?.();
  }

  get isClosed(): boolean {
    return this.ended !== null;
  }

  send(bytes: Buffer): void {
    if (!this.socket.destroyed && this.socket.writable) this.socket.write(bytes);
  }

  /** The next frame that `wanted` accepts (others are dropped), the end of the link, or a timeout. */
  async next(timeoutMs: number, wanted: (frame: Frame) => boolean = () => true): Promise<Seen> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      let frame: Frame | undefined;
      while ((frame = this.frames.shift()) !== undefined) if (wanted(frame)) return { kind: 'frame', frame };
      if (this.malformed !== null) return { kind: 'malformed', why: this.malformed };
      if (this.ended !== null) return { kind: 'closed', how: this.ended };
      const left = deadline - Date.now();
      if (left <= 0) return { kind: 'timeout' };
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
  }

  /** The peer's GOAWAY (skipping other frames), or how the link ended without one. */
  async goAway(timeoutMs: number): Promise<Seen> {
    return this.next(timeoutMs, (f) => f.type === FrameType.GOAWAY);
  }

  /** The link's end, within `timeoutMs`: 'closed' or 'timeout' (frames are dropped). */
  async closed(timeoutMs: number): Promise<Seen> {
    return this.next(timeoutMs, () => false);
  }

  /** Says goodbye and closes. */
  close(): void {
    this.send(encodeGoAway(0, 'conformance check done'));
    this.socket.end();
    setTimeout(() => this.socket.destroy(), 200).unref();
  }

  destroy(): void {
    this.socket.destroy();
  }
}

/** How the kit reaches the peer. */
export interface Endpoint {
  readonly host: string;
  readonly port: number;
  readonly security: LinkSecurity;
}

/** Dials the peer (TLS-PSK when there is a secret); null with the reason when it fails. */
export async function dial(endpoint: Endpoint, timeoutMs: number): Promise<{ link: RawLink } | { error: string }> {
  const socket = net.connect({ host: endpoint.host, port: endpoint.port });
  socket.setNoDelay(true);
  try {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no connection within ${timeoutMs} ms`)), timeoutMs);
      socket.once('connect', () => {
        clearTimeout(timer);
        resolve();
      });
      socket.once('error', (err) => {
        clearTimeout(timer);
        reject(err);
      });
    });
    socket.on('error', () => undefined);
    const link = await secureClient(socket, endpoint.security, endpoint.host);
    link.on('error', () => undefined);
    return { link: new RawLink(link) };
  } catch (err) {
    socket.destroy();
    return { error: errorMessage(err) };
  }
}

/** Waits for the peer (a client) to dial the kit's listener; TLS-PSK when the kit has a secret. */
export function acceptNext(server: net.Server, security: LinkSecurity, timeoutMs: number): Promise<RawLink | null> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      server.off('connection', onConnection);
      resolve(null);
    }, timeoutMs);
    const onConnection = (socket: net.Socket): void => {
      clearTimeout(timer);
      server.off('connection', onConnection);
      socket.setNoDelay(true);
      socket.on('error', () => undefined);
      if (security.kind === 'none') {
        resolve(new RawLink(socket));
        return;
      }
      socket.once('readable', () => {
        const first = socket.read(1) as Buffer | null;
        if (first !== null) socket.unshift(first);
        if (first?.[0] !== TLS_HANDSHAKE_BYTE) {
          resolve(new RawLink(socket));
          return;
        }
        secureServer(socket, security).then(
          (link) => {
            link.on('error', () => undefined);
            resolve(new RawLink(link));
          },
          () => {
            socket.destroy();
            resolve(null);
          },
        );
      });
    };
    server.on('connection', onConnection);
  });
}

// ---- what the kit sends -------------------------------------------------

export interface KitHello {
  readonly role: 0 | 1;
  readonly initialWindow?: number;
  readonly maxFrame?: number;
  readonly maxStreams?: number;
  readonly heartbeatMs?: number;
  readonly resumeMs?: number;
  readonly keyShare?: Buffer;
  readonly sessionId?: Buffer;
  /** Capability ids for key 10 (absent: no key 10, as a side that knows none). */
  readonly capabilities?: readonly number[];
  /** Key 10's raw value instead (checks of a malformed list). */
  readonly capabilitiesRaw?: Buffer;
  /** Keys to leave out (checks of the required keys). */
  readonly omit?: readonly number[];
}

export const KIT_WINDOW = 256 * 1024;

export function kitHello(h: KitHello): Buffer {
  const params = new Map<number, Buffer>([
    [1, u8(h.role)],
    [2, u32(h.initialWindow ?? KIT_WINDOW)],
    [3, u32(h.maxFrame ?? 64 * 1024)],
    [4, u32(h.maxStreams ?? 1024)],
    [5, u32(h.heartbeatMs ?? 60_000)],
    [6, Buffer.from('tcpipe-conformance')],
  ]);
  if (h.resumeMs !== undefined && h.keyShare !== undefined) {
    params.set(7, u32(h.resumeMs));
    params.set(8, h.keyShare);
    if (h.sessionId !== undefined) params.set(9, h.sessionId);
  }
  if (h.capabilitiesRaw !== undefined) params.set(10, h.capabilitiesRaw);
  else if (h.capabilities !== undefined) params.set(10, Buffer.concat(h.capabilities.map((id) => Buffer.from([id >> 8, id & 0xff]))));
  for (const key of h.omit ?? []) params.delete(key);
  return encodeHello(params);
}

export { PREFACE };

/** Describes what was seen, for the report line. */
export function describe(seen: Seen): string {
  switch (seen.kind) {
    case 'timeout':
      return 'nothing (timeout)';
    case 'closed':
      return `the link ${seen.how}`;
    case 'malformed':
      return `bytes the kit cannot decode (${seen.why})`;
    case 'frame': {
      const f = seen.frame;
      if (f.type === FrameType.GOAWAY || (f.type === FrameType.RESET && f.payload.length > 0)) {
        const { code, reason } = parseCodeAndReason(f.payload);
        return `${f.type === FrameType.GOAWAY ? 'GOAWAY' : `RESET stream ${f.streamId}`} code ${code} "${reason.slice(0, 100)}"`;
      }
      return `frame type ${f.type} flags 0x${f.flags.toString(16)} stream ${f.streamId} (${f.payload.length} bytes)`;
    }
  }
}

/** The peer's HELLO as tcpipe reads it, or the reason it is not one. */
export function readPeerHello(seen: Seen): { hello: HelloInfo; frame: Frame } | { error: string } {
  if (seen.kind !== 'frame') return { error: describe(seen) };
  if (seen.frame.type !== FrameType.HELLO) return { error: `first frame ${describe(seen)}, not HELLO` };
  try {
    return { hello: decodeHelloInfo(parseHello(seen.frame.payload)), frame: seen.frame };
  } catch (err) {
    return { error: `HELLO refused by tcpipe's decoder: ${errorMessage(err)}` };
  }
}
