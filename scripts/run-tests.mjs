#!/usr/bin/env node
// Runs the compiled test files with node's test runner.
// Usage: node scripts/run-tests.mjs [suite...]   (suites: unit integration e2e; default all)
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';

const root = 'dist/test';
const suites = process.argv.slice(2).length > 0 ? process.argv.slice(2) : ['unit', 'integration', 'e2e'];

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

const files = suites.flatMap((suite) => collect(join(root, suite)));
if (files.length === 0) {
  console.error(`no test files found under ${root} for: ${suites.join(', ')}`);
  process.exit(1);
}
const result = spawnSync(process.execPath, ['--test', '--test-concurrency=2', '--test-timeout=180000', ...files], {
  stdio: 'inherit',
});
process.exit(result.status ?? 1);
