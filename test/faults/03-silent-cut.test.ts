/**
 * Scenario 3: a silent cut. iptables DROP on the link both ways (no FIN, no
 * RST ever arrives) while 16 paced streams run each way, with --heartbeat=2.
 *
 * Both sides must declare the link dead within the heartbeat timeout (not
 * before a third of it: the last answer may precede the cut by one ping
 * interval, and PROTOCOL.md's "2/3 to all" counts from that answer) and reset every user and
 * target connection. The cut lasts 4 s; once healed, the client must pair
 * again within its retry schedule: the delay it announced, or the SYN
 * retransmission of a dial already under way (the kernel retransmits after
 * 1, 2 and 4 s; tcpipe gives a dial 10 s).
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { assertRelaysBothWays, percentile, startFlowAgents, startPacedLoads, targetStats, waitLoads } from '../helpers/agent-driver.js';
import { createChain, faultsAvailable, skipReason } from '../helpers/chain.js';
import { lastRetryDelay, PAIR_BOTH_WAYS, startChainPair } from '../helpers/chain-tcpipe.js';
import { lineTime, LINK_DOWN, LINK_UP } from '../helpers/logs.js';
import { recordSkipped, scenario } from '../helpers/scenario.js';

const HEARTBEAT_S = 2;
const CUT_MS = 4000;
const STREAMS = 16;
const NAME = '3. silent cut of the link (--heartbeat=2)';
const INJECTED = `iptables DROP both ways on the link for ${CUT_MS / 1000} s, 16 paced streams each way in flight`;

const avail = await faultsAvailable();
if (!avail.ok) recordSkipped(NAME, INJECTED, avail.reason);

describe('faults: silent cut', { skip: skipReason(avail) }, () => {
  test(NAME, { timeout: 90_000 }, (t) =>
    scenario(t, NAME, INJECTED, async (s) => {
      const chain = await createChain(t);
      const flows = await startFlowAgents(t, chain);
      const hb = [`--heartbeat=${HEARTBEAT_S}`];
      const { server, client } = await startChainPair(t, chain, {
        serverArgs: [...PAIR_BOTH_WAYS.serverArgs, ...hb],
        clientArgs: [...PAIR_BOTH_WAYS.clientArgs, ...hb],
      });
      await startPacedLoads(flows, chain, 'cut', STREAMS);

      const serverFrom = server.mark();
      const clientFrom = client.mark();
      const cutAt = Date.now();
      await chain.topo.cutLink('cli', 'srv');
      const [serverDown, clientDown] = await Promise.all([
        server.waitFor(LINK_DOWN, HEARTBEAT_S * 1000 + 3000, serverFrom),
        client.waitFor(LINK_DOWN, HEARTBEAT_S * 1000 + 3000, clientFrom),
      ]);
      const serverMs = lineTime(serverDown) - cutAt;
      const clientMs = lineTime(clientDown) - cutAt;
      s.figure('server detected (ms)', serverMs);
      s.figure('client detected (ms)', clientMs);
      // The last answer may come up to one ping interval (1/3) before the cut, so measured from the cut
      // detection lands between 1/3 and all of the timeout (2/3 to all, measured from the last answer).
      s.check(`both sides declare the link dead between 1/3 of the heartbeat and the heartbeat (+250 ms scheduling) after the cut, for a heartbeat reason`);
      for (const [who, ms, line] of [
        ['server', serverMs, serverDown],
        ['client', clientMs, clientDown],
      ] as const) {
        assert.ok(ms >= (HEARTBEAT_S * 1000) / 3 - 250, `${who} declared the link dead after only ${ms} ms`);
        assert.ok(ms <= HEARTBEAT_S * 1000 + 250, `${who} declared the link dead after ${ms} ms (heartbeat ${HEARTBEAT_S} s)`);
        assert.match(line, /heartbeat|no answer/i, `${who}: the reason`);
      }

      s.check('every user and target connection on both sides reset (no FIN) within 500 ms of its side declaring the link dead');
      const loads = await waitLoads(flows, 'cut', 10_000, { records: true });
      const targets = await targetStats(flows, { records: true });
      // fwd: users on srv's side, targets on cli's side; rev: the other way round.
      const srvSide = [...(loads.fwd.records ?? []), ...(targets.rev.records ?? [])];
      const cliSide = [...(loads.rev.records ?? []), ...(targets.fwd.records ?? [])];
      assert.equal(srvSide.length, 2 * STREAMS);
      assert.equal(cliSide.length, 2 * STREAMS);
      const lags: number[] = [];
      for (const [side, records, downAt] of [
        ['srv', srvSide, lineTime(serverDown)],
        ['cli', cliSide, lineTime(clientDown)],
      ] as const) {
        for (const r of records) {
          assert.ok(r.err !== null && !r.sawEnd, `${side} side stream ${r.key} did not end with a reset: ${JSON.stringify(r)}`);
          const lag = r.closedAt - downAt;
          lags.push(lag);
          assert.ok(lag <= 500, `${side} side stream ${r.key} closed ${lag} ms after its link went down`);
        }
      }
      s.figure('connections closed', lags.length);
      s.figure('close after link down max (ms)', Math.max(...lags));
      assert.equal(loads.fwd.bad + loads.rev.bad + targets.fwd.bad + targets.rev.bad, 0, 'bad bytes');

      // Keep the cut a while, then heal.
      const left = cutAt + CUT_MS - Date.now();
      if (left > 0) await new Promise((resolve) => setTimeout(resolve, left));
      const healFrom = client.mark();
      const healedAt = Date.now();
      await chain.topo.healLink('cli', 'srv');
      const [upLine] = await Promise.all([client.waitFor(LINK_UP, 30_000, clientFrom), server.waitFor(LINK_UP, 30_000, serverFrom)]);
      const reconnectMs = lineTime(upLine) - healedAt;
      const announced = lastRetryDelay(client, clientFrom);
      s.figure('re-paired after heal (ms)', reconnectMs);
      s.figure('last announced retry delay (ms)', announced);
      s.check('after healing, the client pairs within max(announced retry delay, 4 s SYN retransmission) + 1 s');
      assert.ok(
        reconnectMs <= Math.max(announced, 4000) + 1000,
        `re-paired ${reconnectMs} ms after the heal (last announced delay ${announced} ms); client log:\n${client.since(healFrom).join('\n')}`,
      );

      s.check('the new link relays intact both ways');
      await assertRelaysBothWays(flows, chain, 'after', 500);
      s.figure('p50 close after link down (ms)', percentile(lags, 50));
    }),
  );
});
