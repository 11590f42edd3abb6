/**
 * docs/vectors/tcpipe-v1.json against tcpipe's codec and resumption key
 * derivation. The vectors are built from docs/PROTOCOL.md's layouts by
 * scripts/gen-vectors.mjs without tcpipe's encoder, so a mismatch here means
 * the code and the text disagree.
 */
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import test from 'node:test';
import { ProtocolError } from '../../src/errors.js';
import { Flag, FrameType, PREFACE } from '../../src/protocol/constants.js';
import { Capability } from '../../src/protocol/constants.js';
import { encodeDatagram, encodeFlowClose, encodeFlowOpen, parseFlowOpen } from '../../src/protocol/datagram.js';
import { UdpRelay } from '../../src/endpoints/udp-relay.js';
import { systemClock } from '../../src/clock.js';
import { silentLogger } from '../../src/log/logger.js';
import {
  FrameDecoder,
  parseCodeAndReason,
  parseHello,
  parseOpen,
  parseOpenPort,
  parseResumedReceived,
  parseWindow,
} from '../../src/protocol/decode.js';
import {
  encodeAccept,
  encodeGoAway,
  encodeHello,
  encodeOpen,
  encodeOpenWithOrigin,
  encodePing,
  encodeReset,
  encodeResume,
  encodeResumedWindow,
  encodeSmallData,
  encodeWindow,
} from '../../src/protocol/encode.js';
import { decodeHelloInfo, encodeHelloInfo, type HelloInfo } from '../../src/protocol/hello.js';
import type { Frame, Origin } from '../../src/protocol/frame.js';
import { deriveIdentity, resumeProof, type KeyShare } from '../../src/link/resume-auth.js';
import { REPO_ROOT } from '../helpers/loopback.js';

interface FrameVector {
  readonly name: string;
  readonly hex: string;
  readonly type: number;
  readonly flags: number;
  readonly stream: number;
  /** Capability ids both HELLOs listed on the vector's link; absent: none needed. */
  readonly capabilities?: number[];
  readonly fields: {
    readonly port?: number;
    /** OPEN with capability origin (null: the 2-byte OPEN). */
    readonly origin?: OriginFields | null;
    /** FLOW_OPEN's optional user address. */
    readonly family?: number;
    readonly address?: string;
    readonly srcPort?: number;
    readonly data?: string;
    readonly consumed?: number;
    readonly window?: number;
    readonly received?: number;
    readonly code?: number;
    readonly reason?: string;
    readonly opaque?: string;
    readonly kind?: number;
    readonly body?: string;
  };
}
interface OriginFields {
  readonly fam: number;
  readonly source: string;
  readonly dest: string;
  readonly sport: number;
  readonly dport: number;
}
interface HeaderVector {
  readonly name: string;
  readonly hex: string;
  readonly capabilities?: number[];
  readonly maxFrame: number;
  readonly payloadLength: number;
}
interface HelloVector {
  readonly name: string;
  readonly hex: string;
  readonly decoded: Omit<HelloInfo, 'keyShare' | 'sessionId'> & { keyShare: string | null; sessionId: string | null };
}
interface InvalidVector {
  readonly name: string;
  readonly hex: string;
  readonly goaway: number;
  readonly expect?: 'hello';
  readonly preface?: boolean;
  readonly maxFrame?: number;
  readonly capabilities?: number[];
  /** The frame decodes; the receiving session refuses it. */
  readonly refusedBy?: 'session';
}
interface Vectors {
  readonly preface: string;
  readonly frames: FrameVector[];
  readonly hellos: HelloVector[];
  readonly invalid: InvalidVector[];
  readonly headers: HeaderVector[];
  readonly handshakes: { name: string; client: string[]; server: string[] }[];
  readonly resumption: {
    firstLink: Record<string, string> & { withoutTls: Record<string, string> };
    secondLink: Record<string, string>;
  };
}

const vectors = JSON.parse(readFileSync(join(REPO_ROOT, 'docs', 'vectors', 'tcpipe-v1.json'), 'utf8')) as Vectors;
const bytes = (hex: string): Buffer => Buffer.from(hex, 'hex');

