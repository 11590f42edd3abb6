/**
 * Scenario 9: hostile input on a live link. A fake partner on cli (the agent's
 * fake-run: the preface and a valid client HELLO, then frames written by hand
 * with src/protocol/encode.ts) is admitted by the real tcpipe server on srv
 * (--heartbeat=2), then misbehaves:
 *
 *   9a garbage            4 KiB of random bytes, first byte no frame type   GOAWAY protocol-error
 *   9b oversized DATA     OPEN, then a DATA header announcing 16 MiB       GOAWAY limit-exceeded (before the payload)
 *   9c oversized control  a PING header announcing 4 KiB                    GOAWAY limit-exceeded
 *   9d unknown stream     DATA for stream 4242, never opened               GOAWAY protocol-error
 *   9e stops reading      64 streams opened to a target that floods them,  heartbeat timeout within 2 s + slack;
 *                         the link never read again, pings still sent      the server's RSS stays bounded
 *
 * Each time the server closes that link with a logged reason, stays up, and
 * a real client pairs with it afterwards and relays intact. At the end the
 * server stops on SIGTERM with status 0: no crash.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { startAgent, type LoadSummary, type TargetStats } from '../helpers/agent-driver.js';
import { createChain, faultsAvailable, FWD_PORT, LINK_PORT, skipReason } from '../helpers/chain.js';
import { mib, startChainClient, startChainServer, type TcpipeProc } from '../helpers/chain-tcpipe.js';
import { lineTime, LINK_DOWN, LINK_UP } from '../helpers/logs.js';
import { MiB } from '../helpers/net.js';
import { recordSkipped, scenario } from '../helpers/scenario.js';
import { pollUntil } from '../helpers/wait.js';

const FLOOD_PORT = 31020;
const HEARTBEAT_S = 2;

interface FakeResult {
  goaway: { code: number; reason: string } | null;
  closed: boolean;
  decodeError: string | null;
  ms: number;
}

const CASES = [
  { key: '9a', mode: 'garbage', name: '9a. hostile link: garbage', code: 2, log: /not a frame|unknown frame|frame type/i },
  { key: '9b', mode: 'oversize-data', name: '9b. hostile link: oversized DATA', code: 4, log: /DATA frame of 16777216 bytes exceeds/ },
  { key: '9c', mode: 'oversize-control', name: '9c. hostile link: oversized control frame', code: 4, log: /control frame of 4096 bytes exceeds/ },
  { key: '9d', mode: 'unknown-stream', name: '9d. hostile link: frame for an unknown stream', code: 2, log: /unknown stream/i },
] as const;
const NAME_E = '9e. hostile link: partner stops reading';

/**
 * SIGTERM stops tcpipe within 2 s (main.ts gives up and exits after that). Bounded, so that a
 * client that does not stop fails here with its state, instead of using up the test's 120 s
 * (issue 17: a CI run's 9a took 119.6 s, and this was its only unbounded wait).
 */
async function clientStops(client: TcpipeProc): Promise<void> {
  const STOP_MS = 5000;
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<null>((resolve) => (timer = setTimeout(() => resolve(null), STOP_MS)));
  const exit = await Promise.race([client.exited, late]);
  clearTimeout(timer);
  if (exit !== null) return;
  const read = (file: string): string => {
    try {
      return readFileSync(file, 'utf8').trim();
    } catch (err) {
      return (err as NodeJS.ErrnoException).code ?? 'unreadable';
    }
  };
  // Field 3 of stat is the state (R running, S sleeping, D in the kernel); wchan says where it sleeps.
  const state = `state ${read(`/proc/${client.pid}/stat`).split(' ')[2] ?? '?'}, wchan ${read(`/proc/${client.pid}/wchan`)}`;
  assert.fail(`the client did not exit within ${STOP_MS} ms of SIGTERM (${state}); last output:\n${client.output().split('\n').slice(-20).join('\n')}`);
}

const avail = await faultsAvailable();
if (!avail.ok) {
  for (const c of CASES) recordSkipped(c.name, c.mode, avail.reason);
  recordSkipped(NAME_E, 'stop-reading', avail.reason);
}

