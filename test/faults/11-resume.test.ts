/**
 * Scenario 11: stream resumption (issue 9). With `--resume=SECONDS` on both
 * sides, a link lost without a goodbye holds every relayed connection (reads
 * paused, nothing reset) for the grace period; once the client has a new
 * link, each held stream goes on where it stopped, both ways, without a byte
 * lost, duplicated or reordered. The contract checked here:
 *
 * 11a a 5 s silent cut (iptables DROP both ways, as scenario 3) in the middle
 *     of checksummed transfers on many streams both ways (paced and full
 *     speed), with a secret: every stream completes with every byte right at
 *     both ends and no application sees an error; FINs and resets that users
 *     and targets send during the outage arrive after it (a reset as a reset,
 *     never as an EOF); connections that arrive at an
 *     entry port during the outage wait and are relayed; both sides log
 *     link_held then link_resumed, and never "link down".
 * 11b the same while the client's address changes during the cut (the new
 *     link comes from a new IP and port; the DROP rules match the interface).
 * 11c/11d kill -9 of one side during the cut, restarted: the surviving side's
 *     held connections are reset once the restarted side cannot resume (or
 *     the grace ran out), with the reason logged; new connections then work.
 * 11e the grace runs out (--resume=3, an 8 s cut): the held connections (and
 *     one arriving during the outage) are reset on both sides at the end of
 *     the grace, resume_expired is logged (the client logs JSON: event names);
 *     after the heal new connections work.
 * 11f a flapping link with resume: every stream completes, every byte once
 *     and in order; descriptors, timers and memory back near their start.
 *     20 s of flapping, 60 s with TCPIPE_SOAK=1.
 * 11g replay: the client dials through a recording forwarder; the bytes of a
 *     link that resumed, sent again by an attacker on a new TCP connection
 *     (a) while the pair is live and (b) while its streams are held, are
 *     refused, and the pair is unharmed (no secret: the proof alone guards).
 * 11h --resume=0 on both sides, or --resume on one side only: a cut resets
 *     every connection exactly as without the option (scenario 3).
 * 11i the link dropped by a middlebox (the client dials through a forwarder
 *     that resets both halves, later closes both with a FIN): both sides hold
 *     at once, without waiting for the heartbeat, and resume.
 * 11j a goodbye (SIGTERM of the client) ends the session: nothing is held,
 *     the server resets its connections, a restarted client pairs anew.
 *
 * Every scenario uses --heartbeat=2, so that a cut is noticed within 2 s.
 * Log lines are matched on their stable parts (README, "Resumption").
 */
import { describe, test } from 'node:test';
import type { TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import {
  loadStats,
  startAgent,
  startFlowAgents,
  startLoads,
  targetsQuiet,
  targetStats,
  waitLoads,
  type Agent,
  type BothWays,
  type Flows,
  type LoadSummary,
  type TargetRecord,
  type UserRecord,
} from '../helpers/agent-driver.js';
import { createChain, faultsAvailable, flapLink, FWD_PORT, LINK_PORT, REV_PORT, skipReason, type Chain } from '../helpers/chain.js';
import {
  assertBackToBaseline,
  clientArgs,
  mib,
  PAIR_BOTH_WAYS,
  quietBaseline,
  serverArgs,
  startTcpipe,
  type TcpipeProc,
} from '../helpers/chain-tcpipe.js';
import { lineTime } from '../helpers/logs.js';
import { KiB, MiB } from '../helpers/net.js';
import { Flags } from '../helpers/pattern.js';
import { recordSkipped, scenario, SOAK, type ScenarioContext } from '../helpers/scenario.js';
import { pollUntil } from '../helpers/wait.js';

const HB = '--heartbeat=2';
const HEARTBEAT_MS = 2000;

// ---------------------------------------------------------------------------
// Log lines (text; in JSON the same words are in "msg")
// ---------------------------------------------------------------------------

const UP = /link up with /;
const DOWN = /link down with /;
/** [link_held] "link lost with <addr>: <reason>; holding <N> connections for up to <S>s to resume" */
const LINK_HELD = /link lost with (\S+): .*holding (\d+) connections?/;
/** [link_resumed] "link resumed with <addr>: <N> connections resumed" */
const LINK_RESUMED = /link resumed with (\S+): (\d+) connections? resumed/;
/** [resume_failed] "cannot resume: <reason>; closing <N> held connections" */
const RESUME_FAILED = /cannot resume: (.*); closing (\d+) held connections?/;
/** [resume_expired] "resume grace of <S>s ran out; closing <N> held connections" */
const RESUME_EXPIRED = /resume grace of \S+ ran out; closing (\d+) held connections?/;
/** [resume_refused] (server) "refused resume from <addr>: <reason>" */
const RESUME_REFUSED = /refused resume from (\S+): (.*)/;
/** Any line of the resumption machinery that says streams were held, resumed or dropped. */
const ANY_RESUME = /holding \d+ connections?|link resumed with|cannot resume:|resume grace of \S+ ran out/;

const NAMES = {
  cut: '11a. resume across a silent cut',
  moved: '11b. resume from a new client address',
  serverKilled: '11c. resume impossible: server SIGKILLed during the cut',
  clientKilled: '11d. resume impossible: client SIGKILLed during the cut',
  expired: '11e. resume grace runs out',
  flapping: '11f. flapping link with resume',
  replay: '11g. replayed resume request',
  off: '11h. resume off (--resume=0, or on one side only)',
  middlebox: '11i. link dropped by a middlebox (RST, then FIN)',
  goodbye: '11j. a goodbye ends the session (no hold)',
} as const;

const FLAP_MS = SOAK ? 60_000 : 20_000;

const INJECTED = {
  cut: 'iptables DROP both ways on the link for 5 s (--resume=30 --heartbeat=2, a secret), 24 paced streams (2-4 MiB each way) and 1 full-speed stream (96 MiB each way) each way in flight; during the outage, each way: 3 users send their last bytes and FIN, 3 users reset, 3 targets send their FIN, 3 targets reset, 3 new connections arrive',
  moved: "iptables DROP both ways on the link for 5 s (--resume=30 --heartbeat=2), 16 paced streams each way in flight; during the cut cli's link address changes (a new address added, the old one removed)",
  serverKilled: 'a cut (--resume=10 --heartbeat=2, a secret), 8 paced streams each way held; SIGKILL of the server during the cut, restarted, then the cut healed',
  clientKilled: 'a cut (--resume=10 --heartbeat=2), 8 paced streams each way held; SIGKILL of the client during the cut, restarted, then the cut healed',
  expired: 'iptables DROP both ways on the link for 8 s with --resume=3 --heartbeat=2 (client logs JSON), 8 paced streams each way held, 2 new connections each way during the outage',
  flapping: `cut/heal cycles (cuts of 0.3-3 s, heals of 1.2-3.5 s) for ${FLAP_MS / 1000} s with --resume=30 --heartbeat=2, 8 paced streams each way without pause`,
  replay:
    'no secret, --resume=30 --heartbeat=2; the client dials through a recording forwarder; after a cut and a resume, the bytes the client sent on its resumed link are replayed from another host on a new TCP connection to the link port (a) with the pair live, (b) during a second cut while the streams are held',
  off: 'iptables DROP both ways on the link (--heartbeat=2), 4 paced streams each way in flight, with --resume=0 on both sides, --resume=30 on the server only, --resume=30 on the client only',
  middlebox:
    '--resume=30 --heartbeat=2, the client dials through a forwarder on cli; 8 paced streams each way in flight; the forwarder resets both halves of the link, then (after the resume) closes both with a FIN',
  goodbye: '--resume=30 --heartbeat=2, 4 paced streams each way in flight; SIGTERM of the client (GOAWAY), then the client restarted',
} as const;

const avail = await faultsAvailable();
if (!avail.ok) for (const name of Object.keys(NAMES) as (keyof typeof NAMES)[]) recordSkipped(NAMES[name], INJECTED[name], avail.reason);

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, Math.max(0, ms)));
}

