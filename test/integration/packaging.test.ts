/**
 * The package as users get it: `npm pack` then `npm install -g` of the
 * tarball into a throwaway prefix gives a working `tcpipe` on PATH; and the
 * standalone executable built by `npm run build:sea` runs without Node.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';

const run = promisify(execFile);
const root = fileURLToPath(new URL('../../../', import.meta.url));
const version = (JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { version: string }).version;

test('npm pack, then npm install -g of the tarball, gives a working tcpipe', { timeout: 240_000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'tcpipe-pack-'));
  try {
    await run('npm', ['pack', '--silent', '--pack-destination', dir], { cwd: root, timeout: 120_000 });
    const tarball = readdirSync(dir).find((f) => f.endsWith('.tgz'));
    assert.ok(tarball, 'npm pack made a tarball');
    const prefix = join(dir, 'prefix');
    await run('npm', ['install', '-g', '--silent', '--prefix', prefix, join(dir, tarball)], { cwd: dir, timeout: 180_000 });
    const bin = join(prefix, 'bin', 'tcpipe');
    const env = { ...process.env, PATH: `${join(prefix, 'bin')}:${process.env.PATH ?? ''}` };
    const { stdout } = await run('tcpipe', ['--version'], { env, cwd: dir });
    assert.equal(stdout.trim(), `tcpipe ${version}`);
    const key = await run(bin, ['keygen'], { env, cwd: dir });
    assert.match(key.stdout, /^[A-Za-z0-9_-]{43}\n$/);
    const demo = await run(bin, ['demo', '-q'], { env, cwd: dir, timeout: 60_000 });
    assert.match(demo.stdout, /everything relayed intact/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('npm run build:sea makes a standalone executable', { timeout: 240_000 }, async () => {
  await run(process.execPath, ['scripts/build-sea.mjs'], { cwd: root, timeout: 180_000 });
  const bin = join(root, 'dist', 'sea', 'tcpipe');
  assert.ok(existsSync(bin));
  const { stdout, stderr } = await run(bin, ['--version'], { cwd: tmpdir(), env: { PATH: '/usr/bin:/bin' } });
  assert.equal(stdout.trim(), `tcpipe ${version}`);
  assert.equal(stderr, '', 'no warning from the embedded runtime');
  const bad = await run(bin, ['-s', '0'], { cwd: tmpdir() }).then(
    () => null,
    (err: unknown) => err as { code?: number; stderr?: string },
  );
  assert.equal(bad?.code, 2);
  assert.match(bad?.stderr ?? '', /port 0 is outside 1-65535/);
});
