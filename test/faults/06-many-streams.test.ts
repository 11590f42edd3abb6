/**
 * Scenario 6: many streams. 2,000 connections (10,000 with TCPIPE_SOAK=1)
 * are open through the pair at once, each having sent and received 2-4 KiB
 * of checked data and still open both ways; then each sends the rest and
 * closes. Then 10,000 short connections (100,000 soak), 50 at a time, each
 * with a small request and reply.
 *
 * Checks: no error and no bad byte anywhere; each tcpipe process holds about
 * one descriptor per open stream and gives them all back; memory per open
 * stream (RSS and heap, per instance) is reported and bounded; after the
 * short connections, descriptors and timers are back to the start, the heap
 * (after a full GC) too, and RSS is near its figure before them: the first
 * half brings the allocator to its working size (about +16 MiB, measured to
 * plateau over 80,000 more), the second half must not grow it. The processes run with `ulimit -n` as high
 * as the hard limit allows (bash -c 'ulimit -n N; exec ...').
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { startAgent, type LoadSummary, type TargetStats } from '../helpers/agent-driver.js';
import { createChain, faultsAvailable, FWD_PORT, skipReason } from '../helpers/chain.js';
import { mib, socketHandles, startChainPair, type Probe, type TcpipeProc } from '../helpers/chain-tcpipe.js';
import { KiB, MiB } from '../helpers/net.js';
import { Flags } from '../helpers/pattern.js';
import { hardNofile } from '../helpers/proc.js';
import { recordSkipped, scenario, SOAK } from '../helpers/scenario.js';
import { pollUntil } from '../helpers/wait.js';

const CONCURRENT = SOAK ? 10_000 : 2_000;
const SHORT = SOAK ? 100_000 : 10_000;
/** Bound on the memory an open stream costs an instance (RSS growth / streams). */
const PER_STREAM_BOUND = 64 * KiB;
const NAME = '6. many streams';
const INJECTED = `${CONCURRENT} concurrent connections, then ${SHORT} short ones (50 at a time)`;

const avail = await faultsAvailable();
if (!avail.ok) recordSkipped(NAME, INJECTED, avail.reason);