/** Until wall-clock time `at` (a fault schedule: how long a cut lasts). */
function until(at: number): Promise<void> {
  return delay(at - Date.now());
}

/** Wall-clock time (ms) of a text or JSON log line. */
function timeOf(line: string): number {
  if (line.startsWith('{')) return Date.parse(String((JSON.parse(line) as { time?: string }).time));
  return lineTime(line);
}

function eventOf(line: string): string | null {
  if (!line.startsWith('{')) return null;
  try {
    return String((JSON.parse(line) as { event?: string }).event);
  } catch {
    return null;
  }
}

function matching(p: TcpipeProc, from: number, re: RegExp): string[] {
  return p.since(from).filter((l) => {
    re.lastIndex = 0;
    return re.test(l);
  });
}

function group(line: string, re: RegExp, i: number): string {
  const m = re.exec(line);
  return m?.[i] ?? '';
}

/** A fresh secret in a file only root can read; removed after the test. */
function secretFile(t: TestContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'tcpipe-resume-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'tcpipe.key');
  writeFileSync(file, `${randomBytes(32).toString('base64url')}\n`);
  chmodSync(file, 0o600);
  return file;
}

async function startSide(t: TestContext, chain: Chain, role: 'server' | 'client', args: readonly string[]): Promise<TcpipeProc> {
  const full = role === 'server' ? serverArgs(chain, args) : clientArgs(chain, args);
  // Waits for the start-up line itself (text or JSON), so that a refused option shows its error.
  const p = await startTcpipe(t, chain.topo, role === 'server' ? 'srv' : 'cli', role, full, { waitStarted: false });
  await p.waitFor(/tcpipe \S+ (server|client): /, 10_000);
  return p;
}

/** Starts srv then cli with both-ways ports and `server`/`client` extra options; waits for the link. */
async function startResumePair(
  t: TestContext,
  chain: Chain,
  server: readonly string[],
  client: readonly string[],
): Promise<{ server: TcpipeProc; client: TcpipeProc }> {
  const s = await startSide(t, chain, 'server', [...PAIR_BOTH_WAYS.serverArgs, ...server]);
  const c = await startSide(t, chain, 'client', [...PAIR_BOTH_WAYS.clientArgs, ...client]);
  await Promise.all([s.waitFor(UP, 10_000), c.waitFor(UP, 10_000)]);
  return { server: s, client: c };
}

/** Load ids start their keys here (fwd; rev adds 0x1000000), so that target records can be joined by key. */
let nextKeyBase = 10_000;
function keys(): number {
  nextKeyBase += 10_000;
  return nextKeyBase;
}

type TargetMaps = BothWays<Map<number, TargetRecord>>;

async function targetRecords(flows: Flows): Promise<TargetMaps> {
  const t = await targetStats(flows, { records: true });
  const map = (rs: TargetRecord[] | undefined): Map<number, TargetRecord> => new Map((rs ?? []).map((r) => [r.key, r]));
  return { fwd: map(t.fwd.records), rev: map(t.rev.records) };
}

function brief(r: UserRecord | TargetRecord | undefined): string {
  if (r === undefined) return 'none';
  return JSON.stringify(Object.fromEntries(Object.entries(r).filter(([k]) => ['key', 'size', 'replySize', 'sent', 'recv', 'bad', 'sawEnd', 'err', 'connected', 'didReset', 'closedAt'].includes(k))));
}

/**
 * Every stream of the load completed at both ends with every byte, each way,
 * in order (pattern checks), and neither end saw an error. Returns streams
 * and bytes checked.
 */
function expectClean(what: string, loads: BothWays<LoadSummary>, targets: TargetMaps): { streams: number; bytes: number } {
  let streams = 0;
  let bytes = 0;
  for (const dir of ['fwd', 'rev'] as const) {
    const l = loads[dir];
    const records = l.records ?? [];
    assert.equal(records.length, l.started, `${what} ${dir}: records`);
    assert.deepEqual(l.errors, {}, `${what} ${dir}: errors seen by users`);
    for (const u of records) {
      const tr = targets[dir].get(u.key);
      assert.ok(
        u.connected && u.err === null && u.sawEnd && u.bad === 0 && u.sent === u.size && u.recv === u.replySize,
        `${what} ${dir} stream ${u.key}: the user saw ${brief(u)}; its target ${brief(tr)}`,
      );
      assert.ok(
        tr !== undefined && tr.err === null && tr.sawEnd && tr.bad === 0 && tr.recv === u.size && tr.sent === tr.replySize,
        `${what} ${dir} stream ${u.key}: the target saw ${brief(tr)}; its user ${brief(u)}`,
      );
      streams++;
      bytes += u.recv + tr.recv;
    }
  }
  return { streams, bytes };
}

/** The connections of one side of the pair: users it accepted and target connections it made. */
function sideRecords(
  side: 'server' | 'client',
  loads: BothWays<LoadSummary>,
  targets: TargetMaps,
): { users: UserRecord[]; targets: TargetRecord[] } {
  // fwd: users -> srv (server side) ... cli -> targets (client side); rev the other way round.
  const users = side === 'server' ? loads.fwd.records ?? [] : loads.rev.records ?? [];
  const keysOf = new Set((side === 'server' ? loads.rev.records ?? [] : loads.fwd.records ?? []).map((r) => r.key));
  const tmap = side === 'server' ? targets.rev : targets.fwd;
  return { users, targets: [...tmap.values()].filter((r) => keysOf.has(r.key)) };
}

/** Every connection closed with a reset (no FIN) within [lo, hi] (wall-clock ms); returns the close times. */
function expectResetBetween(what: string, conns: { users: UserRecord[]; targets: TargetRecord[] }, lo: number, hi: number): number[] {
  const at: number[] = [];
  for (const [kind, list] of [
    ['user', conns.users],
    ['target connection', conns.targets],
  ] as const) {
    for (const r of list) {
      assert.ok(r.err !== null && !r.sawEnd, `${what}: ${kind} ${r.key} did not end with a reset: ${brief(r)}`);
      assert.ok(r.closedAt >= lo && r.closedAt <= hi, `${what}: ${kind} ${r.key} closed at ${r.closedAt - lo} ms from the window start (window ${hi - lo} ms): ${brief(r)}`);
      assert.equal(r.bad, 0, `${what}: ${kind} ${r.key} bad bytes`);
      at.push(r.closedAt);
    }
  }
  return at;
}

/** Until every stream of `ids` reached its target and bytes came back, both ways. */
async function inFlight(flows: Flows, ids: readonly string[], perWay: number): Promise<void> {
  await pollUntil(
    async () => ({ targets: await targetStats(flows), loads: await Promise.all(ids.map((id) => loadStats(flows, id))) }),
    (v) => v.targets.fwd.streams >= perWay && v.targets.rev.streams >= perWay && v.loads.every((l) => l.fwd.recv > 0 && l.rev.recv > 0),
    15_000,
    `streams of ${ids.join(', ')} in flight`,
  );
}

