/**
 * The secrets behind stream resumption (src/link/resume-auth.ts) and the
 * resumption handshake built on them (src/link/resume.ts), the latter over
 * real loopback sockets.
 */
import { describe, test } from 'node:test';
import { socketPair } from '../helpers/net.js';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import type { Duplex } from 'node:stream';
import {
  PROOF_LENGTH,
  createKeyShare,
  deriveIdentity,
  linkExporter,
  proofMatches,
  resumeProof,
  type KeyShare,
  type LinkBinding,
  type ResumeIdentity,
} from '../../src/link/resume-auth.js';
import { readResumeRequest, requestProves, requestResume, sendFresh, sendResumed } from '../../src/link/resume.js';
import { secureClient, secureServer } from '../../src/link/security.js';
import { Secret, generateSecret } from '../../src/security/secret.js';
import { ErrorCodes, ProtocolError, TcpipeError } from '../../src/errors.js';
import { FrameType, GoAwayCode, ResumeKind } from '../../src/protocol/constants.js';
import { FrameDecoder } from '../../src/protocol/decode.js';
import { encodeGoAway, encodePing, encodeResume } from '../../src/protocol/encode.js';
import { systemClock } from '../../src/clock.js';

interface Link {
  readonly client: KeyShare;
  readonly server: KeyShare;
  readonly binding: LinkBinding;
}

function newLink(exporter: Buffer = Buffer.alloc(0)): Link {
  const client = createKeyShare();
  const server = createKeyShare();
  return { client, server, binding: { clientShare: client.publicKey, serverShare: server.publicKey, exporter } };
}

/** Both ends' view of the identity of a session started on `link`. */
function identities(link: Link): { client: ResumeIdentity; server: ResumeIdentity } {
  return {
    client: deriveIdentity(link.client, link.server.publicKey, link.binding),
    server: deriveIdentity(link.server, link.client.publicKey, link.binding),
  };
}


describe('resume-auth: key shares and identity', () => {
  test('a key share is a fresh raw 32-byte X25519 public key', () => {
    const a = createKeyShare();
    const b = createKeyShare();
    assert.equal(a.publicKey.length, 32);
    assert.equal(b.publicKey.length, 32);
    assert.notDeepEqual(a.publicKey, b.publicKey);
    assert.equal(a.privateKey.asymmetricKeyType, 'x25519');
    // The raw key is the one inside the SPKI export.
    const der = crypto.createPublicKey(a.privateKey).export({ format: 'der', type: 'spki' });
    assert.deepEqual(Buffer.from(der.subarray(der.length - 32)), a.publicKey);
  });

  test('both sides derive the same identity from the exchange (with and without an exporter)', () => {
    for (const exporter of [Buffer.alloc(0), crypto.randomBytes(32)]) {
      const { client, server } = identities(newLink(exporter));
      assert.equal(client.key.length, 32);
      assert.equal(client.id.length, 16);
      assert.deepEqual(client.key, server.key);
      assert.deepEqual(client.id, server.id);
      // The id is derived from the key (it reveals nothing else).
      const id = crypto.createHmac('sha256', client.key).update('tcpipe session id v1').digest().subarray(0, 16);
      assert.deepEqual(client.id, id);
    }
  });

  test('another exchange, another exporter or a third party gives another identity', () => {
    const link = newLink(Buffer.alloc(32, 1));
    const { client } = identities(link);
    const other = identities(newLink(Buffer.alloc(32, 1))).client;
    assert.notDeepEqual(other.key, client.key);
    assert.notDeepEqual(other.id, client.id);
    // Same key shares, another TLS exporter.
    const otherExporter = deriveIdentity(link.client, link.server.publicKey, { ...link.binding, exporter: Buffer.alloc(32, 2) });
    assert.notDeepEqual(otherExporter.key, client.key);
    // Someone who saw both public keys but holds neither private key gets nothing alike.
    const eve = createKeyShare();
    const eavesdropper = deriveIdentity(eve, link.server.publicKey, link.binding);
    assert.notDeepEqual(eavesdropper.key, client.key);
    assert.notDeepEqual(eavesdropper.id, client.id);
  });
});

