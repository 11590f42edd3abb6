/**
 * Scenario 1: the seed's firewall, both ways at once.
 *
 * srv (tcpipe -s) may not dial out and accepts only the link port and its
 * relay port; cli (tcpipe -c) accepts no inbound connection at all, except on
 * its own loopback, where its target application and its local user live.
 * Relaying must work in both directions through the one link cli dialed.
 *
 *   users ──▶ srv:31001 ══link══ cli ──▶ 127.0.0.1:31001 (cli's app)
 *   cli's user ──▶ 127.0.0.1:31002 (cli -p) ══link══ srv ──▶ 127.0.0.1:31002 (srv's app)
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { startAgents, type ConnectFate, type LoadSummary, type TargetStats } from '../helpers/agent-driver.js';
import { createChain, faultsAvailable, firewallNoInbound, LINK_PORT, skipReason } from '../helpers/chain.js';
import { mib, startTcpipe } from '../helpers/chain-tcpipe.js';
import { LINK_UP } from '../helpers/logs.js';
import { MiB } from '../helpers/net.js';
import { recordSkipped, scenario } from '../helpers/scenario.js';
import { pollUntil } from '../helpers/wait.js';

const NAME = '1. seed firewall, both directions';
const INJECTED = 'srv: no dial-out, inbound only link+relay port; cli: no inbound except loopback';
const avail = await faultsAvailable();
if (!avail.ok) recordSkipped(NAME, INJECTED, avail.reason);

describe('faults: firewall', { skip: skipReason(avail) }, () => {
  test(NAME, { timeout: 60_000 }, (t) =>
    scenario(t, NAME, INJECTED, async (s) => {
      const chain = await createChain(t);
      const { topo } = chain;
      const [users, srvApp, cliApp, outsider] = await startAgents(t, topo, ['users', 'srv', 'cli', 'targets']);
      // Applications local to each tcpipe host, and a listener the firewall must hide.
      await cliApp.call('listen', { port: 31001, host: '127.0.0.1', mode: 'pattern' }, 5000);
      await srvApp.call('listen', { port: 31002, host: '127.0.0.1', mode: 'pattern' }, 5000);
      await srvApp.call('listen', { port: 31099, host: '0.0.0.0', mode: 'echo' }, 5000);
      await users.call('listen', { port: 31050, host: '0.0.0.0', mode: 'echo' }, 5000);

      await topo.firewallNoDialOut('srv', [LINK_PORT, 31001]);
      await firewallNoInbound(topo, 'cli');

      const server = await startTcpipe(t, topo, 'srv', 'server', ['-s', String(LINK_PORT), '-p', '31001', '-t', '127.0.0.1']);
      const client = await startTcpipe(t, topo, 'cli', 'client', ['-c', `${chain.srvForCli}:${LINK_PORT}`, '-t', '127.0.0.1', '-p', '31002']);
      await Promise.all([server.waitFor(LINK_UP, 10_000), client.waitFor(LINK_UP, 10_000)]);

      // The firewall holds: each probe must fail (no answer), while the same ports answer where allowed.
      s.check('srv cannot dial out; srv refuses non-relay ports; cli takes no inbound connection');
      const [srvOut, srvOther, cliIn, usersLocal] = await Promise.all([
        srvApp.call<ConnectFate>('probe-connect', { host: chain.usersForSrv, port: 31050, timeoutMs: 1500 }, 5000),
        users.call<ConnectFate>('probe-connect', { host: chain.srvForUsers, port: 31099, timeoutMs: 1500 }, 5000),
        outsider.call<ConnectFate>('probe-connect', { host: chain.cliForTargets, port: 31002, timeoutMs: 1500 }, 5000),
        users.call<ConnectFate>('probe-connect', { host: '127.0.0.1', port: 31050, timeoutMs: 1500 }, 5000),
      ]);
      assert.equal(usersLocal.connected, true, 'control: the users listener answers locally');
      assert.equal(srvOut.connected, false, `srv dialed out to users:31050: ${JSON.stringify(srvOut)}`);
      assert.equal(srvOther.connected, false, `users reached srv:31099: ${JSON.stringify(srvOther)}`);
      assert.equal(cliIn.connected, false, `targets reached cli:31002 from outside: ${JSON.stringify(cliIn)}`);

      // Both directions at once: 8 streams each way, 1-4 MiB each way per stream, every byte checked.
      s.check('8 streams each way at once, 1-4 MiB each way per stream: all clean, 0 bad bytes, target saw every byte');
      const common = { count: 8, concurrency: 8, sizeMin: MiB, sizeMax: 4 * MiB, replyMin: MiB, replyMax: 4 * MiB, timeoutMs: 30_000 };
      const started = performance.now();
      await Promise.all([
        users.call('load-start', { id: 'fwd', host: chain.srvForUsers, port: 31001, keyBase: 1000, ...common }, 5000),
        cliApp.call('load-start', { id: 'rev', host: '127.0.0.1', port: 31002, keyBase: 2000, ...common }, 5000),
      ]);
      const [fwd, rev] = await Promise.all([
        users.call<LoadSummary>('load-wait', { id: 'fwd', timeoutMs: 40_000 }, 45_000),
        cliApp.call<LoadSummary>('load-wait', { id: 'rev', timeoutMs: 40_000 }, 45_000),
      ]);
      const elapsed = (performance.now() - started) / 1000;
      // A user is done once its kernel took its last bytes and the reply came; its target reads a little later.
      const [atCli, atSrv] = await Promise.all([
        pollUntil(() => cliApp.call<TargetStats>('target-stats', { port: 31001 }, 5000), (v) => v.open === 0, 10_000, 'the targets on cli to finish'),
        pollUntil(() => srvApp.call<TargetStats>('target-stats', { port: 31002 }, 5000), (v) => v.open === 0, 10_000, 'the targets on srv to finish'),
      ]);
      for (const [what, load, target] of [
        ['users -> srv:31001 -> cli 127.0.0.1', fwd, atCli],
        ['cli 127.0.0.1:31002 -> srv 127.0.0.1', rev, atSrv],
      ] as const) {
        assert.deepEqual(load.errors, {}, `${what}: errors`);
        assert.equal(load.clean, 8, `${what}: clean streams`);
        assert.equal(load.bad, 0, `${what}: bad bytes at the user`);
        assert.equal(target.bad, 0, `${what}: bad bytes at the target`);
        assert.equal(target.streams, 8, `${what}: streams at the target`);
        assert.equal(target.recvBytes - 8 * 20, load.sent, `${what}: the target read every byte sent (headers aside)`);
      }
      const moved = fwd.sent + fwd.recv + rev.sent + rev.recv;
      s.figure('streams', 16);
      s.figure('MiB moved', mib(moved));
      s.figure('MiB/s', mib(moved) / elapsed);
      s.figure('bad bytes', fwd.bad + rev.bad + atCli.bad + atSrv.bad);
      assert.ok(server.alive() && client.alive());
    }),
  );
});
