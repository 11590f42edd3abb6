/**
 * A small structured logger. Events have stable names (link_up, stream_open,
 * ...) so that the JSON form can be parsed; the text form is for people.
 */
export type LogLevel = 'error' | 'warn' | 'info' | 'debug';
export type LogFields = Readonly<Record<string, string | number | boolean | undefined>>;

export interface Logger {
  error(event: string, message: string, fields?: LogFields): void;
  warn(event: string, message: string, fields?: LogFields): void;
  info(event: string, message: string, fields?: LogFields): void;
  debug(event: string, message: string, fields?: LogFields): void;
  enabled(level: LogLevel): boolean;
}

const RANK: Readonly<Record<LogLevel, number>> = Object.freeze({ error: 0, warn: 1, info: 2, debug: 3 });

export interface LoggerOptions {
  readonly level: LogLevel;
  readonly format: 'text' | 'json';
  readonly write: (line: string) => void;
  readonly now?: () => Date;
  /** Prefix of every text line (the demo names its two ends). */
  readonly name?: string;
}

export function createLogger(options: LoggerOptions): Logger {
  const limit = RANK[options.level];
  const now = options.now ?? (() => new Date());
  const emit = (level: LogLevel, event: string, message: string, fields?: LogFields): void => {
    if (RANK[level] > limit) return;
    const time = now().toISOString();
    if (options.format === 'json') {
      const record: Record<string, unknown> = { time, level, event, msg: message };
      if (options.name !== undefined) record.name = options.name;
      if (fields) for (const [k, v] of Object.entries(fields)) if (v !== undefined) record[k] = v;
      options.write(JSON.stringify(record) + '\n');
      return;
    }
    const name = options.name !== undefined ? `[${options.name}] ` : '';
    options.write(`${time} ${level.toUpperCase().padEnd(5)} ${name}${message}\n`);
  };
  return {
    error: (e, m, f) => emit('error', e, m, f),
    warn: (e, m, f) => emit('warn', e, m, f),
    info: (e, m, f) => emit('info', e, m, f),
    debug: (e, m, f) => emit('debug', e, m, f),
    enabled: (level) => RANK[level] <= limit,
  };
}

/** A logger that drops everything: the library default. */
export const silentLogger: Logger = Object.freeze({
  error: () => undefined,
  warn: () => undefined,
  info: () => undefined,
  debug: () => undefined,
  enabled: () => false,
});
