/**
 * Scenario 2: a partner crashes (SIGKILL) with streams in flight both ways.
 *
 * 16 paced streams run each way (users -> srv:31001 -> targets, and
 * targets -> cli:31002 -> users). One instance is SIGKILLed; on the
 * surviving side every connection (users it accepted, target connections it
 * made) must close with a reset (never a FIN that looks orderly) within a
 * bound, measured from the kill. Restarted (a killed server after 3 s, so
 * that the client's backoff has grown), the victim pairs again: the client
 * within the retry delay it last announced, and the pair relays intact.
 */
import { describe, test } from 'node:test';
import type { TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { assertRelaysBothWays, percentile, startFlowAgents, startPacedLoads, targetStats, waitLoads } from '../helpers/agent-driver.js';
import { createChain, faultsAvailable, skipReason } from '../helpers/chain.js';
import { lastRetryDelay, PAIR_BOTH_WAYS, startChainClient, startChainPair, startChainServer, type TcpipeProc } from '../helpers/chain-tcpipe.js';
import { lineTime, LINK_DOWN, LINK_UP } from '../helpers/logs.js';
import { recordSkipped, scenario, type ScenarioContext } from '../helpers/scenario.js';

/** Every connection on the surviving side must be closed within this long after the kill. */
const CLOSE_BOUND_MS = 2000;
const STREAMS = 16;
const SERVER_DOWN_MS = 3000;

const NAMES = {
  server: '2a. server SIGKILLed with streams in flight',
  client: '2b. client SIGKILLed with streams in flight',
} as const;
const INJECTED = 'SIGKILL of one instance while 16 paced streams run each way; then restart';

const avail = await faultsAvailable();
if (!avail.ok) for (const name of Object.values(NAMES)) recordSkipped(name, INJECTED, avail.reason);

async function crash(t: TestContext, s: ScenarioContext, victimRole: 'server' | 'client'): Promise<void> {
  const chain = await createChain(t);
  const flows = await startFlowAgents(t, chain);
  const pair = await startChainPair(t, chain, PAIR_BOTH_WAYS);
  await startPacedLoads(flows, chain, 'crash', STREAMS);

  const victim: TcpipeProc = victimRole === 'server' ? pair.server : pair.client;
  const survivor: TcpipeProc = victimRole === 'server' ? pair.client : pair.server;
  const from = survivor.mark();
  const killedAt = Date.now();
  victim.child.kill('SIGKILL');
  await victim.exited;
  const downLine = await survivor.waitFor(LINK_DOWN, 5000, from);
  s.figure('survivor link down after (ms)', lineTime(downLine) - killedAt);

  const loads = await waitLoads(flows, 'crash', 10_000, { records: true });
  const targets = await targetStats(flows, { records: true });
  // Connections on the surviving side: fwd streams end at targets (cli's target connections) and
  // rev streams start at targets (cli's users) when the server dies; the users host otherwise.
  const survivorUsers = victimRole === 'server' ? loads.rev.records ?? [] : loads.fwd.records ?? [];
  const survivorTargets = victimRole === 'server' ? targets.fwd.records ?? [] : targets.rev.records ?? [];
  assert.equal(survivorUsers.length, STREAMS);
  assert.equal(survivorTargets.length, STREAMS);

  s.check(`every connection on the surviving side (${STREAMS} users, ${STREAMS} target connections) closed within ${CLOSE_BOUND_MS} ms`);
  const closeMs = [...survivorUsers.map((r) => r.closedAt), ...survivorTargets.map((r) => r.closedAt)].map((at) => at - killedAt);
  for (const ms of closeMs) assert.ok(ms >= 0 && ms <= CLOSE_BOUND_MS, `a surviving connection closed ${ms} ms after the kill (bound ${CLOSE_BOUND_MS})`);
  s.figure('survivor close p50 (ms)', percentile(closeMs, 50));
  s.figure('survivor close max (ms)', Math.max(...closeMs));

  s.check('each closed with a reset, none with an orderly FIN; no bad byte anywhere');
  for (const r of survivorUsers) assert.ok(r.err !== null && !r.sawEnd, `user stream ${r.key}: ${JSON.stringify(r)}`);
  for (const r of survivorTargets) assert.ok(r.err !== null && !r.sawEnd, `target connection ${r.key}: ${JSON.stringify(r)}`);
  const bad = loads.fwd.bad + loads.rev.bad + targets.fwd.bad + targets.rev.bad;
  assert.equal(bad, 0, 'bad bytes');
  s.figure('MiB moved before the crash', Math.round((loads.fwd.recv + loads.rev.recv + targets.fwd.recvBytes + targets.rev.recvBytes) / 1048576));

  // Restart the victim with the same command line; a dead server stays down 3 s, so that the client's backoff grows.
  if (victimRole === 'server') await new Promise((resolve) => setTimeout(resolve, SERVER_DOWN_MS));
  s.check('restarted, the pair re-forms (client within its announced backoff) and relays intact both ways');
  const restarted = victimRole === 'server' ? await startChainServer(t, chain, PAIR_BOTH_WAYS.serverArgs) : await startChainClient(t, chain, PAIR_BOTH_WAYS.clientArgs);
  const startLine = await restarted.waitFor(/ tcpipe \S+ (server|client): /, 1000);
  const client = victimRole === 'server' ? pair.client : restarted;
  const server = victimRole === 'server' ? restarted : pair.server;
  // `from` marks the survivor's output before the kill: the client's retry lines (server killed) follow it.
  const [upLine] = await Promise.all([client.waitFor(LINK_UP, 35_000, victimRole === 'server' ? from : 0), server.waitFor(LINK_UP, 35_000, victimRole === 'client' ? from : 0)]);
  const reconnectMs = lineTime(upLine) - lineTime(startLine);
  s.figure('re-paired after restart (ms)', reconnectMs);
  if (victimRole === 'server') {
    const announced = lastRetryDelay(client, from);
    s.figure('announced backoff (ms)', announced);
    assert.ok(announced > 0, 'the client announced a retry delay');
    // The announced delay is rounded to 0.1 s; scheduling and the handshake take a little more.
    assert.ok(reconnectMs <= announced + 600, `re-paired ${reconnectMs} ms after the restart; the client had announced ${announced} ms`);
  } else {
    assert.ok(reconnectMs <= 2000, `a restarted client paired ${reconnectMs} ms after starting`);
  }
  await assertRelaysBothWays(flows, chain, 'after', 500);
  assert.ok(survivor.alive(), 'the survivor is still running');
}

describe('faults: partner crash', { skip: skipReason(avail), concurrency: false }, () => {
  test(NAMES.server, { timeout: 90_000 }, (t) => scenario(t, NAMES.server, INJECTED, (s) => crash(t, s, 'server')));
  test(NAMES.client, { timeout: 90_000 }, (t) => scenario(t, NAMES.client, INJECTED, (s) => crash(t, s, 'client')));
});
