/**
 * Checks of the capabilities (docs/PROTOCOL.md, "Capabilities", "Origin
 * addresses (capability 1)", "Datagrams (capability 2)") with the kit as the
 * client. What needs a capability the peer does not list is skipped.
 */
import { FrameType } from '../src/protocol/constants.js';
import { encodeReset, u32 } from '../src/protocol/encode.js';
import { goAwayWith, passIf, type Check, type Outcome } from './check.js';
import { closeAndWait, frame, handshake, hello, refusal, violation, type ClientContext, type Up } from './client-link.js';
import { CAPABILITY_ORIGIN, CAPABILITY_UDP, linkKept, lists, udpEcho, unknownFlow } from './udp.js';
import { describe } from './wire.js';

const CAPABILITY_NAMES: Readonly<Record<number, string>> = { [CAPABILITY_ORIGIN]: 'origin', [CAPABILITY_UDP]: 'udp' };

/** A session on which the kit lists `kit` and the peer must have listed `needs`; a skip when it did not. */
async function withCapability(ctx: ClientContext, kit: readonly number[], needs: number, then: (up: Up) => Promise<Outcome>): Promise<Outcome> {
  const up = await handshake(ctx, { capabilities: kit });
  if (typeof up === 'string') return passIf(false, `no session: ${up}`);
  if (!lists(up.peer, needs)) {
    await closeAndWait(up.link, ctx.timeoutMs);
    return { skip: `the peer does not list capability ${needs} (${CAPABILITY_NAMES[needs] ?? '?'})` };
  }
  try {
    return await then(up);
  } finally {
    up.link.destroy();
  }
}

/** Both sides list `needs`, then `bytes`: expects GOAWAY `code`. */
function capabilityViolation(id: string, section: string, must: string, code: number, needs: number, bytes: (port: number) => Buffer): Check<ClientContext> {
  return {
    id,
    section,
    must,
    run: (ctx) =>
      withCapability(ctx, [needs], needs, async (up) => {
        up.link.send(bytes(ctx.echoPort ?? 9));
        return goAwayWith(await up.link.goAway(ctx.timeoutMs), code);
      }),
  };
}

const ORIGIN_V4 = Buffer.from('117f0000097f0000029c40', 'hex'); // fam 0x11, 127.0.0.9 -> 127.0.0.2, sport 40000 (dport follows)
const openWithOrigin = (id: number, port: number, fam = 0x11): Buffer => {
  const payload = Buffer.concat([u16(port), ORIGIN_V4, u16(port)]);
  payload[2] = fam;
  return frame(FrameType.OPEN, 0, id, payload);
};
const u16 = (v: number): Buffer => Buffer.from([v >> 8, v & 0xff]);