describe('faults: many streams', { skip: skipReason(avail) }, () => {
  test(NAME, { timeout: SOAK ? 900_000 : 150_000 }, (t) =>
    scenario(t, NAME, INJECTED, async (s) => {
      const nofile = Math.min(100_000, hardNofile());
      s.figure('ulimit -n', nofile);
      assert.ok(nofile >= CONCURRENT + 1000, `the hard limit on open files (${nofile}) is too low for ${CONCURRENT} streams`);
      const chain = await createChain(t);
      const { topo } = chain;
      const [users, targets] = await Promise.all([startAgent(t, topo, 'users', nofile), startAgent(t, topo, 'targets', nofile)]);
      await targets.call('listen', { port: FWD_PORT, mode: 'pattern' }, 5000);
      const { server, client } = await startChainPair(t, chain, { serverArgs: ['-p', String(FWD_PORT)], serverNofile: nofile, clientNofile: nofile });
      const procs: readonly TcpipeProc[] = [server, client];
      const to = { host: chain.srvForUsers, port: FWD_PORT };

      // Warm-up, then the baseline once quiet.
      await users.call('load-start', { id: 'warm', ...to, count: 200, concurrency: 50, sizeMin: 1024, replyMin: 1024, keyBase: 1 }, 5000);
      const warm = await users.call<LoadSummary>('load-wait', { id: 'warm', timeoutMs: 20_000 }, 25_000);
      assert.equal(warm.clean, 200, JSON.stringify(warm.errors));
      const quiet = async (): Promise<Probe[]> => {
        await pollUntil(() => Promise.all(procs.map((p) => p.probe())), (ps) => ps.every((p) => socketHandles(p) <= 3), 30_000, 'stream sockets closed', 200);
        return Promise.all(procs.map((p) => p.probe()));
      };
      const base = await quiet();
      const baseRss = procs.map((p) => p.stats().rss);

      // All open at once: each sends half of its 2-4 KiB, gets its whole reply, and holds.
      const opened = performance.now();
      await users.call(
        'load-start',
        {
          id: 'many',
          ...to,
          count: CONCURRENT,
          concurrency: 500,
          hold: true,
          holdFraction: 0.5,
          sizeMin: 2 * KiB,
          sizeMax: 4 * KiB,
          replyMin: 2 * KiB,
          replyMax: 4 * KiB,
          flags: Flags.TARGET_WAIT_EOF,
          keyBase: 10_000,
          timeoutMs: SOAK ? 600_000 : 120_000,
        },
        5000,
      );
      const ready = await users.call<LoadSummary>('load-ready', { id: 'many', ready: CONCURRENT, timeoutMs: SOAK ? 300_000 : 60_000 }, SOAK ? 310_000 : 70_000);
      const openSeconds = (performance.now() - opened) / 1000;
      s.check(`${CONCURRENT} streams open at once, each with its reply checked, none failed`);
      assert.deepEqual(ready.errors, {}, 'errors while opening');
      assert.equal(ready.ready, CONCURRENT);
      assert.equal(ready.finished, 0, 'no stream ended early');
      const atTarget = await targets.call<TargetStats>('target-stats', { port: FWD_PORT }, 10_000);
      assert.equal(atTarget.open, CONCURRENT, 'connections open at the target');
      s.figure('streams opened per second', CONCURRENT / openSeconds);

      const held = await Promise.all(procs.map((p) => p.probe(15_000)));
      const heldRss = procs.map((p) => p.stats().rss);
      s.check(`each instance holds one descriptor per stream (+-1%), and < ${PER_STREAM_BOUND / KiB} KiB of RSS per stream`);
      for (const [i, p] of procs.entries()) {
        const b = base[i];
        const h = held[i];
        if (b === undefined || h === undefined) throw new Error('missing probe');
        const perStreamRss = ((heldRss[i] ?? 0) - (baseRss[i] ?? 0)) / CONCURRENT;
        const perStreamHeap = (h.heapUsed - b.heapUsed) / CONCURRENT;
        s.figure(`${p.name} fds base/held`, `${b.fds}/${h.fds}`);
        s.figure(`${p.name} RSS MiB base/held`, `${mib(baseRss[i] ?? 0)}/${mib(heldRss[i] ?? 0)}`);
        s.figure(`${p.name} KiB RSS per stream`, perStreamRss / KiB);
        s.figure(`${p.name} KiB heap per stream`, perStreamHeap / KiB);
        const extra = h.fds - b.fds;
        assert.ok(Math.abs(extra - CONCURRENT) <= CONCURRENT / 100 + 2, `${p.name}: ${extra} more descriptors for ${CONCURRENT} streams`);
        assert.ok(perStreamRss <= PER_STREAM_BOUND, `${p.name}: ${(perStreamRss / KiB).toFixed(1)} KiB of RSS per stream`);
      }

      s.check('every stream then sends the rest and closes: all clean, 0 bad bytes at either end');
      const many = await users.call<LoadSummary>('load-wait', { id: 'many', release: true, timeoutMs: 120_000 }, 125_000);
      assert.deepEqual(many.errors, {});
      assert.equal(many.clean, CONCURRENT);
      assert.equal(many.bad, 0);
      const targetsDone = (): Promise<TargetStats> =>
        pollUntil(() => targets.call<TargetStats>('target-stats', { port: FWD_PORT }, 10_000), (v) => v.open === 0, 30_000, 'the target to finish');
      await targetsDone();
      const manyTarget = await targets.call<TargetStats>('target-stats', { port: FWD_PORT, clear: true }, 10_000);
      assert.equal(manyTarget.bad, 0, 'bad bytes at the target');
      const afterMany = await quiet();
      const afterManyRss = procs.map((p) => p.stats().rss);
      for (const [i, p] of procs.entries()) {
        const a = afterMany[i];
        const b = base[i];
        if (a === undefined || b === undefined) throw new Error('missing probe');
        s.figure(`${p.name} fds after closing`, a.fds);
        s.figure(`${p.name} RSS MiB after closing`, mib(afterManyRss[i] ?? 0));
        assert.ok(a.fds <= b.fds, `${p.name}: ${a.fds} descriptors after the streams closed, ${b.fds} before`);
      }

      // Short connections, in two halves: the first brings the allocator to its working size, the
      // second must not grow it further (a leak grows with every connection; a warm-up does not).
      const halves: { rss: number[]; probes: Probe[] }[] = [];
      let shortSeconds = 0;
      for (const half of [0, 1]) {
        const id = `short${half}`;
        const started = performance.now();
        await users.call(
          'load-start',
          { id, ...to, count: SHORT / 2, concurrency: 50, sizeMin: 64, sizeMax: 1024, replyMin: 64, replyMax: 1024, keyBase: 1_000_000 + half * SHORT, timeoutMs: 30_000 },
          5000,
        );
        const short = await users.call<LoadSummary>('load-wait', { id, timeoutMs: SOAK ? 600_000 : 90_000 }, SOAK ? 610_000 : 95_000);
        shortSeconds += (performance.now() - started) / 1000;
        if (half === 0) s.check(`${SHORT} short connections: all clean, 0 bad bytes`);
        assert.deepEqual(short.errors, {});
        assert.equal(short.clean, SHORT / 2);
        assert.equal(short.bad, 0);
        await targetsDone();
        const shortTarget = await targets.call<TargetStats>('target-stats', { port: FWD_PORT, clear: true }, 10_000);
        assert.equal(shortTarget.bad, 0);
        assert.equal(shortTarget.streams, SHORT / 2);
        const probes = await quiet();
        halves.push({ rss: procs.map((p) => p.stats().rss), probes });
      }
      s.figure('short connections per second', SHORT / shortSeconds);

      s.check(
        'after the short connections: descriptors and timers back to the start, heap within 4 MiB of the start, RSS within 24 MiB of its figure before them and growing < 8 MiB over the second half',
      );
      const [first, second] = halves;
      if (first === undefined || second === undefined) throw new Error('missing half');
      for (const [i, p] of procs.entries()) {
        const e = second.probes[i];
        const b = base[i];
        if (e === undefined || b === undefined) throw new Error('missing probe');
        const before = afterManyRss[i] ?? 0;
        const mid = first.rss[i] ?? 0;
        const end = second.rss[i] ?? 0;
        s.figure(`${p.name} RSS MiB before/half/end of short`, `${mib(before)}/${mib(mid)}/${mib(end)}`);
        s.figure(`${p.name} heap MiB base/end`, `${mib(b.heapUsed)}/${mib(e.heapUsed)}`);
        assert.ok(e.fds <= b.fds, `${p.name}: ${e.fds} descriptors at the end, ${b.fds} at the start`);
        assert.ok(e.timers <= b.timers, `${p.name}: ${e.timers} timers at the end, ${b.timers} at the start`);
        assert.ok(e.heapUsed <= b.heapUsed + 4 * MiB, `${p.name}: heap ${mib(e.heapUsed)} MiB at the end, ${mib(b.heapUsed)} MiB at the start`);
        assert.ok(end <= before + 24 * MiB, `${p.name}: RSS ${mib(end)} MiB after the short connections, ${mib(before)} MiB before`);
        assert.ok(end <= mid + 8 * MiB, `${p.name}: RSS grew from ${mib(mid)} to ${mib(end)} MiB over the second half`);
      }
    }),
  );
});
