/**
 * The start of a link: each side sends the preface and its HELLO; the first
 * frame received must be HELLO (or, on the client, a GOAWAY that refuses it).
 */
import type { Duplex } from 'node:stream';
import type { Clock } from '../clock.js';
import { ErrorCodes, ProtocolError, TcpipeError, errorMessage, goAwayError } from '../errors.js';
import { FrameType, GoAwayCode, PREFACE } from '../protocol/constants.js';
import { FrameDecoder, parseCodeAndReason, parseHello } from '../protocol/decode.js';
import { decodeHelloInfo, encodeHelloInfo, type HelloInfo } from '../protocol/hello.js';
import type { Frame } from '../protocol/frame.js';
import { encodeGoAway } from '../protocol/encode.js';

export interface HandshakeResult {
  readonly peer: HelloInfo;
  /** Holds any bytes that arrived after the HELLO; the session reads on from it. */
  readonly decoder: FrameDecoder;
}

/** The role this side announced on a link, to check the partner's against (see readHello). */
const sentRoles = new WeakMap<Duplex, HelloInfo['role']>();

export function sendHello(link: Duplex, hello: HelloInfo): void {
  sentRoles.set(link, hello.role);
  link.cork();
  link.write(PREFACE);
  link.write(encodeHelloInfo(hello));
  link.uncork();
}

/** Sends the preface and a GOAWAY: how a server refuses a client that sent a valid HELLO. */
export function sendRefusal(link: Duplex, code: number, reason: string): void {
  link.cork();
  link.write(PREFACE);
  link.write(encodeGoAway(code, reason));
  link.uncork();
  link.end();
}

/**
 * Reads until the partner's HELLO. Rejects on timeout, on a GOAWAY (with its
 * reason), on malformed bytes or when the link closes. Leaves the link paused.
 */
export async function readHello(link: Duplex, maxDataPayload: number, timeoutMs: number, clock: Clock): Promise<HandshakeResult> {
  const decoder = new FrameDecoder({ maxDataPayload });
  const frame = await readFrame(link, decoder, timeoutMs, clock);
  if (frame.type !== FrameType.HELLO) {
    throw new ProtocolError(GoAwayCode.PROTOCOL_ERROR, `first frame must be HELLO, got type ${frame.type}`);
  }
  const peer = decodeHelloInfo(parseHello(frame.payload));
  // "A receiver refuses a HELLO whose role is its own." A client sends its HELLO before it
  // reads one; a server reads first: a link with no HELLO sent yet is a server's.
  const ownRole = sentRoles.get(link) ?? 'server';
  if (peer.role === ownRole) {
    throw new ProtocolError(GoAwayCode.PROTOCOL_ERROR, `HELLO: the partner says it is a ${peer.role} too`);
  }
  return { peer, decoder };
}

/**
 * The next whole frame of a handshake (the decoder may already hold it). A
 * GOAWAY rejects with the partner's reason. Leaves the link paused.
 */
export function readFrame(link: Duplex, decoder: FrameDecoder, timeoutMs: number, clock: Clock): Promise<Frame> {
  return new Promise<Frame>((resolve, reject) => {
    let done = false;
    const finish = (err: Error | null, frame?: Frame): void => {
      if (done) return;
      done = true;
      timer.cancel();
      link.pause();
      link.off('data', onData);
      link.off('error', onError);
      link.off('end', onEnd);
      link.off('close', onEnd);
      if (err !== null) reject(err);
      else if (frame !== undefined) resolve(frame);
    };
    const timer = clock.setTimer(timeoutMs, () =>
      finish(new TcpipeError(ErrorCodes.HANDSHAKE_TIMEOUT, `handshake not finished within ${timeoutMs / 1000}s`)),
    );
    const check = (): void => {
      try {
        const frame = decoder.next();
        if (frame === null) return;
        if (frame.type === FrameType.GOAWAY) {
          const { code, reason } = parseCodeAndReason(frame.payload);
          const message = `refused by the partner: ${reason}`;
          finish(goAwayError(code, message) ?? new TcpipeError(ErrorCodes.HANDSHAKE, message));
        } else if (frame.type === FrameType.DATA) {
          finish(new ProtocolError(GoAwayCode.PROTOCOL_ERROR, 'DATA during the handshake'));
        } else {
          finish(null, frame);
        }
      } catch (err) {
        finish(err instanceof Error ? err : new Error(String(err)));
      }
    };
    const onData = (chunk: Buffer): void => {
      decoder.push(chunk);
      check();
    };
    const onError = (err: Error): void => finish(new TcpipeError(ErrorCodes.HANDSHAKE, `link error during handshake: ${errorMessage(err)}`));
    const onEnd = (): void => finish(new TcpipeError(ErrorCodes.HANDSHAKE, 'link closed during handshake'));
    check();
    if (done) return;
    link.on('data', onData);
    link.on('error', onError);
    link.on('end', onEnd);
    link.on('close', onEnd);
    link.resume();
  });
}

/** Waits for the first bytes of a link and puts them back: the caller picks a layer by the first byte. */
export function readFirstByte(socket: Duplex): Promise<number> {
  return new Promise((resolve, reject) => {
    if (socket.destroyed || socket.readableEnded) {
      reject(new TcpipeError(ErrorCodes.HANDSHAKE, 'link closed before its first byte'));
      return;
    }
    const cleanup = (): void => {
      socket.off('data', onData);
      socket.off('end', onEnd);
      socket.off('close', onEnd);
      socket.off('error', onError);
    };
    const onData = (chunk: Buffer): void => {
      cleanup();
      socket.pause();
      socket.unshift(chunk);
      resolve(chunk[0] ?? 0);
    };
    const onEnd = (): void => {
      cleanup();
      reject(new TcpipeError(ErrorCodes.HANDSHAKE, 'link closed before its first byte'));
    };
    const onError = (err: Error): void => {
      cleanup();
      reject(new TcpipeError(ErrorCodes.HANDSHAKE, `link error before its first byte: ${errorMessage(err)}`));
    };
    socket.on('data', onData);
    socket.on('end', onEnd);
    socket.on('close', onEnd);
    socket.on('error', onError);
    socket.resume();
  });
}
