/**
 * Network-namespace test topologies.
 *
 * tcpipe tests need two (or three) network stacks: the same port number is used
 * for a listener on one host and for the target on the other host. This module
 * builds small topologies out of Linux network namespaces joined by veth pairs.
 * It needs root (or CAP_SYS_ADMIN + CAP_NET_ADMIN) and the `ip` tool; the
 * firewall helpers need `iptables`, `waitForPort` (connect mode) needs `nc`
 * (netcat-openbsd). Use `netnsAvailable()` to skip tests cleanly.
 *
 * Shape: the hosts form a chain `h0 <-> h1 <-> ... <-> hN-1`. Link k joins
 * host k and host k+1 on the /24 subnet `${subnetBase}.${k+1}.0/24`; host k has
 * `.1` on it and host k+1 has `.2`. With the default base `10.231`:
 *
 *   two hosts   ['a','b']:      a 10.231.1.1  <->  10.231.1.2 b
 *   three hosts ['a','b','c']:  a 10.231.1.1  <->  10.231.1.2 b 10.231.2.1  <->  10.231.2.2 c
 *
 * Every host gets routes to all non-adjacent subnets via its neighbour in that
 * direction, so in the three-host chain a reaches c only through b, and only
 * while ip_forward is enabled in b (interior hosts forward by default; see
 * `TopologyOptions.forwarding` and `Topology.setForwarding`).
 *
 * The addresses exist only inside the namespaces a topology creates (the veths
 * are created directly inside them), so concurrent topologies may reuse the
 * same subnets. Namespace and interface names are unique per call:
 * `tp<pid base36>_<counter base36>` (interfaces stay <= 15 characters).
 *
 * Each namespace gets `lo` up and net.ipv4.ip_local_port_range = 61000 65000,
 * so ephemeral ports never collide with fixed test listener ports below 61000.
 *
 * Cleanup: `destroy()` kills spawned processes (SIGTERM, then SIGKILL after a
 * bounded wait), kills anything else still running in the namespaces and
 * deletes them (which deletes the veths). It is idempotent. As a last resort a
 * synchronous cleanup runs on process 'exit' and on SIGINT/SIGTERM/SIGHUP.
 * Namespaces left behind by a SIGKILLed test process can be removed with
 * `sweepStaleNamespaces()`.
 */
import { spawn as cpSpawn, execFileSync } from 'node:child_process';
import type { ChildProcess, SpawnOptions } from 'node:child_process';
import { StringDecoder } from 'node:string_decoder';
import { trackOutput } from './output.js';

/** A child's output is output.ts's; re-exported for tests that import it from here. */
export { outputOf, trackOutput, waitForLine } from './output.js';
import { waitExit } from './proc.js';

const IP = 'ip';
const IFNAMSIZ_MAX = 15;
const DEFAULT_EXEC_TIMEOUT_MS = 5000;
const DEFAULT_PORT_RANGE: readonly [number, number] = [61000, 65000];
const NAME_PREFIX = 'tp';
/** Matches names produced by this module: tp<pid36>_<counter36>... */
const OWN_NAME_RE = /^tp([0-9a-z]+)_([0-9a-z]+)-/;

// ---------------------------------------------------------------------------
// Low-level process helpers
// ---------------------------------------------------------------------------

export interface ExecResult {
  /** Exit code, or null if the process was killed by a signal (e.g. on timeout). */
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** True when the process was SIGKILLed because it exceeded the timeout. */
  timedOut: boolean;
}

export interface ExecOptions {
  /** Kill the process with SIGKILL after this many ms (default 5000). */
  timeoutMs?: number;
  /** Written to the process's stdin, which is then closed. */
  input?: string | Buffer;
}

const MAX_CAPTURE_CHARS = 4 * 1024 * 1024;

/**
 * Runs `cmd args` (no shell) and resolves with its exit status and output.
 * Never rejects for a non-zero exit or a timeout; rejects only if the
 * process cannot be started at all.
 */
