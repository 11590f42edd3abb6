/**
 * A private sshd for the `ssh -L` paths of both benches (LAN: on a high
 * loopback port; WAN: on B's address, bench/wan/paths.ts): throwaway host and
 * user keys in the bench's temporary directory, its own sshd_config, the
 * aes128-gcm@openssh.com cipher. The system's ssh configuration is never read
 * or written: sshd gets `-f <conf>`, ssh gets `-F /dev/null` and explicit files.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export const SSH_CIPHER = 'aes128-gcm@openssh.com';
/** sshd refuses to start without its privilege separation directory. */
const PRIVSEP_DIR = '/run/sshd';

export interface SshSetup {
  /** Where sshd listens and the client dials. */
  readonly host: string;
  readonly port: number;
  readonly dir: string;
  readonly config: string;
  readonly userKey: string;
  readonly knownHosts: string;
}

export function sshdBinary(): string {
  return ['/usr/sbin/sshd', '/usr/local/sbin/sshd'].find((p) => existsSync(p)) ?? '/usr/sbin/sshd';
}

/** Keys and an sshd_config in `tmp`/ssh for an sshd on host:port. */
export function prepareSsh(tmp: string, host: string, port: number): SshSetup {
  const dir = join(tmp, 'ssh');
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const hostKey = join(dir, 'host_ed25519');
  const userKey = join(dir, 'id_ed25519');
  for (const key of [hostKey, userKey]) {
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'tcpipe-bench', '-f', key], { stdio: 'ignore' });
  }
  const authorizedKeys = join(dir, 'authorized_keys');
  writeFileSync(authorizedKeys, readFileSync(`${userKey}.pub`), { mode: 0o600 });
  const config = join(dir, 'sshd_config');
  writeFileSync(
    config,
    [
      `Port ${port}`,
      `ListenAddress ${host}`,
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
  return { host, port, dir, config, userKey, knownHosts: join(dir, 'known_hosts') };
}

/**
 * Creates /run/sshd when it is missing, as the openssh-server package does at
 * boot, before an sshd start; true when it did. The LAN bench leaves it in
 * place (another run, or the system's sshd, may be using it); the WAN bench
 * removes the one it created, if empty, with removePrivsepDir.
 */
export function ensurePrivsepDir(): boolean {
  if (existsSync(PRIVSEP_DIR)) return false;
  mkdirSync(PRIVSEP_DIR, { recursive: true, mode: 0o755 });
  return true;
}

/** Removes /run/sshd if it is empty. */
export function removePrivsepDir(): void {
  try {
    rmdirSync(PRIVSEP_DIR);
  } catch {
    // not empty, or gone
  }
}

/** Arguments of the ssh client: one connection to the setup's sshd, -N, the given -L forwards. */
export function sshClientArgs(setup: SshSetup, forwards: readonly string[]): string[] {
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
  return [
    '-F',
    '/dev/null',
    '-N',
    '-T',
    '-p',
    String(setup.port),
    '-i',
    setup.userKey,
    ...options.flatMap((o) => ['-o', o]),
    ...forwards.flatMap((f) => ['-L', f]),
    `root@${setup.host}`,
  ];
}
