/**
 * The six paths a user connection can take to its target, each started fresh
 * as separate processes:
 *
 *   direct         user ─────────────────────────────────────────▶ 127.0.0.3:P
 *   socat          user ─▶ socat 127.0.0.2:P ─▶ socat 127.0.0.1:M ─▶ 127.0.0.3:P
 *   ssh            user ─▶ ssh -L 127.0.0.2:P ═ one ssh connection ═ sshd :M ─▶ 127.0.0.3:P
 *   node-relay     user ─▶ node 127.0.0.2:P ─▶ node 127.0.0.1:M ─▶ 127.0.0.3:P
 *   tcpipe         user ─▶ tcpipe -s M -p 127.0.0.2:P ═ link ═ tcpipe -c :M -t 127.0.0.3 ─▶ 127.0.0.3:P
 *   tcpipe-secret  the same with --secret-file (TLS 1.3 keyed by the secret)
 *   tcpipe-ws      tcpipe, the client dialing -c ws://127.0.0.1:M/tcpipe (WebSocket transport)
 *   tcpipe-ws-secret  the same with --secret-file (TLS 1.3 inside the WebSocket)
 *   tcpipe-ws-c2s  tcpipe ws with the roles swapped: the client holds the entry port, the server
 *                  dials the target, so bulk data goes client → server, in masked messages
 *   tcpipe-squid   tcpipe, the client dialing through a private squid: --proxy=http://127.0.0.1:Q (HTTP CONNECT)
 *
 * tcpipe's exit side dials the same port number as the entry port, so the
 * entry listens on 127.0.0.2 and the target on 127.0.0.3; every path uses the
 * same addresses so that they differ only by the relay.
 */
import net from 'node:net';
import { join } from 'node:path';
import { portFree } from '../test/helpers/net.js';
import { pollUntil } from '../test/helpers/wait.js';
import type { Endpoint } from './messages.js';
import { waitForLog, type Child, type ProcessRegistry } from './procs.js';
import { squidArgs, squidBinary, type SquidSetup } from './squid.js';
import { ensurePrivsepDir, sshClientArgs, sshdBinary, type SshSetup } from './sshd.js';

export const PATH_IDS = ['direct', 'socat', 'ssh', 'node-relay', 'tcpipe', 'tcpipe-secret', 'tcpipe-ws', 'tcpipe-ws-secret', 'tcpipe-ws-c2s', 'tcpipe-squid', 'tcpipe-resume'] as const;
export type PathId = (typeof PATH_IDS)[number];

export const PATH_LABELS: Readonly<Record<PathId, string>> = Object.freeze({
  direct: 'direct',
  socat: 'socat ×2',
  ssh: 'ssh -L',
  'node-relay': 'Node relay ×2',
  tcpipe: 'tcpipe',
  'tcpipe-secret': 'tcpipe+secret',
  'tcpipe-ws': 'tcpipe ws',
  'tcpipe-ws-secret': 'tcpipe ws+secret',
  'tcpipe-ws-c2s': 'tcpipe ws c→s',
  'tcpipe-squid': 'tcpipe via squid',
  'tcpipe-resume': 'tcpipe --resume',
});

/** The tcpipe paths: what the ratios and the profiler are about. */
export const TCPIPE_PATHS = ['tcpipe', 'tcpipe-secret', 'tcpipe-ws', 'tcpipe-ws-secret', 'tcpipe-ws-c2s', 'tcpipe-squid', 'tcpipe-resume'] as const satisfies readonly PathId[];
export type TcpipePathId = (typeof TCPIPE_PATHS)[number];

export function isTcpipePath(id: PathId): id is TcpipePathId {
  return (TCPIPE_PATHS as readonly PathId[]).includes(id);
}

/**
 * The other ways to carry tcpipe's link (WebSocket, squid) and --resume: compared with the
 * plain link, not with the peers, so they run fewer workloads (see plan.ts).
 */
