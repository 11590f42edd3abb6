/**
 * The shared secret: loaded from a file or the environment, never from the
 * command line; wrapped so that it cannot be printed, logged or serialised.
 * From it, HKDF derives the TLS 1.3 external PSK and a key id that names the
 * PSK on the wire without revealing it (docs/SECURITY.md).
 */
import { hkdfSync, randomBytes } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { inspect } from 'node:util';
import { ErrorCodes, TcpipeError, errorMessage } from '../errors.js';

/** HKDF salt and labels: specific to tcpipe, so the PSK is useless to any other protocol. */
const HKDF_SALT = Buffer.from('tcpipe/1 secret', 'utf8');
const PSK_LABEL = 'tcpipe/1 tls13 external psk';
const KEY_ID_LABEL = 'tcpipe/1 key id';
/** A secret has at least this many characters; `tcpipe keygen` makes 43 (256 bits). */
export const MIN_SECRET_LENGTH = 32;
export const SECRET_ENV = 'TCPIPE_SECRET';

export class Secret {
  readonly #psk: Buffer;
  /** Public name of this secret's PSK: sent in the clear as the TLS PSK identity. */
  readonly keyId: string;

  private constructor(text: string) {
    const ikm = Buffer.from(text, 'utf8');
    this.#psk = Buffer.from(hkdfSync('sha256', ikm, HKDF_SALT, PSK_LABEL, 32));
    this.keyId = 'tcpipe1-' + Buffer.from(hkdfSync('sha256', ikm, HKDF_SALT, KEY_ID_LABEL, 8)).toString('hex');
  }

  /** Validates and wraps a secret's text; the error never quotes it. */
  static fromText(text: string, source: string): Secret {
    const value = text.trim();
    if (value.length < MIN_SECRET_LENGTH) {
      throw new TcpipeError(
        ErrorCodes.CONFIG,
        `${source}: the secret is too short (${value.length} characters, at least ${MIN_SECRET_LENGTH}); make one with 'tcpipe keygen'`,
      );
    }
    if (/\s/.test(value)) throw new TcpipeError(ErrorCodes.CONFIG, `${source}: the secret must not contain spaces`);
    return new Secret(value);
  }

  /** The TLS PSK. Only the TLS layer calls this. */
  psk(): Buffer {
    return this.#psk;
  }

  toString(): string {
    return '[secret]';
  }

  toJSON(): string {
    return '[secret]';
  }

  [inspect.custom](): string {
    return `Secret(${this.keyId})`;
  }
}

/** A fresh secret: 32 random bytes, base64url (43 characters). */
export function generateSecret(): string {
  return randomBytes(32).toString('base64url');
}

export interface SecretSources {
  readonly file: string | undefined;
  readonly env: string | undefined;
}

export interface LoadedSecrets {
  /** The first one is used to dial; all are accepted (rotation). */
  readonly secrets: readonly Secret[];
  readonly warnings: readonly string[];
}

/**
 * Reads the secret file (one secret per line; blank lines and # comments
 * ignored) or the TCPIPE_SECRET variable. Returns no secrets when neither is set.
 */
export function loadSecrets(sources: SecretSources): LoadedSecrets {
  const warnings: string[] = [];
  if (sources.file !== undefined) {
    let text: string;
    try {
      const stat = statSync(sources.file);
      if ((stat.mode & 0o077) !== 0) {
        warnings.push(
          `secret file ${sources.file} can be read by group or others (mode ${(stat.mode & 0o777).toString(8)}); run: chmod 600 ${sources.file}`,
        );
      }
      text = readFileSync(sources.file, 'utf8');
    } catch (err) {
      throw new TcpipeError(ErrorCodes.CONFIG, `cannot read the secret file: ${errorMessage(err)}`);
    }
    const lines = text.split('\n').map((l) => l.trim()).filter((l) => l !== '' && !l.startsWith('#'));
    if (lines.length === 0) throw new TcpipeError(ErrorCodes.CONFIG, `secret file ${sources.file} holds no secret`);
    const secrets = lines.map((line, i) => Secret.fromText(line, `secret file ${sources.file}, secret ${i + 1}`));
    return { secrets, warnings };
  }
  if (sources.env !== undefined && sources.env !== '') {
    return { secrets: [Secret.fromText(sources.env, SECRET_ENV)], warnings };
  }
  return { secrets: [], warnings };
}