describe('faults: hostile link input', { skip: skipReason(avail) }, () => {
  test('hostile link input', { timeout: 120_000 }, async (t) => {
    const chain = await createChain(t);
    const [fake, users, targets] = await Promise.all([startAgent(t, chain.topo, 'cli'), startAgent(t, chain.topo, 'users'), startAgent(t, chain.topo, 'targets')]);
    await users.call('listen', { port: FLOOD_PORT, mode: 'flood' }, 5000);
    await users.call('listen', { port: FWD_PORT + 100, mode: 'echo' }, 5000);
    await targets.call('listen', { port: FWD_PORT, mode: 'pattern' }, 5000);
    const server = await startChainServer(t, chain, ['-p', String(FWD_PORT), `--heartbeat=${HEARTBEAT_S}`]);
    const link = { host: chain.srvForCli, port: LINK_PORT };
    let keyBase = 1;

    /** A real client pairs, relays 1 MiB each way intact, and leaves. */
    const realClientPairs = async (): Promise<number> => {
      const from = server.mark();
      const client = await startChainClient(t, chain, [`--heartbeat=${HEARTBEAT_S}`]);
      const started = Date.now();
      await Promise.all([client.waitFor(LINK_UP, 10_000), server.waitFor(LINK_UP, 10_000, from)]);
      const pairedMs = Date.now() - started;
      const id = `real${keyBase}`;
      await users.call('load-start', { id, host: chain.srvForUsers, port: FWD_PORT, count: 2, concurrency: 2, sizeMin: MiB, replyMin: MiB, keyBase: (keyBase += 10) }, 5000);
      const done = await users.call<LoadSummary>('load-wait', { id, timeoutMs: 15_000 }, 20_000);
      assert.deepEqual(done.errors, {}, 'the real client relays');
      assert.equal(done.clean, 2);
      assert.equal(done.bad, 0);
      const downFrom = server.mark();
      client.child.kill('SIGTERM');
      await clientStops(client);
      await server.waitFor(LINK_DOWN, 5000, downFrom);
      return pairedMs;
    };

    for (const c of CASES) {
      await t.test(c.name, (st) =>
        scenario(st, c.name, `fake partner (valid preface and HELLO), then: ${c.mode}`, async (s) => {
          const from = server.mark();
          const r = await fake.call<FakeResult>('fake-run', { ...link, mode: c.mode, openPort: FWD_PORT + 100, timeoutMs: 5000 }, 10_000);
          s.figure('closed after (ms)', r.ms);
          s.figure('GOAWAY', r.goaway === null ? 'none' : `${r.goaway.code} ${r.goaway.reason}`);
          s.check(`the server closes the link within 1 s${c.code >= 0 ? `, with GOAWAY code ${c.code}` : ''}, and logs why`);
          assert.ok(r.closed, `the server did not close the link: ${JSON.stringify(r)}`);
          assert.ok(r.ms < 1000, `closed after ${r.ms} ms`);
          if (c.code >= 0) assert.equal(r.goaway?.code, c.code, JSON.stringify(r.goaway));
          const down = await server.waitFor(LINK_DOWN, 3000, from);
          assert.match(down, c.log);
          s.check('the server stays up; a real client then pairs and relays 1 MiB each way intact');
          assert.ok(server.alive(), 'the server is running');
          s.figure('real client paired after (ms)', await realClientPairs());
        }),
      );
    }

    await t.test(NAME_E, (st) =>
      scenario(st, NAME_E, 'fake partner opens 64 streams to a flooding target, never reads the link again, keeps sending pings', async (s) => {
        const rssBefore = server.stats().rss;
        let rssPeak = rssBefore;
        const sampler = setInterval(() => (rssPeak = Math.max(rssPeak, server.stats().rss)), 50);
        st.after(() => clearInterval(sampler));
        const from = server.mark();
        const startedAt = Date.now();
        await fake.call('fake-run', { ...link, mode: 'stop-reading', openPort: FLOOD_PORT, streams: 64, id: 'stuck' }, 10_000);
        const down = await server.waitFor(LINK_DOWN, HEARTBEAT_S * 1000 + 3000, from);
        clearInterval(sampler);
        const detectedMs = lineTime(down) - startedAt;
        s.figure('declared dead after (ms)', detectedMs);
        s.figure('server RSS MiB before/peak', `${mib(rssBefore)}/${mib(rssPeak)}`);
        s.check(`the server declares the link dead within the heartbeat (${HEARTBEAT_S} s + 500 ms), for a heartbeat reason, though the partner keeps sending`);
        assert.match(down, /heartbeat|no answer/i);
        assert.ok(detectedMs <= HEARTBEAT_S * 1000 + 500, `declared dead after ${detectedMs} ms`);
        const stopped = await fake.call<{ pings: number }>('fake-stop', { id: 'stuck' }, 5000);
        s.figure('pings the fake sent', stopped.pings);
        s.check('its RSS stays under its start + 32 MiB; the 64 target connections are closed');
        assert.ok(rssPeak <= rssBefore + 32 * MiB, `server RSS peaked at ${mib(rssPeak)} MiB from ${mib(rssBefore)} MiB`);
        await pollUntil(() => users.call<TargetStats>('target-stats', { port: FLOOD_PORT }, 5000), (v) => v.accepted === 64 && v.open === 0, 5000, 'the flood connections closed');
        s.check('a real client then pairs and relays; SIGTERM stops the server with status 0');
        s.figure('real client paired after (ms)', await realClientPairs());
        server.child.kill('SIGTERM');
        const exit = await server.exited;
        assert.deepEqual(exit, { code: 0, signal: null }, 'the server exits cleanly');
      }),
    );
  });
});
