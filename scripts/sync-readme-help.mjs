#!/usr/bin/env node
// Copies `tcpipe --help` into README.md's "Command line" block (run after changing src/cli/help.ts).
import { readFileSync, writeFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';

const help = execFileSync(process.execPath, ['dist/src/cli/main.js', '--help'], { encoding: 'utf8' }).trimEnd();
const readme = readFileSync('README.md', 'utf8');
const start = readme.indexOf('## Command line\n\n```\n');
const end = readme.indexOf('\n```\n', start + 20);
if (start < 0 || end < 0) throw new Error('README.md has no "## Command line" code block');
const head = readme.slice(0, start + '## Command line\n\n```\n'.length);
writeFileSync('README.md', head + help + readme.slice(end));
