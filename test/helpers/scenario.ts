/**
 * The fault suite's results: every scenario appends one row
 * {scenario, injected, checked, result, figures} as a JSON line to the
 * results file (dist/faults-results.jsonl, or $TCPIPE_FAULTS_RESULTS).
 * scripts/run-tests.mjs truncates it before the faults suite and prints the
 * rows as a markdown table afterwards (scripts/faults-table.mjs does the same
 * on its own).
 *
 * Use `scenario(t, name, injected, body)`: the body notes its checks with
 * `check(what)` and its measurements with `figure(name, value)`; the row is
 * written whether the body passes or throws ('pass', 'FAIL: <message>').
 */
import { appendFileSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { TestContext } from 'node:test';

/** dist/test/helpers -> dist/faults-results.jsonl */
export const RESULTS_FILE = process.env.TCPIPE_FAULTS_RESULTS ?? join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'faults-results.jsonl');

export type FigureValue = number | string | boolean;

export interface Row {
  readonly scenario: string;
  readonly injected: string;
  readonly checked: string;
  readonly result: string;
  readonly figures: Readonly<Record<string, FigureValue>>;
  readonly mode: 'quick' | 'soak';
  readonly at: string;
}

export const SOAK = process.env.TCPIPE_SOAK === '1';

/** Appends one row to the results file. */
export function recordRow(row: Omit<Row, 'mode' | 'at'>): void {
  const full: Row = { ...row, mode: SOAK ? 'soak' : 'quick', at: new Date().toISOString() };
  mkdirSync(dirname(RESULTS_FILE), { recursive: true });
  appendFileSync(RESULTS_FILE, JSON.stringify(full) + '\n');
}

export interface ScenarioContext {
  /** Notes a check the scenario makes (listed in the row, in order). */
  check(what: string): void;
  /** Records a measurement (also printed as a test diagnostic). */
  figure(name: string, value: FigureValue): void;
  readonly figures: Readonly<Record<string, FigureValue>>;
}

function round(value: FigureValue): FigureValue {
  if (typeof value !== 'number' || Number.isInteger(value)) return value;
  return Math.abs(value) >= 100 ? Math.round(value) : Math.round(value * 100) / 100;
}

/**
 * Runs `body` as one scenario and records its row, passed or failed. A
 * scenario that fails because of a known product bug names it in `knownBug`
 * (the test itself is then declared with `todo: knownBug`, so that the run
 * shows it without failing); the row says so.
 */
export async function scenario(
  t: TestContext,
  name: string,
  injected: string,
  body: (s: ScenarioContext) => Promise<void>,
  knownBug?: string,
): Promise<void> {
  const checks: string[] = [];
  const figures: Record<string, FigureValue> = {};
  const ctx: ScenarioContext = {
    check: (what) => {
      checks.push(what);
    },
    figure: (key, value) => {
      figures[key] = round(value);
      t.diagnostic(`${key}: ${String(round(value))}`);
    },
    figures,
  };
  const bugIds = knownBug === undefined ? '' : (knownBug.match(/BUG-\d+/g) ?? ['known bug']).join(', ');
  let result = knownBug === undefined ? 'pass' : `pass (${bugIds} no longer reproduces)`;
  try {
    await body(ctx);
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    const first = message.split('\n')[0]?.slice(0, 300) ?? '';
    result = knownBug === undefined ? `FAIL: ${first}` : `FAIL, ${bugIds}: ${first}`;
    throw err;
  } finally {
    recordRow({ scenario: name, injected, checked: checks.join('; '), result, figures });
  }
}

/** A row for a scenario that could not run (no network namespaces, not root). */
export function recordSkipped(name: string, injected: string, reason: string): void {
  recordRow({ scenario: name, injected, checked: '', result: `skipped: ${reason.split('\n')[0] ?? ''}`, figures: {} });
}

/**
 * Product bugs the fault suite found, still open. A test that fails because
 * of one is declared with `todo: BUGS.x` (the run shows it, marked, without
 * failing) and its results row says which bug. Once fixed, the test passes
 * ("ok ... # TODO"): remove the marker. Details: docs/RELIABILITY.md, which
 * also lists the bugs found and fixed since (BUG-1, BUG-3).
 */
export const BUGS = Object.freeze({
  resetAsFin:
    'BUG-2 (partly fixed): libuv reports a TCP reset that arrives after a partial read as an end of stream (POLLHUP). src/endpoints/pipe.ts now probes with an empty write before relaying a FIN, which tells a reset apart while its own write side is open; once a socket has already sent its FIN (half-closed), Node offers no way to see the reset, and it is relayed as a FIN. The test agent has the same blind spot for its own half-closed sockets',
});
