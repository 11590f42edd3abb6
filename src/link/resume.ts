/**
 * The resumption handshake (docs/PROTOCOL.md, "Resumption"): after both
 * HELLOs announced resume, the client sends one RESUME (NEW, or RESUME with
 * the session id and its proof) and the server answers RESUMED with its own
 * proof, FRESH with a reason, or a GOAWAY when the proof is wrong.
 */
import type { Duplex } from 'node:stream';
import type { Clock } from '../clock.js';
import { ErrorCodes, ProtocolError, TcpipeError } from '../errors.js';
import { FrameType, GoAwayCode, ResumeKind } from '../protocol/constants.js';
import type { FrameDecoder } from '../protocol/decode.js';
import { encodeResume, reasonBytes } from '../protocol/encode.js';
import { SESSION_ID_LENGTH } from '../protocol/hello.js';
import { readFrame } from './handshake.js';
import { PROOF_LENGTH, proofMatches, resumeProof, type LinkBinding, type ResumeIdentity } from './resume-auth.js';

export type ResumeRequest =
  | { readonly kind: 'new' }
  | { readonly kind: 'resume'; readonly id: Buffer; readonly proof: Buffer };

export type ResumeAnswer = { readonly kind: 'resumed' } | { readonly kind: 'fresh'; readonly reason: string };

function protocolError(message: string): ProtocolError {
  return new ProtocolError(GoAwayCode.PROTOCOL_ERROR, message);
}

/** Client: asks to resume `held` (or says it has nothing to resume) and reads the server's answer. */
export async function requestResume(
  link: Duplex,
  decoder: FrameDecoder,
  held: ResumeIdentity | null,
  binding: LinkBinding,
  timeoutMs: number,
  clock: Clock,
): Promise<ResumeAnswer> {
  if (held === null) link.write(encodeResume(ResumeKind.NEW));
  else link.write(encodeResume(ResumeKind.RESUME, Buffer.concat([held.id, resumeProof(held, 'client', binding)])));
  const frame = await readFrame(link, decoder, timeoutMs, clock);
  if (frame.type !== FrameType.RESUME) throw protocolError(`expected RESUME after HELLO, got frame type ${frame.type}`);
  const { payload } = frame;
  if (payload[0] === ResumeKind.FRESH) {
    const reason = payload.toString('utf8', 1).replace(/[\u0000-\u001f\u007f-\u009f]/g, '?');
    return { kind: 'fresh', reason: reason || 'the partner started a new session' };
  }
  if (payload[0] !== ResumeKind.RESUMED || payload.length !== 1 + PROOF_LENGTH) throw protocolError('malformed RESUME answer');
  if (held === null) throw protocolError('the partner resumed a session this side did not ask for');
  if (!proofMatches(resumeProof(held, 'server', binding), payload.subarray(1))) {
    throw new TcpipeError(ErrorCodes.AUTH, 'the partner could not prove the session it resumed');
  }
  return { kind: 'resumed' };
}

/** Server: reads the client's RESUME. */
export async function readResumeRequest(link: Duplex, decoder: FrameDecoder, timeoutMs: number, clock: Clock): Promise<ResumeRequest> {
  const frame = await readFrame(link, decoder, timeoutMs, clock);
  if (frame.type !== FrameType.RESUME) throw protocolError(`expected RESUME after HELLO, got frame type ${frame.type}`);
  const { payload } = frame;
  if (payload[0] === ResumeKind.NEW && payload.length === 1) return { kind: 'new' };
  if (payload[0] === ResumeKind.RESUME && payload.length === 1 + SESSION_ID_LENGTH + PROOF_LENGTH) {
    return {
      kind: 'resume',
      id: Buffer.from(payload.subarray(1, 1 + SESSION_ID_LENGTH)),
      proof: Buffer.from(payload.subarray(1 + SESSION_ID_LENGTH)),
    };
  }
  throw protocolError('malformed RESUME request');
}

/** Server: does the request prove `identity` on this link? */
export function requestProves(request: ResumeRequest, identity: ResumeIdentity, binding: LinkBinding): boolean {
  return request.kind === 'resume' && request.id.equals(identity.id) && proofMatches(resumeProof(identity, 'client', binding), request.proof);
}

export function sendResumed(link: Duplex, identity: ResumeIdentity, binding: LinkBinding): void {
  link.write(encodeResume(ResumeKind.RESUMED, resumeProof(identity, 'server', binding)));
}

export function sendFresh(link: Duplex, reason: string): void {
  link.write(encodeResume(ResumeKind.FRESH, reasonBytes(reason)));
}
