/**
 * tcpipe in-process on loopback: a server, a client, or a linked pair
 * started through the library with captured logs and test limits, and
 * bounded waits on an instance's events. The addresses are those of net.ts
 * (link 127.0.0.1, entry 127.0.0.2:P, target 127.0.0.3:P).
 *
 * The kit is split by what it does: wait.ts (bounded waits), net.ts
 * (addresses, ports, raw sockets), logs.ts, output.ts (a child's output),
 * cli.ts (the CLI as a child), targets.ts, users.ts, relay.ts (the one chaos
 * relay), proc.ts, netns.ts (namespaces), middlebox.ts, and for the fault
 * suite chain.ts, chain-tcpipe.ts, agent-driver.ts and agent/ (the agent).
 * This module also re-exports the names most tests import from here.
 *
 * Every helper that opens something takes the TestContext and registers its
 * own cleanup with t.after, so a failing test still leaves nothing behind.
 */
import type { TestContext } from 'node:test';
import { startClient, startServer, type ClientOptions, type CommonOptions, type Limits, type ServerOptions, type Tcpipe, type TcpipeEvents } from '../../src/index.js';
import type { CliChild } from './cli.js';
import { captureLog, type LogCapture } from './logs.js';
import { ENTRY_HOST, LINK_HOST, TARGET_HOST } from './net.js';
import { startChaosRelay, type ChaosRelay } from './relay.js';
import type { Target } from './targets.js';
import { handled } from './wait.js';

export { CLI_MAIN, REPO_ROOT, spawnCli, type CliChild } from './cli.js';
export { captureLog, type LogCapture } from './logs.js';
export { ENTRY_HOST, KiB, LINK_HOST, MiB, TARGET_HOST, freePort, socketPair } from './net.js';
export { retainedBufferBytes } from './proc.js';
export { startChaosRelay, type ChaosRelay } from './relay.js';
export { startDeadTarget, startEchoTarget, startHashTarget, startTarget, type HashRecord, type HashTarget, type Target } from './targets.js';
export { connectUser, dialUser, echoRound, sha256, track, writeInChunks, type CloseInfo, type UserConn } from './users.js';
export { assertWithin, handled, untilStalled, waitForEvent, withTimeout } from './wait.js';

type Info<K extends keyof TcpipeEvents> = TcpipeEvents[K][0];

/** Calls `listener` with each `name` event's info from now on; returns the unsubscribe. */
function onEvent<K extends keyof TcpipeEvents>(instance: Tcpipe, name: K, listener: (info: Info<K>) => void): () => void {
  const typed = ((...args: TcpipeEvents[K]) => listener(args[0])) as Parameters<Tcpipe['on']>[1];
  instance.on(name, typed);
  return () => instance.off(name, typed);
}

/** The next `name` event of a Tcpipe instance passing `filter`, within `ms`. */
export function nextEvent<K extends keyof TcpipeEvents>(
  instance: Tcpipe,
  name: K,
  ms: number,
  filter: (info: Info<K>) => boolean = () => true,
): Promise<Info<K>> {
  return eventCount(instance, name, 1, ms, filter).then(([info]) => info as Info<K>);
}

/** Resolves once `count` events `name` (passing `filter`) have been seen from now on, within `ms`. */
export function eventCount<K extends keyof TcpipeEvents>(
  instance: Tcpipe,
  name: K,
  count: number,
  ms: number,
  filter: (info: Info<K>) => boolean = () => true,
): Promise<Info<K>[]> {
  const seen: Info<K>[] = [];
  const role = instance.status().role;
  return handled(
    new Promise((resolve, reject) => {
      const off = onEvent(instance, name, (info) => {
        if (!filter(info)) return;
        seen.push(info);
        if (seen.length < count) return;
        clearTimeout(timer);
        off();
        resolve(seen);
      });
      const timer = setTimeout(() => {
        off();
        const what = count === 1 ? `'${name}'` : `${count} '${name}' events`;
        reject(new Error(`timed out after ${ms} ms waiting for ${what} from the ${role}${count === 1 ? '' : ` (saw ${seen.length})`}`));
      }, ms);
    }),
  );
}

/** Records every `name` event from now on (for "this never happened" checks). */
export function recordEvents<K extends keyof TcpipeEvents>(instance: Tcpipe, name: K): Info<K>[] {
  const seen: Info<K>[] = [];
  onEvent(instance, name, (info) => seen.push(info));
  return seen;
}


/** Fast limits for tests: quick reconnects and partner checks. */
export const TEST_LIMITS: Partial<Limits> = Object.freeze({
  backoffMinMs: 50,
  backoffMaxMs: 400,
  backoffResetAfterMs: 1000,
  partnerCheckTimeoutMs: 500,
  shutdownGraceMs: 500,
});

type Tunables = Pick<CommonOptions, 'heartbeatSeconds' | 'onePerPort' | 'limits' | 'allow'>;

export interface PairOptions {
  /** The server listens on 127.0.0.2:port for each; the client relays them to 127.0.0.3:port. */
  readonly serverPorts?: readonly Target[];
  /** The client listens on 127.0.0.2:port for each; the server relays them to 127.0.0.3:port. */
  readonly clientPorts?: readonly Target[];
  /** Both sides (limits are merged over TEST_LIMITS). Default heartbeat: 5 s. */
  readonly common?: Tunables;
  readonly server?: Tunables;
  readonly client?: Tunables;
  /** Dial the server through a chaos relay (Pair.relay). */
  readonly viaRelay?: boolean;
  /** Fixed link port (default 0). */
  readonly linkPort?: number;
}

