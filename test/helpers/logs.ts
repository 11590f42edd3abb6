/**
 * tcpipe's logs in tests: a captured logger for in-process instances, and
 * readings of the CLI's text log lines.
 */
import { EventEmitter } from 'node:events';
import { createLogger, type Logger, type LogLevel } from '../../src/log/logger.js';
import { waitForEvent } from './wait.js';

export interface LogCapture {
  readonly logger: Logger;
  readonly lines: string[];
  /** The first line (already written or to come) matching `regex`; rejects with the whole log after `ms`. */
  waitFor(regex: RegExp, ms: number, what?: string): Promise<string>;
  has(regex: RegExp): boolean;
  count(regex: RegExp): number;
  text(): string;
}

function matches(regex: RegExp, line: string): boolean {
  regex.lastIndex = 0;
  return regex.test(line);
}

/** A logger named `name` that keeps its lines (text format); TCPIPE_TEST_LOG=1 also prints them. */
export function captureLog(name: string, level: LogLevel = 'debug'): LogCapture {
  const lines: string[] = [];
  const events = new EventEmitter();
  const logger = createLogger({
    level,
    format: 'text',
    name,
    write: (line) => {
      const l = line.replace(/\n$/, '');
      lines.push(l);
      events.emit('line', l);
      if (process.env.TCPIPE_TEST_LOG === '1') process.stderr.write(line);
    },
  });
  return {
    logger,
    lines,
    has: (regex) => lines.some((l) => matches(regex, l)),
    count: (regex) => lines.filter((l) => matches(regex, l)).length,
    text: () => lines.join('\n'),
    async waitFor(regex, ms, what) {
      const past = lines.find((l) => matches(regex, l));
      if (past !== undefined) return past;
      try {
        const [line] = await waitForEvent(events, 'line', ms, (l) => matches(regex, l as string));
        return line as string;
      } catch {
        throw new Error(`timed out after ${ms} ms waiting for ${what ?? `a log line matching ${String(regex)}`}; log:\n${lines.join('\n')}`);
      }
    },
  };
}

/** The CLI's link-up and link-down lines (text format). */
export const LINK_UP = /INFO .*link up with /;
export const LINK_DOWN = /INFO .*link down with /;

/** Wall-clock time (ms) of a tcpipe text log line, from its ISO timestamp. */
export function lineTime(line: string): number {
  const m = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z) /.exec(line);
  if (m?.[1] === undefined) throw new Error(`no timestamp in log line: ${line}`);
  return Date.parse(m[1]);
}

/** `text` as a literal inside a RegExp. */
export function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
