/**
 * Reads V8 .cpuprofile files (node --cpu-prof) and prints where the time went:
 * self time aggregated by function name + script URL, and by area (tcpipe's
 * own modules, Node's internals, the garbage collector, idle).
 *
 *   node dist/bench/profile-summary.js [--top N] <file.cpuprofile>...
 */
import { readFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';

interface CallFrame {
  readonly functionName: string;
  readonly url: string;
  readonly lineNumber: number;
}

interface ProfileNode {
  readonly id: number;
  readonly callFrame: CallFrame;
}

interface CpuProfile {
  readonly nodes: readonly ProfileNode[];
  readonly startTime: number;
  readonly endTime: number;
  readonly samples: readonly number[];
  readonly timeDeltas: readonly number[];
}

export interface Entry {
  readonly name: string;
  readonly url: string;
  readonly line: number;
  selfUs: number;
}

export interface Summary {
  readonly totalUs: number;
  readonly idleUs: number;
  readonly entries: readonly Entry[];
  readonly areas: ReadonlyMap<string, number>;
}

function shortUrl(url: string): string {
  if (url === '') return '';
  const at = url.indexOf('/dist/');
  if (at >= 0) return url.slice(at + 1);
  return url.replace(/^file:\/\//, '');
}

function area(entry: Entry): string {
  if (entry.name === '(idle)') return 'idle';
  if (entry.name === '(garbage collector)') return 'garbage collector';
  if (entry.name === '(program)') return 'V8/native (program)';
  if (entry.url.includes('dist/src/')) return `tcpipe ${entry.url.replace(/^.*dist\/src\//, '').replace(/\/[^/]*$/, '/')}`;
  if (entry.url.startsWith('node:')) return `node ${entry.url.replace(/^node:(internal\/)?/, '').replace(/\/.*$/, '')}`;
  if (entry.url === '') return 'native (no script)';
  return 'other JS';
}

export function summarise(profile: CpuProfile): Summary {
  const nodeById = new Map<number, ProfileNode>();
  for (const n of profile.nodes) nodeById.set(n.id, n);
  // The time of sample i runs until sample i+1 (the last one until the profile's end).
  const selfByNode = new Map<number, number>();
  let at = profile.startTime;
  const stamps = profile.timeDeltas.map((d) => (at += d));
  for (let i = 0; i < profile.samples.length; i++) {
    const id = profile.samples[i] ?? 0;
    const start = stamps[i] ?? profile.endTime;
    const end = stamps[i + 1] ?? profile.endTime;
    selfByNode.set(id, (selfByNode.get(id) ?? 0) + Math.max(0, end - start));
  }
  const byKey = new Map<string, Entry>();
  for (const [id, us] of selfByNode) {
    const frame = nodeById.get(id)?.callFrame;
    if (frame === undefined) continue;
    const name = frame.functionName === '' ? '(anonymous)' : frame.functionName;
    const url = shortUrl(frame.url);
    const key = `${name}\u0000${url}`;
    const entry = byKey.get(key);
    if (entry === undefined) byKey.set(key, { name, url, line: frame.lineNumber + 1, selfUs: us });
    else entry.selfUs += us;
  }
  const entries = [...byKey.values()].sort((a, b) => b.selfUs - a.selfUs);
  const areas = new Map<string, number>();
  for (const e of entries) areas.set(area(e), (areas.get(area(e)) ?? 0) + e.selfUs);
  const totalUs = entries.reduce((s, e) => s + e.selfUs, 0);
  const idleUs = entries.filter((e) => e.name === '(idle)').reduce((s, e) => s + e.selfUs, 0);
  return { totalUs, idleUs, entries, areas };
}

export function formatSummary(title: string, s: Summary, top: number): string {
  const busy = s.totalUs - s.idleUs;
  const pct = (us: number): string => `${((100 * us) / Math.max(1, busy)).toFixed(1)}%`;
  const lines = [
    `${title}: ${(s.totalUs / 1e6).toFixed(2)} s profiled, ${(busy / 1e6).toFixed(2)} s busy (not idle); percentages are of busy time`,
    '',
    '| self ms | % busy | function | script:line |',
    '|---:|---:|---|---|',
  ];
  for (const e of s.entries.filter((x) => x.name !== '(idle)').slice(0, top)) {
    lines.push(`| ${(e.selfUs / 1000).toFixed(0)} | ${pct(e.selfUs)} | ${e.name} | ${e.url === '' ? '' : `${e.url}:${e.line}`} |`);
  }
  lines.push('', '| area | self ms | % busy |', '|---|---:|---:|');
  for (const [name, us] of [...s.areas].filter(([n]) => n !== 'idle').sort((a, b) => b[1] - a[1])) {
    lines.push(`| ${name} | ${(us / 1000).toFixed(0)} | ${pct(us)} |`);
  }
  return lines.join('\n');
}

export function summariseFile(path: string, title: string, top = 25): string {
  const profile = JSON.parse(readFileSync(path, 'utf8')) as CpuProfile;
  return formatSummary(title, summarise(profile), top);
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const args = process.argv.slice(2);
  let top = 25;
  const files: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i] ?? '';
    if (a === '--top') top = Number(args[++i] ?? '25');
    else files.push(a);
  }
  if (files.length === 0) {
    process.stderr.write('usage: node dist/bench/profile-summary.js [--top N] <file.cpuprofile>...\n');
    process.exitCode = 2;
  }
  for (const f of files) process.stdout.write(`${summariseFile(f, f, top)}\n\n`);
}