describe('resume-auth: proofs', () => {
  test('a proof is 32 bytes and differs per role', () => {
    const first = newLink();
    const { client: identity } = identities(first);
    const later = newLink();
    const clientProof = resumeProof(identity, 'client', later.binding);
    const serverProof = resumeProof(identity, 'server', later.binding);
    assert.equal(PROOF_LENGTH, 32);
    assert.equal(clientProof.length, PROOF_LENGTH);
    assert.equal(serverProof.length, PROOF_LENGTH);
    assert.notDeepEqual(clientProof, serverProof);
    assert.equal(proofMatches(clientProof, serverProof), false);
    // Deterministic: the partner computes the same one.
    assert.deepEqual(resumeProof(identities(first).server, 'client', later.binding), clientProof);
  });

  test('a proof is bound to its link: one made for one link fails on another', () => {
    const { client: identity } = identities(newLink());
    const linkA = newLink(crypto.randomBytes(32));
    const linkB = newLink(crypto.randomBytes(32));
    const proofA = resumeProof(identity, 'client', linkA.binding);
    assert.ok(proofMatches(resumeProof(identity, 'client', linkA.binding), proofA));
    assert.equal(proofMatches(resumeProof(identity, 'client', linkB.binding), proofA), false);
    // Each part of the binding counts: the client share, the server share, the exporter.
    for (const binding of [
      { ...linkA.binding, clientShare: linkB.binding.clientShare },
      { ...linkA.binding, serverShare: linkB.binding.serverShare },
      { ...linkA.binding, exporter: linkB.binding.exporter },
      { ...linkA.binding, exporter: Buffer.alloc(0) },
      { ...linkA.binding, clientShare: linkA.binding.serverShare, serverShare: linkA.binding.clientShare },
    ]) {
      assert.equal(proofMatches(resumeProof(identity, 'client', binding), proofA), false);
    }
    // Another session's key on the same link does not prove this one.
    const { client: otherIdentity } = identities(newLink());
    assert.equal(proofMatches(resumeProof(otherIdentity, 'client', linkA.binding), proofA), false);
  });

  test('proofMatches is length-safe: shorter, longer or empty is false, never a throw', () => {
    const { client: identity } = identities(newLink());
    const proof = resumeProof(identity, 'client', newLink().binding);
    assert.equal(proofMatches(proof, Buffer.from(proof)), true);
    for (const received of [
      Buffer.alloc(0),
      proof.subarray(0, 31),
      proof.subarray(0, 1),
      Buffer.concat([proof, Buffer.alloc(1)]),
      Buffer.concat([proof, proof]),
    ]) {
      assert.doesNotThrow(() => proofMatches(proof, received));
      assert.equal(proofMatches(proof, received), false);
    }
    const flipped = Buffer.from(proof);
    flipped[31] = (flipped[31] ?? 0) ^ 1;
    assert.equal(proofMatches(proof, flipped), false);
  });

  test('linkExporter: empty without TLS; over TLS 32 bytes both ends agree on, new for each link', async () => {
    const [a, b] = await socketPair();
    try {
      assert.equal(linkExporter(a).length, 0);
      assert.equal(linkExporter(b).length, 0);
    } finally {
      a.destroy();
      b.destroy();
    }
    const secret = Secret.fromText(generateSecret(), 'test');
    const exporters: Buffer[][] = [];
    for (let i = 0; i < 2; i++) {
      const [rawClient, rawServer] = await socketPair();
      try {
        const [client, server] = await Promise.all([
          secureClient(rawClient, { kind: 'psk', secrets: [secret] }, '127.0.0.1'),
          secureServer(rawServer, { kind: 'psk', secrets: [secret] }),
        ]);
        const pair = [linkExporter(client), linkExporter(server)];
        assert.equal(pair[0]?.length, 32);
        assert.deepEqual(pair[0], pair[1]);
        exporters.push(pair);
        client.destroy();
        server.destroy();
      } finally {
        rawClient.destroy();
        rawServer.destroy();
      }
    }
    assert.notDeepEqual(exporters[0]?.[0], exporters[1]?.[0]);
  });
});

