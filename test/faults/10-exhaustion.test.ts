/**
 * Scenario 10: resource exhaustion.
 *
 * 10a  The server runs with `ulimit -n 48` (about 25 descriptors free once
 *      Node and the link have theirs). 10 user connections are held open
 *      (half their data sent, the reply read); then 60 more arrive at once.
 *      New connections beyond the limit must be refused (the user sees a
 *      reset or a close, within a bound, never a hang), the server must keep
 *      running, the link must stay up, and the 10 held
 *      connections must go on relaying (their second halves arrive intact).
 *      Once connections close, new ones work again. (Nothing is logged for
 *      those refusals: libuv accepts and closes them itself, with its spare
 *      descriptor, before Node sees them; the figure records it.)
 * 10b  The same server as the exit side (the client's -p 31002 -> the
 *      server dials users:31002) while out of descriptors: the user is
 *      reset, both sides log the reason, and the RESET code is `limit`
 *      (PROTOCOL.md: "A limit was reached on the exit side (streams, file
 *      descriptors)"), seen in the entry side's tcpipe_refused_total
 *      (BUG-3, fixed in 5848299).
 * 10c  A port already in use at start-up (an entry port, then the link
 *      port): one clear error line and exit status 1.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { startAgent, type Agent, type ConnectFate, type Json, type LoadSummary, type TargetStats } from '../helpers/agent-driver.js';
import { createChain, faultsAvailable, FWD_PORT, LINK_PORT, REV_PORT, skipReason } from '../helpers/chain.js';
import { startChainPair, startTcpipe } from '../helpers/chain-tcpipe.js';
import { LINK_DOWN, LINK_UP } from '../helpers/logs.js';
import { KiB } from '../helpers/net.js';
import { Flags } from '../helpers/pattern.js';
import { recordSkipped, scenario } from '../helpers/scenario.js';
import { pollUntil } from '../helpers/wait.js';

const NOFILE = 48;
const HELD = 10;
const BURST = 60;
const NAMES = {
  entry: '10a. out of descriptors (entry side)',
  exit: '10b. out of descriptors (exit side)',
  inUse: '10c. port in use at start-up',
} as const;
const INJECTED = {
  entry: `server under ulimit -n ${NOFILE}: ${HELD} connections held, then ${BURST} more at once`,
  exit: `server under ulimit -n ${NOFILE} must dial a target for the client's user`,
  inUse: 'another process holds the entry port, then the link port',
} as const;

const avail = await faultsAvailable();
if (!avail.ok) for (const k of Object.keys(NAMES) as (keyof typeof NAMES)[]) recordSkipped(NAMES[k], INJECTED[k], avail.reason);

/** Opens BURST held connections at once as load `id` and waits until each was relayed or refused. */
async function burstOf(users: Agent, id: string, args: Record<string, Json>, what: string): Promise<LoadSummary> {
  await users.call('load-start', { id, ...args, count: BURST, concurrency: BURST }, 5000);
  return pollUntil(
    () => users.call<LoadSummary>('load-stats', { id }, 5000),
    (v) => v.ready + v.finished >= BURST,
    15_000,
    what,
    200,
  );
}

