/**
 * Checks run with the kit as the server: it listens and the peer (a client)
 * dials it, again after each link ends (on its own backoff), so there are
 * few violations here: each costs the peer a reconnection.
 */
import crypto from 'node:crypto';
import type net from 'node:net';
import { Flag, FrameType, PREFACE } from '../src/protocol/constants.js';
import { parseHello } from '../src/protocol/decode.js';
import { encodeOpen, encodePing } from '../src/protocol/encode.js';
import type { LinkSecurity } from '../src/link/security.js';
import { goAwayWith, passIf, type Check, type Outcome } from './check.js';
import { echoThrough } from './echo.js';
import { CAPABILITY_UDP, lists, udpEcho, unknownFlow } from './udp.js';
import { acceptNext, describe, kitHello, readPeerHello, type KitHello, type RawLink } from './wire.js';
import type { HelloInfo } from '../src/protocol/hello.js';

export interface ServerContext {
  readonly server: net.Server;
  readonly security: LinkSecurity;
  readonly echoPort: number | null;
  /** A /udp port the peer relays to a UDP echo server, or null. */
  readonly udpEchoPort: number | null;
  readonly timeoutMs: number;
  /** How long to wait for the peer to dial again (its backoff grows with each failed link). */
  readonly redialMs: number;
}

interface Up {
  readonly link: RawLink;
  readonly peer: HelloInfo;
  readonly rawHello: Buffer;
  readonly prefaced: boolean;
}

/** The peer's next link: its preface and HELLO read, the kit's answer (`answer`) sent. */
async function nextLink(ctx: ServerContext, answer: (peer: HelloInfo) => Buffer): Promise<Up | string> {
  const link = await acceptNext(ctx.server, ctx.security, ctx.redialMs);
  if (link === null) return `the peer did not dial within ${ctx.redialMs} ms`;
  const read = readPeerHello(await link.next(ctx.timeoutMs));
  if ('error' in read) {
    link.destroy();
    return read.error;
  }
  link.send(answer(read.hello));
  const prefaced = Buffer.concat(link.firstBytes).subarray(0, 8).equals(PREFACE);
  return { link, peer: read.hello, rawHello: read.frame.payload, prefaced };
}

const serverHello = (h: Partial<KitHello> = {}) => (): Buffer => Buffer.concat([PREFACE, kitHello({ role: 1, ...h })]);

async function pingAnswered(link: RawLink, ms: number): Promise<Outcome> {
  const opaque = crypto.randomBytes(8);
  link.send(encodePing(0, opaque));
  const seen = await link.next(ms, (f) => f.type === FrameType.PING && (f.flags & Flag.ACK) !== 0 && f.payload.equals(opaque));
  return passIf(seen.kind === 'frame', seen.kind === 'frame' ? 'answered with ACK and the same bytes' : describe(seen));
}

/** A good link, then `bytes`: expects GOAWAY `code`. */
function violation(id: string, section: string, must: string, code: number, bytes: Buffer): Check<ServerContext> {
  return {
    id,
    section,
    must,
    async run(ctx) {
      const up = await nextLink(ctx, serverHello());
      if (typeof up === 'string') return passIf(false, up);
      up.link.send(bytes);
      const outcome = goAwayWith(await up.link.goAway(ctx.timeoutMs), code);
      up.link.destroy();
      return outcome;
    },
  };
}

/** How long one clean link is kept up so that a client's backoff starts again. */
const LASTING_LINK_MS = 5500;