function run(cmd: string, args: readonly string[], opts: ExecOptions = {}): Promise<ExecResult> {
  const timeoutMs = opts.timeoutMs ?? DEFAULT_EXEC_TIMEOUT_MS;
  return new Promise<ExecResult>((resolve, reject) => {
    let child: ChildProcess;
    try {
      child = cpSpawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    } catch (err) {
      reject(err instanceof Error ? err : new Error(String(err)));
      return;
    }
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    let settled = false;
    const outDec = new StringDecoder('utf8');
    const errDec = new StringDecoder('utf8');
    child.stdout?.on('data', (d: Buffer) => {
      if (stdout.length < MAX_CAPTURE_CHARS) stdout += outDec.write(d);
    });
    child.stderr?.on('data', (d: Buffer) => {
      if (stderr.length < MAX_CAPTURE_CHARS) stderr += errDec.write(d);
    });
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.on('error', (err) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      reject(err);
    });
    child.on('close', (code, signal) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      stdout += outDec.end();
      stderr += errDec.end();
      resolve({ code, signal, stdout, stderr, timedOut });
    });
    // The child may exit without reading stdin; ignore EPIPE.
    child.stdin?.on('error', () => undefined);
    if (opts.input !== undefined) child.stdin?.end(opts.input);
    else child.stdin?.end();
  });
}

function describeResult(what: string, r: ExecResult): string {
  const status = r.timedOut ? 'timed out' : r.code !== null ? `exit code ${r.code}` : `signal ${String(r.signal)}`;
  const out = [r.stderr.trim(), r.stdout.trim()].filter((s) => s.length > 0).join('\n');
  return `${what}: ${status}${out.length > 0 ? `\n${out}` : ''}`;
}

