/**
 * The peers the bench compares tcpipe with: socat and OpenSSH, and squid for
 * the tcpipe-squid path (an HTTP CONNECT proxy in the link). Missing ones
 * are installed with apt-get when the bench may (root, not --smoke, not
 * --no-install); otherwise their paths are skipped and the report says why.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { squidBinary } from './squid.js';
import { sshdBinary } from './sshd.js';

export interface Peers {
  socat: string | null;
  ssh: string | null;
  squid: string | null;
  /** Why a peer is not available, for the report. */
  missing: Record<string, string>;
}

function has(command: string): boolean {
  return spawnSync('bash', ['-c', `command -v ${command}`], { stdio: 'ignore' }).status === 0;
}

function version(command: string, args: readonly string[]): string {
  const r = spawnSync(command, args, { encoding: 'utf8' });
  const text = `${r.stdout ?? ''}${r.stderr ?? ''}`;
  return (text.split('\n').find((l) => /version|OpenSSH/i.test(l)) ?? '').trim();
}

function sshPresent(): boolean {
  return has('ssh') && has('ssh-keygen') && spawnSync('test', ['-x', sshdBinary()]).status === 0;
}

function squidPresent(): boolean {
  return spawnSync('test', ['-x', squidBinary()]).status === 0;
}

/** `wanted`: the peers' packages are installed only for the paths that run. */
export function ensurePeers(allowInstall: boolean, log: (line: string) => void, wanted: { socat: boolean; ssh: boolean; squid: boolean }): Peers {
  const isRoot = process.getuid?.() === 0;
  const packages: string[] = [];
  if (wanted.socat && !has('socat')) packages.push('socat');
  if (wanted.ssh && !sshPresent()) packages.push('openssh-client', 'openssh-server');
  // --no-install-recommends: squid alone, without its optional helpers.
  if (wanted.squid && !squidPresent()) packages.push('squid');
  if (packages.length > 0 && allowInstall && isRoot) {
    log(`installing ${packages.join(' ')} with apt-get`);
    const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
    try {
      execFileSync('apt-get', ['update', '-q'], { stdio: 'ignore', env });
      execFileSync('apt-get', ['install', '-y', '-q', '--no-install-recommends', ...packages], { stdio: 'ignore', env });
    } catch (err) {
      log(`apt-get failed: ${err instanceof Error ? err.message.split('\n')[0] ?? '' : String(err)}`);
    }
  }
  const missing: Record<string, string> = {};
  const socat = has('socat') ? version('socat', ['-V']).replace(/^socat /, 'socat ') : null;
  if (socat === null) missing['socat'] = allowInstall ? 'socat is not installed and could not be installed' : 'socat is not installed';
  let ssh: string | null = sshPresent() ? version('ssh', ['-V']) : null;
  if (ssh === null) missing['ssh'] = allowInstall ? 'OpenSSH is not installed and could not be installed' : 'OpenSSH is not installed';
  else if (!isRoot) {
    missing['ssh'] = 'the private sshd needs root';
    ssh = null;
  }
  const squidVersion = squidPresent() ? version(squidBinary(), ['-v']).replace(/^Squid Cache: Version /, 'squid ') : null;
  const squid = squidVersion === null ? null : squidVersion === '' ? 'squid' : squidVersion;
  if (squid === null) missing['squid'] = allowInstall ? 'squid is not installed and could not be installed' : 'squid is not installed';
  return { socat, ssh, squid, missing };
}