export const SERVER_CHECKS: readonly Check<ServerContext>[] = [
  {
    id: 'client-handshake',
    section: 'Handshake',
    must: 'a client opens with the preface and its HELLO: role 0 and the required keys (initial-window >= 1024, max-frame 1024..1 MiB, max-streams >= 1), software <= 64 bytes; it answers PINGs; as exit side it answers OPEN with ACCEPT, sets LOCAL, and never sends beyond the window granted',
    async run(ctx) {
      const up = await nextLink(ctx, serverHello({ initialWindow: 1024 }));
      if (typeof up === 'string') return passIf(false, up);
      const software = parseHello(up.rawHello).get(6)?.length ?? 0;
      const ping = await pingAnswered(up.link, ctx.timeoutMs);
      const pinged = !('skip' in ping) && ping.pass;
      const ok = up.prefaced && up.peer.role === 'client' && software <= 64 && pinged;
      const saw = `${up.prefaced ? 'preface' : 'no preface'}, HELLO role ${up.peer.role}, software ${software} bytes, PING ${pinged ? 'answered' : 'not answered'}`;
      const echo = ctx.echoPort === null ? { pass: true, saw: 'no stream (no --echo-port)' } : await echoThrough(up.link, up.peer, { port: ctx.echoPort, bytes: 64 * 1024, kitWindow: 1024, timeoutMs: ctx.timeoutMs });
      up.link.destroy();
      return passIf(ok && echo.pass, `${saw}; stream: ${echo.saw}`);
    },
  },
  {
    id: 'udp-echo',
    section: 'Datagrams (capability 2)',
    must: 'with udp listed by both, the client as exit side takes FLOW_OPEN and DATAGRAMs right behind it; each reply comes back as one DATAGRAM on that flow, whole (a zero-length one too), with LOCAL; FLOW_CLOSE ends the flow without an answer',
    async run(ctx) {
      const up = await nextLink(ctx, serverHello({ capabilities: [CAPABILITY_UDP] }));
      if (typeof up === 'string') return passIf(false, up);
      try {
        if (!lists(up.peer, CAPABILITY_UDP)) return { skip: 'the peer does not list capability 2 (udp)' };
        if (ctx.udpEchoPort === null) return { skip: 'needs --udp-echo-port' };
        return await udpEcho(up.link, ctx.udpEchoPort, ctx.timeoutMs);
      } finally {
        up.link.destroy();
      }
    },
  },
  {
    id: 'udp-unknown-flow',
    section: 'Datagrams (capability 2)',
    must: 'a DATAGRAM for a flow the exit side does not hold is answered with FLOW_CLOSE no-flow (6, LOCAL set) and the link is kept',
    async run(ctx) {
      const up = await nextLink(ctx, serverHello({ capabilities: [CAPABILITY_UDP] }));
      if (typeof up === 'string') return passIf(false, up);
      const upAt = Date.now();
      try {
        if (!lists(up.peer, CAPABILITY_UDP)) return { skip: 'the peer does not list capability 2 (udp)' };
        return await unknownFlow(up.link, ctx.timeoutMs);
      } finally {
        // A clean link that lasts lets the client's reconnection backoff start again (tcpipe's
        // does after 5 s up), so the violations that follow do not cost it 30 s waits.
        await up.link.closed(Math.max(0, upAt + LASTING_LINK_MS - Date.now()));
        up.link.destroy();
      }
    },
  },
  violation('udp-datagram-not-negotiated', 'Datagrams (capability 2)', 'a DATAGRAM on a link where capability udp was not listed by both: GOAWAY protocol-error (2)', 2, Buffer.from('0b00000000010000000178', 'hex')),
  violation('unknown-type', 'Errors', 'an unknown frame type closes the link with GOAWAY protocol-error (2)', 2, Buffer.from([0x2a, 0, 0, 0, 0, 0, 0, 0, 0, 0])),
  violation('open-port-0', 'Errors', 'OPEN for port 0: GOAWAY protocol-error (2)', 2, encodeOpen(1, 0, 0)),
  {
    id: 'server-hello-role',
    section: 'HELLO parameters',
    must: "a client refuses a server HELLO whose role is client: GOAWAY protocol-error (2) or the close, and no session",
    async run(ctx) {
      const up = await nextLink(ctx, serverHello({ role: 0 }));
      if (typeof up === 'string') return passIf(false, up);
      const seen = await up.link.next(ctx.timeoutMs, (f) => f.type === FrameType.GOAWAY || f.type === FrameType.PING);
      up.link.destroy();
      const goAway = seen.kind === 'frame' && seen.frame.type === FrameType.GOAWAY ? goAwayWith(seen, 2) : null;
      return passIf(seen.kind === 'closed' || (goAway !== null && !('skip' in goAway) && goAway.pass), describe(seen));
    },
  },
  {
    id: 'heartbeat',
    section: 'Liveness',
    must: 'a side with no answer to its PINGs for 2/3 of the smaller heartbeat sends GOAWAY heartbeat-timeout (5) on a link without resumption',
    async run(ctx) {
      const up = await nextLink(ctx, serverHello({ heartbeatMs: 1500 }));
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
];

