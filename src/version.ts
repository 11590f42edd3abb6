/** The package version, read once from package.json next to the build. */
import { readFileSync } from 'node:fs';

function readVersion(): string {
  try {
    const url = new URL('../../package.json', import.meta.url);
    const pkg = JSON.parse(readFileSync(url, 'utf8')) as { version?: unknown };
    return typeof pkg.version === 'string' ? pkg.version : '0.0.0';
  } catch {
    return '0.0.0';
  }
}

/** Set by the standalone build (scripts/build-sea.mjs), where no package.json is beside the code. */
declare const __TCPIPE_VERSION__: string | undefined;

export const VERSION = typeof __TCPIPE_VERSION__ === 'string' ? __TCPIPE_VERSION__ : readVersion();
