/**
 * The secrets behind stream resumption (docs/SECURITY.md, "Resumption").
 *
 * Each link's HELLOs carry fresh X25519 key shares. A new session derives its
 * resumption key from that exchange, salted with the TLS exporter of the link
 * when there is TLS: only the two ends of the first link know it. A resume
 * request on a later link proves the key with an HMAC over that link's own key
 * shares and exporter, so a request copied from one link fails on any other.
 */
import crypto, { type KeyObject } from 'node:crypto';
import tls from 'node:tls';
import type { Duplex } from 'node:stream';
import { KEY_SHARE_LENGTH, SESSION_ID_LENGTH } from '../protocol/hello.js';

export interface KeyShare {
  readonly privateKey: KeyObject;
  /** Raw 32-byte X25519 public key, as sent in HELLO. */
  readonly publicKey: Buffer;
}

/** What both ends of a resumable session know; never sent on the wire. */
export interface ResumeIdentity {
  readonly key: Buffer;
  /** Names the session in a resume request (derived from the key, so it reveals nothing). */
  readonly id: Buffer;
}

/** The link material a proof is bound to. */
export interface LinkBinding {
  readonly clientShare: Buffer;
  readonly serverShare: Buffer;
  /** TLS exporter of the link, or empty without TLS. */
  readonly exporter: Buffer;
}

const SPKI_X25519_PREFIX = Buffer.from('302a300506032b656e032100', 'hex');
const EXPORTER_LABEL = 'EXPORTER-tcpipe-resume-v1';
export const PROOF_LENGTH = 32;

export function createKeyShare(): KeyShare {
  const { privateKey, publicKey } = crypto.generateKeyPairSync('x25519');
  const der = publicKey.export({ format: 'der', type: 'spki' });
  return { privateKey, publicKey: Buffer.from(der.subarray(der.length - KEY_SHARE_LENGTH)) };
}

/** 32 bytes only this TLS connection's two ends can compute; empty for a plaintext link. */
export function linkExporter(link: Duplex): Buffer {
  if (!(link instanceof tls.TLSSocket)) return Buffer.alloc(0);
  return link.exportKeyingMaterial(32, EXPORTER_LABEL, Buffer.alloc(0));
}

/** The identity of a session started on the link described by `binding`. */
export function deriveIdentity(own: KeyShare, peerShare: Buffer, binding: LinkBinding): ResumeIdentity {
  const peerKey = crypto.createPublicKey({ key: Buffer.concat([SPKI_X25519_PREFIX, peerShare]), format: 'der', type: 'spki' });
  const shared = crypto.diffieHellman({ privateKey: own.privateKey, publicKey: peerKey });
  const info = Buffer.concat([Buffer.from('tcpipe resume key v1'), binding.clientShare, binding.serverShare]);
  const key = Buffer.from(crypto.hkdfSync('sha256', shared, binding.exporter, info, 32));
  const id = crypto.createHmac('sha256', key).update('tcpipe session id v1').digest().subarray(0, SESSION_ID_LENGTH);
  return { key, id: Buffer.from(id) };
}

/** What `role` sends to prove the session on the link described by `binding`. */
export function resumeProof(identity: ResumeIdentity, role: 'client' | 'server', binding: LinkBinding): Buffer {
  return crypto
    .createHmac('sha256', identity.key)
    .update(`tcpipe resume proof v1 ${role}`)
    .update(identity.id)
    .update(binding.clientShare)
    .update(binding.serverShare)
    .update(binding.exporter)
    .digest();
}

export function proofMatches(expected: Buffer, received: Buffer): boolean {
  return received.length === expected.length && crypto.timingSafeEqual(expected, received);
}