/** Every frame in `data`, DATA pieces joined (a frame may be handed out in pieces). */
function decodeAll(data: Buffer, options: { preface?: boolean; maxFrame?: number; capabilities?: readonly number[] } = {}): Frame[] {
  const decoder = new FrameDecoder({ maxDataPayload: options.maxFrame ?? 1024 * 1024, expectPreface: options.preface ?? false });
  // The link session arms the decoder so once both HELLOs listed capability origin.
  if (options.capabilities?.includes(Capability.ORIGIN) === true) decoder.acceptOpenOrigin();
  decoder.push(data);
  const frames: Frame[] = [];
  let frame: Frame | null;
  while ((frame = decoder.next()) !== null) {
    const last = frames[frames.length - 1];
    if (frame.type === FrameType.DATA && last?.type === FrameType.DATA && last.streamId === frame.streamId && frame.payload.length > 0) {
      frames[frames.length - 1] = { ...frame, payload: Buffer.concat([last.payload, frame.payload]) };
    } else frames.push(frame);
  }
  assert.equal(decoder.bufferedBytes, 0, 'every byte is decoded');
  return frames;
}

const OPEN_FAMILIES: Readonly<Record<number, Pick<Origin, 'family' | 'transport'>>> = {
  0x11: { family: 4, transport: 'stream' },
  0x12: { family: 4, transport: 'dgram' },
  0x21: { family: 6, transport: 'stream' },
  0x22: { family: 6, transport: 'dgram' },
};

function originOf(o: OriginFields): Origin {
  const kind = OPEN_FAMILIES[o.fam];
  assert.ok(kind !== undefined, `fam 0x${o.fam.toString(16)}`);
  return { ...kind, sourceAddress: o.source, destinationAddress: o.dest, sourcePort: o.sport, destinationPort: o.dport };
}

function originFields(o: Origin): OriginFields {
  const fam = Number(Object.entries(OPEN_FAMILIES).find(([, k]) => k.family === o.family && k.transport === o.transport)?.[0]);
  return { fam, source: o.sourceAddress, dest: o.destinationAddress, sport: o.sourcePort, dport: o.destinationPort };
}

function encode(v: FrameVector): Buffer {
  const f = v.fields;
  switch (v.type) {
    case FrameType.OPEN:
      return f.origin === undefined ? encodeOpen(v.stream, v.flags, f.port ?? 0) : encodeOpenWithOrigin(v.stream, v.flags, f.port ?? 0, f.origin === null ? null : originOf(f.origin));
    case FrameType.FLOW_OPEN:
      return encodeFlowOpen(v.stream, f.port ?? 0, f.address === undefined ? null : { address: f.address, port: f.srcPort ?? 0 });
    case FrameType.DATAGRAM:
      return encodeDatagram(v.stream, v.flags, bytes(f.data ?? ''));
    case FrameType.FLOW_CLOSE:
      return encodeFlowClose(v.stream, v.flags, f.code ?? 0, f.reason ?? '');
    case FrameType.ACCEPT:
      return encodeAccept(v.stream);
    case FrameType.DATA:
      return encodeSmallData(v.stream, v.flags, bytes(f.data ?? ''));
    case FrameType.WINDOW:
      return (v.flags & Flag.RESUMED) !== 0
        ? encodeResumedWindow(v.stream, v.flags & ~Flag.RESUMED, f.consumed ?? 0, f.window ?? 0, f.received ?? 0)
        : encodeWindow(v.stream, v.flags, f.consumed ?? 0, f.window ?? 0);
    case FrameType.RESET:
      return encodeReset(v.stream, v.flags, f.code ?? 0, f.reason ?? '');
    case FrameType.PING:
      return encodePing(v.flags, bytes(f.opaque ?? ''));
    case FrameType.GOAWAY:
      return encodeGoAway(f.code ?? 0, f.reason ?? '');
    case FrameType.RESUME:
      return encodeResume(f.kind ?? 0, bytes(f.body ?? ''));
    default:
      throw new Error(`no encoder for type ${v.type}`);
  }
}

