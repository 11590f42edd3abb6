/**
 * A child process's stdout and stderr as lines, for every child the tests
 * start (the CLI on loopback, tcpipe and agents in namespaces, middleboxes):
 * waits on a line with a deadline that fail early, with the output's tail,
 * when the child exits without printing it.
 */
import type { ChildProcess } from 'node:child_process';
import { StringDecoder } from 'node:string_decoder';
import type { Readable } from 'node:stream';

/** Output kept per child (older lines are dropped past it; indices stay absolute). */
const MAX_CHARS = 1024 * 1024;

export class ProcessOutput {
  private readonly kept: string[] = [];
  private dropped = 0;
  private chars = 0;
  private combined = '';
  private readonly lineListeners = new Set<(line: string, index: number) => void>();
  private readonly exitListeners = new Set<() => void>();
  private closed = false;

  constructor(
    private readonly child: ChildProcess,
    /** How errors name the child ("tcpipe server", "the CLI (-s 61001)"). */
    public what: string,
  ) {
    for (const stream of [child.stdout, child.stderr]) this.attach(stream);
    child.once('close', () => {
      this.closed = true;
      for (const l of [...this.exitListeners]) l();
    });
  }

  private attach(stream: Readable | null): void {
    if (stream === null) return;
    const decoder = new StringDecoder('utf8');
    let partial = '';
    const onText = (text: string): void => {
      if (this.combined.length < MAX_CHARS) this.combined += text;
      const parts = (partial + text).split(/\r?\n/);
      partial = parts.pop() ?? '';
      for (const line of parts) this.push(line);
    };
    stream.on('data', (d: Buffer | string) => onText(typeof d === 'string' ? d : decoder.write(d)));
    stream.on('end', () => {
      onText(decoder.end());
      if (partial.length > 0) this.push(partial);
      partial = '';
    });
  }

  private push(line: string): void {
    const index = this.dropped + this.kept.push(line) - 1;
    this.chars += line.length + 1;
    while (this.chars > MAX_CHARS && this.kept.length > 1) {
      this.chars -= (this.kept.shift()?.length ?? 0) + 1;
      this.dropped++;
    }
    for (const l of [...this.lineListeners]) l(line, index);
  }

  /** Calls `listener` with every line from now on. */
  onLine(listener: (line: string) => void): void {
    this.lineListeners.add((line) => listener(line));
  }

  /** The index the next line will have (for waits on what comes after now). */
  get length(): number {
    return this.dropped + this.kept.length;
  }

  /** The lines kept, oldest first. */
  get lines(): readonly string[] {
    return this.kept;
  }

  /** Lines from index `from` on (those still kept). */
  since(from: number): string[] {
    return this.kept.slice(Math.max(0, from - this.dropped));
  }

  /** Everything printed so far, stdout and stderr interleaved (bounded). */
  text(): string {
    return this.combined;
  }

  /** The first line at index >= `from` matching `regex`; rejects after `ms`, or when the child exits without it. */
  waitFor(regex: RegExp, ms: number, from = 0): Promise<string> {
    const test = (line: string): boolean => {
      regex.lastIndex = 0;
      return regex.test(line);
    };
    const past = this.since(from).find(test);
    if (past !== undefined) return Promise.resolve(past);
    return new Promise((resolve, reject) => {
      const cleanup = (): void => {
        clearTimeout(timer);
        this.lineListeners.delete(onLine);
        this.exitListeners.delete(onExit);
      };
      const tail = (): string => this.kept.slice(-40).join('\n');
      const onLine = (line: string, index: number): void => {
        if (index < from || !test(line)) return;
        cleanup();
        resolve(line);
      };
      const onExit = (): void => {
        cleanup();
        const how = `code ${String(this.child.exitCode)}, signal ${String(this.child.signalCode)}`;
        reject(new Error(`${this.what} exited (${how}) without a line matching ${String(regex)}; last output:\n${tail()}`));
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(new Error(`timed out after ${ms} ms waiting for ${this.what} to print a line matching ${String(regex)}; last output:\n${tail()}`));
      }, ms);
      this.lineListeners.add(onLine);
      this.exitListeners.add(onExit);
      if (this.closed) onExit();
    });
  }
}

const outputs = new WeakMap<ChildProcess, ProcessOutput>();

/**
 * The child's output as lines, tracked from the first call on (idempotent;
 * `Topology.spawn` and the spawners here call it at once, so no line is
 * missed). `what` names the child in errors; `onLine` sees lines from now on.
 */
export function trackOutput(child: ChildProcess, what?: string, onLine?: (line: string) => void): ProcessOutput {
  let output = outputs.get(child);
  if (output === undefined) {
    output = new ProcessOutput(child, what ?? `process ${String(child.pid)}`);
    outputs.set(child, output);
  } else if (what !== undefined) {
    output.what = what;
  }
  if (onLine !== undefined) output.onLine(onLine);
  return output;
}

/** Everything the child has written to stdout/stderr so far (interleaved, bounded). */
export function outputOf(child: ChildProcess): string {
  return outputs.get(child)?.text() ?? '';
}

/**
 * The first line of the child's stdout or stderr matching `regex` (lines
 * already printed included unless `includePast` is false); rejects, with the
 * output, on timeout or when the child exits without it.
 */
export function waitForLine(child: ChildProcess, regex: RegExp, timeoutMs: number, opts: { includePast?: boolean } = {}): Promise<string> {
  const output = trackOutput(child);
  return output.waitFor(regex, timeoutMs, (opts.includePast ?? true) ? 0 : output.length);
}
