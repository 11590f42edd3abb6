/**
 * What a run leaves behind: the markdown report (stdout), the JSON results,
 * the SVG chart, and, after a full run of every path, the results section of
 * docs/BENCHMARKS.md (between its bench:results markers) with a reference
 * copy of the JSON that the document cites.
 */
import { copyFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import type { BenchOptions } from './options.js';
import { PATH_LABELS, type PathId } from './paths.js';
import { coreOnlyPaths } from './plan.js';
import {
  deriveAddedRtt,
  mediansOf,
  metricDefs,
  ratioTables,
  ratios,
  resultsTable,
  targetChecks,
  targetsTable,
  transportRatioTable,
  type Medians,
  type Samples,
} from './report.js';
import { median } from './stats.js';
import { streamsChart } from './svg.js';

export interface Machine {
  readonly nproc: number;
  readonly model: string;
  readonly kernel: string;
  readonly node: string;
  readonly tcpipe: string;
  readonly socat: string | null;
  readonly ssh: string | null;
  /** squid's version, for the tcpipe-squid path (absent in runs before it existed). */
  readonly squid?: string | null;
  /** The hard limit of open files the relays got (no CAP_SYS_RESOURCE means no raising it). */
  readonly openFilesLimit: string;
  readonly loadAverageAtStart: readonly number[];
  /** The commit measured, with "+dirty" when src/ had uncommitted changes. */
  readonly commit: string;
}

export interface PathStatus {
  readonly id: PathId;
  readonly label: string;
  readonly skipped: string | null;
  /** Runs that failed (the path did not start, a workload threw). */
  readonly errors: string[];
  /** Figures that could not be measured in a run (streams that failed, bytes missing). */
  readonly notes: string[];
}

export interface RunRecord {
  readonly startedAt: string;
  readonly seconds: number;
  readonly options: BenchOptions;
  readonly machine: Machine;
  readonly paths: readonly PathStatus[];
  readonly samples: Samples;
  /**
   * For each path run, the share of the host's CPU capacity used by processes
   * other than the bench and its children (0..1): other work on the host shows here.
   */
  readonly foreignCpu: readonly number[];
}

const pct = (share: number): string => `${(100 * share).toFixed(0)}%`;

export const RESULTS_BEGIN = '<!-- bench:results:begin -->';
export const RESULTS_END = '<!-- bench:results:end -->';
const REFERENCE_JSON = 'bench/results/reference.json';

export function writeOutputs(record: RunRecord, repoRoot: string): { markdown: string; medians: Medians } {
  const o = record.options;
  deriveAddedRtt(record.samples);
  const medians = mediansOf(record.samples);
  const defs = metricDefs(o);
  const ran = record.paths.filter((p) => p.skipped === null).map((p) => p.id);
  const ratioList = ratios(defs, medians, ran);
  const checks = targetChecks(medians, o);
  const coreOnly = coreOnlyPaths(ran, o);
  const m = record.machine;
  const markdown = [
    `- Run of ${record.startedAt} (${o.mode}, ${o.reps} repetition${o.reps === 1 ? '' : 's'}, medians; ${Math.round(record.seconds)} s).`,
    `- Machine: ${m.nproc} × ${m.model}, Linux ${m.kernel}, Node ${m.node}; tcpipe ${m.tcpipe} at ${m.commit}; ${m.socat ?? 'no socat'}; ${m.ssh ?? 'no ssh'}; ${m.squid ?? 'no squid'}; open files limit ${m.openFilesLimit}; load average at start ${m.loadAverageAtStart.map((x) => x.toFixed(2)).join(' ')}; CPU used by other processes on the host during the runs: median ${pct(median(record.foreignCpu) ?? 0)}, max ${pct(Math.max(0, ...record.foreignCpu))} of the machine.`,
    `- Sizes: bulk ${(o.bulkBytes / 1048576).toLocaleString('en-US')} MiB per run (1 and 8 streams), ${(o.scaleBytes / 1048576).toLocaleString('en-US')} MiB at 64+ streams; RTT ${o.rttMs} ms; connections ${o.connMs} ms × ${o.connWorkers} workers; fairness ${o.fairMs} ms; slow reader ${(o.slowBytes / 1048576).toLocaleString('en-US')} MiB offered at 1 MB/s for ${o.slowMs / 1000} s; ${(o.idleCounts[o.idleCounts.length - 1] ?? 0).toLocaleString('en-US')} idle streams in the first repetition only.`,
    ...(coreOnly.length === 0
      ? []
      : [`- ${coreOnly.map((id) => PATH_LABELS[id]).join(', ')}: RTT, bulk and connections only (what their comparison with the plain link needs); no fairness, scaling, memory or slow reader (–).`]),
    ...record.paths.filter((p) => p.skipped !== null).map((p) => `- Skipped ${p.label}: ${p.skipped ?? ''}.`),
    ...record.paths.flatMap((p) => p.errors.map((e) => `- Error on ${p.label}: ${e}`)),
    ...record.paths.flatMap((p) => p.notes.map((e) => `- Not measured on ${p.label}, ${e}`)),
    '',
    resultsTable(defs, medians, ran),
    '',
    ratioTables(defs, ratioList, ran),
    transportRatioTable(defs, ratioList),
    'The issue\'s targets:',
    '',
    targetsTable(checks),
    '',
  ].join('\n');

  const json = {
    schema: 1,
    startedAt: record.startedAt,
    seconds: Math.round(record.seconds),
    options: record.options,
    machine: record.machine,
    foreignCpu: record.foreignCpu,
    paths: record.paths,
    metrics: defs,
    medians,
    samples: record.samples,
    ratios: ratioList,
    targets: checks,
  };
  const outPath = resolve(repoRoot, o.out);
  mkdirSync(dirname(outPath), { recursive: true });
  writeFileSync(outPath, `${JSON.stringify(json, null, 2)}\n`);

  const svgPath = resolve(repoRoot, o.svg);
  mkdirSync(dirname(svgPath), { recursive: true });
  const subtitle = `${m.nproc} × ${m.model}, Linux ${m.kernel}, Node ${m.node}; medians of ${o.reps}; ${record.startedAt.slice(0, 10)}`;
  writeFileSync(svgPath, streamsChart(medians, ran, o.scaleLevels, subtitle));

  if (o.docs) updateDocs(repoRoot, markdown, outPath);
  return { markdown, medians };
}

function updateDocs(repoRoot: string, markdown: string, jsonPath: string): void {
  const doc = join(repoRoot, 'docs', 'BENCHMARKS.md');
  if (!existsSync(doc)) return;
  const text = readFileSync(doc, 'utf8');
  const begin = text.indexOf(RESULTS_BEGIN);
  const end = text.indexOf(RESULTS_END);
  if (begin < 0 || end < begin) return;
  writeFileSync(doc, `${text.slice(0, begin + RESULTS_BEGIN.length)}\n${markdown}\n${text.slice(end)}`);
  copyFileSync(jsonPath, join(repoRoot, REFERENCE_JSON));
}

export function pathStatus(id: PathId, skipped: string | null): PathStatus {
  return { id, label: PATH_LABELS[id], skipped, errors: [], notes: [] };
}