export interface Pair {
  readonly server: Tcpipe;
  readonly client: Tcpipe;
  readonly serverLog: LogCapture;
  readonly clientLog: LogCapture;
  readonly relay: ChaosRelay | null;
  readonly linkPort: number;
  /** Stops both (idempotent); also run by t.after. */
  stop(): Promise<void>;
}

function tunables(common: Tunables | undefined, own: Tunables | undefined): Tunables {
  const heartbeatSeconds = own?.heartbeatSeconds ?? common?.heartbeatSeconds ?? 5;
  const onePerPort = own?.onePerPort ?? common?.onePerPort;
  const allow = own?.allow ?? common?.allow;
  return {
    heartbeatSeconds,
    limits: { ...TEST_LIMITS, ...common?.limits, ...own?.limits },
    ...(onePerPort !== undefined ? { onePerPort } : {}),
    ...(allow !== undefined ? { allow } : {}),
  };
}

export function entrySpecs(targets: readonly Target[] | undefined): { host: string; port: number }[] {
  return (targets ?? []).map((target) => {
    target.releaseEntry();
    return { host: ENTRY_HOST, port: target.port };
  });
}

type SideOptions = { ports?: readonly Target[]; name?: string } & Tunables;

/** What a test server and a test client share: captured logs (named after the role), entry ports, the target, tunables. */
function testSide(role: 'server' | 'client', options: SideOptions): { log: LogCapture; common: Omit<CommonOptions, 'proxy'> } {
  const log = captureLog(options.name ?? role);
  const { ports, name: _name, ...rest } = options;
  return { log, common: { ports: entrySpecs(ports), target: TARGET_HOST, logger: log.logger, ...tunables(rest, undefined) } };
}

/** Starts a server (in-process) with captured logs; stopped by t.after. */
export async function startTestServer(t: TestContext, options: { port?: number } & SideOptions): Promise<{ server: Tcpipe; log: LogCapture }> {
  const { port, ...side } = options;
  const { log, common } = testSide('server', side);
  const server = await startServer({ port: port ?? 0, host: LINK_HOST, ...common } satisfies ServerOptions);
  t.after(() => server.stop());
  return { server, log };
}

/** Starts a client (in-process) dialing host:port with captured logs; stopped by t.after. */
export async function startTestClient(t: TestContext, options: { host?: string; port: number } & SideOptions): Promise<{ client: Tcpipe; log: LogCapture }> {
  const { host, port, ...side } = options;
  const { log, common } = testSide('client', side);
  const client = await startClient({ host: host ?? LINK_HOST, port, proxy: null, ...common } satisfies ClientOptions);
  t.after(() => client.stop());
  return { client, log };
}

/** A server and a client, linked (both have seen link-up), cleaned up by t.after. */
export async function startTestPair(t: TestContext, options: PairOptions = {}): Promise<Pair> {
  const { server, log: serverLog } = await startTestServer(t, {
    ports: options.serverPorts ?? [],
    port: options.linkPort ?? 0,
    ...tunables(options.common, options.server),
  });
  const linkPort = server.linkAddress?.port;
  if (linkPort === undefined) throw new Error('the server has no link address');
  const relay = options.viaRelay === true ? await startChaosRelay(t, LINK_HOST, linkPort) : null;
  const serverUp = nextEvent(server, 'link-up', 5000);
  const { client, log: clientLog } = await startTestClient(t, {
    port: relay?.port ?? linkPort,
    ports: options.clientPorts ?? [],
    ...tunables(options.common, options.client),
  });
  const clientUp = client.linkUp ? Promise.resolve() : nextEvent(client, 'link-up', 5000);
  await Promise.all([serverUp, clientUp]);
  return {
    server,
    client,
    serverLog,
    clientLog,
    relay,
    linkPort,
    stop: async () => {
      await Promise.all([client.stop(), server.stop()]);
    },
  };
}

/** The entry address of the i-th port of an instance. */
export function entryOf(instance: Tcpipe, i = 0): { host: string; port: number } {
  const address = instance.entryAddresses[i];
  if (address === undefined) throw new Error(`no entry port #${i}`);
  return { host: address.address, port: address.port };
}

/** The former name of startTestPair, kept for tests written against it. */
export const pair = startTestPair;

/**
 * Waits for `instance` to see link-up with a CLI partner; fails early, with
 * the CLI's output, if the child exits first or the wait times out.
 */
export async function linkUpWith(instance: Tcpipe, cli: CliChild, ms: number): Promise<void> {
  const up = nextEvent(instance, 'link-up', ms);
  const exited = handled(
    cli.exited.then((e) => {
      throw new Error(`the CLI exited (code ${String(e.code)}, signal ${String(e.signal)}) before the link came up`);
    }),
  );
  try {
    await Promise.race([up, exited]);
  } catch (err) {
    throw new Error(`${err instanceof Error ? err.message : String(err)}; CLI output:\n${cli.output()}`);
  }
}