async function runOk(cmd: string, args: readonly string[], opts: ExecOptions = {}): Promise<ExecResult> {
  const r = await run(cmd, args, opts);
  if (r.code !== 0) throw new Error(describeResult(`${cmd} ${args.join(' ')}`, r));
  return r;
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

// ---------------------------------------------------------------------------
// Availability
// ---------------------------------------------------------------------------

export type Availability = { ok: true } | { ok: false; reason: string };

export interface AvailabilityOptions {
  /**
   * Extra commands that must work inside a namespace, each given as
   * [cmd, ...args] and expected to exit 0. Shorthands: 'iptables' checks
   * `iptables -S` (binary plus kernel netfilter support), 'nc' checks that
   * netcat is present.
   */
  need?: ReadonlyArray<'iptables' | 'nc' | readonly string[]>;
}

let probeCounter = 0;

/**
 * Checks that we are root and can actually create (and delete) a network
 * namespace. Use it to skip: `describe(name, { skip: a.ok ? false : a.reason })`.
 */
export async function netnsAvailable(opts: AvailabilityOptions = {}): Promise<Availability> {
  if (process.platform !== 'linux') return { ok: false, reason: `network namespaces need Linux (platform is ${process.platform})` };
  const uid = typeof process.getuid === 'function' ? process.getuid() : -1;
  if (uid !== 0) return { ok: false, reason: `network namespace tests need root (uid is ${uid})` };
  const ns = `${NAME_PREFIX}${process.pid.toString(36)}_p${(probeCounter++).toString(36)}-probe`;
  let added: ExecResult;
  try {
    added = await run(IP, ['netns', 'add', ns]);
  } catch (err) {
    return { ok: false, reason: `cannot run '${IP}': ${err instanceof Error ? err.message : String(err)}` };
  }
  if (added.code !== 0) return { ok: false, reason: describeResult(`cannot create a network namespace (ip netns add ${ns})`, added) };
  let result: Availability = { ok: true };
  try {
    for (const need of opts.need ?? []) {
      const argv: readonly string[] = need === 'iptables' ? ['iptables', '-S'] : need === 'nc' ? ['sh', '-c', 'command -v nc'] : need;
      const [cmd, ...args] = argv;
      if (cmd === undefined) continue;
      const r = await run(IP, ['netns', 'exec', ns, cmd, ...args]).catch(
        (err: unknown): ExecResult => ({ code: null, signal: null, stdout: '', stderr: String(err), timedOut: false }),
      );
      if (r.code !== 0) {
        result = { ok: false, reason: describeResult(`'${argv.join(' ')}' does not work inside a namespace`, r) };
        break;
      }
    }
  } finally {
    const del = await run(IP, ['netns', 'del', ns]).catch(() => null);
    if (del === null || del.code !== 0) {
      const list = await run(IP, ['netns', 'list']).catch(() => null);
      if (list !== null && list.stdout.split('\n').some((l) => l.split(' ')[0] === ns)) {
        result = { ok: false, reason: `created namespace ${ns} but could not delete it` };
      }
    }
  }
  return result;
}

// ---------------------------------------------------------------------------
// Topology
// ---------------------------------------------------------------------------

function hasExited(child: ChildProcess): boolean {
  return child.exitCode !== null || child.signalCode !== null;
}

export interface TopologyOptions<H extends string> {
  /** Host names in chain order, e.g. ['a', 'b'] or ['a', 'b', 'c']. At least 2; [A-Za-z0-9]+ only. */
  hosts: readonly H[];
  /** First two octets of the link subnets (default '10.231'). Link k uses `${base}.${k+1}.0/24`. */
  subnetBase?: string;
  /** Enable net.ipv4.ip_forward on interior hosts of the chain (default true). */
  forwarding?: boolean;
  /** net.ipv4.ip_local_port_range in every namespace (default [61000, 65000]). */
  portRange?: readonly [number, number];
}

export interface Interface {
  /** veth name inside the host's namespace. */
  name: string;
  /** Address (without prefix length). */
  addr: string;
  /** CIDR of the link subnet, e.g. '10.231.1.0/24'. */
  subnet: string;
  /** Host on the other end of this veth. */
  peer: string;
}

export interface HostInfo<H extends string = string> {
  name: H;
  /** Network namespace name. */
  ns: string;
  /** Primary address: the one on the host's first (leftmost) link. */
  addr: string;
  interfaces: readonly Interface[];
}

export interface WaitForPortOptions<H extends string> {
  /** Host whose namespace runs the probe (default: the target host itself). */
  from?: H;
  /** Address to probe (default: the target's address as seen from `from`). */
  address?: string;
  /**
   * 'connect' (default): `nc -z` connect probe; the listener sees a
   * connection that is closed at once. 'listen': look for a listening socket
   * with `ss` inside the target's namespace, no connection is made.
   */
  mode?: 'connect' | 'listen';
  /** Pause between attempts (default 50 ms). */
  intervalMs?: number;
}

export interface Topology<H extends string> {
  /** Unique id, also the prefix of namespace and interface names. */
  readonly id: string;
  readonly hosts: readonly HostInfo<H>[];
  host(name: H): HostInfo<H>;
  /** Address of `host`; with `from`, the address `from` should use to reach it (the one facing `from`). */
  addr(host: H, from?: H): string;
  /** Runs `cmd args` inside the host's namespace; resolves with code/stdout/stderr (never rejects on non-zero exit or timeout). */
  exec(host: H, cmd: string, args?: readonly string[], opts?: ExecOptions): Promise<ExecResult>;
  /** Like exec but rejects (with the output) unless the exit code is 0. */
  execOk(host: H, cmd: string, args?: readonly string[], opts?: ExecOptions): Promise<ExecResult>;
  /**
   * Starts `ip netns exec NS cmd args...` (pipes by default). The process is
   * tracked, its output recorded for `waitForLine`, and it is killed on destroy().
   */
  spawn(host: H, cmd: string, args?: readonly string[], opts?: SpawnOptions): ChildProcess;
  /** Runs `iptables -w args...` in the host's namespace; rejects on failure. */
  iptables(host: H, args: readonly string[]): Promise<ExecResult>;
  setForwarding(host: H, on: boolean): Promise<void>;
  /**
   * Polls until a TCP port accepts connections (or is listening), with a
   * bounded number of attempts; rejects after `timeoutMs`.
   */
  waitForPort(host: H, port: number, timeoutMs: number, opts?: WaitForPortOptions<H>): Promise<void>;
  /**
   * The seed's firewall: the host accepts inbound TCP only on the given ports
   * (plus loopback and established/related traffic) and cannot initiate
   * outbound TCP connections (new outbound TCP is dropped; loopback is allowed).
   * Replaces any earlier firewallNoDialOut on the host.
   */
  firewallNoDialOut(host: H, allowInboundPorts: readonly number[]): Promise<void>;
  /** Removes the rules installed by firewallNoDialOut (idempotent). */
  clearFirewall(host: H): Promise<void>;
  /**
   * Silently drops all traffic on the host's veth interfaces (or only the
   * one towards `peer`) in both directions, including forwarded traffic.
   * Idempotent. Established TCP connections stall rather than reset.
   */
  cutLink(host: H, peer?: H): Promise<void>;
  /** Undoes cutLink (idempotent). */
  healLink(host: H, peer?: H): Promise<void>;
  /** Kills spawned processes, deletes the namespaces. Idempotent; safe to call concurrently. */
  destroy(): Promise<void>;
  readonly destroyed: boolean;
}

interface LiveTopology {
  namespaces: string[];
  children: Set<ChildProcess>;
}

const live = new Set<LiveTopology>();
let counter = 0;
let exitHooksInstalled = false;

function killNamespacePidsSync(ns: string): void {
  let out = '';
  try {
    out = execFileSync(IP, ['netns', 'pids', ns], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], timeout: 2000 });
  } catch {
    return;
  }
  for (const pid of parsePids(out)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
}

