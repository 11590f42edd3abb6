/**
 * The benchmark's smoke run (npm run bench:smoke): a few seconds, tiny sizes,
 * no thresholds. It checks that the harness works: every path that ran
 * produced a number for each of its metrics, the JSON and the chart were
 * written, and a peer that is missing is reported as skipped, not dropped.
 * The bench has its own tsconfig (bench/tsconfig.json), outside `npm test`'s
 * build: this test builds it first, as `npm run build:bench` does.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, test } from 'node:test';
import { fileURLToPath, pathToFileURL } from 'node:url';

const distRoot = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const bench = join(distRoot, 'bench', 'run.js');
const repoRoot = join(distRoot, '..');

/** Metrics that only a relay has: the direct path has no relay process to measure. */
const RELAY_ONLY = /^(cpu_|mem_|stream_kib_|idle_held_|slow_)/;
/** Metrics the transport paths skip (bench/plan.ts: they run RTT, bulk and connections only). */
const NOT_CORE = /^(mem_|stream_kib_|idle_held_|slow_|fair_|scale_)/;
/** Paths that need nothing but Node and tcpipe itself: they must always run. */
const ALWAYS = ['direct', 'node-relay', 'tcpipe', 'tcpipe-secret', 'tcpipe-ws', 'tcpipe-ws-secret'];

interface SmokeJson {
  paths: { id: string; skipped: string | null; errors: string[] }[];
  metrics: { key: string }[];
  medians: Record<string, Record<string, number | null> | undefined>;
}

function run(args: readonly string[]): Promise<{ code: number | null; output: string }> {
  return node([bench, ...args], false);
}

/** Runs node with `args` from the repository root; `output` is stderr, and stdout too when `withStdout` (tsc reports there). */
function node(args: readonly string[], withStdout = true): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, { cwd: repoRoot, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    const keep = (chunk: string): void => {
      output += chunk;
    };
    child.stdout.setEncoding('utf8').on('data', withStdout ? keep : () => undefined);
    child.stderr.setEncoding('utf8').on('data', keep);
    child.once('error', reject);
    child.once('close', (code) => resolve({ code, output }));
  });
}

const dir = mkdtempSync(join(tmpdir(), 'tcpipe-bench-smoke-'));
after(() => rmSync(dir, { recursive: true, force: true }));

test('bench --smoke measures every available path and writes its JSON and chart', { timeout: 240_000 }, async (t) => {
  const tsc = join(repoRoot, 'node_modules', 'typescript', 'bin', 'tsc');
  const built = await node([tsc, '-p', join(repoRoot, 'bench', 'tsconfig.json')]);
  assert.equal(built.code, 0, `the bench did not build:\n${built.output}`);
  const paths = (await import(pathToFileURL(join(distRoot, 'bench', 'paths.js')).href)) as { TRANSPORT_PATHS: readonly string[] };
  const transportPaths = new Set<string>(paths.TRANSPORT_PATHS);
  const out = join(dir, 'smoke.json');
  const svg = join(dir, 'smoke.svg');
  const result = await run(['--smoke', '--out', out, '--svg', svg]);
  assert.equal(result.code, 0, `the smoke run failed:\n${result.output}`);

  const json = JSON.parse(readFileSync(out, 'utf8')) as SmokeJson;
  const ran = json.paths.filter((p) => p.skipped === null).map((p) => p.id);
  for (const id of ALWAYS) assert.ok(ran.includes(id), `${id} did not run`);
  for (const path of json.paths) {
    if (path.skipped !== null) {
      t.diagnostic(`skipped ${path.id}: ${path.skipped}`);
      continue;
    }
    assert.deepEqual(path.errors, [], `${path.id} reported errors`);
    const medians = json.medians[path.id];
    assert.ok(medians !== undefined, `no results for ${path.id}`);
    for (const { key } of json.metrics) {
      if (path.id === 'direct' && RELAY_ONLY.test(key)) continue;
      if (transportPaths.has(path.id) && NOT_CORE.test(key)) continue;
      const value = medians[key];
      assert.ok(typeof value === 'number' && Number.isFinite(value), `${path.id}: ${key} is ${String(value)}`);
    }
  }
  assert.match(readFileSync(svg, 'utf8'), /^<svg [^>]*xmlns="http:\/\/www\.w3\.org\/2000\/svg"/);
});
