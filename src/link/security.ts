/**
 * The security layer of a link: none, TLS 1.3 with the shared secret as an
 * external PSK, or TLS 1.3 with certificates (mutual). It wraps the byte
 * stream a transport gives and returns another; the multiplexer above and the
 * transport below know nothing of it.
 */
import tls from 'node:tls';
import type { Duplex } from 'node:stream';
import { ErrorCodes, TcpipeError, errorMessage } from '../errors.js';
import type { Secret } from '../security/secret.js';

export type LinkSecurity =
  | { readonly kind: 'none' }
  | { readonly kind: 'psk'; readonly secrets: readonly Secret[] }
  | {
      readonly kind: 'cert';
      readonly cert: Buffer;
      readonly key: Buffer;
      readonly ca: Buffer;
      /** Name the client expects in the server's certificate (default: the host it dials). */
      readonly serverName?: string;
    };

/** TLS 1.3 only; AES-128-GCM first (hardware AES), ChaCha20-Poly1305 for machines without it. */
const CIPHERS = 'TLS_AES_128_GCM_SHA256:TLS_CHACHA20_POLY1305_SHA256';
/** The first byte of a TLS handshake record. */
export const TLS_HANDSHAKE_BYTE = 0x16;

export function describeSecurity(security: LinkSecurity): string {
  switch (security.kind) {
    case 'none':
      return 'plaintext';
    case 'psk':
      return 'TLS 1.3, shared secret';
    case 'cert':
      return 'TLS 1.3, certificates';
  }
}

/** Client side: wraps a connected socket; resolves once the TLS handshake has proved the partner. */
export function secureClient(socket: Duplex, security: LinkSecurity, host: string): Promise<Duplex> {
  if (security.kind === 'none') return Promise.resolve(socket);
  const options: tls.ConnectionOptions = { socket, minVersion: 'TLSv1.3', maxVersion: 'TLSv1.3', ciphers: CIPHERS };
  if (security.kind === 'psk') {
    const secret = security.secrets[0];
    if (secret === undefined) return Promise.reject(new TcpipeError(ErrorCodes.CONFIG, 'no secret to dial with'));
    options.pskCallback = () => ({ psk: secret.psk(), identity: secret.keyId });
    // With a PSK there is no certificate: the PSK binder and Finished messages prove the server.
    options.checkServerIdentity = () => undefined;
  } else {
    options.cert = security.cert;
    options.key = security.key;
    options.ca = security.ca;
    // The certificate must name --tls-server-name, or else the host dialed (a name or an IP);
    // SNI carries names only.
    const name = security.serverName ?? host;
    options.host = host;
    options.servername = isIp(name) ? '' : name;
    options.checkServerIdentity = (_host, cert) => tls.checkServerIdentity(name, cert);
  }
  return handshake(tls.connect(options), 'secureConnect', 'the server');
}

/** Who the client proved to be: the PSK identity (key id) it used, or the names in its certificate. */
export type PeerIdentity =
  | { readonly kind: 'none' }
  | { readonly kind: 'psk'; readonly keyId: string }
  | { readonly kind: 'cert'; readonly names: readonly string[] };

/** Server side: wraps an accepted socket whose first byte announced TLS. */
export async function secureServer(socket: Duplex, security: LinkSecurity): Promise<Duplex> {
  return (await secureServerIdentified(socket, security)).link;
}

/** As secureServer, and says who the client proved to be (a server with many sites tells them apart by it). */
export async function secureServerIdentified(socket: Duplex, security: LinkSecurity): Promise<{ link: Duplex; identity: PeerIdentity }> {
  if (security.kind === 'none') return { link: socket, identity: { kind: 'none' } };
  if (security.kind === 'cert') {
    const link = await certificateServer(socket, security);
    return { link, identity: { kind: 'cert', names: certificateNames(link) } };
  }
  // Node honours pskCallback on a server TLSSocket; its typings list it only for tls.createServer.
  const options: tls.TLSSocketOptions & Pick<tls.TlsOptions, 'pskCallback'> = { isServer: true, minVersion: 'TLSv1.3', maxVersion: 'TLSv1.3', ciphers: CIPHERS };
  const byId = secretsById(security);
  let keyId = '';
  options.pskCallback = (_socket, identity) => {
    const secret = byId.get(identity);
    if (secret !== undefined) keyId = identity;
    return secret?.psk() ?? null;
  };
  const link = await handshake(new tls.TLSSocket(socket, options), 'secure', 'the client');
  return { link, identity: { kind: 'psk', keyId } };
}

/** Each security's secrets by key id, built once: a server with many sites holds one per site. */
const idTables = new WeakMap<LinkSecurity, ReadonlyMap<string, Secret>>();