describe('faults: resource exhaustion', { skip: skipReason(avail) }, () => {
  test('out of descriptors', { timeout: 90_000 }, async (t) => {
    const chain = await createChain(t);
    const [users, targets] = await Promise.all([startAgent(t, chain.topo, 'users'), startAgent(t, chain.topo, 'targets')]);
    await targets.call('listen', { port: FWD_PORT, mode: 'pattern' }, 5000);
    await users.call('listen', { port: REV_PORT, mode: 'echo' }, 5000);
    const { server, client } = await startChainPair(t, chain, {
      serverArgs: ['-p', String(FWD_PORT), '-v'],
      clientArgs: ['-p', String(REV_PORT), '--metrics=127.0.0.1:39100', '-v'],
      serverNofile: NOFILE,
    });
    const metricsAgent = await startAgent(t, chain.topo, 'cli');
    const to = { host: chain.srvForUsers, port: FWD_PORT };
    const hold = { hold: true, holdFraction: 0.5, sizeMin: 64 * KiB, replyMin: 4 * KiB, flags: Flags.TARGET_WAIT_EOF, timeoutMs: 60_000 };

    await t.test(NAMES.entry, (st) =>
      scenario(st, NAMES.entry, INJECTED.entry, async (s) => {
        const serverFrom = server.mark();
        await users.call('load-start', { id: 'held', ...to, ...hold, count: HELD, concurrency: HELD, keyBase: 1 }, 5000);
        await users.call('load-ready', { id: 'held', ready: HELD, timeoutMs: 10_000 }, 15_000);
        const fdsHeld = server.stats().fds;
        s.figure('server fds with the held connections', fdsHeld);

        const burst = await burstOf(users, 'burst', { ...to, ...hold, keyBase: 1000 }, 'every burst connection relayed or refused');
        const refused = burst.finished;
        s.figure('burst relayed', burst.ready);
        s.figure('burst refused', refused);
        s.figure('refusals seen by users', JSON.stringify(burst.errors));
        s.check(`beyond the limit, new connections are refused (a reset or close, within 15 s), the others relayed`);
        assert.ok(refused > 0, 'no connection was refused: the limit was not reached');
        assert.ok(burst.ready > 0, 'no burst connection got through');
        // libuv accepts and closes these itself (its EMFILE reserve-descriptor trick), before Node
        // sees them: tcpipe cannot log them. Reported, not asserted.
        const logged = server.since(serverFrom).filter((l) => /EMFILE|too many open files/i.test(l));
        s.figure('server log lines about it', logged.length);
        s.check('the server keeps running and the link stays up');
        assert.ok(server.alive() && client.alive(), 'both instances run');
        assert.equal(server.since(serverFrom).filter((l) => LINK_DOWN.test(l)).length, 0, 'the link went down');

        s.check(`the ${HELD} held connections keep relaying: their second halves arrive, all clean, 0 bad bytes`);
        const held = await users.call<LoadSummary>('load-wait', { id: 'held', release: true, timeoutMs: 15_000 }, 20_000);
        assert.deepEqual(held.errors, {});
        assert.equal(held.clean, HELD);
        assert.equal(held.bad, 0);
        const rest = await users.call<LoadSummary>('load-wait', { id: 'burst', release: true, timeoutMs: 15_000 }, 20_000);
        assert.equal(rest.bad, 0);
        assert.equal(rest.clean, burst.ready, 'burst connections that got through end cleanly');
        await pollUntil(() => targets.call<TargetStats>('target-stats', { port: FWD_PORT }, 5000), (v) => v.open === 0, 10_000, 'the target to finish');
        const atTarget = await targets.call<TargetStats>('target-stats', { port: FWD_PORT, clear: true }, 5000);
        assert.equal(atTarget.bad, 0);

        s.check('once they close, new connections work again');
        await pollUntil(() => server.stats().fds, (n) => n < fdsHeld - HELD + 2, 10_000, 'the server to release descriptors');
        await users.call('load-start', { id: 'again', ...to, count: 10, concurrency: 5, sizeMin: 16 * KiB, replyMin: 16 * KiB, keyBase: 5000 }, 5000);
        const again = await users.call<LoadSummary>('load-wait', { id: 'again', timeoutMs: 15_000 }, 20_000);
        assert.deepEqual(again.errors, {});
        assert.equal(again.clean, 10);
      }),
    );

    await t.test(NAMES.exit, (st) =>
      scenario(
        st,
        NAMES.exit,
        INJECTED.exit,
        async (s) => {
          // Use the server's descriptors up, then a user on targets dials cli:31002 (the server must dial users:31002).
          const fill = await burstOf(users, 'fill', { ...to, ...hold, keyBase: 9000 }, 'the server out of descriptors');
          assert.ok(fill.finished > 0, 'the server did not run out of descriptors');
          const clientFrom = client.mark();
          const serverFrom = server.mark();
          const fate = await targets.call<ConnectFate>('probe-connect', { host: chain.cliForTargets, port: REV_PORT, send: 16, timeoutMs: 5000 }, 8000);
          s.figure('user closed after (ms)', fate.ms);
          s.check('the user is reset promptly, both sides log the reason');
          assert.ok(fate.connected && fate.closed, JSON.stringify(fate));
          assert.equal(fate.err, 'ECONNRESET', JSON.stringify(fate));
          assert.ok(fate.ms < 2000);
          const why = await client.waitFor(new RegExp(`${REV_PORT}.*(EMFILE|too many open files)`, 'i'), 3000, clientFrom);
          await server.waitFor(new RegExp(`${REV_PORT}.*(EMFILE|too many open files)`, 'i'), 3000, serverFrom);
          s.figure('entry side logged', why.replace(/^\S+ +\S+ +/, '').slice(0, 140));
          await users.call('load-wait', { id: 'fill', release: true, timeoutMs: 15_000 }, 20_000);
          const metrics = await metricsAgent.call<{ status: number; body: string }>('fetch', { url: 'http://127.0.0.1:39100/metrics' }, 5000);
          const kinds = metrics.body.split('\n').filter((l) => l.startsWith('tcpipe_refused_total{'));
          s.figure('entry side refusals', kinds.join(' '));
          s.check('the RESET code is limit (PROTOCOL.md), seen as tcpipe_refused_total{reason="limit"} on the entry side');
          assert.ok(
            kinds.some((l) => /reason="limit"\} [1-9]/.test(l)),
            `the entry side counted the refusal as ${kinds.join(', ') || 'nothing'}`,
          );
        },
      ),
    );
    assert.ok(server.alive() && client.alive(), 'no crash');
    assert.equal(server.since(0).filter((l) => LINK_DOWN.test(l)).length, 0, 'the link never went down');
    assert.ok(server.since(0).some((l) => LINK_UP.test(l)));
  });

  test(NAMES.inUse, { timeout: 30_000 }, (t) =>
    scenario(t, NAMES.inUse, INJECTED.inUse, async (s) => {
      const chain = await createChain(t);
      const squatter = await startAgent(t, chain.topo, 'srv');
      await squatter.call('listen', { port: FWD_PORT, mode: 'echo' }, 5000);
      // Starts a server whose `busy` port is taken: it must exit 1 within 5 s with one error line naming the port.
      const refusesToStart = async (busy: number, linkPort: number, entryPort: number): Promise<string> => {
        const proc = await startTcpipe(t, chain.topo, 'srv', 'server', ['-s', String(linkPort), '-p', String(entryPort)], { waitStarted: false });
        const exit = await Promise.race([proc.exited, new Promise<null>((resolve) => setTimeout(() => resolve(null), 5000))]);
        assert.deepEqual(exit, { code: 1, signal: null }, proc.output());
        const errors = proc.since(0).filter((l) => /ERROR/.test(l));
        assert.equal(errors.length, 1, proc.output());
        assert.match(errors[0] ?? '', new RegExp(`${busy}.*(in use|EADDRINUSE)`, 'i'));
        return (errors[0] ?? '').replace(/^\S+ +\S+ +/, '');
      };
      s.check('an entry port in use: one error line naming the port, exit status 1, within 5 s');
      s.figure('entry port error', await refusesToStart(FWD_PORT, LINK_PORT, FWD_PORT));
      s.check('the link port in use: the same');
      await squatter.call('listen', { port: LINK_PORT, mode: 'echo' }, 5000);
      s.figure('link port error', await refusesToStart(LINK_PORT, LINK_PORT, FWD_PORT + 50));
    }),
  );
});
