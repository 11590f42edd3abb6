/**
 * The fault suite's network: a four-host chain of network namespaces.
 *
 *   users 10.231.1.1 <-> 10.231.1.2 srv 10.231.2.1 <-> 10.231.2.2 cli 10.231.3.1 <-> 10.231.3.2 targets
 *
 * No host forwards: users reach targets only through the pair. `srv` runs
 * `tcpipe -s LINK_PORT -p ... -t <users>` and `cli` runs
 * `tcpipe -c srv:LINK_PORT -t <targets> [-p ...]`, so a connection from
 * users to srv:P reaches targets:P, and one from targets to cli:P reaches
 * users:P. Ephemeral ports are 32768..60999 (fixed ports stay below) and
 * TIME_WAIT sockets are reused, so tens of thousands of short connections fit.
 */
import type { TestContext } from 'node:test';
import { createTopology, netnsAvailable, type Availability, type Topology } from './netns.js';
import { observationWindow } from './wait.js';

export const HOSTS = ['users', 'srv', 'cli', 'targets'] as const;
export type Host = (typeof HOSTS)[number];

export const LINK_PORT = 30000;
/** Entry port on srv (users -> targets) and on cli (targets -> users). */
export const FWD_PORT = 31001;
export const REV_PORT = 31002;

let availability: Promise<Availability> | null = null;

/** Root, `ip netns` and iptables inside a namespace; cached. */
export function faultsAvailable(): Promise<Availability> {
  availability ??= netnsAvailable({ need: ['iptables'] });
  return availability;
}

export function skipReason(a: Availability): string | false {
  return a.ok ? false : `fault injection needs network namespaces and iptables as root: ${a.reason}`;
}

export interface Chain {
  readonly topo: Topology<Host>;
  /** srv's address as users see it (users dial srv:P). */
  readonly srvForUsers: string;
  /** srv's address as cli sees it (the link). */
  readonly srvForCli: string;
  /** cli's address as targets see it (targets dial cli:P in the reverse direction). */
  readonly cliForTargets: string;
  /** The users host as srv sees it (srv's -t). */
  readonly usersForSrv: string;
  /** The targets host as cli sees it (cli's -t). */
  readonly targetsForCli: string;
}

export async function createChain(t: TestContext): Promise<Chain> {
  const topo = await createTopology({ hosts: HOSTS, forwarding: false, portRange: [32768, 60999] });
  t.after(() => topo.destroy());
  for (const h of HOSTS) await topo.execOk(h, 'sysctl', ['-q', '-w', 'net.ipv4.tcp_tw_reuse=1']);
  return {
    topo,
    srvForUsers: topo.addr('srv', 'users'),
    srvForCli: topo.addr('srv', 'cli'),
    cliForTargets: topo.addr('cli', 'targets'),
    usersForSrv: topo.addr('users', 'srv'),
    targetsForCli: topo.addr('targets', 'cli'),
  };
}

/** Blocks new inbound TCP on `host` except from its own loopback (the target host's firewall of scenario 1). */
export async function firewallNoInbound(topo: Topology<Host>, host: Host): Promise<void> {
  await topo.iptables(host, ['-A', 'INPUT', '-i', 'lo', '-j', 'ACCEPT']);
  await topo.iptables(host, ['-A', 'INPUT', '-m', 'conntrack', '--ctstate', 'ESTABLISHED,RELATED', '-j', 'ACCEPT']);
  await topo.iptables(host, ['-A', 'INPUT', '-p', 'tcp', '-m', 'conntrack', '--ctstate', 'NEW', '-j', 'DROP']);
}

/**
 * Cuts and heals the link between cli and srv for `durationMs`, cycling
 * through `cycle` ([cut ms, heal ms] pairs); ends healed. Returns the number
 * of cuts. The pauses are the fault's own timing, not waits for a state.
 */
export async function flapLink(chain: Chain, durationMs: number, cycle: readonly (readonly [number, number])[]): Promise<number> {
  const started = Date.now();
  let cuts = 0;
  for (let i = 0; Date.now() - started < durationMs; i++) {
    const [cutMs, healMs] = cycle[i % cycle.length] ?? [1000, 1000];
    await chain.topo.cutLink('cli', 'srv');
    cuts++;
    await observationWindow(cutMs);
    await chain.topo.healLink('cli', 'srv');
    await observationWindow(healMs);
  }
  return cuts;
}