/** A fresh UDP relay: no session, so capability udp is not negotiated (what the session hands datagram frames to). */
function refuseWithoutUdp(frame: Frame): void {
  new UdpRelay({ maxFlows: 4, idleMs: 60_000 }, systemClock, silentLogger).handleFrame(frame);
}

function fieldsOf(frame: Frame, capabilities: readonly number[] = []): FrameVector['fields'] {
  const p = frame.payload;
  const udp = capabilities.includes(Capability.UDP);
  switch (frame.type) {
    case FrameType.OPEN: {
      if (!capabilities.includes(Capability.ORIGIN)) return { port: parseOpenPort(p) };
      const { port, origin } = parseOpen(p);
      return { port, origin: origin === null ? null : originFields(origin) };
    }
    case FrameType.FLOW_OPEN: {
      if (!udp) refuseWithoutUdp(frame);
      const { port, origin } = parseFlowOpen(p);
      if (origin === null) return { port };
      return { port, family: origin.address.includes(':') ? 6 : 4, address: origin.address, srcPort: origin.port };
    }
    case FrameType.DATAGRAM:
      if (!udp) refuseWithoutUdp(frame);
      return { data: p.toString('hex') };
    case FrameType.FLOW_CLOSE:
      if (!udp) refuseWithoutUdp(frame);
      return parseCodeAndReason(p);
    case FrameType.ACCEPT:
      return {};
    case FrameType.DATA:
      return { data: p.toString('hex') };
    case FrameType.WINDOW: {
      const { consumed, window } = parseWindow(p);
      return (frame.flags & Flag.RESUMED) !== 0 ? { consumed, window, received: parseResumedReceived(p) } : { consumed, window };
    }
    case FrameType.RESET:
    case FrameType.GOAWAY:
      return parseCodeAndReason(p);
    case FrameType.PING:
      return { opaque: p.toString('hex') };
    case FrameType.RESUME:
      return { kind: p[0] ?? -1, body: p.subarray(1).toString('hex') };
    default:
      return {};
  }
}

test('vectors: the preface', () => {
  assert.equal(PREFACE.toString('hex'), vectors.preface);
});

test('vectors: every frame decodes to its fields and encodes to its bytes', () => {
  assert.ok(vectors.frames.length >= 60);
  for (const v of vectors.frames) {
    const [frame, ...rest] = decodeAll(bytes(v.hex), { capabilities: v.capabilities ?? [] });
    assert.equal(rest.length, 0, v.name);
    assert.ok(frame !== undefined, v.name);
    assert.deepEqual({ type: frame.type, flags: frame.flags, stream: frame.streamId }, { type: v.type, flags: v.flags, stream: v.stream }, v.name);
    assert.deepEqual(fieldsOf(frame, v.capabilities), v.fields, v.name);
    assert.equal(encode(v).toString('hex'), v.hex, `${v.name}: encoded`);
  }
});

test('vectors: every HELLO decodes as the text says; encoding the decoded HELLO decodes the same', () => {
  for (const v of vectors.hellos) {
    const [frame] = decodeAll(bytes(v.hex));
    assert.equal(frame?.type, FrameType.HELLO, v.name);
    const info = decodeHelloInfo(parseHello(frame.payload));
    const shown = { ...info, keyShare: info.keyShare?.toString('hex') ?? null, sessionId: info.sessionId?.toString('hex') ?? null };
    assert.deepEqual(shown, v.decoded, v.name);
    const again = decodeHelloInfo(parseHello(encodeHelloInfo(info).subarray(10)));
    assert.deepEqual({ ...again, heartbeatMs: 0 }, { ...info, heartbeatMs: 0 }, `${v.name}: round trip`);
  }
});