export const TRANSPORT_PATHS = ['tcpipe-ws', 'tcpipe-ws-secret', 'tcpipe-ws-c2s', 'tcpipe-squid', 'tcpipe-resume'] as const satisfies readonly TcpipePathId[];

export function isTransportPath(id: PathId): boolean {
  return (TRANSPORT_PATHS as readonly PathId[]).includes(id);
}

export const ENTRY_HOST = '127.0.0.2';
export const TARGET_HOST = '127.0.0.3';
const INNER_HOST = '127.0.0.1';

export interface PathPorts {
  /** Entry and target port (the same number, on two addresses). */
  readonly port: number;
  /** Between the two relay processes (socat, Node relay, tcpipe link, sshd). */
  readonly inner: number;
  /** squid's port, on 127.0.0.1 (the tcpipe-squid path only). */
  readonly proxy?: number;
}

export interface PathEnv {
  readonly registry: ProcessRegistry;
  readonly distRoot: string;
  readonly ssh: SshSetup | null;
  readonly secretFile: string;
  /** The private squid's configuration, when the tcpipe-squid path runs. */
  readonly squid: SquidSetup | null;
  /** Extra node flags for the two tcpipe processes (the profiler). */
  readonly tcpipeNodeFlags: readonly string[];
}

export interface RunningPath {
  readonly id: PathId;
  readonly entry: Endpoint;
  /** The relay processes (their descendants are counted with them). */
  readonly relays: readonly Child[];
  stop(): Promise<void>;
}

