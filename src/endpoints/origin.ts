/**
 * The user's origin on the entry side: the connection's own addresses, or,
 * with --accept-proxy-protocol, those the load balancer's PROXY header names
 * (read here, from the start of the connection, within a deadline).
 */
import { isIPv4, isIPv6 } from 'node:net';
import type net from 'node:net';
import type { Clock } from '../clock.js';
import { errorMessage } from '../errors.js';
import type { Origin } from '../protocol/frame.js';
import { ProxyHeaderReader, type ProxyHeader } from '../protocol/proxy-header.js';
import { unmapIPv4 } from '../protocol/ip.js';
import { formatAddress } from '../link/transport.js';

/**
 * A TCP connection's source and the address it reached. A dual-stack
 * listener sees IPv4 users as ::ffff:a.b.c.d: they are written as IPv4, as
 * a target reached directly would see them. Null when the socket has no
 * addresses (already closed).
 */
export function socketOrigin(socket: net.Socket): Origin | null {
  const { remoteAddress, remotePort, localAddress, localPort } = socket;
  if (remoteAddress === undefined || remotePort === undefined || localAddress === undefined || localPort === undefined) return null;
  const source = unmapIPv4(remoteAddress) ?? remoteAddress;
  const destination = unmapIPv4(localAddress) ?? localAddress;
  const family = isIPv4(source) && isIPv4(destination) ? 4 : isIPv6(remoteAddress) && isIPv6(localAddress) ? 6 : 0;
  if (family === 0) return null;
  return {
    family,
    transport: 'stream',
    sourceAddress: family === 4 ? source : remoteAddress,
    sourcePort: remotePort,
    destinationAddress: family === 4 ? destination : localAddress,
    destinationPort: localPort,
  };
}

/** The user as logs and `tcpipe status` show it: host:port or [v6]:port. */
export function originPeer(origin: Origin): string {
  return formatAddress(origin.sourceAddress, origin.sourcePort);
}

export type HeaderOutcome = { readonly ok: true; readonly header: ProxyHeader } | { readonly ok: false; readonly reason: string };

/**
 * Reads the PROXY header at the start of `socket` (accepted paused). On a
 * header, the socket is paused again with the bytes after the header put
 * back, for the pipe to read first. On anything else (bad bytes, the
 * connection closing first, `timeoutMs` passing) the outcome says why; the
 * caller closes the socket. The reader holds at most one header's bytes.
 */
export function readProxyHeader(socket: net.Socket, timeoutMs: number, clock: Clock, done: (outcome: HeaderOutcome) => void): void {
  const reader = new ProxyHeaderReader();
  let finished = false;
  const finish = (outcome: HeaderOutcome): void => {
    if (finished) return;
    finished = true;
    timer.cancel();
    socket.off('data', onData);
    socket.off('end', onEnd);
    socket.off('error', onError);
    socket.off('close', onEnd);
    done(outcome);
  };
  const received = (): string => `${reader.bufferedBytes} bytes received`;
  const onData = (chunk: Buffer): void => {
    const read = reader.push(chunk);
    if (read.kind === 'more') return;
    if (read.kind === 'error') return finish({ ok: false, reason: `bad PROXY header: ${read.reason}` });
    socket.pause();
    if (read.rest.length > 0) socket.unshift(read.rest);
    finish({ ok: true, header: read.header });
  };
  const onEnd = (): void => finish({ ok: false, reason: `closed before its PROXY header was complete (${received()})` });
  const onError = (err: Error): void => finish({ ok: false, reason: `error before its PROXY header was complete: ${errorMessage(err)}` });
  const timer = clock.setTimer(timeoutMs, () =>
    finish({ ok: false, reason: `no complete PROXY header within ${timeoutMs / 1000}s (${received()})` }),
  );
  socket.on('data', onData);
  socket.on('end', onEnd);
  socket.on('error', onError);
  socket.on('close', onEnd);
  socket.resume();
}
