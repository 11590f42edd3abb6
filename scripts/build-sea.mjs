#!/usr/bin/env node
// Builds a standalone executable (Node's single executable application, Node >= 20):
// esbuild bundles the CLI into one CommonJS file, Node turns it into a blob, and
// postject injects the blob into a copy of this node binary. Output: dist/sea/tcpipe
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdirSync, readFileSync, writeFileSync, chmodSync } from 'node:fs';
import { build } from 'esbuild';

const [major] = process.versions.node.split('.').map(Number);
if (major < 20) throw new Error(`build:sea needs Node 20 or later (this is ${process.version})`);
const version = JSON.parse(readFileSync('package.json', 'utf8')).version;
mkdirSync('dist/sea', { recursive: true });

await build({
  entryPoints: ['src/cli/main.ts'],
  bundle: true,
  platform: 'node',
  target: `node${major}`,
  format: 'cjs',
  outfile: 'dist/sea/tcpipe.cjs',
  // Optional native helpers of ws (it works without them).
  external: ['bufferutil', 'utf-8-validate'],
  define: {
    __TCPIPE_VERSION__: JSON.stringify(version),
    // ws then never tries to load those optional modules (a SEA can load built-ins only).
    'process.env.WS_NO_BUFFER_UTIL': '"1"',
    'process.env.WS_NO_UTF_8_VALIDATE': '"1"',
  },
  banner: { js: '/* tcpipe standalone */' },
  logLevel: 'warning',
});
writeFileSync(
  'dist/sea/sea-config.json',
  JSON.stringify({ main: 'dist/sea/tcpipe.cjs', output: 'dist/sea/tcpipe.blob', disableExperimentalSEAWarning: true }),
);
execFileSync(process.execPath, ['--experimental-sea-config', 'dist/sea/sea-config.json'], { stdio: 'inherit' });
copyFileSync(process.execPath, 'dist/sea/tcpipe');
chmodSync('dist/sea/tcpipe', 0o755);
execFileSync(
  process.execPath,
  [
    'node_modules/postject/dist/cli.js',
    'dist/sea/tcpipe',
    'NODE_SEA_BLOB',
    'dist/sea/tcpipe.blob',
    '--sentinel-fuse',
    'NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2',
  ],
  { stdio: 'inherit' },
);
console.log(`built dist/sea/tcpipe (tcpipe ${version}, node ${process.version})`);