function parsePids(out: string): number[] {
  return out
    .split(/\s+/)
    .filter((s) => /^\d+$/.test(s))
    .map((s) => Number(s))
    .filter((pid) => pid > 0 && pid !== process.pid);
}

function cleanupAllSync(): void {
  for (const topo of live) {
    for (const child of topo.children) {
      if (!hasExited(child)) child.kill('SIGKILL');
    }
    for (const ns of topo.namespaces) {
      killNamespacePidsSync(ns);
      try {
        execFileSync(IP, ['netns', 'del', ns], { stdio: 'ignore', timeout: 2000 });
      } catch {
        // already gone
      }
    }
  }
  live.clear();
}

function installExitHooks(): void {
  if (exitHooksInstalled) return;
  exitHooksInstalled = true;
  process.on('exit', cleanupAllSync);
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    const handler = (): void => {
      cleanupAllSync();
      process.off(sig, handler);
      // Keep the default behaviour (terminate) unless someone else handles the signal.
      if (process.listenerCount(sig) === 0) process.kill(process.pid, sig);
    };
    process.on(sig, handler);
  }
}

function checkIfName(name: string): string {
  if (name.length > IFNAMSIZ_MAX) throw new Error(`interface name too long (${name.length} > ${IFNAMSIZ_MAX}): ${name}`);
  return name;
}


const FW_IN = 'TP_NODIAL_IN';
const FW_OUT = 'TP_NODIAL_OUT';

/**
 * Creates the namespaces, veth pairs, addresses and routes. On failure
 * everything created so far is removed before the error is rethrown.
 */
