import { test } from 'node:test';
import assert from 'node:assert/strict';
import { inspect } from 'node:util';
import { mkdtempSync, writeFileSync, chmodSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Secret, generateSecret, loadSecrets } from '../../src/security/secret.js';
import { TcpipeError } from '../../src/errors.js';

test('keygen makes 256-bit base64url secrets, different each time', () => {
  const a = generateSecret();
  const b = generateSecret();
  assert.match(a, /^[A-Za-z0-9_-]{43}$/);
  assert.notEqual(a, b);
  assert.equal(Buffer.from(a, 'base64url').length, 32);
});

test('a Secret never prints its text, and two secrets have different key ids and PSKs', () => {
  const text = generateSecret();
  const secret = Secret.fromText(text, 'test');
  for (const shown of [String(secret), `${secret}`, JSON.stringify({ secret }), inspect(secret), inspect({ secret })]) {
    assert.ok(!shown.includes(text), shown);
  }
  const other = Secret.fromText(generateSecret(), 'test');
  assert.notEqual(secret.keyId, other.keyId);
  assert.notDeepEqual(secret.psk(), other.psk());
  assert.deepEqual(Secret.fromText(text, 'again').psk(), secret.psk(), 'derivation is deterministic');
  assert.match(secret.keyId, /^tcpipe1-[0-9a-f]{16}$/);
});

test('short secrets are refused without quoting them', () => {
  const text = 'short-secret-value';
  assert.throws(
    () => Secret.fromText(text, 'TCPIPE_SECRET'),
    (err: unknown) => err instanceof TcpipeError && /too short/.test(err.message) && !err.message.includes(text),
  );
});

test('secret files: several secrets, comments, a warning for loose permissions', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tcpipe-secret-'));
  try {
    const a = generateSecret();
    const b = generateSecret();
    const file = join(dir, 'key');
    writeFileSync(file, `# rotation\n${a}\n\n${b}\n`);
    chmodSync(file, 0o600);
    let loaded = loadSecrets({ file, env: undefined });
    assert.equal(loaded.secrets.length, 2);
    assert.equal(loaded.warnings.length, 0);
    assert.equal(loaded.secrets[0]?.keyId, Secret.fromText(a, 'x').keyId);
    chmodSync(file, 0o644);
    loaded = loadSecrets({ file, env: undefined });
    assert.match(loaded.warnings[0] ?? '', /chmod 600/);
    assert.equal(loadSecrets({ file: undefined, env: a }).secrets.length, 1);
    assert.equal(loadSecrets({ file: undefined, env: undefined }).secrets.length, 0);
    writeFileSync(file, '# nothing\n');
    assert.throws(() => loadSecrets({ file, env: undefined }), /holds no secret/);
    assert.throws(() => loadSecrets({ file: join(dir, 'missing'), env: undefined }), /cannot read the secret file/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
