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
import { existsSync, mkdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { setTimeout as delay } from 'node:timers/promises';
import { join } from 'node:path';
import { processTree, waitForLog, type Child, type ProcessRegistry } from '../procs.js';
import { SSH_CIPHER, sshdBinary } from '../sshd.js';
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

export interface WanSsh {
  readonly dir: string;
  readonly config: string;
  readonly userKey: string;
  readonly knownHosts: string;
  readonly createdPrivsepDir: boolean;
}

const PRIVSEP_DIR = '/run/sshd';

/** A private sshd for B: throwaway keys in `tmp`, its own config; the system's ssh configuration is never read. */
export function prepareWanSsh(tmp: string): WanSsh {
  const dir = join(tmp, 'ssh');
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const hostKey = join(dir, 'host_ed25519');
  const userKey = join(dir, 'id_ed25519');
  for (const key of [hostKey, userKey]) {
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'tcpipe-wan-bench', '-f', key], { stdio: 'ignore' });
  }
  const authorizedKeys = join(dir, 'authorized_keys');
  writeFileSync(authorizedKeys, readFileSync(`${userKey}.pub`), { mode: 0o600 });
  const config = join(dir, 'sshd_config');
  writeFileSync(
    config,
    [
      `Port ${SSHD_PORT}`,
      `ListenAddress ${ADDR_B}`,
      `HostKey ${hostKey}`,
      `PidFile ${join(dir, 'sshd.pid')}`,
      `AuthorizedKeysFile ${authorizedKeys}`,
      'PermitRootLogin prohibit-password',
      'PubkeyAuthentication yes',
      'PasswordAuthentication no',
      'KbdInteractiveAuthentication no',
      'UsePAM no',
      'StrictModes no',
      'AllowTcpForwarding yes',
      'PermitOpen any',
      'X11Forwarding no',
      'AllowAgentForwarding no',
      'PrintMotd no',
      'UseDNS no',
      'Compression no',
      `Ciphers ${SSH_CIPHER}`,
      'MaxStartups 100',
      'LogLevel ERROR',
      '',
    ].join('\n'),
  );
  let createdPrivsepDir = false;
  if (!existsSync(PRIVSEP_DIR)) {
    mkdirSync(PRIVSEP_DIR, { mode: 0o755 });
    createdPrivsepDir = true;
  }
  return { dir, config, userKey, knownHosts: join(dir, 'known_hosts'), createdPrivsepDir };
}

export function cleanupWanSsh(setup: WanSsh): void {
  if (!setup.createdPrivsepDir) return;
  try {
    rmdirSync(PRIVSEP_DIR);
  } catch {
    // not empty, or gone
  }
}

function sshArgs(setup: WanSsh, forward: string): string[] {
  const options = [
    'IdentitiesOnly=yes',
    'BatchMode=yes',
    'StrictHostKeyChecking=no',
    `UserKnownHostsFile=${setup.knownHosts}`,
    `Ciphers=${SSH_CIPHER}`,
    'Compression=no',
    'ExitOnForwardFailure=yes',
    'ControlMaster=no',
    'ControlPath=none',
    'LogLevel=ERROR',
  ];
  return ['-F', '/dev/null', '-N', '-T', '-p', String(SSHD_PORT), '-i', setup.userKey, ...options.flatMap((o) => ['-o', o]), '-L', forward, `root@${ADDR_B}`];
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
      entrySide.push(registry.spawn(`ssh-${tag}`, 'ip', inA('ssh', sshArgs(env.ssh, `127.0.0.1:${port}:127.0.0.1:${port}`))));
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
  let rssKiB = 0;
  let peakKiB = 0;
  let processes = 0;
  for (const s of processTree(children.map((c) => c.pid))) {
    let text = '';
    try {
      text = readFileSync(`/proc/${s.pid}/status`, 'utf8');
    } catch {
      continue;
    }
    const rss = /^VmRSS:\s+(\d+) kB/m.exec(text);
    const hwm = /^VmHWM:\s+(\d+) kB/m.exec(text);
    const name = /^Name:\s+(\S+)/m.exec(text)?.[1] ?? '';
    // The wrappers (bash, ip) exec into the relay: nothing else of theirs is running.
    if (rss === null || hwm === null || name === 'bash') continue;
    rssKiB += Number(rss[1]);
    peakKiB += Number(hwm[1]);
    processes++;
  }
  return { rssKiB, peakKiB, processes };
}
