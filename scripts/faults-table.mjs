#!/usr/bin/env node
// Prints the fault suite's results (dist/faults-results.jsonl, one JSON row per
// scenario: {scenario, injected, checked, result, figures, mode, at}) as a
// markdown table. Usage: node scripts/faults-table.mjs [results.jsonl] [--out=table.md]
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export const DEFAULT_RESULTS = 'dist/faults-results.jsonl';

function cell(text) {
  return String(text).replace(/\|/g, '\\|').replace(/\r?\n/g, ' ');
}

function figures(f) {
  return Object.entries(f ?? {})
    .map(([k, v]) => `${k}: ${v}`)
    .join('; ');
}

/** The markdown table for the rows in `file` (null if there are none). */
export function faultsTable(file = DEFAULT_RESULTS) {
  let text;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return null;
  }
  const rows = text
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line) => {
      try {
        return JSON.parse(line);
      } catch {
        return null;
      }
    })
    .filter((row) => row !== null);
  if (rows.length === 0) return null;
  const modes = [...new Set(rows.map((r) => r.mode))].join(', ');
  const passed = rows.filter((r) => String(r.result).startsWith('pass')).length;
  const known = rows.filter((r) => /^FAIL, BUG-/.test(String(r.result))).length;
  const lines = [
    `Fault injection results (${modes}; ${rows[0].at} to ${rows[rows.length - 1].at}): ${passed} of ${rows.length} passed` +
      (known > 0 ? `, ${known} failed on a known bug` : ''),
    '',
    '| Scenario | Injected | Checked | Result | Figures |',
    '|---|---|---|---|---|',
    ...rows.map((r) => `| ${cell(r.scenario)} | ${cell(r.injected)} | ${cell(r.checked)} | ${cell(r.result)} | ${cell(figures(r.figures))} |`),
  ];
  return lines.join('\n');
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const args = process.argv.slice(2);
  const out = args.find((a) => a.startsWith('--out='))?.slice('--out='.length);
  const file = args.find((a) => !a.startsWith('--')) ?? DEFAULT_RESULTS;
  const table = faultsTable(file);
  if (table === null) {
    console.error(`no fault results in ${file}`);
    process.exit(1);
  }
  console.log(table);
  if (out !== undefined) writeFileSync(out, table + '\n');
}
