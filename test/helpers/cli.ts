/**
 * The tcpipe CLI as a child process: where it is, the environment it gets
 * (no inherited secret, proxy or NODE_OPTIONS), and children with their
 * output as lines.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { dirname, join } from 'node:path';
import type { TestContext } from 'node:test';
import { fileURLToPath } from 'node:url';
import { freeHighPort } from './net.js';
import { trackOutput } from './output.js';

/** dist/test/helpers -> repository root (tests run from dist/). */
export const REPO_ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
/** The built CLI, the one path every test spawns. */
export const CLI_MAIN = join(REPO_ROOT, 'dist', 'src', 'cli', 'main.js');
export const NODE = process.execPath;

const INHERITED_NOT = ['TCPIPE_SECRET', 'TCPIPE_PROXY_PASSWORD', 'NODE_OPTIONS', 'http_proxy', 'HTTP_PROXY', 'https_proxy', 'HTTPS_PROXY', 'all_proxy', 'ALL_PROXY', 'no_proxy', 'NO_PROXY'];

/** The test's environment for a CLI child: no inherited secret, proxy or NODE_OPTIONS, plus `env`. */
export function childEnv(env: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const out: NodeJS.ProcessEnv = { ...process.env };
  for (const name of INHERITED_NOT) delete out[name];
  return { ...out, ...env };
}

export interface Exit {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  /** performance.now() at exit. */
  readonly at: number;
}

export interface CliChild {
  readonly child: ChildProcess;
  readonly lines: readonly string[];
  /** The first output line (past or future) matching `regex`; rejects after `ms` or when the child exits without it. */
  waitFor(regex: RegExp, ms: number): Promise<string>;
  /** Settles when the child has exited and its output is read. */
  readonly exited: Promise<Exit>;
  output(): string;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves with the exit code (null when killed). */
  stop(graceMs?: number): Promise<number | null>;
}

/** Runs `node dist/src/cli/main.js ...args` with childEnv(env); SIGKILLed by t.after if still running. */
export function spawnCli(t: TestContext, args: readonly string[], env: NodeJS.ProcessEnv = {}): CliChild {
  const child = spawn(NODE, [CLI_MAIN, ...args], { env: childEnv(env), stdio: ['ignore', 'pipe', 'pipe'] });
  const echo = process.env.TCPIPE_TEST_LOG === '1' ? (line: string) => process.stderr.write(`[cli ${child.pid ?? '?'}] ${line}\n`) : undefined;
  const output = trackOutput(child, `the CLI (${args.join(' ')})`, echo);
  const exited = new Promise<Exit>((resolve) => {
    child.once('close', (code: number | null, signal: NodeJS.Signals | null) => resolve({ code, signal, at: performance.now() }));
  });
  const running = (): boolean => child.exitCode === null && child.signalCode === null;
  t.after(async () => {
    if (running()) child.kill('SIGKILL');
    await exited;
  });
  return {
    child,
    get lines() {
      return output.lines;
    },
    exited,
    output: () => output.lines.join('\n'),
    waitFor: (regex, ms) => output.waitFor(regex, ms),
    async stop(graceMs = 3000) {
      if (!running()) return (await exited).code;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
      const result = await exited;
      clearTimeout(timer);
      return result.code;
    },
  };
}

/**
 * Starts a CLI server (`-s PORT` + args) on a free port above 61000 (the CLI
 * takes no port 0). Retries another port when the one picked is taken
 * meanwhile. Resolves once the server logged its start.
 */
export async function startCliServer(t: TestContext, args: readonly string[], env: NodeJS.ProcessEnv = {}): Promise<{ cli: CliChild; port: number }> {
  let last = '';
  for (let attempt = 0; attempt < 10; attempt++) {
    const port = await freeHighPort();
    const cli = spawnCli(t, ['-s', String(port), ...args], env);
    try {
      await cli.waitFor(/server: link port \d+/, 8000);
      return { cli, port };
    } catch (err) {
      await cli.stop();
      last = cli.output();
      if (!/cannot listen|EADDRINUSE/.test(last)) throw err;
    }
  }
  throw new Error(`no free link port for the CLI server; last output:\n${last}`);
}

export interface CliRun {
  readonly code: number | null;
  /** 'SIGKILL' when it did not exit within the timeout. */
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs the CLI to completion (SIGKILLed after `timeoutMs`); resolves with its exit and output. */
export async function runCli(args: readonly string[], env: NodeJS.ProcessEnv = {}, timeoutMs = 10_000): Promise<CliRun> {
  const child = spawn(NODE, [CLI_MAIN, ...args], { env: childEnv(env), stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  const [code, signal] = (await once(child, 'close')) as [number | null, NodeJS.Signals | null];
  clearTimeout(timer);
  return { code, signal, stdout, stderr };
}
