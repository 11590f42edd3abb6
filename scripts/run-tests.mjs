#!/usr/bin/env node
// Runs the compiled test files with node's test runner.
// Usage: node scripts/run-tests.mjs [suite...]   (suites: unit integration e2e faults; default all)
//
// The faults suite (test/faults) runs after the others, in a run of its own
// with one file at a time, so that its timings are not disturbed by other
// tests; its results file (dist/faults-results.jsonl) is emptied first and
// printed as a markdown table afterwards (also written to dist/faults-results.md).
// TCPIPE_SOAK=1 makes it the long soak.
import { readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { DEFAULT_RESULTS, faultsTable } from './faults-table.mjs';

const root = 'dist/test';
const suites = process.argv.slice(2).length > 0 ? process.argv.slice(2) : ['unit', 'integration', 'e2e', 'faults'];

function collect(dir) {
  let out = [];
  let names;
  try {
    names = readdirSync(dir);
  } catch {
    return out;
  }
  for (const name of names.sort()) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) out = out.concat(collect(path));
    else if (name.endsWith('.test.js')) out.push(path);
  }
  return out;
}

const others = suites.filter((suite) => suite !== 'faults');
const files = others.flatMap((suite) => collect(join(root, suite)));
const faultFiles = suites.includes('faults') ? collect(join(root, 'faults')) : [];
if (files.length === 0 && faultFiles.length === 0) {
  console.error(`no test files found under ${root} for: ${suites.join(', ')}`);
  process.exit(1);
}

let status = 0;
if (files.length > 0) {
  const result = spawnSync(process.execPath, ['--test', '--test-concurrency=2', '--test-timeout=180000', ...files], {
    stdio: 'inherit',
  });
  status = result.status ?? 1;
}

if (faultFiles.length > 0) {
  const results = process.env.TCPIPE_FAULTS_RESULTS ?? DEFAULT_RESULTS;
  writeFileSync(results, '');
  const soak = process.env.TCPIPE_SOAK === '1';
  const started = Date.now();
  const result = spawnSync(process.execPath, ['--test', '--test-concurrency=1', `--test-timeout=${soak ? 3_600_000 : 180_000}`, ...faultFiles], {
    stdio: 'inherit',
  });
  const seconds = Math.round((Date.now() - started) / 1000);
  if ((result.status ?? 1) !== 0) status = result.status ?? 1;
  const table = faultsTable(results);
  if (table !== null) {
    const text = `${table}\n\nFault suite (${soak ? 'soak' : 'quick'}) took ${seconds} s.\n`;
    writeFileSync(results.replace(/\.jsonl$/, '') + '.md', text);
    console.log(`\n${text}`);
  }
}
process.exit(status);