describe('resume handshake (src/link/resume.ts) over loopback', () => {
  const decoder = (): FrameDecoder => new FrameDecoder({ maxDataPayload: 1 << 16, expectPreface: false });

  /** Runs the client's request against a server that answers with `answer`. */
  async function exchange(
    held: ResumeIdentity | null,
    serverIdentity: ResumeIdentity | null,
    binding: LinkBinding,
    answer: (link: Duplex, proved: boolean) => void,
  ): Promise<{ client: Promise<unknown>; proved: boolean }> {
    const [clientLink, serverLink] = await socketPair();
    const client = requestResume(clientLink, decoder(), held, binding, 2000, systemClock);
    client.catch(() => undefined);
    const request = await readResumeRequest(serverLink, decoder(), 2000, systemClock);
    if (held === null) assert.deepEqual(request, { kind: 'new' });
    else assert.equal(request.kind, 'resume');
    const proved = serverIdentity !== null && requestProves(request, serverIdentity, binding);
    answer(serverLink, proved);
    const cleanUp = (): void => {
      clientLink.destroy();
      serverLink.destroy();
    };
    client.then(cleanUp, cleanUp);
    return { client, proved };
  }

  test('a proved request is answered RESUMED, and the client checks the server proof', async () => {
    const first = newLink();
    const { client, server } = identities(first);
    const later = newLink();
    const run = await exchange(client, server, later.binding, (link, proved) => {
      if (proved) sendResumed(link, server, later.binding);
      else sendFresh(link, 'not proved');
    });
    assert.equal(run.proved, true);
    assert.deepEqual(await run.client, { kind: 'resumed' });
  });

  test('the request carries the session id and the client proof for this link', async () => {
    const [clientLink, serverLink] = await socketPair();
    try {
      const { client } = identities(newLink());
      const later = newLink();
      void requestResume(clientLink, decoder(), client, later.binding, 500, systemClock).catch(() => undefined);
      const request = await readResumeRequest(serverLink, decoder(), 2000, systemClock);
      assert.equal(request.kind, 'resume');
      if (request.kind !== 'resume') return;
      assert.deepEqual(request.id, client.id);
      assert.deepEqual(request.proof, resumeProof(client, 'client', later.binding));
    } finally {
      clientLink.destroy();
      serverLink.destroy();
    }
  });

  test('a request replayed on another link does not prove the session', () => {
    const { client, server } = identities(newLink());
    const linkA = newLink();
    const linkB = newLink();
    const request = { kind: 'resume' as const, id: client.id, proof: resumeProof(client, 'client', linkA.binding) };
    assert.equal(requestProves(request, server, linkA.binding), true);
    assert.equal(requestProves(request, server, linkB.binding), false);
    // The server's own proof is no client proof.
    assert.equal(requestProves({ ...request, proof: resumeProof(server, 'server', linkA.binding) }, server, linkA.binding), false);
    // A wrong id with the right proof fails too; NEW never proves anything.
    assert.equal(requestProves({ ...request, id: Buffer.alloc(16) }, server, linkA.binding), false);
    assert.equal(requestProves({ kind: 'new' }, server, linkA.binding), false);
  });

  test('an unknown session gets FRESH with the reason; NEW gets FRESH too', async () => {
    const { client } = identities(newLink());
    const later = newLink();
    const unknown = await exchange(client, identities(newLink()).server, later.binding, (link, proved) => {
      assert.equal(proved, false);
      sendFresh(link, 'no such session');
    });
    assert.deepEqual(await unknown.client, { kind: 'fresh', reason: 'no such session' });
    const fresh = await exchange(null, null, later.binding, (link) => sendFresh(link, ''));
    assert.deepEqual(await fresh.client, { kind: 'fresh', reason: 'the partner started a new session' });
  });

  test('a server proof that does not match is an AUTH error; RESUMED to NEW is a protocol error', async () => {
    const { client, server } = identities(newLink());
    const later = newLink();
    const other = newLink();
    const wrongProof = await exchange(client, server, later.binding, (link) => sendResumed(link, server, other.binding));
    await assert.rejects(wrongProof.client, (err: unknown) => {
      assert.ok(err instanceof TcpipeError);
      assert.equal(err.code, ErrorCodes.AUTH);
      assert.match(err.message, /could not prove the session/);
      return true;
    });
    const unasked = await exchange(null, null, later.binding, (link) => sendResumed(link, server, later.binding));
    await assert.rejects(unasked.client, (err: unknown) => err instanceof ProtocolError && /did not ask for/.test(err.message));
  });

  test('a GOAWAY RESUME_REFUSED answer is an AUTH error with the reason', async () => {
    const { client, server } = identities(newLink());
    const later = newLink();
    const refused = await exchange(client, server, later.binding, (link) =>
      link.write(encodeGoAway(GoAwayCode.RESUME_REFUSED, 'the proof is wrong')),
    );
    await assert.rejects(refused.client, (err: unknown) => {
      assert.ok(err instanceof TcpipeError);
      assert.equal(err.code, ErrorCodes.AUTH);
      assert.match(err.message, /the proof is wrong/);
      return true;
    });
  });

  test('malformed requests and answers are protocol errors', async () => {
    const badRequests = [
      encodeResume(ResumeKind.NEW, Buffer.alloc(1)),
      encodeResume(ResumeKind.RESUME, Buffer.alloc(47)),
      encodeResume(ResumeKind.RESUME, Buffer.alloc(49)),
      encodeResume(ResumeKind.RESUMED, Buffer.alloc(32)),
      encodeResume(ResumeKind.DONE, Buffer.alloc(4)),
      encodeResume(0),
      encodePing(0, Buffer.alloc(8)),
    ];
    for (const bytes of badRequests) {
      const [a, b] = await socketPair();
      try {
        a.write(bytes);
        await assert.rejects(readResumeRequest(b, decoder(), 2000, systemClock), (err: unknown) => {
          assert.ok(err instanceof ProtocolError, String(err));
          assert.match(err.message, /malformed RESUME request|expected RESUME after HELLO, got frame type 7/);
          return true;
        });
      } finally {
        a.destroy();
        b.destroy();
      }
    }
    const { client, server } = identities(newLink());
    const later = newLink();
    for (const bytes of [
      encodeResume(ResumeKind.RESUMED, resumeProof(server, 'server', later.binding).subarray(0, 31)),
      encodeResume(ResumeKind.RESUMED, Buffer.concat([resumeProof(server, 'server', later.binding), Buffer.alloc(1)])),
      encodeResume(ResumeKind.NEW),
      encodeResume(ResumeKind.DONE, Buffer.alloc(4)),
    ]) {
      const run = await exchange(client, server, later.binding, (link) => link.write(bytes));
      await assert.rejects(run.client, (err: unknown) => err instanceof ProtocolError && /malformed RESUME answer/.test(err.message));
    }
    assert.equal(FrameType.RESUME, 9);
  });
});
