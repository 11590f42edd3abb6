import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { HELP_TEXT } from '../../src/cli/help.js';

const readme = readFileSync(new URL('../../../README.md', import.meta.url), 'utf8');

test('README quotes `tcpipe --help` verbatim', () => {
  assert.ok(readme.includes('```\n' + HELP_TEXT + '\n```'), 'README.md must contain the help text in a code block; regenerate it from `tcpipe --help`');
});

test('README shows the install-and-demo and install-and-test commands', () => {
  assert.match(readme, /npm ci && npm run demo/);
  assert.match(readme, /npm ci && npm test/);
});

test('.ci/run runs the README test command', () => {
  const ci = readFileSync(new URL('../../../.ci/run', import.meta.url), 'utf8');
  const command = /```sh\n(\.\/scripts\/install-test-deps\.sh && npm ci && npm test)\n```/.exec(readme)?.[1];
  assert.ok(command !== undefined, 'README test command not found');
  assert.ok(ci.includes(command), '.ci/run must run the README test command');
});
