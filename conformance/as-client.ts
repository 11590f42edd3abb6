/**
 * Checks run with the kit as the client: it dials the peer (a server) once
 * per check, so that each violation is judged on a fresh link.
 */
import crypto from 'node:crypto';
import { Flag, FrameType, GoAwayCode, PREFACE, ResumeKind } from '../src/protocol/constants.js';
import { parseHello } from '../src/protocol/decode.js';
import {
  encodeDataHeader,
  encodeGoAway,
  encodeOpen,
  encodePing,
  encodeReset,
  encodeResume,
  encodeSmallData,
  encodeWindow,
  u32,
} from '../src/protocol/encode.js';
import { createKeyShare, deriveIdentity, linkExporter, resumeProof } from '../src/link/resume-auth.js';
import { goAwayWith, passIf, type Check } from './check.js';
import { echoThrough } from './echo.js';
import { capabilityChecks } from './as-client-capabilities.js';
import { closeAndWait, frame, handshake, hello, pingAnswered, refusal, violation, type ClientContext } from './client-link.js';
import { describe, kitHello, type Endpoint, type KitHello } from './wire.js';

export type { ClientContext } from './client-link.js';

/** DATA frames carrying `total` bytes on `stream`, each at most `max`. */
function dataFrames(stream: number, total: number, max: number): Buffer {
  const parts: Buffer[] = [];
  for (let left = total; left > 0; left -= max) parts.push(encodeSmallData(stream, 0, Buffer.alloc(Math.min(left, max), 0x78)));
  return Buffer.concat(parts);
}

