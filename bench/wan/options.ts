/** Command line of the WAN bench (npm run bench:wan -- [options]). */
import { PROFILES } from './emulation.js';
import { WAN_PATHS, type WanPathId } from './paths.js';

export interface WanOptions {
  readonly mode: 'full' | 'smoke';
  readonly profiles: readonly string[];
  readonly paths: readonly WanPathId[];
  /** Bytes of each bulk transfer (1 stream; 8 streams share the same total). */
  readonly bulkBytes: number;
  /** A bulk transfer still running after this long is stopped and measured by what arrived. */
  readonly capMs: number;
  readonly newStreams: number;
  /** Interactive test: idle ping-pong, bulk warm-up, ping-pong under the bulk stream; each at least this long. */
  readonly idleMinMs: number;
  readonly warmupMinMs: number;
  readonly loadMinMs: number;
  readonly loadMaxMs: number;
  readonly out: string;
  readonly svg: string;
  readonly docs: boolean;
  readonly install: boolean;
  readonly realtime: boolean;
  /** Extra sysctls set inside both namespaces (experiments: net.ipv4.tcp_notsent_lowat=131072). */
  readonly sysctls: readonly string[];
  /** Extra arguments for both tcpipe processes (experiments: --max-window=64M). */
  readonly tcpipeArgs: readonly string[];
  /** Instead of the benchmark: traces, ss samples and CPU profiles of the given paths, into this directory. */
  readonly diagnoseDir: string | null;
}

export const USAGE = `Usage: npm run bench:wan -- [options]     (or: node dist/bench/wan/run.js [options]; as root)

  --smoke              Under a minute: the 20 ms profile, small transfers, short tests.
  --profiles LIST      Any of ${PROFILES.map((p) => p.id).join(',')} (default: all).
  --paths LIST         Any of ${WAN_PATHS.join(',')} (default: all).
  --size MiB           Each bulk transfer, 1 and 8 streams (default 640: about 6 s at 1 Gbit/s).
  --cap S              Stop a bulk transfer after S seconds and measure what arrived (default 12).
  --new-streams N      Streams opened at once in the new-stream test (default 100).
  --out FILE           JSON results (default bench/results/wan-latest.json).
  --svg FILE           The chart (default docs/bench-wan.svg).
  --no-docs            Leave docs/ alone (the results section and the chart) even after a full run.
  --no-install         Do not apt-get install libnetfilter-queue-dev, gcc or iptables when missing.
  --no-realtime        Run the delay helpers at normal priority (default: SCHED_FIFO 50).
  --sysctl K=V         Also set this sysctl inside both namespaces (repeatable), for
                       experiments such as net.ipv4.tcp_notsent_lowat=131072; the
                       docs are never rewritten from such a run.
  --tcpipe-arg ARG     Pass ARG to both tcpipe processes (repeatable), e.g. --max-window=64M.
                       Runs with --sysctl or --tcpipe-arg never rewrite the docs.
  --diagnose DIR       Instead: run the bulk and interactive workloads with tcpipe's window
                       trace, ss -tmi samples of the link and CPU profiles (node --cpu-prof),
                       and write DIR/diagnose.md (default: paths tcpipe,tcpipe-secret,
                       profiles rtt20,rtt200).
  -h, --help           This text.`;

export function parseOptions(argv: readonly string[]): WanOptions | 'help' {
  let smoke = false;
  let profiles: string[] | null = null;
  let paths: WanPathId[] | null = null;
  let sizeMiB: number | null = null;
  let capS: number | null = null;
  let newStreams: number | null = null;
  let out = 'bench/results/wan-latest.json';
  let svg = 'docs/bench-wan.svg';
  let docs = true;
  let install = true;
  let realtime = true;
  let diagnoseDir: string | null = null;
  const sysctls: string[] = [];
  const tcpipeArgs: string[] = [];
  const value = (i: number, flag: string): string => {
    const v = argv[i + 1];
    if (v === undefined || v.startsWith('--')) throw new Error(`${flag} needs a value`);
    return v;
  };
  const number = (text: string, flag: string, min: number): number => {
    const n = Number(text);
    if (!Number.isFinite(n) || n < min) throw new Error(`${flag} must be a number of at least ${min}, not '${text}'`);
    return n;
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] ?? '';
    switch (a) {
      case '-h':
      case '--help':
        return 'help';
      case '--smoke':
      case '--quick':
        smoke = true;
        break;
      case '--profiles': {
        const list = value(i++, a).split(',');
        for (const p of list) if (!PROFILES.some((x) => x.id === p)) throw new Error(`unknown profile '${p}'`);
        profiles = list;
        break;
      }
      case '--paths': {
        const list = value(i++, a).split(',');
        const known: readonly string[] = WAN_PATHS;
        for (const p of list) if (!known.includes(p)) throw new Error(`unknown path '${p}'`);
        paths = WAN_PATHS.filter((p) => list.includes(p));
        break;
      }
      case '--size':
        sizeMiB = number(value(i++, a), a, 1);
        break;
      case '--cap':
        capS = number(value(i++, a), a, 1);
        break;
      case '--new-streams':
        newStreams = Math.round(number(value(i++, a), a, 1));
        break;
      case '--out':
        out = value(i++, a);
        break;
      case '--svg':
        svg = value(i++, a);
        break;
      case '--no-docs':
        docs = false;
        break;
      case '--no-install':
        install = false;
        break;
      case '--no-realtime':
        realtime = false;
        break;
      case '--sysctl': {
        const kv = value(i++, a);
        if (!/^net\.[a-z0-9_.]+=[0-9 ]+$/.test(kv)) throw new Error(`--sysctl takes net.<key>=<number>, not '${kv}'`);
        sysctls.push(kv);
        break;
      }
      case '--tcpipe-arg': {
        // Its value is itself a flag: taken as is.
        const v = argv[++i];
        if (v === undefined) throw new Error(`${a} needs a value`);
        tcpipeArgs.push(v);
        break;
      }
      case '--diagnose':
        diagnoseDir = value(i++, a);
        break;
      default:
        throw new Error(`unknown option '${a}' (see --help)`);
    }
  }
  const defaultPaths: readonly WanPathId[] = diagnoseDir !== null ? ['tcpipe', 'tcpipe-secret'] : WAN_PATHS;
  return {
    mode: smoke ? 'smoke' : 'full',
    profiles: profiles ?? (smoke ? ['rtt20'] : diagnoseDir !== null ? ['rtt20', 'rtt200'] : PROFILES.map((p) => p.id)),
    paths: paths ?? defaultPaths,
    bulkBytes: (sizeMiB ?? (smoke ? 24 : 640)) * 1024 * 1024,
    capMs: (capS ?? (smoke ? 3 : 12)) * 1000,
    newStreams: newStreams ?? (smoke ? 20 : 100),
    idleMinMs: smoke ? 300 : 1000,
    warmupMinMs: smoke ? 500 : 2000,
    loadMinMs: smoke ? 1000 : 4000,
    loadMaxMs: smoke ? 1000 : 8000,
    out,
    svg,
    docs: docs && !smoke && diagnoseDir === null && sysctls.length + tcpipeArgs.length === 0,
    install: install && !smoke,
    realtime,
    diagnoseDir,
    sysctls,
    tcpipeArgs,
  };
}