/** Starts `streams` paced streams each way (64 MiB each way, more than a scenario lets through) as load `id`, and waits until all are in flight. */
async function pacedInFlight(flows: Flows, chain: Chain, id: string, streams: number): Promise<void> {
  await startLoads(flows, chain, id, { count: streams, concurrency: streams, sizeMin: 64 * MiB, replyMin: 64 * MiB, flags: Flags.PACED, timeoutMs: 60_000, keyBase: keys() });
  await inFlight(flows, [id], streams);
}

/** Cuts the link (iptables DROP both ways): each side's log mark just before, and when. */
async function cut(chain: Chain, sides: readonly TcpipeProc[]): Promise<{ marks: number[]; cutAt: number }> {
  const marks = sides.map((p) => p.mark());
  const cutAt = Date.now();
  await chain.topo.cutLink('cli', 'srv');
  return { marks, cutAt };
}

/** New connections work both ways: 4 streams each way, 256 KiB each way, all clean. */
async function newConnectionsWork(flows: Flows, chain: Chain, s: ScenarioContext): Promise<void> {
  s.check('afterwards new connections work both ways (4 streams each way, 256 KiB each way, all clean)');
  const id = `after${keys()}`;
  await startLoads(flows, chain, id, { count: 4, concurrency: 4, sizeMin: 256 * KiB, replyMin: 256 * KiB, keyBase: nextKeyBase, timeoutMs: 20_000 });
  const after = await waitLoads(flows, id, 20_000, { records: true });
  // The targets finish reading a little after their users are done; expectClean says what is missing if one never does.
  await targetsQuiet(flows, 10_000).catch(() => undefined);
  expectClean('new connections', after, await targetRecords(flows));
}

function noLine(p: TcpipeProc, from: number, re: RegExp, what: string): void {
  const found = matching(p, from, re);
  assert.equal(found.length, 0, `${p.name}: ${what}, yet it logged:\n${found.slice(0, 5).join('\n')}`);
}

const RECORDER_PORT = 30100;

/**
 * A forwarder on cli (agent forward-start: it records what the client sends
 * on each link, and can drop links as a middlebox would) and a pair whose
 * client dials through it.
 */
async function startForwardedPair(
  t: TestContext,
  chain: Chain,
  common: readonly string[],
): Promise<{ server: TcpipeProc; client: TcpipeProc; forwarder: Agent }> {
  const forwarder = await startAgent(t, chain.topo, 'cli');
  await forwarder.call('forward-start', { port: RECORDER_PORT, host: '127.0.0.1', toHost: chain.srvForCli, toPort: LINK_PORT, recordBytes: 64 * KiB }, 5000);
  const server = await startSide(t, chain, 'server', [...PAIR_BOTH_WAYS.serverArgs, ...common]);
  const client = await startTcpipe(t, chain.topo, 'cli', 'client', ['-c', `127.0.0.1:${RECORDER_PORT}`, '-t', chain.targetsForCli, ...PAIR_BOTH_WAYS.clientArgs, ...common]);
  await Promise.all([server.waitFor(UP, 10_000), client.waitFor(UP, 10_000)]);
  return { server, client, forwarder };
}

// ---------------------------------------------------------------------------
// 11a / 11b: a cut the pair resumes from
// ---------------------------------------------------------------------------

interface CutOptions {
  readonly secret: boolean;
  readonly bulk: number;
  readonly bulkMin: number;
  readonly bulkMax: number;
  /** Full-speed streams each way (96 MiB each way). */
  readonly fast: number;
  /**
   * Streams each way for each event during the outage: users that send their
   * last bytes and FIN, users that reset, targets that send their FIN,
   * targets that reset, and new connections at the entry ports.
   */
  readonly outageEvents: number;
  /** Run during the cut (after the cut, before the heal). */
  readonly duringCut?: (chain: Chain) => Promise<void>;
  /** The address the new link must come from (server's view), if it changes. */
  readonly newAddress?: string;
}

const CUT_MS = 5000;

