/**
 * Scenario 4: a flapping link. The link is cut (iptables DROP both ways) and
 * healed over and over, some cuts shorter than the heartbeat (the link
 * survives them), some longer (it dies and re-forms), while streams run both
 * ways without pause: 8 at a time each way, paced, 16 KiB to 1 MiB each way.
 *
 * Checks: every byte any user or target received is the byte its own stream
 * sent at that offset (each stream has its own pattern, so data from a stale
 * stream delivered on a new link would show); no leak: once everything is
 * quiet again, each tcpipe process holds as many descriptors, sockets and
 * timers as before, and its heap (after a full GC) and RSS are back near
 * their starting figures. ~20 s of flapping in the quick set, 60 s with
 * TCPIPE_SOAK=1.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { startFlowAgents, startLoads, targetsQuiet, targetStats, waitLoads } from '../helpers/agent-driver.js';
import { createChain, faultsAvailable, flapLink, skipReason } from '../helpers/chain.js';
import { assertBackToBaseline, mib, PAIR_BOTH_WAYS, quietBaseline, startChainPair, type TcpipeProc } from '../helpers/chain-tcpipe.js';
import { LINK_DOWN, LINK_UP } from '../helpers/logs.js';
import { Flags } from '../helpers/pattern.js';
import { recordSkipped, scenario, SOAK } from '../helpers/scenario.js';
import { pollUntil } from '../helpers/wait.js';

const FLAP_MS = SOAK ? 60_000 : 20_000;
/** [cut ms, heal ms]: long cuts kill the link (heartbeat 2 s), short ones do not. */
const CYCLE: readonly (readonly [number, number])[] = [
  [3000, 3000],
  [500, 1500],
  [2500, 2500],
  [300, 1200],
];
const NAME = '4. flapping link';
const INJECTED = `cut/heal cycles (cuts of 0.3-3 s, heals of 1.2-3 s) for ${FLAP_MS / 1000} s, 8 paced streams each way without pause`;

/** Allowed growth after the flapping, once quiet. */
const HEAP_SLACK = 8 * 1024 * 1024;
const RSS_SLACK = 32 * 1024 * 1024;

const avail = await faultsAvailable();
if (!avail.ok) recordSkipped(NAME, INJECTED, avail.reason);

/** 'up' or 'down' from the last link line after `from`. */
function linkState(p: TcpipeProc, from: number): 'up' | 'down' | 'unknown' {
  const last = p.since(from).filter((l) => LINK_UP.test(l) || LINK_DOWN.test(l)).pop();
  return last === undefined ? 'unknown' : LINK_UP.test(last) ? 'up' : 'down';
}

describe('faults: flapping link', { skip: skipReason(avail) }, () => {
  test(NAME, { timeout: FLAP_MS + 90_000 }, (t) =>
    scenario(t, NAME, INJECTED, async (s) => {
      const chain = await createChain(t);
      const flows = await startFlowAgents(t, chain);
      const hb = ['--heartbeat=2'];
      const { server, client } = await startChainPair(t, chain, {
        serverArgs: [...PAIR_BOTH_WAYS.serverArgs, ...hb],
        clientArgs: [...PAIR_BOTH_WAYS.clientArgs, ...hb],
      });
      const procs: readonly TcpipeProc[] = [server, client];
      const load = { concurrency: 8, sizeMin: 16 * 1024, sizeMax: 1024 * 1024, replyMin: 16 * 1024, replyMax: 1024 * 1024, flags: Flags.PACED, gapOnFailMs: 100, timeoutMs: 30_000 };

      // Warm up (JIT, buffers, a few hundred streams), then take the baseline once quiet.
      await startLoads(flows, chain, 'warm', { ...load, count: 64, keyBase: 1 });
      const warm = await waitLoads(flows, 'warm', 30_000);
      assert.equal(warm.fwd.clean + warm.rev.clean, 128, `warm-up: ${JSON.stringify({ fwd: warm.fwd.errors, rev: warm.rev.errors })}`);
      const before = await quietBaseline(procs);

      const serverFrom = server.mark();
      await startLoads(flows, chain, 'flap', { ...load, keyBase: 100_000 });
      const cuts = await flapLink(chain, FLAP_MS, CYCLE);
      // Healed for good: the link comes back; stop the load and let every stream finish.
      const clientFrom = 0;
      await pollUntil(
        () => [linkState(server, serverFrom), linkState(client, clientFrom)],
        (states) => states.every((st) => st === 'up'),
        20_000,
        'the link up on both sides after the last heal',
        100,
      );
      const flap = await waitLoads(flows, 'flap', 40_000, { stop: true, records: true });
      await targetsQuiet(flows);
      const targets = await targetStats(flows);
      const downs = server.since(serverFrom).filter((l) => LINK_DOWN.test(l)).length;
      s.figure('cuts', cuts);
      s.figure('link downs (server)', downs);
      s.figure('streams', flap.fwd.started + flap.rev.started);
      s.figure('clean streams', flap.fwd.clean + flap.rev.clean);
      s.figure('MiB verified', mib(flap.fwd.recv + flap.rev.recv + targets.fwd.recvBytes + targets.rev.recvBytes));
      s.check('the link went down and came back during the flapping (at least 2 downs)');
      assert.ok(downs >= 2, `only ${downs} link downs in ${cuts} cuts`);

      s.check('every byte received by users and targets matches its own stream (0 bad bytes: no stale data on a new link)');
      const bad = flap.fwd.bad + flap.rev.bad + targets.fwd.bad + targets.rev.bad;
      s.figure('bad bytes', bad);
      assert.equal(bad, 0, 'bad bytes');
      s.check('streams that ended cleanly got every byte (none short, none long)');
      for (const r of [...(flap.fwd.records ?? []), ...(flap.rev.records ?? [])]) {
        if (r.err === null && r.sawEnd) assert.equal(r.recv, r.replySize, `stream ${r.key} ended cleanly with ${r.recv} of ${r.replySize} bytes`);
        assert.ok(r.recv <= r.replySize, `stream ${r.key} received ${r.recv} bytes, more than the ${r.replySize} sent`);
      }
      assert.ok(flap.fwd.clean + flap.rev.clean > 0, 'some streams completed');

      s.check('after the flapping, once quiet: descriptors, sockets and timers back to their starting counts; heap +<8 MiB, RSS +<32 MiB');
      assertBackToBaseline(s, procs, before, await quietBaseline(procs), { heap: HEAP_SLACK, rss: RSS_SLACK });
    }),
  );
});
