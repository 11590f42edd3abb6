/** What a conformance check is, and how its result reads on one line. */
import { FrameType } from '../src/protocol/constants.js';
import { parseCodeAndReason } from '../src/protocol/decode.js';
import { describe, type Seen } from './wire.js';

export type Outcome = { readonly pass: boolean; readonly saw: string } | { readonly skip: string };

export interface Check<C> {
  /** Short stable name (--only and --expect-fail take these). */
  readonly id: string;
  /** docs/PROTOCOL.md section the requirement is in. */
  readonly section: string;
  /** The requirement, as the text states it. */
  readonly must: string;
  run(ctx: C): Promise<Outcome>;
}

export function passIf(pass: boolean, saw: string): Outcome {
  return { pass, saw };
}

/** The peer said GOAWAY `code` (and so closes the link). */
export function goAwayWith(seen: Seen, code: number): Outcome {
  if (seen.kind === 'frame' && seen.frame.type === FrameType.GOAWAY) {
    return passIf(parseCodeAndReason(seen.frame.payload).code === code, describe(seen));
  }
  return passIf(false, describe(seen));
}

export interface RunOptions {
  readonly only: RegExp | null;
  /** Checks known to fail until a listed code change lands: reported XFAIL, not counted. */
  readonly expectFail: ReadonlySet<string>;
}

/** Runs the checks in order and prints one line each; true when none failed. */
export async function runChecks<C>(checks: readonly Check<C>[], ctx: C, options: RunOptions, print: (line: string) => void): Promise<boolean> {
  let failed = 0;
  let passed = 0;
  let skipped = 0;
  for (const check of checks) {
    if (options.only !== null && !options.only.test(check.id)) continue;
    let outcome: Outcome;
    try {
      outcome = await check.run(ctx);
    } catch (err) {
      outcome = { pass: false, saw: `the check itself failed: ${err instanceof Error ? err.message : String(err)}` };
    }
    const expected = options.expectFail.has(check.id);
    let status: string;
    if ('skip' in outcome) {
      status = 'SKIP';
      skipped++;
    } else if (outcome.pass) {
      status = expected ? 'XPASS' : 'PASS';
      passed++;
    } else if (expected) {
      status = 'XFAIL';
    } else {
      status = 'FAIL';
      failed++;
    }
    const saw = 'skip' in outcome ? `skipped: ${outcome.skip}` : `peer: ${outcome.saw}`;
    print(`${status.padEnd(5)} ${check.id} [${check.section}] MUST: ${check.must} -- ${saw}`);
  }
  print(`${passed} passed, ${failed} failed, ${skipped} skipped`);
  return failed === 0;
}
