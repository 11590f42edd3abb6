import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';
import { ErrorCodes } from '../../src/errors.js';
import { DEFAULTS } from '../../src/config/defaults.js';

const root = fileURLToPath(new URL('../../../', import.meta.url));
const api = readFileSync(`${root}docs/API.md`, 'utf8');

test('every error code is documented in docs/API.md', () => {
  for (const code of Object.values(ErrorCodes)) assert.ok(api.includes(`\`${code}\``), code);
});

test('the documented defaults are the real ones', () => {
  const security = readFileSync(`${root}docs/SECURITY.md`, 'utf8');
  assert.match(api, new RegExp(`\\| \`heartbeatSeconds\` \\| number \\| ${DEFAULTS.heartbeatSeconds} \\|`));
  assert.match(security, new RegExp(`\\| ${DEFAULTS.maxPendingHandshakes} \\| \`--max-handshakes\``));
  assert.match(security, new RegExp(`\\| ${DEFAULTS.handshakeTimeoutMs / 1000} s \\| \`handshakeTimeoutMs\``));
  assert.match(security, new RegExp(`\\| ${DEFAULTS.maxStreams.toLocaleString('en-US')} \\| \`maxStreams\``));
  assert.match(security, new RegExp(`\\| ${DEFAULTS.maxOpenRate.toLocaleString('en-US')} \\(burst as many\\) \\| \`maxOpenRate\``));
});

test('examples/library.mjs runs and relays', async () => {
  const { stdout } = await promisify(execFile)(process.execPath, ['examples/library.mjs'], { cwd: root, timeout: 30_000 });
  assert.match(stdout, /reply: hello through tcpipe/);
  assert.match(stdout, /stream 1 on port \d+: 20 B out, 20 B in/);
});