test('vectors: every invalid input is refused with its GOAWAY code', () => {
  for (const v of vectors.invalid) {
    const capabilities = v.capabilities ?? [];
    if (v.refusedBy === 'session') {
      // The decoder alone takes it (and so does a link where the capability was negotiated).
      const [frame] = decodeAll(bytes(v.hex), { capabilities });
      assert.ok(frame !== undefined, v.name);
      fieldsOf(frame, [...capabilities, Capability.UDP]);
    }
    assert.throws(
      () => {
        const frames = decodeAll(bytes(v.hex), { preface: v.preface === true, capabilities, ...(v.maxFrame !== undefined ? { maxFrame: v.maxFrame } : {}) });
        for (const frame of frames) {
          if (v.expect === 'hello') decodeHelloInfo(parseHello(frame.payload));
          else fieldsOf(frame, capabilities);
        }
      },
      (err: unknown) => err instanceof ProtocolError && err.goAwayCode === v.goaway,
      v.name,
    );
  }
});

test('vectors: every header a receiver must accept is taken, and its payload awaited', () => {
  assert.ok(vectors.headers.length >= 2);
  for (const v of vectors.headers) {
    const decoder = new FrameDecoder({ maxDataPayload: v.maxFrame, expectPreface: false });
    decoder.push(bytes(v.hex));
    const first = decoder.next();
    assert.ok(first === null || first.payload.length === 0, `${v.name}: nothing before the payload`);
    decoder.push(Buffer.alloc(v.payloadLength, 0x78));
    let length = 0;
    let frame: Frame | null;
    while ((frame = decoder.next()) !== null) length += frame.payload.length;
    assert.equal(length, v.payloadLength, v.name);
    assert.equal(decoder.bufferedBytes, 0, v.name);
  }
});

test('vectors: the capability vectors are there (origin, udp, and the refusals of each)', () => {
  const needing = (id: number) => vectors.frames.filter((v) => v.capabilities?.includes(id) === true).map((v) => v.type);
  assert.deepEqual([...new Set(needing(Capability.ORIGIN))], [FrameType.OPEN]);
  assert.deepEqual([...new Set(needing(Capability.UDP))].sort(), [FrameType.FLOW_OPEN, FrameType.DATAGRAM, FrameType.FLOW_CLOSE].sort());
  assert.ok(vectors.invalid.filter((v) => v.refusedBy === 'session').length >= 3);
  assert.ok(vectors.invalid.some((v) => v.capabilities?.length === 0 && v.hex.startsWith('02')), 'an OPEN with origin without the capability');
});

test('vectors: handshakes decode frame by frame', () => {
  for (const h of vectors.handshakes) {
    for (const side of [h.client, h.server]) {
      const preface = side[0] ?? '';
      if (preface !== vectors.preface) continue; // the refused-version handshake starts with another preface
      const frames = decodeAll(bytes(side.join('')), { preface: true });
      assert.equal(frames.length, side.length - 1, h.name);
    }
  }
});

const PKCS8_X25519 = bytes('302e020100300506032b656e04220420');
function keyShare(privateHex: string, publicHex: string): KeyShare {
  const privateKey = crypto.createPrivateKey({ key: Buffer.concat([PKCS8_X25519, bytes(privateHex)]), format: 'der', type: 'pkcs8' });
  return { privateKey, publicKey: bytes(publicHex) };
}

