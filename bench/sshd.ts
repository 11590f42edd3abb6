/**
 * A private sshd for the `ssh -L` path: throwaway host and user keys in the
 * bench's temporary directory, its own sshd_config, a high loopback port, the
 * aes128-gcm@openssh.com cipher. The system's ssh configuration is never read
 * or written: sshd gets `-f <conf>`, ssh gets `-F /dev/null` and explicit files.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export const SSH_CIPHER = 'aes128-gcm@openssh.com';
/** sshd refuses to start without its privilege separation directory. */
const PRIVSEP_DIR = '/run/sshd';

export interface SshSetup {
  readonly dir: string;
  readonly config: string;
  readonly userKey: string;
  readonly knownHosts: string;
}

export function sshdBinary(): string {
  return ['/usr/sbin/sshd', '/usr/local/sbin/sshd'].find((p) => existsSync(p)) ?? '/usr/sbin/sshd';
}

export function prepareSsh(tmp: string, port: number): SshSetup {
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
      'ListenAddress 127.0.0.1',
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
  return { dir, config, userKey, knownHosts: join(dir, 'known_hosts') };
}

/**
 * Creates /run/sshd when it is missing, as the openssh-server package does at
 * boot, before every sshd start. It is left in place: another run of the bench
 * (or the system's sshd) may be using it.
 */
export function ensurePrivsepDir(): void {
  mkdirSync(PRIVSEP_DIR, { recursive: true, mode: 0o755 });
}

/** Arguments of the ssh client: one connection, -N, the given -L forwards. */
export function sshClientArgs(setup: SshSetup, port: number, forwards: readonly string[]): string[] {
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
    String(port),
    '-i',
    setup.userKey,
    ...options.flatMap((o) => ['-o', o]),
    ...forwards.flatMap((f) => ['-L', f]),
    'root@127.0.0.1',
  ];
}
