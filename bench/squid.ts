/**
 * A private squid for the `tcpipe via squid` path: an HTTP CONNECT proxy on a
 * high loopback port, with its own squid.conf, logs and pid file in a
 * directory of the bench's temporary directory (as test/helpers/middlebox.ts
 * starts it for the tests). No cache, no authentication, CONNECT only; the
 * system's /etc/squid is never read (squid gets `-f <conf>`) nor written.
 */
import { chmodSync, existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export interface SquidSetup {
  readonly dir: string;
  readonly config: string;
  readonly port: number;
}

export function squidBinary(): string {
  return ['/usr/sbin/squid', '/usr/local/sbin/squid'].find((p) => existsSync(p)) ?? '/usr/sbin/squid';
}

/**
 * Writes squid's configuration under `tmp`. Started as root, squid runs as
 * Debian's `proxy` user once it has bound its port: the directories it writes
 * must be reachable and writable by that user (the bench's own temporary
 * directory is made traversable, not readable, for it).
 */
export function prepareSquid(tmp: string, port: number): SquidSetup {
  chmodSync(tmp, 0o711);
  const dir = join(tmp, 'squid');
  mkdirSync(dir, { recursive: true });
  chmodSync(dir, 0o755);
  const logs = join(dir, 'logs');
  mkdirSync(logs, { recursive: true });
  chmodSync(logs, 0o777);
  const config = join(dir, 'squid.conf');
  writeFileSync(
    config,
    [
      `http_port 127.0.0.1:${port}`,
      `pid_filename ${join(logs, 'squid.pid')}`,
      `cache_log ${join(logs, 'cache.log')}`,
      'access_log none',
      'cache_store_log none',
      'cache deny all',
      `coredump_dir ${logs}`,
      'shutdown_lifetime 0 seconds',
      'dns_v4_first on',
      'dns_nameservers 127.0.0.1',
      // The link is one long CONNECT tunnel: no idle or lifetime limit may end it mid-run.
      'read_timeout 1 hour',
      'client_lifetime 1 day',
      'acl CONNECT method CONNECT',
      'http_access allow CONNECT',
      'http_access deny all',
      '',
    ].join('\n'),
  );
  chmodSync(config, 0o644);
  return { dir, config, port };
}

/** squid in the foreground (-N), level-1 messages on stderr (the bench's log of it). */
export function squidArgs(setup: SquidSetup): string[] {
  return ['-N', '-d', '1', '-f', setup.config];
}