export async function createTopology<const H extends string>(opts: TopologyOptions<H>): Promise<Topology<H>> {
  const names = opts.hosts;
  if (names.length < 2) throw new Error('createTopology: need at least 2 hosts');
  if (names.length > 36) throw new Error('createTopology: at most 36 hosts');
  const seen = new Set<string>();
  for (const n of names) {
    if (!/^[A-Za-z0-9]+$/.test(n)) throw new Error(`createTopology: bad host name ${JSON.stringify(n)} (use [A-Za-z0-9]+)`);
    if (seen.has(n)) throw new Error(`createTopology: duplicate host name ${n}`);
    seen.add(n);
  }
  const base = opts.subnetBase ?? '10.231';
  if (!/^\d{1,3}\.\d{1,3}$/.test(base)) throw new Error(`createTopology: subnetBase must look like '10.231', got ${base}`);
  const [portLo, portHi] = opts.portRange ?? DEFAULT_PORT_RANGE;
  const forwarding = opts.forwarding ?? true;

  const id = `${NAME_PREFIX}${process.pid.toString(36)}_${(counter++).toString(36)}`;
  const nsOf = (n: string): string => `${id}-${n}`;

  // Build the model.
  const ifaces = new Map<string, Interface[]>(names.map((n) => [n, []]));
  const links: { k: number; left: H; right: H; leftIf: string; rightIf: string; leftAddr: string; rightAddr: string; subnet: string }[] = [];
  for (let k = 0; k + 1 < names.length; k++) {
    const left = names[k];
    const right = names[k + 1];
    if (left === undefined || right === undefined) throw new Error('unreachable');
    const kk = k.toString(36);
    const link = {
      k,
      left,
      right,
      leftIf: checkIfName(`${id}v${kk}a`),
      rightIf: checkIfName(`${id}v${kk}b`),
      leftAddr: `${base}.${k + 1}.1`,
      rightAddr: `${base}.${k + 1}.2`,
      subnet: `${base}.${k + 1}.0/24`,
    };
    links.push(link);
    ifaces.get(left)?.push({ name: link.leftIf, addr: link.leftAddr, subnet: link.subnet, peer: right });
    ifaces.get(right)?.push({ name: link.rightIf, addr: link.rightAddr, subnet: link.subnet, peer: left });
  }
  const hosts: HostInfo<H>[] = names.map((n) => {
    const list = ifaces.get(n) ?? [];
    const first = list[0];
    if (first === undefined) throw new Error('unreachable: host without interface');
    return { name: n, ns: nsOf(n), addr: first.addr, interfaces: list };
  });
  const byName = new Map<string, HostInfo<H>>(hosts.map((h) => [h.name, h]));
  const indexOf = new Map<string, number>(names.map((n, i) => [n, i]));

  const state: LiveTopology = { namespaces: [], children: new Set() };
  installExitHooks();
  live.add(state);

  let destroyPromise: Promise<void> | null = null;
  let destroyed = false;

  const host = (name: H): HostInfo<H> => {
    const h = byName.get(name);
    if (h === undefined) throw new Error(`unknown host ${String(name)} (hosts: ${names.join(', ')})`);
    return h;
  };
  const ensureLive = (): void => {
    if (destroyed) throw new Error(`topology ${id} has been destroyed`);
  };

  const exec = (name: H, cmd: string, args: readonly string[] = [], o: ExecOptions = {}): Promise<ExecResult> => {
    try {
      ensureLive();
      return run(IP, ['netns', 'exec', host(name).ns, cmd, ...args], o);
    } catch (err) {
      return Promise.reject(err instanceof Error ? err : new Error(String(err)));
    }
  };
  const execOk = async (name: H, cmd: string, args: readonly string[] = [], o: ExecOptions = {}): Promise<ExecResult> => {
    const r = await exec(name, cmd, args, o);
    if (r.code !== 0) throw new Error(describeResult(`[${String(name)}] ${cmd} ${args.join(' ')}`, r));
    return r;
  };
  const iptables = (name: H, args: readonly string[]): Promise<ExecResult> => execOk(name, 'iptables', ['-w', ...args]);
  const ruleExists = async (name: H, table: string, rule: readonly string[]): Promise<boolean> => {
    const r = await exec(name, 'iptables', ['-w', '-t', table, '-C', ...rule]);
    return r.code === 0;
  };

  const addr = (target: H, from?: H): string => {
    const t = host(target);
    if (from === undefined || from === target) return t.addr;
    const ti = indexOf.get(target) ?? 0;
    const fi = indexOf.get(from) ?? 0;
    // The interface of `target` on the side facing `from`.
    const facing = fi < ti ? t.interfaces.find((i) => (indexOf.get(i.peer) ?? 0) < ti) : t.interfaces.find((i) => (indexOf.get(i.peer) ?? 0) > ti);
    return (facing ?? t.interfaces[0] ?? { addr: t.addr }).addr;
  };

  const setForwarding = async (name: H, on: boolean): Promise<void> => {
    await execOk(name, 'sysctl', ['-q', '-w', `net.ipv4.ip_forward=${on ? 1 : 0}`]);
  };

  const destroy = (): Promise<void> => {
    if (destroyPromise !== null) return destroyPromise;
    destroyed = true;
    destroyPromise = (async () => {
      const children = [...state.children];
      for (const c of children) if (!hasExited(c)) c.kill('SIGTERM');
      const graceful = await Promise.all(children.map((c) => waitExit(c, 1000)));
      const stubborn = children.filter((_, i) => graceful[i] !== true);
      for (const c of stubborn) c.kill('SIGKILL');
      await Promise.all(stubborn.map((c) => waitExit(c, 2000)));
      const errors: string[] = [];
      for (const ns of state.namespaces) {
        const pids = await run(IP, ['netns', 'pids', ns]).catch(() => null);
        if (pids !== null && pids.code === 0) {
          for (const pid of parsePids(pids.stdout)) {
            try {
              process.kill(pid, 'SIGKILL');
            } catch {
              // already gone
            }
          }
        }
        const del = await run(IP, ['netns', 'del', ns]).catch((err: unknown) => ({
          code: null,
          signal: null,
          stdout: '',
          stderr: String(err),
          timedOut: false,
        }));
        if (del.code !== 0 && !/No such file|Cannot remove namespace file/.test(del.stderr)) {
          errors.push(describeResult(`ip netns del ${ns}`, del));
        }
      }
      state.namespaces = [];
      state.children.clear();
      live.delete(state);
      if (errors.length > 0) throw new Error(`destroy(${id}) failed:\n${errors.join('\n')}`);
    })();
    return destroyPromise;
  };

  const spawnIn = (name: H, cmd: string, args: readonly string[] = [], o: SpawnOptions = {}): ChildProcess => {
    ensureLive();
    const child = cpSpawn(IP, ['netns', 'exec', host(name).ns, cmd, ...args], { stdio: 'pipe', ...o });
    state.children.add(child);
    trackOutput(child);
    // Avoid an unhandled 'error' event crashing the test process; the error shows up as an exit.
    child.on('error', () => undefined);
    child.once('exit', () => state.children.delete(child));
    return child;
  };

  const waitForPort = async (name: H, port: number, timeoutMs: number, o: WaitForPortOptions<H> = {}): Promise<void> => {
    const from = o.from ?? name;
    const address = o.address ?? addr(name, from);
    const mode = o.mode ?? 'connect';
    const interval = o.intervalMs ?? 50;
    const deadline = Date.now() + timeoutMs;
    const maxAttempts = Math.max(1, Math.ceil(timeoutMs / Math.max(1, interval)));
    let last: ExecResult | null = null;
    for (let attempt = 0; attempt < maxAttempts; attempt++) {
      const left = deadline - Date.now();
      if (left <= 0) break;
      const probeTimeout = Math.max(100, Math.min(1000, left));
      if (mode === 'connect') {
        last = await exec(from, 'nc', ['-z', '-n', '-w', String(Math.max(1, Math.ceil(probeTimeout / 1000))), address, String(port)], {
          timeoutMs: probeTimeout,
        });
        if (last.code === 0) return;
      } else {
        last = await exec(name, 'ss', ['-H', '-l', '-t', '-n', `sport = :${port}`], { timeoutMs: probeTimeout });
        if (last.code === 0 && last.stdout.trim().length > 0) return;
      }
      const pause = Math.min(interval, deadline - Date.now());
      if (pause > 0) await delay(pause);
    }
    const detail = last === null ? '' : `\nlast probe: ${describeResult(mode, last)}`;
    throw new Error(`port ${address}:${port} (${String(name)}, probed from ${String(from)}) not ${mode === 'connect' ? 'accepting' : 'listening'} after ${timeoutMs} ms${detail}`);
  };

  const ensureChain = async (name: H, chain: string): Promise<void> => {
    const r = await exec(name, 'iptables', ['-w', '-N', chain]);
    if (r.code !== 0) await iptables(name, ['-F', chain]);
  };

  const clearFirewall = async (name: H): Promise<void> => {
    for (const [parent, chain] of [
      ['INPUT', FW_IN],
      ['OUTPUT', FW_OUT],
    ] as const) {
      while (await ruleExists(name, 'filter', [parent, '-j', chain])) await iptables(name, ['-D', parent, '-j', chain]);
      const flush = await exec(name, 'iptables', ['-w', '-F', chain]);
      if (flush.code === 0) await iptables(name, ['-X', chain]);
    }
  };

  const firewallNoDialOut = async (name: H, ports: readonly number[]): Promise<void> => {
    for (const p of ports) if (!Number.isInteger(p) || p < 1 || p > 65535) throw new Error(`bad port ${p}`);
    await clearFirewall(name);
    await ensureChain(name, FW_IN);
    await ensureChain(name, FW_OUT);
    await iptables(name, ['-A', FW_IN, '-i', 'lo', '-j', 'ACCEPT']);
    await iptables(name, ['-A', FW_IN, '-m', 'conntrack', '--ctstate', 'ESTABLISHED,RELATED', '-j', 'ACCEPT']);
    for (const p of ports) {
      await iptables(name, ['-A', FW_IN, '-p', 'tcp', '--dport', String(p), '-m', 'conntrack', '--ctstate', 'NEW', '-j', 'ACCEPT']);
    }
    await iptables(name, ['-A', FW_IN, '-p', 'tcp', '-j', 'DROP']);
    await iptables(name, ['-A', FW_OUT, '-o', 'lo', '-j', 'ACCEPT']);
    await iptables(name, ['-A', FW_OUT, '-m', 'conntrack', '--ctstate', 'ESTABLISHED,RELATED', '-j', 'ACCEPT']);
    await iptables(name, ['-A', FW_OUT, '-p', 'tcp', '-j', 'DROP']);
    await iptables(name, ['-A', 'INPUT', '-j', FW_IN]);
    await iptables(name, ['-A', 'OUTPUT', '-j', FW_OUT]);
  };

  const cutRules = (name: H, peer?: H): string[][] => {
    const h = host(name);
    const list = peer === undefined ? h.interfaces : h.interfaces.filter((i) => i.peer === peer);
    if (list.length === 0) throw new Error(`host ${String(name)} has no link to ${String(peer)}`);
    return list.flatMap((i) => [
      ['INPUT', '-i', i.name, '-j', 'DROP'],
      ['OUTPUT', '-o', i.name, '-j', 'DROP'],
      ['FORWARD', '-i', i.name, '-j', 'DROP'],
      ['FORWARD', '-o', i.name, '-j', 'DROP'],
    ]);
  };

  // Rules are inserted at the top of the filter chains, so they take effect
  // before any firewallNoDialOut ACCEPT rules (which are appended).
  const cutLink = async (name: H, peer?: H): Promise<void> => {
    for (const [chain, ...rest] of cutRules(name, peer)) {
      if (chain === undefined) continue;
      if (!(await ruleExists(name, 'filter', [chain, ...rest]))) await iptables(name, ['-I', chain, '1', ...rest]);
    }
  };

  const healLink = async (name: H, peer?: H): Promise<void> => {
    for (const rule of cutRules(name, peer)) {
      while (await ruleExists(name, 'filter', rule)) await iptables(name, ['-D', ...rule]);
    }
  };

  // Create everything; roll back on failure.
  try {
    for (const h of hosts) {
      await runOk(IP, ['netns', 'add', h.ns]);
      state.namespaces.push(h.ns);
      await runOk(IP, ['-n', h.ns, 'link', 'set', 'lo', 'up']);
      await runOk(IP, ['netns', 'exec', h.ns, 'sysctl', '-q', '-w', `net.ipv4.ip_local_port_range=${portLo} ${portHi}`]);
    }
    for (const l of links) {
      const lns = nsOf(l.left);
      const rns = nsOf(l.right);
      await runOk(IP, ['link', 'add', 'name', l.leftIf, 'netns', lns, 'type', 'veth', 'peer', 'name', l.rightIf, 'netns', rns]);
      await runOk(IP, ['-n', lns, 'addr', 'add', `${l.leftAddr}/24`, 'dev', l.leftIf]);
      await runOk(IP, ['-n', rns, 'addr', 'add', `${l.rightAddr}/24`, 'dev', l.rightIf]);
      await runOk(IP, ['-n', lns, 'link', 'set', l.leftIf, 'up']);
      await runOk(IP, ['-n', rns, 'link', 'set', l.rightIf, 'up']);
    }
    // Routes to non-adjacent subnets via the neighbour in that direction.
    for (let i = 0; i < hosts.length; i++) {
      const h = hosts[i];
      if (h === undefined) continue;
      for (const l of links) {
        if (l.k === i || l.k === i - 1) continue; // directly connected
        const via = l.k < i ? links[i - 1]?.leftAddr : links[i]?.rightAddr;
        if (via === undefined) throw new Error('unreachable: no next hop');
        await runOk(IP, ['-n', h.ns, 'route', 'add', l.subnet, 'via', via]);
      }
      const interior = i > 0 && i < hosts.length - 1;
      await runOk(IP, ['netns', 'exec', h.ns, 'sysctl', '-q', '-w', `net.ipv4.ip_forward=${interior && forwarding ? 1 : 0}`]);
    }
  } catch (err) {
    await destroy().catch(() => undefined);
    throw err;
  }

  return {
    id,
    hosts,
    host,
    addr,
    exec,
    execOk,
    spawn: spawnIn,
    iptables,
    setForwarding,
    waitForPort,
    firewallNoDialOut,
    clearFirewall,
    cutLink,
    healLink,
    destroy,
    get destroyed() {
      return destroyed;
    },
  };
}

/**
 * Deletes namespaces named by this module (tp<pid>_<n>-<host>) whose owning
 * process no longer exists, e.g. after a test process was SIGKILLed.
 * Returns the names deleted.
 */
export async function sweepStaleNamespaces(): Promise<string[]> {
  const list = await run(IP, ['netns', 'list']);
  if (list.code !== 0) return [];
  const deleted: string[] = [];
  for (const line of list.stdout.split('\n')) {
    const ns = line.split(' ')[0] ?? '';
    const m = OWN_NAME_RE.exec(ns);
    const pid36 = m?.[1];
    if (pid36 === undefined) continue;
    const pid = parseInt(pid36, 36);
    if (pid === process.pid) continue;
    let alive = true;
    try {
      process.kill(pid, 0);
    } catch (err) {
      alive = (err as NodeJS.ErrnoException).code === 'EPERM';
    }
    if (alive) continue;
    const pids = await run(IP, ['netns', 'pids', ns]);
    for (const p of parsePids(pids.stdout)) {
      try {
        process.kill(p, 'SIGKILL');
      } catch {
        // gone
      }
    }
    const del = await run(IP, ['netns', 'del', ns]);
    if (del.code === 0) deleted.push(ns);
  }
  return deleted;
}