function secretsById(security: Extract<LinkSecurity, { kind: 'psk' }>): ReadonlyMap<string, Secret> {
  let table = idTables.get(security);
  if (table === undefined) {
    table = new Map(security.secrets.map((s) => [s.keyId, s]));
    idTables.set(security, table);
  }
  return table;
}

/** The subject CN and the DNS names of the client's (verified) certificate. */
function certificateNames(link: Duplex): string[] {
  if (!(link instanceof tls.TLSSocket)) return [];
  const cert = link.getPeerCertificate();
  const names: string[] = [];
  const cn = cert.subject?.CN as string | string[] | undefined;
  if (typeof cn === 'string') names.push(cn);
  else if (Array.isArray(cn)) names.push(...cn);
  for (const entry of (cert.subjectaltname ?? '').split(',')) {
    const m = /^\s*DNS:(.+)$/.exec(entry);
    if (m?.[1] !== undefined) names.push(m[1].trim());
  }
  return names;
}

/**
 * Certificates: a bare TLSSocket does not verify the client's chain, only a
 * tls.Server does. One small server per link (the link is the only socket it
 * ever sees) verifies it; this code then reads the verdict and says why.
 */
function certificateServer(socket: Duplex, security: Extract<LinkSecurity, { kind: 'cert' }>): Promise<Duplex> {
  const server = tls.createServer({
    cert: security.cert,
    key: security.key,
    ca: security.ca,
    minVersion: 'TLSv1.3',
    maxVersion: 'TLSv1.3',
    ciphers: CIPHERS,
    requestCert: true,
    rejectUnauthorized: false,
  });
  return new Promise((resolve, reject) => {
    const onSecure = (secure: tls.TLSSocket): void => {
      server.off('tlsClientError', onError);
      if (!secure.authorized) {
        secure.destroy();
        const why = secure.authorizationError === null ? 'no certificate' : String(secure.authorizationError);
        reject(new TcpipeError(ErrorCodes.AUTH, `the client's certificate is not accepted: ${why}`));
        return;
      }
      resolve(secure);
    };
    const onError = (err: Error): void => {
      server.off('secureConnection', onSecure);
      socket.destroy();
      reject(new TcpipeError(ErrorCodes.AUTH, describeTlsError(err, 'the client')));
    };
    server.once('secureConnection', onSecure);
    server.once('tlsClientError', onError);
    server.emit('connection', socket);
  });
}

function handshake(secure: tls.TLSSocket, event: 'secure' | 'secureConnect', who: string): Promise<Duplex> {
  return new Promise((resolve, reject) => {
    const onSecure = (): void => {
      secure.off('error', onError);
      secure.off('close', onClose);
      if (event === 'secure' && secure.authorizationError !== null && secure.authorizationError !== undefined && !secure.authorized) {
        // Certificates: the client's certificate did not verify.
        secure.destroy();
        reject(new TcpipeError(ErrorCodes.AUTH, String(secure.authorizationError)));
        return;
      }
      resolve(secure);
    };
    const onError = (err: Error): void => {
      secure.off('close', onClose);
      secure.destroy();
      reject(new TcpipeError(ErrorCodes.AUTH, describeTlsError(err, who)));
    };
    const onClose = (): void => {
      secure.off('error', onError);
      reject(new TcpipeError(ErrorCodes.AUTH, `${who} closed the link during the TLS handshake (no secret there, another secret, or this address is slowed down after failed attempts)`));
    };
    secure.once(event, onSecure);
    secure.once('error', onError);
    secure.once('close', onClose);
  });
}

function describeTlsError(err: Error, who: string): string {
  const code = (err as NodeJS.ErrnoException).code ?? '';
  if (code === 'ERR_SSL_SSLV3_ALERT_HANDSHAKE_FAILURE' || /no suitable signature algorithm|handshake failure/i.test(err.message)) {
    return `${who} does not hold the same secret or certificate`;
  }
  if (code === 'ECONNRESET' || /socket disconnected|ECONNRESET/i.test(err.message)) {
    return `${who} closed the link during the TLS handshake (no secret there, another secret, or this address is slowed down after failed attempts)`;
  }
  if (/wrong version number|unexpected message|packet length too long|record layer failure/i.test(err.message)) {
    return `${who} does not speak TLS (does it have the secret?)`;
  }
  const first = errorMessage(err).split('\n')[0] ?? '';
  // OpenSSL messages carry a "<hex>:error:<code>:<lib>:<func>:<reason>:<file>" prefix; keep the reason.
  const reason = /:error:[0-9A-F]+:[^:]*:[^:]*:([^:]+)/.exec(first)?.[1];
  return reason ?? first;
}

function isIp(host: string): boolean {
  return /^[\d.]+$/.test(host) || host.includes(':');
}