export function capabilityChecks(): Check<ClientContext>[] {
  return [
    violation('udp-datagram-not-negotiated', 'Datagrams (capability 2)', 'a DATAGRAM on a link where capability udp was not listed by both: GOAWAY protocol-error (2)', 2, () =>
      frame(FrameType.DATAGRAM, 0, 1, Buffer.from('x')),
    ),
    violation('udp-flow-open-not-negotiated', 'Datagrams (capability 2)', 'a FLOW_OPEN on a link where capability udp was not listed by both: GOAWAY protocol-error (2)', 2, () =>
      frame(FrameType.FLOW_OPEN, 0, 1, u16(53)),
    ),
    violation('origin-not-negotiated', 'Origin addresses (capability 1)', 'an OPEN of 15 bytes (with an origin) on a link where capability origin was not listed by both: GOAWAY protocol-error (2)', 2, (_up, port) =>
      openWithOrigin(1, port),
    ),
    refusal('capabilities-odd', 'Capabilities', 'a HELLO whose capability list has an odd length: preface + GOAWAY protocol-error (2)', 2, hello({ capabilitiesRaw: Buffer.from([0, 2, 0]) })),
    {
      id: 'capabilities-unknown-ignored',
      section: 'Capabilities',
      must: 'unknown capability ids, their order and repeats are ignored: a HELLO listing 0x8001, 700, udp twice is answered with a HELLO, and udp counts as listed (a DATAGRAM for an unknown flow is then no protocol-error)',
      async run(ctx) {
        const up = await handshake(ctx, { capabilities: [0x8001, 700, CAPABILITY_UDP, CAPABILITY_UDP] });
        if (typeof up === 'string') return passIf(false, up);
        const listed = `HELLO listing [${(up.peer.capabilities ?? []).join(', ')}]`;
        try {
          if (!lists(up.peer, CAPABILITY_UDP)) {
            const kept = await linkKept(up.link, ctx.timeoutMs);
            return passIf(kept, `${listed}; link ${kept ? 'alive' : 'gone'}`);
          }
          const flow = await unknownFlow(up.link, ctx.timeoutMs);
          return 'skip' in flow ? flow : passIf(flow.pass, `${listed}; udp in use: ${flow.saw}`);
        } finally {
          await closeAndWait(up.link, ctx.timeoutMs);
        }
      },
    },
    {
      id: 'udp-echo',
      section: 'Datagrams (capability 2)',
      must: 'with udp listed by both, FLOW_OPEN and DATAGRAMs right behind it reach the target; each reply comes back as one DATAGRAM on that flow, whole (a zero-length one too), with LOCAL; FLOW_CLOSE ends the flow without an answer',
      run(ctx) {
        if (ctx.udpEchoPort === null) return Promise.resolve({ skip: 'needs --udp-echo-port' });
        const port = ctx.udpEchoPort;
        return withCapability(ctx, [CAPABILITY_UDP], CAPABILITY_UDP, (up) => udpEcho(up.link, port, ctx.timeoutMs));
      },
    },
    {
      id: 'udp-unknown-flow',
      section: 'Datagrams (capability 2)',
      must: 'a DATAGRAM for a flow the exit side does not hold is answered with FLOW_CLOSE no-flow (6, LOCAL set) and the link is kept',
      run: (ctx) => withCapability(ctx, [CAPABILITY_UDP], CAPABILITY_UDP, (up) => unknownFlow(up.link, ctx.timeoutMs)),
    },
    {
      id: 'udp-datagram-65535',
      section: 'Datagrams (capability 2)',
      must: "a DATAGRAM of 65,535 bytes is taken whatever the receiver's HELLO max-frame (here answered FLOW_CLOSE no-flow, for an unknown flow), not a GOAWAY",
      run: (ctx) =>
        withCapability(ctx, [CAPABILITY_UDP], CAPABILITY_UDP, async (up) => {
          up.link.send(frame(FrameType.DATAGRAM, 0, 78, Buffer.alloc(65535, 0x78)));
          const outcome = await unknownFlow(up.link, ctx.timeoutMs, 78);
          return 'skip' in outcome ? outcome : passIf(outcome.pass, `max-frame ${up.peer.maxFramePayload}: ${outcome.saw}`);
        }),
    },
    capabilityViolation('udp-datagram-too-long', 'Datagrams (capability 2)', 'a DATAGRAM whose header says more than 65,535 bytes: GOAWAY limit-exceeded (4), judged from the header', 4, CAPABILITY_UDP, () =>
      Buffer.concat([Buffer.from([FrameType.DATAGRAM, 0]), u32(1), u32(65536)]),
    ),
    capabilityViolation('udp-flow-open-bad-length', 'Datagrams (capability 2)', 'a FLOW_OPEN of a length other than 2, 9 or 21 bytes (here 3): GOAWAY protocol-error (2)', 2, CAPABILITY_UDP, () =>
      frame(FrameType.FLOW_OPEN, 0, 1, Buffer.from([0, 53, 4])),
    ),
    capabilityViolation('udp-flow-close-no-code', 'Datagrams (capability 2)', 'a FLOW_CLOSE without a code (empty payload): GOAWAY protocol-error (2)', 2, CAPABILITY_UDP, () =>
      frame(FrameType.FLOW_CLOSE, 0, 1),
    ),
    capabilityViolation('origin-bad-fam', 'Origin addresses (capability 1)', 'with origin listed by both, an OPEN of 15 bytes whose fam is not an IPv4 one (0x21): GOAWAY protocol-error (2)', 2, CAPABILITY_ORIGIN, (port) =>
      openWithOrigin(1, port, 0x21),
    ),
    {
      id: 'origin-open',
      section: 'Origin addresses (capability 1)',
      must: 'with origin listed by both, an OPEN of 15 bytes (TCP over IPv4) is a valid OPEN: answered with ACCEPT',
      run(ctx) {
        if (ctx.echoPort === null) return Promise.resolve({ skip: 'needs --echo-port' });
        const port = ctx.echoPort;
        return withCapability(ctx, [CAPABILITY_ORIGIN], CAPABILITY_ORIGIN, async (up) => {
          up.link.send(openWithOrigin(1, port));
          const seen = await up.link.next(ctx.timeoutMs, (f) => f.streamId === 1 || f.type === FrameType.GOAWAY);
          const accepted = seen.kind === 'frame' && seen.frame.type === FrameType.ACCEPT;
          if (accepted) up.link.send(encodeReset(1, 0, 0, 'conformance: done'));
          return passIf(accepted, describe(seen));
        });
      },
    },
  ];
}
