/** The bench's command line and the sizes of each workload in full and smoke runs. */
import { parseArgs } from 'node:util';
import { PATH_IDS, type PathId } from './paths.js';
import type { Group } from './workloads.js';

const GROUPS: readonly Group[] = ['perf', 'memory', 'slow'];

const MiB = 1024 * 1024;

export interface BenchOptions {
  readonly mode: 'full' | 'smoke';
  readonly reps: number;
  readonly paths: readonly PathId[];
  /** Bulk 1- and 8-stream transfers: bytes in total, measured at the sink. */
  readonly bulkBytes: number;
  /** Bulk transfers of the scaling curve at 64 and 512 streams. */
  readonly scaleBytes: number;
  readonly scaleLevels: readonly number[];
  readonly rttMs: number;
  readonly scaleRttMs: number;
  readonly connMs: number;
  readonly connWorkers: number;
  readonly idleCounts: readonly number[];
  readonly idleConcurrency: number;
  readonly fairMs: number;
  readonly fairWarmupMs: number;
  readonly slowBytes: number;
  readonly slowMs: number;
  readonly slowRate: number;
  /** Pause before a memory reading, so that the relays finish their work (and collect their garbage). */
  readonly settleMs: number;
  /** Start every path afresh for each group of workloads (memory figures untouched by earlier ones). */
  readonly restartPerGroup: boolean;
  /** The groups of workloads to run (all by default; see workloads.ts). */
  readonly groups: readonly Group[];
  /** Run every workload on the transport paths too, not only what their targets need (see plan.ts). */
  readonly allWorkloads: boolean;
  readonly out: string;
  readonly svg: string;
  /** Update docs/BENCHMARKS.md and docs/bench-streams.svg (full runs of every path only). */
  readonly docs: boolean;
  readonly install: boolean;
  /** Profile the tcpipe plaintext bulk 1-stream path into this directory instead of benchmarking. */
  readonly profileDir: string | null;
  /** What --profile runs: the bulk 1-stream transfer or the connection-rate workload. */
  readonly profileWorkload: 'bulk' | 'conn';
}

export const USAGE = `Usage: npm run bench -- [options]      (or: node dist/bench/run.js [options])

  --smoke, --quick     A few seconds: tiny sizes, one repetition, peers that are
                       missing are skipped (and reported), nothing installed.
  --reps N             Repetitions, interleaved across paths (default 3).
  --size MiB           Bytes of each bulk transfer, 1 and 8 streams (default 1024).
  --paths LIST         Comma-separated subset of: ${PATH_IDS.join(',')}.
  --only LIST          Groups of workloads to run, any of perf,memory,slow
                       (default all; perf: RTT, bulk, connections, fairness,
                       scaling). docs/ is left alone unless all ran.
  --all-workloads      Run fairness, scaling, memory and the slow reader on the
                       transport paths (tcpipe-ws*, tcpipe-squid, tcpipe-resume)
                       too; by default they run RTT, bulk and connections only.
  --slow-mib N         Bytes the user offers to the 1 MB/s reader (default 128;
                       1024 is the issue's full size).
  --slow-seconds S     How long the slow reader is watched (default 3).
  --out FILE           JSON results (default bench/results/latest.json,
                       bench/results/smoke.json with --smoke).
  --svg FILE           Chart (default docs/bench-streams.svg for a full run of
                       every path, else bench/results/streams.svg).
  --no-docs            Leave docs/ alone even after a full run.
  --no-install         Do not apt-get install socat or OpenSSH when missing.
  --profile DIR        Instead: run a tcpipe path's bulk 1-stream workload under
                       node --cpu-prof and summarise both profiles: the first
                       tcpipe path --paths names (default: plain tcpipe; e.g.
                       --paths tcpipe-ws for the WebSocket link).
  --profile-workload W With --profile: bulk (default) or conn (the connection
                       rate workload, 8 workers for 5 s).
  -h, --help           This text.`;

export function parseOptions(argv: readonly string[]): BenchOptions | 'help' {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      smoke: { type: 'boolean' },
      quick: { type: 'boolean' },
      reps: { type: 'string' },
      size: { type: 'string' },
      paths: { type: 'string' },
      only: { type: 'string' },
      'all-workloads': { type: 'boolean' },
      'slow-mib': { type: 'string' },
      'slow-seconds': { type: 'string' },
      out: { type: 'string' },
      svg: { type: 'string' },
      'no-docs': { type: 'boolean' },
      'no-install': { type: 'boolean' },
      profile: { type: 'string' },
      'profile-workload': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  });
  if (values.help === true) return 'help';
  const smoke = values.smoke === true || values.quick === true;
  const number = (text: string | undefined, name: string, fallback: number): number => {
    if (text === undefined) return fallback;
    const n = Number(text);
    if (!Number.isFinite(n) || n <= 0) throw new Error(`${name}: expected a positive number, got '${text}'`);
    return n;
  };
  const paths = values.paths === undefined ? [...PATH_IDS] : values.paths.split(',').map((p) => p.trim());
  for (const p of paths) {
    if (!(PATH_IDS as readonly string[]).includes(p)) throw new Error(`--paths: unknown path '${p}' (known: ${PATH_IDS.join(', ')})`);
  }
  const only = values.only === undefined ? [...GROUPS] : values.only.split(',').map((g) => g.trim());
  for (const g of only) {
    if (!(GROUPS as readonly string[]).includes(g)) throw new Error(`--only: unknown group '${g}' (known: ${GROUPS.join(', ')})`);
  }
  const groups = GROUPS.filter((g) => only.includes(g));
  const bulkBytes = Math.round(number(values.size, '--size', smoke ? 8 : 1024) * MiB);
  const profileWorkload = values['profile-workload'] ?? 'bulk';
  if (profileWorkload !== 'bulk' && profileWorkload !== 'conn') throw new Error(`--profile-workload: expected bulk or conn, got '${profileWorkload}'`);
  const allPaths = paths.length === PATH_IDS.length && groups.length === GROUPS.length;
  const full = !smoke;
  return {
    mode: smoke ? 'smoke' : 'full',
    reps: Math.round(number(values.reps, '--reps', smoke ? 1 : 3)),
    paths: PATH_IDS.filter((p) => paths.includes(p)),
    bulkBytes,
    scaleBytes: Math.max(MiB, Math.round(bulkBytes / 4)),
    scaleLevels: smoke ? [1, 8, 64] : [1, 8, 64, 512],
    rttMs: smoke ? 150 : 1000,
    scaleRttMs: smoke ? 100 : 700,
    connMs: smoke ? 200 : 2500,
    connWorkers: 8,
    idleCounts: smoke ? [20, 100] : [1000, 10000],
    idleConcurrency: 64,
    fairMs: smoke ? 300 : 1500,
    fairWarmupMs: smoke ? 100 : 300,
    slowBytes: Math.round(number(values['slow-mib'], '--slow-mib', smoke ? 8 : 128) * MiB),
    slowMs: Math.round(number(values['slow-seconds'], '--slow-seconds', smoke ? 0.5 : 3) * 1000),
    slowRate: 1_000_000,
    settleMs: smoke ? 100 : 1000,
    restartPerGroup: full,
    groups,
    allWorkloads: values['all-workloads'] === true,
    out: values.out ?? (smoke ? 'bench/results/smoke.json' : 'bench/results/latest.json'),
    svg: values.svg ?? (full && allPaths ? 'docs/bench-streams.svg' : 'bench/results/streams.svg'),
    docs: full && allPaths && values['no-docs'] !== true,
    install: full && values['no-install'] !== true,
    profileDir: values.profile ?? null,
    profileWorkload,
  };
}
