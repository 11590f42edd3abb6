/**
 * One stream through the peer to its echo target, with the kit as the entry
 * side: checks ACCEPT before DATA, LOCAL on every frame from the exit side,
 * the bytes back in order, and that the peer never sends beyond the window
 * the kit grants (the kit grants `kitWindow` at a time, as it consumes).
 */
import crypto from 'node:crypto';
import { Flag, FrameType } from '../src/protocol/constants.js';
import { encodeOpen, encodeSmallData, encodeWindow } from '../src/protocol/encode.js';
import type { HelloInfo } from '../src/protocol/hello.js';
import { describe, type RawLink } from './wire.js';

export interface EchoResult {
  readonly pass: boolean;
  readonly saw: string;
}

export async function echoThrough(
  link: RawLink,
  peer: HelloInfo,
  options: { readonly port: number; readonly bytes: number; readonly kitWindow: number; readonly timeoutMs: number; readonly streamId?: number },
): Promise<EchoResult> {
  const id = options.streamId ?? 1;
  const total = options.bytes;
  const payload = crypto.randomBytes(total);
  const frameMax = Math.min(peer.maxFramePayload, 16 * 1024);
  let sendLimit = peer.initialWindow;
  let sent = 0;
  let limit = options.kitWindow;
  let received = 0;
  let accepted = false;
  const back: Buffer[] = [];
  const problems: string[] = [];
  const pump = (): void => {
    while (sent < total && sent < sendLimit) {
      const n = Math.min(frameMax, total - sent, sendLimit - sent);
      link.send(encodeSmallData(id, 0, payload.subarray(sent, sent + n)));
      sent += n;
    }
  };
  link.send(encodeOpen(id, 0, options.port));
  pump();
  while (received < total) {
    const seen = await link.next(options.timeoutMs, (f) => f.streamId === id || f.type === FrameType.GOAWAY);
    if (seen.kind !== 'frame' || seen.frame.type === FrameType.GOAWAY || seen.frame.type === FrameType.RESET) {
      problems.push(`after ${sent} bytes sent and ${received} back: ${describe(seen)}`);
      break;
    }
    const f = seen.frame;
    if ((f.flags & Flag.LOCAL) === 0) problems.push(`frame type ${f.type} without LOCAL`);
    if (f.type === FrameType.ACCEPT) accepted = true;
    if (f.type === FrameType.WINDOW) {
      const consumed = Number(f.payload.readBigUInt64BE(0));
      sendLimit = Math.max(sendLimit, consumed + f.payload.readUInt32BE(8));
      pump();
    } else if (f.type === FrameType.DATA) {
      if (!accepted) problems.push('DATA before ACCEPT');
      received += f.payload.length;
      back.push(Buffer.from(f.payload));
      if (received > limit) {
        problems.push(`the peer sent ${received} bytes against a limit of ${limit}`);
        break;
      }
      // Consumed at once: a WINDOW each half window.
      if (received + options.kitWindow - limit >= options.kitWindow / 2) {
        limit = received + options.kitWindow;
        link.send(encodeWindow(id, 0, received, options.kitWindow));
      }
    }
    if (problems.length > 0) break;
  }
  if (problems.length === 0 && !Buffer.concat(back).equals(payload)) problems.push('the echo differs');
  const pass = problems.length === 0;
  return {
    pass,
    saw: pass
      ? `ACCEPT, ${total} bytes each way through a ${options.kitWindow}-byte window, never beyond it, LOCAL on every frame`
      : problems.join('; '),
  };
}
