/**
 * The four ways the WAN bench's user in namespace A reaches its sink in B, all
 * over the same emulated link (bench/wan/emulation.ts):
 *
 *   direct         user (A) ───────────────────────────────────────────────▶ sink 10.233.0.2:P (B)
 *   ssh -L         user ─▶ ssh -L 127.0.0.1:P (A) ══ ssh ══ sshd 10.233.0.2:7022 (B) ─▶ 127.0.0.1:P
 *   tcpipe         user ─▶ tcpipe -s 7003 -p 127.0.0.1:P (A) ══ link ══ tcpipe -c 10.233.0.1:7003 -t 127.0.0.1 (B) ─▶ 127.0.0.1:P
 *   tcpipe+secret  the same with TCPIPE_SECRET (TLS 1.3 keyed by the secret), link port 7004
 *
 * Each path has its own port P (the sink listens on all of them), so nothing
 * one path left in TIME_WAIT touches the next.
 */
import { readFileSync } from 'node:fs';
import { setTimeout as delay } from 'node:timers/promises';
import { join } from 'node:path';
import { sumKiB, waitForLog, type Child, type ProcessRegistry } from '../procs.js';
import { ensurePrivsepDir, prepareSsh, removePrivsepDir, sshClientArgs, sshdBinary, type SshSetup } from '../sshd.js';
import type { Endpoint } from './api.js';
import { ADDR_A, ADDR_B, waitTcp, type EmulatedLink } from './emulation.js';

export const WAN_PATHS = ['direct', 'ssh', 'tcpipe', 'tcpipe-secret'] as const;
export type WanPathId = (typeof WAN_PATHS)[number];

export const WAN_LABELS: Readonly<Record<WanPathId, string>> = Object.freeze({
  direct: 'direct TCP',
  ssh: 'ssh -L',
  tcpipe: 'tcpipe',
  'tcpipe-secret': 'tcpipe+secret',
});

/** The user's port on each path, also the sink's. */
export const PATH_PORT: Readonly<Record<WanPathId, number>> = Object.freeze({
  direct: 7101,
  ssh: 7102,
  tcpipe: 7103,
  'tcpipe-secret': 7104,
});
const LINK_PORT = { tcpipe: 7003, 'tcpipe-secret': 7004 } as const;
export const SSHD_PORT = 7022;

/** The private sshd in B (sshd.ts), and whether this run created /run/sshd. */
export interface WanSsh extends SshSetup {
  readonly createdPrivsepDir: boolean;
}

export function prepareWanSsh(tmp: string): WanSsh {
  return { ...prepareSsh(tmp, ADDR_B, SSHD_PORT), createdPrivsepDir: ensurePrivsepDir() };
}

export function cleanupWanSsh(setup: WanSsh): void {
  if (setup.createdPrivsepDir) removePrivsepDir();
}

export interface PathEnv {
  readonly registry: ProcessRegistry;
  readonly distRoot: string;
  readonly ssh: WanSsh | null;
  readonly secret: string;
  /** Extra node flags for both tcpipe processes (the profiler, the window trace). */
  readonly tcpipeNodeFlags: (side: 'entry' | 'exit') => readonly string[];
  /** Extra command-line arguments for both tcpipe processes. */
  readonly tcpipeArgs: readonly string[];
  /** Extra environment for both tcpipe processes. */
  readonly tcpipeEnv: (side: 'entry' | 'exit') => NodeJS.ProcessEnv;
}

export interface RunningPath {
  readonly id: WanPathId;
  readonly entry: Endpoint;
  /** Relay processes in A (the entry side) and in B (the exit side); their descendants count with them. */
  readonly entrySide: readonly Child[];
  readonly exitSide: readonly Child[];
  stop(): Promise<void>;
}

