/** Transports: how a link's byte stream is obtained. Plain TCP for now. */
import net from 'node:net';
import { ErrorCodes, TcpipeError, errorMessage } from '../errors.js';

/** Socket options every link and relayed socket gets. */
export function tuneSocket(socket: net.Socket, keepAliveMs: number): void {
  socket.setNoDelay(true);
  socket.setKeepAlive(true, keepAliveMs);
}

export function formatAddress(host: string | undefined, port: number | undefined): string {
  if (host === undefined) return '?';
  const h = host.startsWith('::ffff:') ? host.slice(7) : host;
  return h.includes(':') ? `[${h}]:${port ?? '?'}` : `${h}:${port ?? '?'}`;
}

export function remoteAddress(socket: net.Socket): string {
  return formatAddress(socket.remoteAddress, socket.remotePort);
}

/** Dials host:port; rejects on error, on timeout or when `signal` aborts. */
export function dialTcp(host: string, port: number, timeoutMs: number, signal: AbortSignal): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(new TcpipeError(ErrorCodes.LINK_CLOSED, 'stopped'));
    const socket = net.connect({ host, port, allowHalfOpen: false });
    const done = (err: Error | null): void => {
      clearTimeout(timer);
      signal.removeEventListener('abort', onAbort);
      socket.off('connect', onConnect);
      socket.off('error', onError);
      if (err === null) return resolve(socket);
      socket.destroy();
      reject(err);
    };
    const onConnect = (): void => done(null);
    const onError = (err: Error): void =>
      done(new TcpipeError(ErrorCodes.LINK_CLOSED, `cannot reach ${formatAddress(host, port)}: ${errorMessage(err)}`));
    const onAbort = (): void => done(new TcpipeError(ErrorCodes.LINK_CLOSED, 'stopped'));
    const timer = setTimeout(
      () => done(new TcpipeError(ErrorCodes.LINK_CLOSED, `cannot reach ${formatAddress(host, port)}: no answer within ${timeoutMs / 1000}s`)),
      timeoutMs,
    );
    socket.once('connect', onConnect);
    socket.once('error', onError);
    signal.addEventListener('abort', onAbort, { once: true });
  });
}
