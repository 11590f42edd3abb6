/**
 * What every WAN bench run shares: its temporary directory, the process
 * registry, the compiled delay helper, the ssh keys, the secret, the
 * application processes of a profile, and the cleanup that runs on exit and
 * on SIGINT/SIGTERM/SIGHUP whatever happened.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { IpcClient } from '../ipc.js';
import { ProcessRegistry, setClockTicks, type Child } from '../procs.js';
import type { SinkApi, UserApi } from './api.js';
import { cleanupSync, compileHelper, helperBuildable, sweepStale, type EmulatedLink } from './emulation.js';
import type { WanOptions } from './options.js';
import { PATH_PORT, cleanupWanSsh, prepareWanSsh, type PathEnv, type WanSsh } from './paths.js';
import type { Machine } from './report.js';

export const distRoot = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const repoRoot = join(distRoot, '..');
export const startedAt = Date.now();

export function log(line: string): void {
  process.stderr.write(`[wan ${((Date.now() - startedAt) / 1000).toFixed(1).padStart(6)}s] ${line}\n`);
}

/** The port every profile's connect-time check dials (the sink listens on it too). */
export const CHECK_PORT = 7100;

function installMissing(o: WanOptions, needSsh: boolean): void {
  const have = helperBuildable();
  const hasSsh = spawnSync('bash', ['-c', 'command -v ssh && command -v ssh-keygen'], { stdio: 'ignore' }).status === 0 && existsSync('/usr/sbin/sshd');
  const packages = [
    ...(have.gcc ? [] : ['gcc', 'libc6-dev']),
    ...(have.headers ? [] : ['libnetfilter-queue-dev']),
    ...(have.iptables ? [] : ['iptables']),
    ...(!needSsh || hasSsh ? [] : ['openssh-client', 'openssh-server']),
  ];
  if (packages.length === 0) return;
  if (!o.install) throw new Error(`missing: ${packages.join(' ')} (and --no-install was given, or --smoke)`);
  log(`installing ${packages.join(' ')} with apt-get`);
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  execFileSync('apt-get', ['update', '-q'], { stdio: 'ignore', env });
  execFileSync('apt-get', ['install', '-y', '-q', '--no-install-recommends', ...packages], { stdio: 'ignore', env });
}

export function machine(): Machine {
  const cpuinfo = readFileSync('/proc/cpuinfo', 'utf8');
  const model = /^model name\s*:\s*(.+)$/m.exec(cpuinfo)?.[1]?.trim() ?? 'unknown CPU';
  const git = (args: string[]): string => spawnSync('git', args, { cwd: repoRoot, encoding: 'utf8' }).stdout?.trim() ?? '';
  const dirty = git(['status', '--porcelain', '--', 'src']) !== '';
  const ssh = spawnSync('ssh', ['-V'], { encoding: 'utf8' });
  return {
    nproc: os.cpus().length,
    model,
    kernel: os.release(),
    node: process.version,
    ssh: `${ssh.stderr ?? ''}${ssh.stdout ?? ''}`.trim().split('\n')[0] ?? 'no ssh',
    commit: `${git(['rev-parse', '--short', 'HEAD']) || 'unknown'}${dirty ? '+dirty' : ''}`,
    loadAverageAtStart: os.loadavg(),
  };
}

export interface Apps {
  readonly user: IpcClient<UserApi>;
  readonly sink: IpcClient<SinkApi>;
  readonly children: readonly Child[];
}

export async function startApps(registry: ProcessRegistry, link: EmulatedLink): Promise<Apps> {
  const script = join(distRoot, 'bench', 'wan', 'apps.js');
  const sinkChild = registry.spawn(`sink-${link.profile.id}`, 'ip', ['netns', 'exec', link.b.ns, process.execPath, script, 'sink'], { ipc: true });
  const userChild = registry.spawn(`user-${link.profile.id}`, 'ip', ['netns', 'exec', link.a.ns, process.execPath, script, 'user'], { ipc: true });
  const sink = new IpcClient<SinkApi>(sinkChild.proc, 'sink');
  const user = new IpcClient<UserApi>(userChild.proc, 'user');
  await sink.call('listen', { ports: [CHECK_PORT, ...Object.values(PATH_PORT)] });
  return { user, sink, children: [sinkChild, userChild] };
}

export interface Session {
  readonly tmp: string;
  readonly registry: ProcessRegistry;
  readonly delayBinary: string;
  readonly ssh: WanSsh | null;
  readonly secret: string;
  failed: boolean;
}

/** Everything a run needs before its first profile; cleanup handlers armed. */
export function openSession(o: WanOptions): Session {
  if (process.platform !== 'linux' || process.getuid?.() !== 0) throw new Error('the WAN bench needs Linux and root (network namespaces, tc, iptables)');
  const needSsh = o.paths.includes('ssh');
  installMissing(o, needSsh);
  sweepStale(log);
  const tmp = mkdtempSync(join(os.tmpdir(), 'tcpipe-wan-'));
  const registry = new ProcessRegistry(tmp);
  let ssh: WanSsh | null = null;
  const cleanup = (): void => {
    registry.killAllSync();
    cleanupSync();
    if (ssh !== null) cleanupWanSsh(ssh);
  };
  process.on('exit', cleanup);
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.on(signal, () => {
      log(`${signal}: stopping every process and deleting the namespaces`);
      cleanup();
      rmSync(tmp, { recursive: true, force: true });
      process.exit(130);
    });
  }
  try {
    setClockTicks(Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()));
  } catch {
    // 100 is right on Linux
  }
  try {
    const delayBinary = join(tmp, 'delay');
    compileHelper(join(repoRoot, 'bench', 'wan', 'delay.c'), delayBinary);
    const secret = execFileSync(process.execPath, [join(distRoot, 'src', 'cli', 'main.js'), 'keygen'], { encoding: 'utf8' }).trim();
    if (needSsh) ssh = prepareWanSsh(tmp);
    return { tmp, registry, delayBinary, ssh, secret, failed: false };
  } catch (err) {
    cleanup();
    rmSync(tmp, { recursive: true, force: true });
    throw err;
  }
}

export async function closeSession(s: Session): Promise<void> {
  await s.registry.stopAll();
  cleanupSync();
  if (s.ssh !== null) cleanupWanSsh(s.ssh);
  if (s.failed) log(`logs kept in ${s.tmp}`);
  else rmSync(s.tmp, { recursive: true, force: true });
}

export function pathEnv(s: Session, o: WanOptions, extra: Partial<Pick<PathEnv, 'tcpipeNodeFlags' | 'tcpipeEnv'>> = {}): PathEnv {
  const flags = extra.tcpipeNodeFlags ?? ((): readonly string[] => []);
  const env = extra.tcpipeEnv ?? ((): NodeJS.ProcessEnv => ({}));
  return {
    registry: s.registry,
    distRoot,
    ssh: s.ssh,
    secret: s.secret,
    tcpipeArgs: o.tcpipeArgs,
    tcpipeNodeFlags: flags,
    tcpipeEnv: env,
  };
}