async function resumeAcrossCut(t: TestContext, s: ScenarioContext, o: CutOptions): Promise<void> {
  const chain = await createChain(t);
  const flows = await startFlowAgents(t, chain);
  const common = ['--resume=30', HB, ...(o.secret ? [`--secret-file=${secretFile(t)}`] : [])];
  const { server, client } = await startResumePair(t, chain, common, common);
  const sides = [server, client] as const;

  // Streams whose users stop half-way (their replies all in, their targets waiting for the users' FIN) until
  // released during the outage: then they send the rest and FIN ('fin'), or reset ('rst'); the targets of
  // 'tfin' send their FIN during the outage (and their users are released), those of 'trst' reset.
  const ev = o.outageEvents;
  const holdLoad = { count: ev, concurrency: ev, sizeMin: 64 * KiB, replyMin: 64 * KiB, hold: true, holdFraction: 0.5, flags: Flags.TARGET_WAIT_EOF, timeoutMs: 90_000 };
  const ids: string[] = [];
  const holdIds = ['fin', 'rst', 'tfin', 'trst'] as const;
  const holdKeys: Record<string, number> = {};
  if (ev > 0) {
    for (const id of holdIds) {
      holdKeys[id] = keys();
      await startLoads(flows, chain, id, { ...holdLoad, ...(id === 'rst' ? { pUserReset: 1 } : {}), keyBase: holdKeys[id] ?? 0 });
    }
    for (const id of holdIds) {
      await Promise.all([
        flows.users.call('load-ready', { id: `${id}-fwd`, ready: ev, timeoutMs: 10_000 }, 15_000),
        flows.targets.call('load-ready', { id: `${id}-rev`, ready: ev, timeoutMs: 10_000 }, 15_000),
      ]);
    }
  }
  await startLoads(flows, chain, 'bulk', {
    count: o.bulk,
    concurrency: o.bulk,
    sizeMin: o.bulkMin,
    sizeMax: o.bulkMax,
    replyMin: o.bulkMin,
    replyMax: o.bulkMax,
    flags: Flags.PACED,
    timeoutMs: 90_000,
    keyBase: keys(),
  });
  ids.push('bulk');
  if (o.fast > 0) {
    await startLoads(flows, chain, 'fast', { count: o.fast, concurrency: o.fast, sizeMin: 96 * MiB, replyMin: 96 * MiB, timeoutMs: 90_000, keyBase: keys() });
    ids.push('fast');
  }
  const perWay = o.bulk + o.fast + holdIds.length * ev;
  await inFlight(flows, ids, perWay);

  const { marks, cutAt } = await cut(chain, sides);
  await o.duringCut?.(chain);
  const atCut = await Promise.all(ids.map((id) => loadStats(flows, id)));
  s.check(`at the cut, every transfer was still in flight (${perWay} streams each way)`);
  for (const [i, l] of atCut.entries()) {
    assert.equal(l.fwd.finished + l.rev.finished, 0, `load ${ids[i] ?? '?'} had finished streams at the cut: the transfers must span it`);
  }

  s.check('both sides log link_held within the heartbeat (+1 s), holding at least the streams in flight, and never "link down"');
  const held = await Promise.all(sides.map((p, i) => p.waitFor(LINK_HELD, HEARTBEAT_MS + 1000, marks[i])));
  for (const [i, line] of held.entries()) {
    const n = Number(group(line, LINK_HELD, 2));
    s.figure(`${sides[i]?.name ?? '?'} held connections`, n);
    s.figure(`${sides[i]?.name ?? '?'} detected after (ms)`, timeOf(line) - cutAt);
    assert.ok(n >= 2 * perWay, `${sides[i]?.name ?? '?'} holds ${n} connections, ${2 * perWay} were in flight: ${line}`);
  }

  const pending: Record<string, Promise<BothWays<LoadSummary>>> = {};
  if (ev > 0) {
    // The targets of 'tfin' send their FIN, those of 'trst' reset (fwd: targets:31001, rev: users:31002).
    const keyList = (id: string, rev: boolean): number[] => Array.from({ length: ev }, (_, i) => (holdKeys[id] ?? 0) + (rev ? 0x1000000 : 0) + i);
    for (const [id, action] of [
      ['tfin', 'end'],
      ['trst', 'reset'],
    ] as const) {
      const [f, r] = await Promise.all([
        flows.targets.call<{ acted: number }>('target-act', { port: FWD_PORT, keys: keyList(id, false), action }, 5000),
        flows.users.call<{ acted: number }>('target-act', { port: REV_PORT, keys: keyList(id, true), action }, 5000),
      ]);
      assert.equal(f.acted + r.acted, 2 * ev, `${id}: targets that acted during the outage`);
    }
    // The users of 'fin' and 'tfin' send their last 32 KiB and FIN, those of 'rst' reset; 'trst' users stay as they are.
    for (const id of ['fin', 'rst', 'tfin']) {
      const p = waitLoads(flows, id, 60_000, { release: true, records: true });
      p.catch(() => undefined);
      pending[id] = p;
    }
    const trst = waitLoads(flows, 'trst', 60_000, { records: true });
    trst.catch(() => undefined);
    pending.trst = trst;
    // New connections at both entry ports during the outage: held, relayed after the resume.
    await startLoads(flows, chain, 'during', { count: ev, concurrency: ev, sizeMin: 256 * KiB, replyMin: 256 * KiB, timeoutMs: 60_000, keyBase: keys() });
    s.check(
      `during the outage: ${ev} users each way send their last bytes and FIN, ${ev} users reset, ${ev} targets each way send their FIN (their users then their last bytes and FIN), ${ev} targets reset, ${ev} new connections each way arrive at the entry ports`,
    );
    await pollUntil(
      async () => Promise.all([loadStats(flows, 'fin'), loadStats(flows, 'tfin'), loadStats(flows, 'rst'), loadStats(flows, 'during')]),
      ([f, tf, r, d]) =>
        f.fwd.sent + f.rev.sent === 2 * ev * 64 * KiB &&
        tf.fwd.sent + tf.rev.sent === 2 * ev * 64 * KiB &&
        r.fwd.finished + r.rev.finished === 2 * ev &&
        d.fwd.started + d.rev.started === 2 * ev,
      3000,
      'the FINs and resets sent during the outage',
    );
  }
  await until(cutAt + CUT_MS);
  const healedAt = Date.now();
  await chain.topo.healLink('cli', 'srv');

  s.check('after the heal both sides log link_resumed (within 10 s) and "link up" for the new link; no resume_failed/expired, no "link down"');
  const resumed = await Promise.all(sides.map((p, i) => p.waitFor(LINK_RESUMED, 10_000, marks[i])));
  for (const [i, line] of resumed.entries()) {
    const p = sides[i];
    if (p === undefined) continue;
    s.figure(`${p.name} resumed after heal (ms)`, timeOf(line) - healedAt);
    s.figure(`${p.name} resumed connections`, Number(group(line, LINK_RESUMED, 2)));
    assert.ok(Number(group(line, LINK_RESUMED, 2)) >= 2 * (o.bulk + o.fast), `${p.name}: ${line}`);
    assert.ok(matching(p, marks[i] ?? 0, UP).length >= 1, `${p.name} logged no "link up" for the new link`);
    noLine(p, marks[i] ?? 0, DOWN, 'the session never ended');
    noLine(p, marks[i] ?? 0, /cannot resume:|resume grace of \S+ ran out/, 'the session resumed');
  }
  s.figure('outage survived (ms)', Math.max(...resumed.map(timeOf)) - cutAt);
  if (o.newAddress !== undefined) {
    s.check(`the server's new link (and its link_resumed line) comes from the new address ${o.newAddress}`);
    const serverResumed = resumed[0] ?? '';
    const from = group(serverResumed, LINK_RESUMED, 1);
    s.figure('resumed from', from);
    s.figure('held from', group(held[0] ?? '', LINK_HELD, 1));
    assert.ok(from.startsWith(`${o.newAddress}:`), `the server resumed with ${from}, expected ${o.newAddress}:<port>`);
    assert.ok(!group(held[0] ?? '', LINK_HELD, 1).startsWith(`${o.newAddress}:`), 'the old link came from the old address');
  }

  s.check('every stream completes at both ends: every byte, in order (pattern checks), FIN after it; no reset, no early EOF, no error at either end');
  const cleanIds = [...ids, ...(ev > 0 ? ['fin', 'tfin', 'during'] : [])];
  const done = await Promise.all(cleanIds.map((id) => pending[id] ?? waitLoads(flows, id, 60_000, { records: true })));
  const rstDone = pending.rst !== undefined ? await pending.rst : null;
  const trstDone = pending.trst !== undefined ? await pending.trst : null;
  // The targets finish reading a little after their users are done; expectClean says what is missing if one never does.
  await targetsQuiet(flows, 15_000).catch(() => undefined);
  const targets = await targetRecords(flows);
  let streams = 0;
  let bytes = 0;
  for (const [i, loads] of done.entries()) {
    const r = expectClean(cleanIds[i] ?? '?', loads, targets);
    streams += r.streams;
    bytes += r.bytes;
  }
  if (rstDone !== null) {
    s.check('the resets users sent during the outage reach their targets as resets after the resume, with only right bytes before them');
    const loads = rstDone;
    for (const dir of ['fwd', 'rev'] as const) {
      for (const u of loads[dir].records ?? []) {
        const tr = targets[dir].get(u.key);
        assert.ok(u.didReset && u.bad === 0, `rst ${dir} stream ${u.key}: the user ${brief(u)}`);
        assert.ok(tr !== undefined && tr.err !== null && !tr.sawEnd && tr.bad === 0 && tr.recv <= u.sent, `rst ${dir} stream ${u.key}: the target saw ${brief(tr)}; its user ${brief(u)}`);
        streams++;
      }
    }
  }
  if (trstDone !== null) {
    s.check('the resets targets sent during the outage reach their users as resets after the resume (never an EOF), after the whole reply');
    for (const dir of ['fwd', 'rev'] as const) {
      for (const u of trstDone[dir].records ?? []) {
        const tr = targets[dir].get(u.key);
        assert.ok(tr?.didReset === true, `trst ${dir} stream ${u.key}: the target did not reset: ${brief(tr)}`);
        assert.ok(u.err !== null && !u.sawEnd && u.bad === 0 && u.recv === u.replySize, `trst ${dir} stream ${u.key}: the user saw ${brief(u)}`);
        assert.ok(tr.bad === 0 && tr.recv <= u.sent, `trst ${dir} stream ${u.key}: the target saw ${brief(tr)}`);
        streams++;
      }
    }
  }
  s.figure('streams checked', streams);
  s.figure('MiB checked', mib(bytes));
  for (const p of sides) assert.ok(p.alive(), `${p.name} is running`);
}

// ---------------------------------------------------------------------------
// 11c / 11d: a side killed during the cut
// ---------------------------------------------------------------------------