test('vectors: resumption key, session id and proofs from fixed keys', () => {
  const first = vectors.resumption.firstLink;
  const second = vectors.resumption.secondLink;
  const client = keyShare(first.clientPrivate ?? '', first.clientShare ?? '');
  const server = keyShare(first.serverPrivate ?? '', first.serverShare ?? '');
  const binding = { clientShare: client.publicKey, serverShare: server.publicKey, exporter: bytes(first.exporter ?? '') };
  // Both ends derive the same identity, and it is the vector's.
  const atClient = deriveIdentity(client, server.publicKey, binding);
  const atServer = deriveIdentity(server, client.publicKey, binding);
  assert.equal(atClient.key.toString('hex'), first.key);
  assert.equal(atClient.id.toString('hex'), first.sessionId);
  assert.deepEqual(atServer, atClient);
  const plain = deriveIdentity(client, server.publicKey, { ...binding, exporter: Buffer.alloc(0) });
  assert.equal(plain.key.toString('hex'), first.withoutTls.key);
  assert.equal(plain.id.toString('hex'), first.withoutTls.sessionId);
  // The proofs on the second link.
  const binding2 = { clientShare: bytes(second.clientShare ?? ''), serverShare: bytes(second.serverShare ?? ''), exporter: bytes(second.exporter ?? '') };
  assert.equal(resumeProof(atClient, 'client', binding2).toString('hex'), second.clientProof);
  assert.equal(resumeProof(atClient, 'server', binding2).toString('hex'), second.serverProof);
  // The RESUME and RESUMED frames carry them as the text says.
  assert.equal(encodeResume(2, Buffer.concat([atClient.id, resumeProof(atClient, 'client', binding2)])).toString('hex'), second.resumeFrame);
  assert.equal(encodeResume(3, resumeProof(atClient, 'server', binding2)).toString('hex'), second.resumedFrame);
  // The second link's HELLOs carry its shares (and the client's, the session id).
  const [clientHello] = decodeAll(bytes(second.clientHello ?? ''));
  const info = decodeHelloInfo(parseHello(clientHello?.payload ?? Buffer.alloc(0)));
  assert.equal(info.keyShare?.toString('hex'), second.clientShare);
  assert.equal(info.sessionId?.toString('hex'), first.sessionId);
  // The public keys follow from the private ones (RFC 7748).
  const derivedPublic = crypto.createPublicKey(keyShare(second.clientPrivate ?? '', '').privateKey).export({ format: 'der', type: 'spki' });
  assert.equal(derivedPublic.subarray(derivedPublic.length - 32).toString('hex'), second.clientShare);
});

test('vectors: the encoder writes what a HELLO vector says (software cut to 64 bytes on a character boundary)', () => {
  const long = 'é'.repeat(40); // 80 bytes
  const encoded = encodeHelloInfo({ role: 'client', initialWindow: 1024, maxFramePayload: 1024, maxStreams: 1, heartbeatMs: 0, software: long });
  const params = parseHello(encoded.subarray(10));
  assert.equal(params.get(6)?.length, 64);
  assert.equal(params.get(6)?.toString('utf8'), 'é'.repeat(32));
  // Vectors' own HELLOs re-encode byte for byte when built from their TLVs.
  const v = vectors.hellos[0];
  assert.ok(v !== undefined);
  const [frame] = decodeAll(bytes(v.hex));
  assert.equal(encodeHello(parseHello(frame?.payload ?? Buffer.alloc(0))).toString('hex'), v.hex);
});

test('docs/PROTOCOL.md: every line of "Example bytes" is one frame that decodes', () => {
  const text = readFileSync(join(REPO_ROOT, 'docs', 'PROTOCOL.md'), 'utf8');
  // Every "Example bytes" block: the core frames', and the datagram frames' (capability udp).
  const blocks = [...text.matchAll(/### Example bytes\n\n```\n([\s\S]*?)```/g)].map((m) => m[1] ?? '');
  assert.ok(blocks.length >= 2, `example blocks found: ${blocks.length}`);
  const lines = blocks.flatMap((block) => block.split('\n').filter((line) => /^\S.*:\s+[0-9a-f]{2} /.test(line)));
  assert.ok(lines.length >= 17, `examples found: ${lines.length}`);
  for (const line of lines) {
    // The bytes: the run of hex after the first colon followed by a space (a name may hold address:port).
    const hex = /:\s+([0-9a-f][0-9a-f ]*)/.exec(line)?.[1]?.replace(/\s+/g, '') ?? '';
    const frames = decodeAll(bytes(hex), { capabilities: [Capability.ORIGIN, Capability.UDP] });
    for (const frame of frames) fieldsOf(frame, [Capability.ORIGIN, Capability.UDP]);
    assert.equal(frames.length, 1, line);
  }
});