export const CLIENT_CHECKS: readonly Check<ClientContext>[] = [
  {
    id: 'handshake',
    section: 'Handshake',
    must: 'a server answers preface + HELLO with the preface and its HELLO: role 1, initial-window >= 1024, max-frame 1024..1 MiB, max-streams >= 1, software <= 64 bytes',
    async run(ctx) {
      const up = await handshake(ctx);
      if (typeof up === 'string') return passIf(false, up);
      const prefaced = Buffer.concat(up.link.firstBytes).subarray(0, 8).equals(PREFACE);
      const software = parseHello(up.rawHello).get(6)?.length ?? 0;
      const ok = prefaced && up.peer.role === 'server' && software <= 64;
      await closeAndWait(up.link, ctx.timeoutMs);
      return passIf(ok, `${prefaced ? 'preface' : 'no preface'}, HELLO role ${up.peer.role}, window ${up.peer.initialWindow}, max-frame ${up.peer.maxFramePayload}, max-streams ${up.peer.maxStreams}, software ${software} bytes`);
    },
  },
  {
    id: 'ping',
    section: 'Frames',
    must: 'every PING is answered with a PING with ACK carrying the same 8 bytes, in the order received',
    async run(ctx) {
      const up = await handshake(ctx);
      if (typeof up === 'string') return passIf(false, up);
      const sent = [1, 2, 3].map(() => crypto.randomBytes(8));
      up.link.send(Buffer.concat(sent.map((opaque) => encodePing(0, opaque))));
      const answers: string[] = [];
      const ours = new Set(sent.map((b) => b.toString('hex')));
      while (answers.length < sent.length) {
        const seen = await up.link.next(ctx.timeoutMs, (f) => f.type === FrameType.PING && (f.flags & Flag.ACK) !== 0 && ours.has(f.payload.toString('hex')));
        if (seen.kind !== 'frame') break;
        answers.push(seen.frame.payload.toString('hex'));
      }
      await closeAndWait(up.link, ctx.timeoutMs);
      const inOrder = answers.join() === sent.map((b) => b.toString('hex')).join();
      return passIf(inOrder, `${answers.length} of 3 answered${answers.length === 3 ? (inOrder ? ', in order, same bytes' : ', out of order') : ''}`);
    },
  },
  {
    id: 'goaway-closes',
    section: 'Closing the link',
    must: 'after receiving a GOAWAY a side closes the link without sending anything but a GOAWAY',
    async run(ctx) {
      const up = await handshake(ctx);
      if (typeof up === 'string') return passIf(false, up);
      up.link.send(encodeGoAway(GoAwayCode.NORMAL, 'conformance: goodbye'));
      const seen = await up.link.next(ctx.timeoutMs, (f) => f.type !== FrameType.GOAWAY && f.type !== FrameType.PING);
      up.link.destroy();
      return passIf(seen.kind === 'closed', describe(seen));
    },
  },
  violation('unknown-type', 'Errors', 'an unknown frame type closes the link with GOAWAY protocol-error (2)', 2, () => frame(0x2a, 0, 0)),
  violation('unknown-flags', 'Errors', 'a flag bit not defined for the frame type: GOAWAY protocol-error (2)', 2, () => frame(FrameType.DATA, 0x02, 1, Buffer.from('x'))),
  violation('link-frame-with-stream', 'Errors', 'HELLO, PING, GOAWAY or RESUME with a stream id: GOAWAY protocol-error (2)', 2, () => frame(FrameType.PING, 0, 5, Buffer.alloc(8))),
  violation('stream-frame-id-0', 'Errors', 'a stream frame with stream id 0: GOAWAY protocol-error (2)', 2, () => frame(FrameType.WINDOW, 0, 0, Buffer.alloc(12))),
  violation('control-too-long', 'Errors', 'a control frame above 1,024 payload bytes: GOAWAY limit-exceeded (4), judged from the header', 4, () =>
    Buffer.concat([Buffer.from([FrameType.GOAWAY, 0]), u32(0), u32(1025)]),
  ),
  violation('data-too-long', 'Errors', "a DATA frame above the receiver's max-frame: GOAWAY limit-exceeded (4), judged from the header", 4, (up) =>
    encodeDataHeader(1, 0, up.peer.maxFramePayload + 1),
  ),
  violation('bad-length', 'Errors', 'a frame whose length is not its layout (PING of 7 bytes): GOAWAY protocol-error (2)', 2, () => frame(FrameType.PING, 0, 0, Buffer.alloc(7))),
  violation('unknown-stream', 'Errors', 'a frame for a stream id never opened: GOAWAY protocol-error (2)', 2, () => encodeSmallData(9, 0, Buffer.from('x'))),
  violation('open-port-0', 'Errors', 'OPEN for port 0: GOAWAY protocol-error (2)', 2, () => encodeOpen(1, 0, 0)),
  violation('open-id-not-increasing', 'Errors', 'an OPEN whose id is not above every id its sender opened: GOAWAY protocol-error (2)', 2, () =>
    Buffer.concat([encodeOpen(5, 0, 9), encodeOpen(3, 0, 9)]),
  ),
  violation('hello-twice', 'Errors', 'a second HELLO: GOAWAY protocol-error (2)', 2, () => kitHello({ role: 0 })),
  violation('resume-outside-resumption', 'Errors', 'RESUME or a WINDOW with RESUMED on a link that did not negotiate resumption: GOAWAY protocol-error (2)', 2, () =>
    encodeResume(ResumeKind.DONE, u32(0)),
  ),
  violation(
    'window-overrun',
    'Flow control',
    'DATA beyond the window the receiver granted: GOAWAY protocol-error (2)',
    2,
    (up, port) => Buffer.concat([encodeOpen(1, 0, port), dataFrames(1, up.peer.initialWindow + 1, Math.min(up.peer.maxFramePayload, 65536))]),
    true,
  ),
  violation('window-unsent', 'Flow control', 'a WINDOW acknowledging bytes never sent: GOAWAY protocol-error (2)', 2, (_up, port) =>
    Buffer.concat([encodeOpen(1, 0, port), encodeWindow(1, 0, 1000, 262144)]),
  true),
  violation('fin-before-accept', 'Streams', 'the entry side sends no FIN before ACCEPT; a FIN on an opening stream: GOAWAY protocol-error (2)', 2, (_up, port) =>
    Buffer.concat([encodeOpen(1, 0, port), encodeSmallData(1, Flag.FIN, Buffer.alloc(0))]),
  true),
  violation('resume-flags-plain', 'Flow control', 'FIN_RECEIVED or ACCEPTED on a WINDOW of a link without resumption: GOAWAY protocol-error (2)', 2, (_up, port) =>
    Buffer.concat([encodeOpen(1, 0, port), encodeWindow(1, Flag.ACCEPTED, 0, 262144)]),
  true),
  {
    id: 'stream',
    section: 'Streams',
    must: 'OPEN is answered by ACCEPT (LOCAL set) before any DATA; the exit side sets LOCAL on every stream frame; bytes come back in order; FIN is answered by FIN after the last byte; an empty DATA without FIN is ignored',
    async run(ctx) {
      if (ctx.echoPort === null) return { skip: 'needs --echo-port' };
      const up = await handshake(ctx);
      if (typeof up === 'string') return passIf(false, up);
      const message = Buffer.from('tcpipe conformance: hello through the relay');
      up.link.send(Buffer.concat([encodeOpen(1, 0, ctx.echoPort), encodeSmallData(1, 0, message.subarray(0, 10)), encodeSmallData(1, 0, Buffer.alloc(0)), encodeSmallData(1, 0, message.subarray(10))]));
      const problems: string[] = [];
      const back: Buffer[] = [];
      let accepted = false;
      let fin = false;
      let finSent = false;
      while (!fin) {
        const seen = await up.link.next(ctx.timeoutMs, (f) => f.streamId === 1 || f.type === FrameType.GOAWAY);
        if (seen.kind !== 'frame') {
          problems.push(`then ${describe(seen)}`);
          break;
        }
        const f = seen.frame;
        if (f.type === FrameType.GOAWAY || f.type === FrameType.RESET) {
          problems.push(describe(seen));
          break;
        }
        if ((f.flags & Flag.LOCAL) === 0) problems.push(`frame type ${f.type} without LOCAL`);
        if (f.type === FrameType.ACCEPT) accepted = true;
        if (f.type === FrameType.DATA) {
          if (!accepted) problems.push('DATA before ACCEPT');
          back.push(Buffer.from(f.payload));
          if ((f.flags & Flag.FIN) !== 0) fin = true;
        }
        if (!finSent && Buffer.concat(back).length >= message.length) {
          finSent = true;
          up.link.send(encodeSmallData(1, Flag.FIN, Buffer.alloc(0)));
        }
      }
      const echoed = Buffer.concat(back);
      if (!echoed.equals(message)) problems.push(`echo of ${echoed.length}/${message.length} bytes${echoed.length === message.length ? ', different' : ''}`);
      await closeAndWait(up.link, ctx.timeoutMs);
      return passIf(problems.length === 0, problems.length === 0 ? 'ACCEPT, echo with LOCAL, FIN after the data' : problems.join('; '));
    },
  },
  {
    id: 'sender-respects-window',
    section: 'Flow control',
    must: "the sender of DATA never goes beyond the receiver's limit (initial-window, then consumed + window of its WINDOWs); the receiver's WINDOWs keep a stream moving",
    async run(ctx) {
      if (ctx.echoPort === null) return { skip: 'needs --echo-port' };
      // The kit grants the minimum window (1,024): the peer's exit side must wait for the
      // kit's WINDOWs, and must send its own so that the kit can go on.
      const up = await handshake(ctx, { initialWindow: 1024 });
      if (typeof up === 'string') return passIf(false, up);
      const result = await echoThrough(up.link, up.peer, { port: ctx.echoPort, bytes: 64 * 1024, kitWindow: 1024, timeoutMs: ctx.timeoutMs });
      await closeAndWait(up.link, ctx.timeoutMs);
      return passIf(result.pass, result.saw);
    },
  },
  {
    id: 'reset-not-answered',
    section: 'States',
    must: 'a RESET is not answered with a RESET; the stream ends and the link lives on',
    async run(ctx) {
      if (ctx.echoPort === null) return { skip: 'needs --echo-port' };
      const up = await handshake(ctx);
      if (typeof up === 'string') return passIf(false, up);
      up.link.send(encodeOpen(1, 0, ctx.echoPort));
      const accept = await up.link.next(ctx.timeoutMs, (f) => f.streamId === 1 || f.type === FrameType.GOAWAY);
      up.link.send(encodeReset(1, 0, 0, 'conformance: the user reset'));
      const after = await up.link.next(1000, (f) => f.streamId === 1 || f.type === FrameType.GOAWAY);
      const alive = await pingAnswered(up.link, ctx.timeoutMs);
      await closeAndWait(up.link, ctx.timeoutMs);
      const accepted = accept.kind === 'frame' && accept.frame.type === FrameType.ACCEPT;
      const quiet = after.kind === 'timeout';
      const living = !('skip' in alive) && alive.pass;
      return passIf(accepted && quiet && living, `${accepted ? 'ACCEPT' : describe(accept)}, then ${quiet ? 'nothing more on the stream' : describe(after)}; link ${living ? 'alive' : 'gone'}`);
    },
  },
  {
    id: 'data-after-fin',
    section: 'States',
    must: "DATA after its sender's FIN: GOAWAY protocol-error (2)",
    async run(ctx) {
      if (ctx.echoPort === null) return { skip: 'needs --echo-port' };
      const up = await handshake(ctx);
      if (typeof up === 'string') return passIf(false, up);
      up.link.send(encodeOpen(1, 0, ctx.echoPort));
      const accept = await up.link.next(ctx.timeoutMs, (f) => f.streamId === 1 || f.type === FrameType.GOAWAY);
      if (accept.kind !== 'frame' || accept.frame.type !== FrameType.ACCEPT) {
        up.link.destroy();
        return passIf(false, `OPEN answered ${describe(accept)}`);
      }
      up.link.send(Buffer.concat([encodeSmallData(1, Flag.FIN, Buffer.alloc(0)), encodeSmallData(1, 0, Buffer.from('x'))]));
      const outcome = goAwayWith(await up.link.goAway(ctx.timeoutMs), 2);
      up.link.destroy();
      return outcome;
    },
  },
  violation('accept-not-opened', 'States', 'ACCEPT for a stream the receiver did not open: GOAWAY protocol-error (2)', 2, () => Buffer.from('0380000000010000000000', 'hex').subarray(0, 10)),
  {
    id: 'max-streams',
    section: 'Limits',
    must: "an OPEN beyond the receiver's max-streams: GOAWAY limit-exceeded (4), not a RESET",
    async run(ctx) {
      if (ctx.echoPort === null) return { skip: 'needs --echo-port' };
      const up = await handshake(ctx);
      if (typeof up === 'string') return passIf(false, up);
      const max = up.peer.maxStreams;
      if (max > 512) {
        up.link.destroy();
        return { skip: `the peer's max-streams (${max}) is more than the kit opens (512)` };
      }
      const opens: Buffer[] = [];
      for (let id = 1; id <= max + 1; id++) opens.push(encodeOpen(id, 0, ctx.echoPort));
      up.link.send(Buffer.concat(opens));
      const outcome = goAwayWith(await up.link.goAway(ctx.timeoutMs), 4);
      up.link.destroy();
      return outcome;
    },
  },
  {
    id: 'heartbeat',
    section: 'Liveness',
    must: 'both sides use the smaller heartbeat; a side that has no answer to its PINGs for 2/3 of it sends GOAWAY heartbeat-timeout (5) on a link without resumption, between 2/3 and all of the timeout',
    async run(ctx) {
      const up = await handshake(ctx, { heartbeatMs: 1500 });
      if (typeof up === 'string') return passIf(false, up);
      up.link.answerPings = false;
      const started = Date.now();
      const seen = await up.link.goAway(5000);
      const ms = Date.now() - started;
      up.link.destroy();
      const outcome = goAwayWith(seen, 5);
      if ('skip' in outcome) return outcome;
      return passIf(outcome.pass && ms >= 900 && ms <= 2200, `${outcome.saw} after ${ms} ms (heartbeat 1500 ms)`);
    },
  },
  refusal('hello-missing-role', 'HELLO parameters', 'a HELLO without role: preface + GOAWAY protocol-error (2)', 2, hello({ omit: [1] })),
  refusal('hello-missing-initial-window', 'HELLO parameters', 'a HELLO without initial-window: preface + GOAWAY protocol-error (2)', 2, hello({ omit: [2] })),
  refusal('hello-missing-max-frame', 'HELLO parameters', 'a HELLO without max-frame: preface + GOAWAY protocol-error (2)', 2, hello({ omit: [3] })),
  refusal('hello-missing-max-streams', 'HELLO parameters', 'a HELLO without max-streams: preface + GOAWAY protocol-error (2)', 2, hello({ omit: [4] })),
  refusal('hello-role', 'HELLO parameters', 'a HELLO whose role is the receiver\'s own (a client saying server): preface + GOAWAY protocol-error (2)', 2, hello({ role: 1 })),
  refusal('hello-small-window', 'HELLO parameters', 'a HELLO with initial-window below 1,024: preface + GOAWAY protocol-error (2)', 2, hello({ initialWindow: 1023 })),
  refusal('first-frame-not-hello', 'Handshake', 'a first frame other than HELLO: preface + GOAWAY protocol-error (2)', 2, Buffer.concat([PREFACE, encodePing(0, Buffer.alloc(8))])),
  refusal('wrong-preface', 'Preface', 'a wrong preface is answered with the preface and GOAWAY protocol-error (2), then the close', 2, Buffer.from('TCPIPX\x00\x01', 'latin1')),
  refusal('version', 'Preface', 'a preface of another version is answered with the preface and GOAWAY unsupported-version (7)', 7, Buffer.concat([PREFACE.subarray(0, 7), Buffer.from([2])])),
  ...capabilityChecks(),
  ...resumptionChecks(),
];