async function killedDuringCut(t: TestContext, s: ScenarioContext, victimRole: 'server' | 'client'): Promise<void> {
  const chain = await createChain(t);
  const flows = await startFlowAgents(t, chain);
  const secret = victimRole === 'server' ? [`--secret-file=${secretFile(t)}`] : [];
  const common = ['--resume=10', HB, ...secret];
  const pair = await startResumePair(t, chain, common, common);
  const STREAMS = 8;
  await pacedInFlight(flows, chain, 'held', STREAMS);

  const victim = victimRole === 'server' ? pair.server : pair.client;
  const survivor = victimRole === 'server' ? pair.client : pair.server;
  const survivorRole = victimRole === 'server' ? 'client' : 'server';
  const from = survivor.mark();
  const cutAt = Date.now();
  await chain.topo.cutLink('cli', 'srv');
  const [survivorHeld] = await Promise.all([survivor.waitFor(LINK_HELD, HEARTBEAT_MS + 1000, from), victim.waitFor(LINK_HELD, HEARTBEAT_MS + 1000, 0)]);
  s.figure('survivor held after (ms)', timeOf(survivorHeld) - cutAt);

  victim.child.kill('SIGKILL');
  await victim.exited;
  const restarted = await startSide(t, chain, victimRole, [...(victimRole === 'server' ? PAIR_BOTH_WAYS.serverArgs : PAIR_BOTH_WAYS.clientArgs), ...common]);
  const healedAt = Date.now();
  await chain.topo.healLink('cli', 'srv');
  s.figure('cut lasted (ms)', healedAt - cutAt);

  s.check(`the survivor (${survivorRole}) logs resume_failed (the restarted ${victimRole} cannot resume) or resume_expired, within 15 s of the heal`);
  const failLine = await survivor.waitFor(/cannot resume: |resume grace of \S+ ran out/, 15_000, from);
  const failedAt = timeOf(failLine);
  s.figure('survivor gave up after heal (ms)', failedAt - healedAt);
  s.figure('survivor logged', failLine.replace(/^\S+ +\S+ +/, '').slice(0, 160));
  if (RESUME_FAILED.test(failLine)) {
    const expected = victimRole === 'server' ? /no state/ : /new session/;
    assert.match(group(failLine, RESUME_FAILED, 1), expected, `the reason for a restarted ${victimRole}`);
  }
  noLine(survivor, from, LINK_RESUMED, 'nothing can be resumed');

  s.check('the pair re-forms: both sides log "link up" for a new link');
  await Promise.all([survivor.waitFor(UP, 15_000, from), restarted.waitFor(UP, 15_000, 0)]);

  s.check(`every connection on the survivor's side (${STREAMS} users, ${STREAMS} target connections) was held through the cut, then reset (no FIN) within 1 s of that line; no bad byte`);
  const loads = await waitLoads(flows, 'held', 15_000, { records: true });
  const targets = await targetRecords(flows);
  const conns = sideRecords(survivorRole, loads, targets);
  assert.equal(conns.users.length, STREAMS);
  assert.equal(conns.targets.length, STREAMS);
  const closed = expectResetBetween('survivor', conns, failedAt - 250, failedAt + 1000);
  s.figure('survivor connections reset', closed.length);
  s.figure('survivor reset after its line max (ms)', Math.max(...closed) - failedAt);
  assert.equal(loads.fwd.bad + loads.rev.bad + [...targets.fwd.values(), ...targets.rev.values()].reduce((n, r) => n + r.bad, 0), 0, 'bad bytes');

  await newConnectionsWork(flows, chain, s);
  assert.ok(survivor.alive(), 'the survivor is still running');
}

// ---------------------------------------------------------------------------
// The tests
// ---------------------------------------------------------------------------