export async function startPath(id: PathId, ports: PathPorts, env: PathEnv): Promise<RunningPath> {
  const { registry } = env;
  const { port, inner } = ports;
  const relays: Child[] = [];
  const running = (entry: Endpoint): RunningPath => ({
    id,
    entry,
    relays,
    // Entry side first: the exit side then sees its partner leave, as in real life.
    stop: async () => {
      for (const child of relays) await registry.stop(child);
    },
  });
  switch (id) {
    case 'direct':
      return running({ host: TARGET_HOST, port });
    case 'socat': {
      const listen = (host: string, p: number): string => `TCP-LISTEN:${p},bind=${host},fork,reuseaddr,backlog=128`;
      relays.push(registry.spawn('socat-entry', 'socat', [listen(ENTRY_HOST, port), `TCP:${INNER_HOST}:${inner}`]));
      relays.push(registry.spawn('socat-exit', 'socat', [listen(INNER_HOST, inner), `TCP:${TARGET_HOST}:${port}`]));
      return running({ host: ENTRY_HOST, port });
    }
    case 'node-relay': {
      const script = join(env.distRoot, 'bench', 'node-relay.js');
      relays.push(registry.spawn('node-relay-entry', process.execPath, [script, ENTRY_HOST, String(port), INNER_HOST, String(inner)]));
      relays.push(registry.spawn('node-relay-exit', process.execPath, [script, INNER_HOST, String(inner), TARGET_HOST, String(port)]));
      return running({ host: ENTRY_HOST, port });
    }
    case 'ssh': {
      if (env.ssh === null) throw new Error('ssh is not available');
      // The ssh client (entry) must stop before sshd: sshd leaves running sessions behind.
      ensurePrivsepDir();
      const sshd = registry.spawn('sshd', sshdBinary(), ['-D', '-f', env.ssh.config, '-e']);
      await waitListening(INNER_HOST, inner, 10_000, () => sshd.proc.exitCode === null);
      const forward = `${ENTRY_HOST}:${port}:${TARGET_HOST}:${port}`;
      relays.push(registry.spawn('ssh-client', 'ssh', sshClientArgs(env.ssh, [forward])));
      relays.push(sshd);
      return running({ host: ENTRY_HOST, port });
    }
    case 'tcpipe':
    case 'tcpipe-secret':
    case 'tcpipe-ws':
    case 'tcpipe-ws-secret':
    case 'tcpipe-ws-c2s':
    case 'tcpipe-squid':
    case 'tcpipe-resume': {
      const cli = join(env.distRoot, 'src', 'cli', 'main.js');
      const secret = id === 'tcpipe-secret' || id === 'tcpipe-ws-secret' ? [`--secret-file=${env.secretFile}`] : [];
      // tcpipe-resume: the plain link with stream resumption on both ends (what a healthy link pays for it).
      if (id === 'tcpipe-resume') secret.push('--resume=30');
      const node = (args: readonly string[]): string[] => [...env.tcpipeNodeFlags, cli, ...args];
      // The server holds the entry ports (as in the seed's example), the client the target;
      // tcpipe-ws-c2s swaps them. The server takes WebSocket upgrades (path /tcpipe) and plain
      // links on the same port.
      const entry = ['-p', `${ENTRY_HOST}:${port}`];
      const exit = ['-t', TARGET_HOST];
      const swapped = id === 'tcpipe-ws-c2s';
      const server = registry.spawn(`${id}-${swapped ? 'exit' : 'entry'}`, process.execPath, node(['-s', String(inner), ...(swapped ? exit : entry), ...secret]));
      // Dialing before the server listens costs the client a backoff delay: wait for its start-up line.
      await waitForLog(server, /server: link port/, 5000);
      let dial = [`${INNER_HOST}:${inner}`];
      let squid: Child | null = null;
      if (id === 'tcpipe-ws' || id === 'tcpipe-ws-secret' || id === 'tcpipe-ws-c2s') {
        // --proxy=none: an http_proxy in the bench's environment must not change the path.
        dial = [`ws://${INNER_HOST}:${inner}/tcpipe`, '--proxy=none'];
      } else if (id === 'tcpipe-squid') {
        if (env.squid === null || ports.proxy === undefined) throw new Error('squid is not available');
        const proc = registry.spawn('squid', squidBinary(), squidArgs(env.squid));
        squid = proc;
        relays.push(server);
        await waitListening(INNER_HOST, ports.proxy, 15_000, () => proc.proc.exitCode === null);
        dial = [`${INNER_HOST}:${inner}`, `--proxy=http://${INNER_HOST}:${ports.proxy}`];
      }
      const client = registry.spawn(`${id}-${swapped ? 'entry' : 'exit'}`, process.execPath, node(['-c', ...dial, ...(swapped ? entry : exit), ...secret]));
      // Stopped in this order: the entry side first (then squid, between the two).
      if (swapped) relays.push(client, server);
      else if (squid !== null) relays.push(squid, client);
      else relays.push(server, client);
      return running({ host: ENTRY_HOST, port });
    }
  }
}

/** Polls a TCP listener until it accepts (sshd before its client dials); fails early if its process exits. */
export async function waitListening(host: string, port: number, timeoutMs: number, alive: () => boolean): Promise<void> {
  const accepts = (): Promise<boolean> =>
    new Promise((resolve) => {
      if (!alive()) throw new Error(`nothing listens on ${host}:${port} and its process exited`);
      const socket = net.connect({ host, port });
      socket.once('connect', () => {
        socket.destroy();
        resolve(true);
      });
      socket.once('error', () => resolve(false));
    });
  await pollUntil(accepts, (ok) => ok, timeoutMs, `a listener on ${host}:${port}`, 50);
}

/** A random port above 61000 that is free on every given address (tcpipe needs entry == target port). */
export async function freePortOnAll(hosts: readonly (string | undefined)[], taken: Set<number>): Promise<number> {
  for (let attempt = 0; attempt < 200; attempt++) {
    const port = 61001 + Math.floor(Math.random() * 4500);
    if (taken.has(port)) continue;
    let free = true;
    for (const host of hosts) {
      if (!(await portFree(host, port))) {
        free = false;
        break;
      }
    }
    if (free) {
      taken.add(port);
      return port;
    }
  }
  throw new Error('no free port above 61000');
}