export async function startPath(id: WanPathId, link: EmulatedLink, env: PathEnv): Promise<RunningPath> {
  const { registry } = env;
  const port = PATH_PORT[id];
  const entrySide: Child[] = [];
  const exitSide: Child[] = [];
  const inA = (cmd: string, args: readonly string[]): string[] => ['netns', 'exec', link.a.ns, cmd, ...args];
  const inB = (cmd: string, args: readonly string[]): string[] => ['netns', 'exec', link.b.ns, cmd, ...args];
  const running = (entry: Endpoint): RunningPath => ({
    id,
    entry,
    entrySide,
    exitSide,
    // Entry side first: the exit side sees its partner leave, as in real life.
    stop: async () => {
      for (const child of [...entrySide, ...exitSide]) await registry.stop(child, 2000);
    },
  });
  const tag = link.profile.id;
  switch (id) {
    case 'direct':
      return running({ host: ADDR_B, port });
    case 'ssh': {
      if (env.ssh === null) throw new Error('ssh is not available');
      const sshd = registry.spawn(`sshd-${tag}`, 'ip', inB(sshdBinary(), ['-D', '-e', '-f', env.ssh.config]));
      exitSide.push(sshd);
      await waitTcp(link.b.ns, ADDR_B, SSHD_PORT, 10_000);
      entrySide.push(registry.spawn(`ssh-${tag}`, 'ip', inA('ssh', sshClientArgs(env.ssh, [`127.0.0.1:${port}:127.0.0.1:${port}`]))));
      return running({ host: '127.0.0.1', port });
    }
    case 'tcpipe':
    case 'tcpipe-secret': {
      const cli = join(env.distRoot, 'src', 'cli', 'main.js');
      const linkPort = LINK_PORT[id];
      const envFor = (side: 'entry' | 'exit'): NodeJS.ProcessEnv => {
        const e: NodeJS.ProcessEnv = { ...process.env, ...env.tcpipeEnv(side) };
        if (id === 'tcpipe-secret') e['TCPIPE_SECRET'] = env.secret;
        else delete e['TCPIPE_SECRET'];
        return e;
      };
      // The server holds the entry port (as in the seed's example) in A; the client dials it from B.
      const server = registry.spawn(
        `${id}-entry-${tag}`,
        'ip',
        inA(process.execPath, [...env.tcpipeNodeFlags('entry'), cli, '-s', String(linkPort), '-p', `127.0.0.1:${port}`, ...env.tcpipeArgs]),
        { env: envFor('entry') },
      );
      entrySide.push(server);
      if (!(await waitForLog(server, /link port/, 10_000))) throw new Error(`${id} server did not start: ${readFileSync(server.logPath, 'utf8')}`);
      const client = registry.spawn(
        `${id}-exit-${tag}`,
        'ip',
        inB(process.execPath, [...env.tcpipeNodeFlags('exit'), cli, '-c', `${ADDR_A}:${linkPort}`, '-t', '127.0.0.1', ...env.tcpipeArgs]),
        { env: envFor('exit') },
      );
      exitSide.push(client);
      for (const c of [server, client]) {
        if (!(await waitForLog(c, /link up/, 15_000))) throw new Error(`${c.name}: no link: ${readFileSync(c.logPath, 'utf8')}`);
      }
      // The workloads measure a link in use: let its first heartbeat measure the round trip
      // (each side pings at once; the answer takes one RTT), as any link that has carried traffic has.
      await delay(3 * link.profile.rttMs + 100);
      return running({ host: '127.0.0.1', port });
    }
  }
}

export interface Rss {
  /** Current RSS, KiB, summed over the processes. */
  readonly rssKiB: number;
  /** Peak RSS (VmHWM) of each process, summed, KiB. */
  readonly peakKiB: number;
  readonly processes: number;
}

/** RSS and peak RSS of the processes and their descendants, from /proc/<pid>/status. */
export function rssOf(children: readonly Child[]): Rss {
  // The wrappers (bash, ip) exec into the relay: nothing else of theirs is running.
  const notBash = (text: string): boolean => /^Name:\s+(\S+)/m.exec(text)?.[1] !== 'bash';
  const { sums, processes } = sumKiB(children.map((c) => c.pid), 'status', ['VmRSS', 'VmHWM'], notBash);
  return { rssKiB: sums[0] ?? 0, peakKiB: sums[1] ?? 0, processes };
}