describe('faults: stream resumption', { skip: skipReason(avail), concurrency: false }, () => {
  test(NAMES.cut, { timeout: 120_000 }, (t) =>
    scenario(t, NAMES.cut, INJECTED.cut, (s) =>
      resumeAcrossCut(t, s, { secret: true, bulk: 24, bulkMin: 2 * MiB, bulkMax: 4 * MiB, fast: 1, outageEvents: 3 }),
    ),
  );

  test(NAMES.moved, { timeout: 120_000 }, (t) =>
    scenario(t, NAMES.moved, INJECTED.moved, async (s) => {
      let newAddress = '';
      await resumeAcrossCut(t, s, {
        secret: false,
        bulk: 16,
        bulkMin: 2 * MiB,
        bulkMax: 3 * MiB,
        fast: 0,
        outageEvents: 0,
        duringCut: async (chain) => {
          // cli's address on its link to srv changes: a new one added, the old one removed (the
          // new one is promoted), so the next link comes from a new IP and port.
          const iface = chain.topo.host('cli').interfaces.find((i) => i.peer === 'srv');
          if (iface === undefined) throw new Error('cli has no interface towards srv');
          const old = iface.addr;
          newAddress = old.replace(/\.\d+$/, '.3');
          const prefix = iface.subnet.split('/')[1] ?? '24';
          await chain.topo.execOk('cli', 'sysctl', ['-q', '-w', `net.ipv4.conf.${iface.name}.promote_secondaries=1`]);
          await chain.topo.execOk('cli', 'ip', ['addr', 'add', `${newAddress}/${prefix}`, 'dev', iface.name]);
          await chain.topo.execOk('cli', 'ip', ['addr', 'del', `${old}/${prefix}`, 'dev', iface.name]);
          const shown = await chain.topo.execOk('cli', 'ip', ['-4', '-o', 'addr', 'show', 'dev', iface.name]);
          assert.ok(shown.stdout.includes(`${newAddress}/`) && !shown.stdout.includes(`${old}/`), `cli's addresses: ${shown.stdout}`);
        },
        get newAddress() {
          return newAddress;
        },
      });
    }),
  );

  test(NAMES.serverKilled, { timeout: 90_000 }, (t) => scenario(t, NAMES.serverKilled, INJECTED.serverKilled, (s) => killedDuringCut(t, s, 'server')));
  test(NAMES.clientKilled, { timeout: 90_000 }, (t) => scenario(t, NAMES.clientKilled, INJECTED.clientKilled, (s) => killedDuringCut(t, s, 'client')));

  test(NAMES.expired, { timeout: 90_000 }, (t) =>
    scenario(t, NAMES.expired, INJECTED.expired, async (s) => {
      const GRACE_MS = 3000;
      const EXPIRY_CUT_MS = 8000;
      const chain = await createChain(t);
      const flows = await startFlowAgents(t, chain);
      const { server, client } = await startResumePair(t, chain, ['--resume=3', HB], ['--resume=3', HB, '--log-format=json']);
      const sides = [server, client] as const;
      const STREAMS = 8;
      await pacedInFlight(flows, chain, 'held', STREAMS);

      const { marks, cutAt } = await cut(chain, sides);
      const held = await Promise.all(sides.map((p, i) => p.waitFor(LINK_HELD, HEARTBEAT_MS + 1000, marks[i])));
      // New connections at both entry ports while held: they wait, and are reset when the grace ends.
      await startLoads(flows, chain, 'during', { count: 2, concurrency: 2, sizeMin: 64 * KiB, replyMin: 64 * KiB, timeoutMs: 60_000, keyBase: keys() });

      s.check(`both sides log resume_expired ${GRACE_MS / 1000} s (-250 ms, +1 s) after their link_held, closing at least the ${2 * STREAMS} held connections; never link_resumed`);
      const expired = await Promise.all(sides.map((p, i) => p.waitFor(RESUME_EXPIRED, HEARTBEAT_MS + GRACE_MS + 3000, marks[i])));
      for (const [i, p] of sides.entries()) {
        const h = timeOf(held[i] ?? '');
        const e = timeOf(expired[i] ?? '');
        s.figure(`${p.name} held after cut (ms)`, h - cutAt);
        s.figure(`${p.name} expired after held (ms)`, e - h);
        assert.ok(e - h >= GRACE_MS - 250 && e - h <= GRACE_MS + 1000, `${p.name}: the grace of ${GRACE_MS} ms ended ${e - h} ms after link_held`);
        assert.ok(Number(group(expired[i] ?? '', RESUME_EXPIRED, 1)) >= 2 * STREAMS, `${p.name}: ${expired[i] ?? ''}`);
      }
      s.check('with --log-format=json, the client\'s lines carry the events link_held and resume_expired');
      assert.equal(eventOf(held[1] ?? ''), 'link_held', `client line: ${held[1] ?? ''}`);
      assert.equal(eventOf(expired[1] ?? ''), 'resume_expired', `client line: ${expired[1] ?? ''}`);

      s.check('every held connection on both sides (users and target connections) is reset (no FIN) at its side\'s expiry (-250 ms, +1 s), not before');
      const loads = await waitLoads(flows, 'held', 15_000, { records: true });
      const targets = await targetRecords(flows);
      let resets = 0;
      for (const [i, role] of (['server', 'client'] as const).entries()) {
        const e = timeOf(expired[i] ?? '');
        const conns = sideRecords(role, loads, targets);
        assert.equal(conns.users.length, STREAMS, `${role} users`);
        assert.equal(conns.targets.length, STREAMS, `${role} target connections`);
        resets += expectResetBetween(`${role} side`, conns, e - 250, e + 1000).length;
      }
      s.figure('connections reset at expiry', resets);

      s.check('the connections that arrived during the outage were held, then reset at the expiry of their entry side');
      const during = await waitLoads(flows, 'during', 15_000, { records: true });
      for (const [dir, i] of [
        ['fwd', 0],
        ['rev', 1],
      ] as const) {
        const e = timeOf(expired[i] ?? '');
        for (const u of during[dir].records ?? []) {
          assert.ok(u.connected && u.err !== null && !u.sawEnd && u.recv === 0, `during ${dir} stream ${u.key}: ${brief(u)}`);
          assert.ok(u.closedAt >= e - 250 && u.closedAt <= e + 1000, `during ${dir} stream ${u.key} closed ${u.closedAt - e} ms from its side's expiry`);
        }
      }
      for (const [i, p] of sides.entries()) noLine(p, marks[i] ?? 0, LINK_RESUMED, 'the grace ran out');

      await until(cutAt + EXPIRY_CUT_MS);
      const healedAt = Date.now();
      await chain.topo.healLink('cli', 'srv');
      s.check('after the heal the pair links again (a new session)');
      const ups = await Promise.all(sides.map((p, i) => p.waitFor(UP, 15_000, marks[i])));
      s.figure('re-paired after heal (ms)', Math.max(...ups.map(timeOf)) - healedAt);
      await newConnectionsWork(flows, chain, s);
    }),
  );

  test(NAMES.flapping, { timeout: FLAP_MS + 120_000 }, (t) =>
    scenario(t, NAMES.flapping, INJECTED.flapping, async (s) => {
      /** [cut ms, heal ms]: long cuts lose the link (heartbeat 2 s) and resume it, short ones do not. */
      const CYCLE: readonly (readonly [number, number])[] = [
        [3000, 3500],
        [500, 1500],
        [3000, 3000],
        [300, 1200],
      ];
      const HEAP_SLACK = 8 * MiB;
      const RSS_SLACK = 32 * MiB;
      const chain = await createChain(t);
      const flows = await startFlowAgents(t, chain);
      const common = ['--resume=30', HB];
      const { server, client } = await startResumePair(t, chain, common, common);
      const procs = [server, client] as const;
      const load = { concurrency: 8, sizeMin: 16 * KiB, sizeMax: 1024 * KiB, replyMin: 16 * KiB, replyMax: 1024 * KiB, flags: Flags.PACED, timeoutMs: 60_000 };

      // Warm-up, with one resumed cut (so that what a resume loads once is in the baseline).
      const warmFrom = procs.map((p) => p.mark());
      await startLoads(flows, chain, 'warm', { ...load, count: 48, keyBase: keys() });
      await inFlight(flows, ['warm'], 8);
      await chain.topo.cutLink('cli', 'srv');
      await Promise.all(procs.map((p, i) => p.waitFor(LINK_HELD, HEARTBEAT_MS + 1000, warmFrom[i])));
      await chain.topo.healLink('cli', 'srv');
      await Promise.all(procs.map((p, i) => p.waitFor(LINK_RESUMED, 10_000, warmFrom[i])));
      const warm = await waitLoads(flows, 'warm', 30_000, { records: true });
      await targetsQuiet(flows);
      expectClean('warm-up', warm, await targetRecords(flows));
      const before = await quietBaseline(procs);

      const marks = procs.map((p) => p.mark());
      await startLoads(flows, chain, 'flap', { ...load, keyBase: keys() });
      const cuts = await flapLink(chain, FLAP_MS, CYCLE);
      // Healed for good: every hold ends in a resume; stop the load and let every stream finish.
      await pollUntil(
        () => procs.map((p, i) => matching(p, marks[i] ?? 0, LINK_HELD).length - matching(p, marks[i] ?? 0, LINK_RESUMED).length),
        (open) => open.every((n) => n === 0),
        20_000,
        'every link_held answered by a link_resumed on both sides',
      );
      const flap = await waitLoads(flows, 'flap', 60_000, { stop: true, records: true });
      await targetsQuiet(flows);
      const holds = procs.map((p, i) => matching(p, marks[i] ?? 0, LINK_HELD).length);
      s.figure('cuts', cuts);
      s.figure('links held/resumed (server)', `${holds[0] ?? 0}/${matching(server, marks[0] ?? 0, LINK_RESUMED).length}`);
      s.figure('links held/resumed (client)', `${holds[1] ?? 0}/${matching(client, marks[1] ?? 0, LINK_RESUMED).length}`);
      s.check('the link was lost and resumed during the flapping (at least 2 holds on each side), never ended: no "link down", no resume_failed/expired');
      for (const [i, p] of procs.entries()) {
        assert.ok((holds[i] ?? 0) >= 2, `${p.name}: only ${holds[i] ?? 0} holds in ${cuts} cuts`);
        noLine(p, marks[i] ?? 0, DOWN, 'the session never ended');
        noLine(p, marks[i] ?? 0, /cannot resume:|resume grace of \S+ ran out/, 'every hold resumed');
      }

      s.check('every stream completed at both ends, every byte once and in order (pattern checks), no error anywhere');
      const checked = expectClean('flap', flap, await targetRecords(flows));
      s.figure('streams', checked.streams);
      s.figure('MiB checked', mib(checked.bytes));

      s.check(`after the flapping, once quiet: descriptors, sockets and timers back to their starting counts; heap +<${HEAP_SLACK / MiB} MiB, RSS +<${RSS_SLACK / MiB} MiB`);
      assertBackToBaseline(s, procs, before, await quietBaseline(procs), { heap: HEAP_SLACK, rss: RSS_SLACK });
    }),
  );

  test(NAMES.replay, { timeout: 120_000 }, (t) =>
    scenario(t, NAMES.replay, INJECTED.replay, async (s) => {
      const REPLAY_CUT_MS = 3500;
      const chain = await createChain(t);
      const flows = await startFlowAgents(t, chain);
      // The man in the middle: a forwarder on cli that records what the client sends on each link.
      const { server, client, forwarder: recorder } = await startForwardedPair(t, chain, ['--resume=30', HB]);
      const sides = [server, client] as const;
      const attacker = chain.usersForSrv;
      const esc = attacker.replace(/\./g, '\\.');
      const attackerLines = new RegExp(`(refused resume from|refused partner|refused link from|authentication failed from) ${esc}\\b`);
      const attackerRefusedResume = new RegExp(`refused resume from ${esc}\\b`);
      const attackerUp = new RegExp(`link up with ${esc}\\b`);

      // A first cut and resume: the client's second link carries a resume request.
      await startLoads(flows, chain, 'one', { count: 8, concurrency: 8, sizeMin: 3 * MiB, sizeMax: 4 * MiB, replyMin: 3 * MiB, replyMax: 4 * MiB, flags: Flags.PACED, timeoutMs: 90_000, keyBase: keys() });
      await inFlight(flows, ['one'], 8);
      const marks1 = sides.map((p) => p.mark());
      const cut1 = Date.now();
      await chain.topo.cutLink('cli', 'srv');
      await Promise.all(sides.map((p, i) => p.waitFor(LINK_HELD, HEARTBEAT_MS + 1000, marks1[i])));
      await until(cut1 + REPLAY_CUT_MS);
      await chain.topo.healLink('cli', 'srv');
      s.check('a first cut: both sides hold, then resume (the client\'s new link carries a resume request)');
      await Promise.all(sides.map((p, i) => p.waitFor(LINK_RESUMED, 10_000, marks1[i])));

      type Captured = { id: number; upstreamConnected: boolean; connectedAt: number; total: number; closed: boolean; recorded: string };
      const conns = await recorder.call<Captured[]>('forward-conns', { port: RECORDER_PORT }, 5000);
      const linked = conns.filter((c) => c.upstreamConnected);
      assert.ok(linked.length >= 2, `the recorder saw ${linked.length} links: ${JSON.stringify(conns.map((c) => ({ ...c, recorded: c.recorded.length })))}`);
      const resumedLink = linked.filter((c) => !c.closed).sort((a, b) => b.connectedAt - a.connectedAt)[0];
      assert.ok(resumedLink !== undefined, 'the resumed link is open');
      const captured = resumedLink.recorded;
      s.figure('links recorded', linked.length);
      s.figure('bytes replayed', Buffer.from(captured, 'base64').length);

      // Streams across the replays and the second cut.
      const inflightBefore = (await targetStats(flows)).fwd.streams;
      await startLoads(flows, chain, 'two', { count: 8, concurrency: 8, sizeMin: 5 * MiB, sizeMax: 6 * MiB, replyMin: 5 * MiB, replyMax: 6 * MiB, flags: Flags.PACED, timeoutMs: 90_000, keyBase: keys() });
      await inFlight(flows, ['two'], inflightBefore + 8);

      type ReplayResult = { connected: boolean; sent: number; recv: number; frames: number[]; goaway: { code: number; reason: string } | null; closedByServer: boolean; ms: number; err: string | null };
      const replay = (): Promise<ReplayResult> =>
        flows.users.call<ReplayResult>('replay', { host: chain.srvForUsers, port: LINK_PORT, data: captured, timeoutMs: 5000 }, 15_000);

      // (a) The pair is live.
      const marksA = sides.map((p) => p.mark());
      const a = await replay();
      s.figure('(a) replay', `closed by the server after ${a.ms} ms${a.goaway !== null ? `, GOAWAY ${a.goaway.code} ${a.goaway.reason}` : ''}`);
      s.check('(a) with the pair live: the server refuses the replayed link (logs why, naming the attacker\'s address) and closes it within 5 s; it never comes up');
      assert.ok(a.connected && a.closedByServer, `(a) the replayed link was not closed by the server: ${JSON.stringify(a)}`);
      const refusedA = await server.waitFor(attackerLines, 5000, marksA[0]);
      s.figure('(a) server logged', refusedA.replace(/^\S+ +\S+ +/, '').slice(0, 160));
      noLine(server, marksA[0] ?? 0, attackerUp, 'the replayed link must never come up');
      s.check('(a) the pair is undisturbed: no link lost, held or down on either side');
      for (const [i, p] of sides.entries()) noLine(p, marksA[i] ?? 0, new RegExp(`${LINK_HELD.source}|${DOWN.source}|cannot resume:`), 'the pair was live');

      // (b) A second cut: the streams are held on both sides.
      const marksB = sides.map((p) => p.mark());
      const cut2 = Date.now();
      await chain.topo.cutLink('cli', 'srv');
      await Promise.all(sides.map((p, i) => p.waitFor(LINK_HELD, HEARTBEAT_MS + 1000, marksB[i])));
      const b = await replay();
      s.figure('(b) replay', `closed by the server after ${b.ms} ms${b.goaway !== null ? `, GOAWAY ${b.goaway.code} ${b.goaway.reason}` : ''}`);
      s.check('(b) while the streams are held: the server logs resume_refused for the attacker\'s address and closes the link within 5 s; the held session is not touched');
      assert.ok(b.connected && b.closedByServer, `(b) the replayed link was not closed by the server: ${JSON.stringify(b)}`);
      const refusedB = await server.waitFor(attackerRefusedResume, 5000, marksB[0]);
      s.figure('(b) server logged', refusedB.replace(/^\S+ +\S+ +/, '').slice(0, 160));
      assert.notEqual(group(refusedB, RESUME_REFUSED, 2), '', `(b) the refusal gives a reason: ${refusedB}`);
      noLine(server, marksB[0] ?? 0, attackerUp, 'the replayed link must never come up');
      noLine(server, marksB[0] ?? 0, new RegExp(`${LINK_RESUMED.source}|${DOWN.source}|cannot resume:`), 'the held session belongs to the real client');
      await until(cut2 + REPLAY_CUT_MS);
      const healed2 = Date.now();
      await chain.topo.healLink('cli', 'srv');
      s.check('(b) after the heal the real client resumes the held session on both sides');
      const resumed = await Promise.all(sides.map((p, i) => p.waitFor(LINK_RESUMED, 10_000, marksB[i])));
      s.figure('second resume after heal (ms)', Math.max(...resumed.map(timeOf)) - healed2);
      for (const [i, p] of sides.entries()) noLine(p, marksA[i] ?? 0, new RegExp(`${DOWN.source}|cannot resume:|resume grace of \\S+ ran out`), 'the session was never lost');

      s.check('every stream (across the first cut, the replays and the second cut) completes at both ends with every byte in order, no error');
      const done = await Promise.all(['one', 'two'].map((id) => waitLoads(flows, id, 60_000, { records: true })));
      await targetsQuiet(flows, 15_000).catch(() => undefined);
      const targets = await targetRecords(flows);
      let streams = 0;
      let bytes = 0;
      for (const [i, loads] of done.entries()) {
        const r = expectClean(i === 0 ? 'one' : 'two', loads, targets);
        streams += r.streams;
        bytes += r.bytes;
      }
      s.figure('streams checked', streams);
      s.figure('MiB checked', mib(bytes));
    }),
  );

  test(NAMES.off, { timeout: 90_000 }, (t) =>
    scenario(t, NAMES.off, INJECTED.off, async (s) => {
      const variants = [
        { name: 'both --resume=0', server: ['--resume=0'], client: ['--resume=0'] },
        { name: 'server only --resume=30', server: ['--resume=30'], client: [] },
        { name: 'client only --resume=30', server: [], client: ['--resume=30'] },
      ] as const;
      s.check('for each variant: both sides declare the link down (not held) within the heartbeat (+500 ms); no hold, resume or resume_* line anywhere');
      s.check('every user and target connection on both sides reset (no FIN) within 500 ms of its side\'s link down; after the heal the pair links again and new connections work');
      // The three pairs run at once, each in its own chain.
      await Promise.all(
        variants.map(async (v) => {
          const chain = await createChain(t);
          const flows = await startFlowAgents(t, chain);
          const { server, client } = await startResumePair(t, chain, [...v.server, HB], [...v.client, HB]);
          const sides = [server, client] as const;
          const STREAMS = 4;
          await pacedInFlight(flows, chain, 'cut', STREAMS);
          const { marks, cutAt } = await cut(chain, sides);
          const downs = await Promise.all(sides.map((p, i) => p.waitFor(DOWN, HEARTBEAT_MS + 3000, marks[i])));
          for (const [i, p] of sides.entries()) {
            const ms = timeOf(downs[i] ?? '') - cutAt;
            s.figure(`${v.name}: ${p.name} down after (ms)`, ms);
            assert.ok(ms <= HEARTBEAT_MS + 500, `${v.name}: ${p.name} declared the link down ${ms} ms after the cut`);
            noLine(p, 0, ANY_RESUME, `${v.name}: resumption is off`);
          }
          const loads = await waitLoads(flows, 'cut', 10_000, { records: true });
          const targets = await targetRecords(flows);
          let n = 0;
          for (const [i, role] of (['server', 'client'] as const).entries()) {
            const at = timeOf(downs[i] ?? '');
            const conns = sideRecords(role, loads, targets);
            assert.equal(conns.users.length + conns.targets.length, 2 * STREAMS, `${v.name}: ${role} connections`);
            n += expectResetBetween(`${v.name}: ${role} side`, conns, at - 250, at + 500).length;
          }
          s.figure(`${v.name}: connections reset`, n);
          await chain.topo.healLink('cli', 'srv');
          await Promise.all(sides.map((p, i) => p.waitFor(UP, 15_000, marks[i])));
          for (const p of sides) noLine(p, 0, ANY_RESUME, `${v.name}: resumption is off`);
          await newConnectionsWork(flows, chain, { check: () => undefined, figure: () => undefined, figures: {} });
        }),
      );
    }),
  );

  test(NAMES.middlebox, { timeout: 90_000 }, (t) =>
    scenario(t, NAMES.middlebox, INJECTED.middlebox, async (s) => {
      const chain = await createChain(t);
      const flows = await startFlowAgents(t, chain);
      const { server, client, forwarder } = await startForwardedPair(t, chain, ['--resume=30', HB]);
      const sides = [server, client] as const;
      await startLoads(flows, chain, 'mb', { count: 8, concurrency: 8, sizeMin: 3 * MiB, sizeMax: 4 * MiB, replyMin: 3 * MiB, replyMax: 4 * MiB, flags: Flags.PACED, timeoutMs: 60_000, keyBase: keys() });
      await inFlight(flows, ['mb'], 8);
      const first = sides.map((p) => p.mark());
      for (const mode of ['rst', 'fin'] as const) {
        const marks = sides.map((p) => p.mark());
        const dropAt = Date.now();
        const r = await forwarder.call<{ dropped: number }>('forward-drop', { port: RECORDER_PORT, mode }, 5000);
        assert.equal(r.dropped, 1, `${mode}: one link to drop`);
        s.check(`${mode}: both sides hold at once (within 1 s, not at the heartbeat), then resume on the client's next link (within 5 s)`);
        const held = await Promise.all(sides.map((p, i) => p.waitFor(LINK_HELD, 1000, marks[i])));
        const resumed = await Promise.all(sides.map((p, i) => p.waitFor(LINK_RESUMED, 5000, marks[i])));
        for (const [i, p] of sides.entries()) {
          s.figure(`${mode}: ${p.name} held after (ms)`, timeOf(held[i] ?? '') - dropAt);
          s.figure(`${mode}: ${p.name} reason`, (held[i] ?? '').replace(/^.*link lost with \S+: /, '').replace(/; holding.*$/, '').slice(0, 100));
        }
        s.figure(`${mode}: resumed after (ms)`, Math.max(...resumed.map(timeOf)) - dropAt);
      }
      s.check('no "link down", no resume_failed/expired; every stream completes at both ends with every byte in order, no error');
      for (const [i, p] of sides.entries()) noLine(p, first[i] ?? 0, new RegExp(`${DOWN.source}|cannot resume:|resume grace of \\S+ ran out`), 'the session was never lost');
      const loads = await waitLoads(flows, 'mb', 60_000, { records: true });
      await targetsQuiet(flows, 15_000).catch(() => undefined);
      const checked = expectClean('mb', loads, await targetRecords(flows));
      s.figure('streams checked', checked.streams);
      s.figure('MiB checked', mib(checked.bytes));
    }),
  );

  test(NAMES.goodbye, { timeout: 90_000 }, (t) =>
    scenario(t, NAMES.goodbye, INJECTED.goodbye, async (s) => {
      const chain = await createChain(t);
      const flows = await startFlowAgents(t, chain);
      const common = ['--resume=30', HB];
      const { server, client } = await startResumePair(t, chain, common, common);
      const STREAMS = 4;
      await pacedInFlight(flows, chain, 'bye', STREAMS);
      const from = server.mark();
      const stopAt = Date.now();
      client.child.kill('SIGTERM');
      const exit = await client.exited;
      s.check('the client stops with status 0; the server logs "link down" for its goodbye within 3 s, and holds nothing');
      assert.equal(exit.code, 0, `client exit: ${JSON.stringify(exit)}`);
      const down = await server.waitFor(DOWN, 3000, from);
      s.figure('server link down after SIGTERM (ms)', timeOf(down) - stopAt);
      noLine(server, from, ANY_RESUME, 'a goodbye ends the session');
      s.check("every connection on the server's side (users and target connections) is reset (no FIN) within 1 s of its link down");
      const loads = await waitLoads(flows, 'bye', 10_000, { records: true });
      const targets = await targetRecords(flows);
      const at = timeOf(down);
      const conns = sideRecords('server', loads, targets);
      assert.equal(conns.users.length + conns.targets.length, 2 * STREAMS, 'server side connections');
      const closed = expectResetBetween('server side', conns, stopAt, at + 1000);
      s.figure('server side connections reset', closed.length);
      s.check('a restarted client pairs as a new session (no resume, no resume_failed on either side)');
      const restarted = await startSide(t, chain, 'client', [...PAIR_BOTH_WAYS.clientArgs, ...common]);
      await Promise.all([server.waitFor(UP, 10_000, from), restarted.waitFor(UP, 10_000)]);
      noLine(server, from, ANY_RESUME, 'nothing was held');
      noLine(restarted, 0, ANY_RESUME, 'nothing was held');
      await newConnectionsWork(flows, chain, s);
    }),
  );
});