// ---- resumption -------------------------------------------------------------

function resumptionChecks(): Check<ClientContext>[] {
  const resumeHello = (share: Buffer, sessionId?: Buffer): Partial<KitHello> => ({
    resumeMs: 30_000,
    keyShare: share,
    ...(sessionId !== undefined ? { sessionId } : {}),
  });
  return [
    {
      id: 'resume-new',
      section: 'The resume handshake',
      must: 'RESUME NEW is answered with RESUME FRESH (kind 4, a UTF-8 reason); the session identity is HKDF over the X25519 secret',
      async run(ctx) {
        const share = createKeyShare();
        const up = await handshake(ctx, resumeHello(share.publicKey));
        if (typeof up === 'string') return passIf(false, up);
        if ((up.peer.resumeGraceMs ?? 0) === 0 || up.peer.keyShare === null || up.peer.keyShare === undefined) {
          await closeAndWait(up.link, ctx.timeoutMs);
          return { skip: 'the peer does not resume (no resume key in its HELLO)' };
        }
        up.link.send(encodeResume(ResumeKind.NEW));
        const seen = await up.link.next(ctx.timeoutMs, (f) => f.type !== FrameType.PING);
        const fresh = seen.kind === 'frame' && seen.frame.type === FrameType.RESUME && seen.frame.payload[0] === ResumeKind.FRESH;
        if (fresh) {
          const binding = { clientShare: share.publicKey, serverShare: up.peer.keyShare, exporter: linkExporter(up.link.socket) };
          ctx.resume = { identity: deriveIdentity(share, up.peer.keyShare, binding) };
        }
        const alive = fresh ? await pingAnswered(up.link, ctx.timeoutMs) : passIf(false, '');
        // Lost, not closed: the peer holds the session for the next checks.
        up.link.destroy();
        const what = seen.kind === 'frame' && fresh ? `FRESH "${seen.frame.payload.toString('utf8', 1)}"` : describe(seen);
        return passIf(fresh && !('skip' in alive) && alive.pass, what);
      },
    },
    {
      id: 'resume-proof',
      section: 'The resume handshake',
      must: "RESUME with the session id and the client's proof is answered with RESUMED and the server's proof; then the stream list ends with RESUME DONE (u32)",
      async run(ctx) {
        const held = ctx.resume;
        if (held === null) return { skip: 'no session from resume-new' };
        const share = createKeyShare();
        const up = await handshake(ctx, resumeHello(share.publicKey, held.identity.id));
        if (typeof up === 'string') return passIf(false, up);
        const serverShare = up.peer.keyShare ?? Buffer.alloc(0);
        const binding = { clientShare: share.publicKey, serverShare, exporter: linkExporter(up.link.socket) };
        up.link.send(encodeResume(ResumeKind.RESUME, Buffer.concat([held.identity.id, resumeProof(held.identity, 'client', binding)])));
        const seen = await up.link.next(ctx.timeoutMs, (f) => f.type !== FrameType.PING);
        let saw = describe(seen);
        let ok = false;
        if (seen.kind === 'frame' && seen.frame.type === FrameType.RESUME && seen.frame.payload[0] === ResumeKind.RESUMED) {
          const proofOk = seen.frame.payload.subarray(1).equals(resumeProof(held.identity, 'server', binding));
          const done = await up.link.next(ctx.timeoutMs, (f) => f.type === FrameType.RESUME || f.type === FrameType.GOAWAY);
          const doneOk = done.kind === 'frame' && done.frame.type === FrameType.RESUME && done.frame.payload[0] === ResumeKind.DONE && done.frame.payload.length === 5;
          up.link.send(encodeResume(ResumeKind.DONE, u32(0)));
          const alive = await pingAnswered(up.link, ctx.timeoutMs);
          ok = proofOk && doneOk && !('skip' in alive) && alive.pass;
          saw = `RESUMED with ${proofOk ? 'the right' : 'a wrong'} proof, then ${doneOk ? 'DONE' : describe(done)}`;
        }
        // Lost, not closed: the peer holds the session again.
        up.link.destroy();
        return passIf(ok, saw);
      },
    },
    {
      id: 'resume-no-goaway-on-heartbeat',
      section: 'Liveness',
      must: 'on a link with resumption a heartbeat timeout closes the link without a GOAWAY (a GOAWAY would end the session)',
      async run(ctx) {
        const held = ctx.resume;
        if (held === null) return { skip: 'no session from resume-new' };
        const share = createKeyShare();
        const up = await handshake(ctx, { ...resumeHello(share.publicKey, held.identity.id), heartbeatMs: 1500 });
        if (typeof up === 'string') return passIf(false, up);
        const binding = { clientShare: share.publicKey, serverShare: up.peer.keyShare ?? Buffer.alloc(0), exporter: linkExporter(up.link.socket) };
        up.link.send(encodeResume(ResumeKind.RESUME, Buffer.concat([held.identity.id, resumeProof(held.identity, 'client', binding)])));
        const answer = await up.link.next(ctx.timeoutMs, (f) => f.type === FrameType.RESUME);
        if (answer.kind !== 'frame' || answer.frame.payload[0] !== ResumeKind.RESUMED) {
          up.link.destroy();
          return passIf(false, `resume answered ${describe(answer)}`);
        }
        up.link.send(encodeResume(ResumeKind.DONE, u32(0)));
        up.link.answerPings = false;
        const started = Date.now();
        const end = await up.link.next(5000, (f) => f.type === FrameType.GOAWAY);
        up.link.destroy();
        return passIf(end.kind === 'closed', `${describe(end)} after ${Date.now() - started} ms (heartbeat 1500 ms)`);
      },
    },
    {
      id: 'resume-wrong-proof',
      section: 'The resume handshake',
      must: 'a RESUME whose proof is wrong is answered with GOAWAY resume-refused (9), and the session it names is untouched',
      async run(ctx) {
        const held = ctx.resume;
        if (held === null) return { skip: 'no session from resume-new' };
        const share = createKeyShare();
        const up = await handshake(ctx, resumeHello(share.publicKey, held.identity.id));
        if (typeof up === 'string') return passIf(false, up);
        up.link.send(encodeResume(ResumeKind.RESUME, Buffer.concat([held.identity.id, Buffer.alloc(32, 0x55)])));
        const outcome = goAwayWith(await up.link.goAway(ctx.timeoutMs), 9);
        up.link.destroy();
        // End the held session: a new one, then goodbye.
        const again = await handshake(ctx, resumeHello(createKeyShare().publicKey));
        if (typeof again !== 'string') {
          again.link.send(encodeResume(ResumeKind.NEW));
          await again.link.next(ctx.timeoutMs, (f) => f.type === FrameType.RESUME);
          await closeAndWait(again.link, ctx.timeoutMs);
        }
        ctx.resume = null;
        return outcome;
      },
    },
  ];
}

/** With a secret: a plaintext link is refused with the preface and GOAWAY auth-required. */
export function plaintextRefusal(endpoint: Endpoint): Check<ClientContext> {
  return {
    id: 'auth-required',
    section: 'Handshake',
    must: 'a server that requires a secret answers a plaintext preface with the preface and GOAWAY auth-required (8)',
    async run(ctx) {
      const plain = { ...ctx, endpoint: { ...endpoint, security: { kind: 'none' } as const } };
      return refusal('auth-required', '', '', 8, hello({})).run(plain);
    },
  };
}
