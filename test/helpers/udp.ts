/**
 * UDP helpers for the tests of issue 20: an echo target, user sockets with
 * bounded receives, and a pair of instances where one side listens on /udp
 * ports and the other routes them to the target. Every socket and instance
 * is closed by t.after.
 */
import dgram from 'node:dgram';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import type { TestContext } from 'node:test';
import { startClient, startServer } from '../../src/index.js';
import type { ClientOptions, ServerOptions, Tcpipe } from '../../src/instance.js';
import { captureLog, LINK_HOST, nextEvent, TEST_LIMITS, withTimeout, type LogCapture } from './loopback.js';

export interface UdpTarget {
  readonly socket: dgram.Socket;
  readonly port: number;
  /** Datagrams received, with the sender's port. */
  readonly received: { size: number; from: number }[];
}

/** Echoes every datagram to its sender (after `transform`, default as is). */
export async function startUdpEcho(t: TestContext, host = '127.0.0.3', transform: (msg: Buffer) => Buffer = (m) => m): Promise<UdpTarget> {
  const socket = dgram.createSocket(host.includes(':') ? 'udp6' : 'udp4');
  const received: { size: number; from: number }[] = [];
  socket.on('message', (msg, rinfo) => {
    received.push({ size: msg.length, from: rinfo.port });
    socket.send(transform(msg), rinfo.port, rinfo.address);
  });
  socket.bind(0, host);
  await once(socket, 'listening');
  t.after(() => closeQuietly(socket));
  return { socket, port: socket.address().port, received };
}

export function closeQuietly(socket: dgram.Socket): void {
  try {
    socket.close();
  } catch {
    // already closed
  }
}

export interface UdpUser {
  readonly socket: dgram.Socket;
  readonly inbox: Buffer[];
  send(data: Buffer | string): void;
  /** The next datagram (already received or to come), within `ms`. */
  next(ms?: number): Promise<Buffer>;
}

export async function udpUser(t: TestContext, to: { host: string; port: number }, bindHost = '127.0.0.1'): Promise<UdpUser> {
  const socket = dgram.createSocket(bindHost.includes(':') ? 'udp6' : 'udp4');
  const inbox: Buffer[] = [];
  const waiters: ((msg: Buffer) => void)[] = [];
  socket.on('message', (msg) => {
    const waiter = waiters.shift();
    if (waiter !== undefined) waiter(msg);
    else inbox.push(msg);
  });
  socket.bind(0, bindHost);
  await once(socket, 'listening');
  t.after(() => closeQuietly(socket));
  return {
    socket,
    inbox,
    send: (data) => socket.send(typeof data === 'string' ? Buffer.from(data) : data, to.port, to.host),
    next: (ms = 5000) => {
      const ready = inbox.shift();
      if (ready !== undefined) return Promise.resolve(ready);
      return withTimeout(new Promise<Buffer>((resolve) => waiters.push(resolve)), ms, 'a datagram for the user');
    },
  };
}

/** Sends until a reply comes (a flow's first datagram may race the link), then returns it. */
export async function roundTrip(user: UdpUser, data: Buffer | string, ms = 5000): Promise<Buffer> {
  user.send(data);
  return user.next(ms);
}

export interface UdpPair {
  /** Listens on 127.0.0.2:P/udp (entry). */
  readonly entry: Tcpipe;
  /** Routes P/udp to the target (exit). */
  readonly exit: Tcpipe;
  readonly entryLog: LogCapture;
  readonly exitLog: LogCapture;
  /** The entry side's /udp port. */
  readonly address: { host: string; port: number };
}

export interface UdpPairOptions {
  /** Which instance is the entry side (default the server). */
  readonly entryIs?: 'server' | 'client';
  readonly entryHost?: string;
  readonly entry?: Partial<ServerOptions & ClientOptions>;
  readonly exit?: Partial<ServerOptions & ClientOptions>;
  readonly common?: Partial<ServerOptions & ClientOptions>;
  /** Route the entry port here (default: no route, only what `exit` gives). */
  readonly target?: { host: string; port: number };
  /** The client dials this port instead of the server's (a relay in between). */
  readonly dialPort?: (linkPort: number) => Promise<number>;
  /** The client dials a WebSocket URL. */
  readonly websocket?: boolean;
}

/**
 * A server and a client, one with a /udp entry port on 127.0.0.2, the other
 * with a /udp route for it. The entry side starts first (its port is needed
 * for the route); the pair is returned once both links are up.
 */
export async function udpPair(t: TestContext, o: UdpPairOptions = {}): Promise<UdpPair> {
  const entryIs = o.entryIs ?? 'server';
  const serverLog = captureLog('server');
  const clientLog = captureLog('client');
  const entryHost = o.entryHost ?? '127.0.0.2';
  const limits = { ...TEST_LIMITS, ...o.common?.limits };
  const base = { heartbeatSeconds: 5, ...o.common, limits };
  const entryPorts = [{ host: entryHost, port: 0, protocol: 'udp' as const }];
  const withOwn = (own: Partial<ServerOptions & ClientOptions> | undefined): object => ({ ...own, limits: { ...limits, ...own?.limits } });
  let server: Tcpipe;
  let client: Tcpipe;
  let entryPort: number;
  const routeTo = (port: number): object =>
    o.target === undefined ? {} : { routes: [{ port, protocol: 'udp' as const, host: o.target.host, targetPort: o.target.port }] };
  if (entryIs === 'server') {
    server = await startServer({ port: 0, host: LINK_HOST, ports: entryPorts, logger: serverLog.logger, ...base, ...withOwn(o.entry) } as ServerOptions);
    t.after(() => server.stop());
    entryPort = server.udpAddresses[0]?.port ?? 0;
  } else {
    // The client's entry port must be known before the server's route: bind a placeholder port first.
    const probe = dgram.createSocket(entryHost.includes(':') ? 'udp6' : 'udp4');
    probe.bind(0, entryHost);
    await once(probe, 'listening');
    entryPort = (probe.address() as AddressInfo).port;
    probe.close();
    server = await startServer({ port: 0, host: LINK_HOST, logger: serverLog.logger, ...base, ...routeTo(entryPort), ...withOwn(o.exit) } as ServerOptions);
    t.after(() => server.stop());
  }
  const linkPort = server.linkAddress?.port ?? 0;
  const dialPort = o.dialPort !== undefined ? await o.dialPort(linkPort) : linkPort;
  const serverUp = nextEvent(server, 'link-up', 5000);
  const dial = o.websocket === true ? { url: `ws://${LINK_HOST}:${dialPort}/tcpipe` } : { host: LINK_HOST, port: dialPort };
  const clientOwn = entryIs === 'client' ? { ports: [{ ...entryPorts[0], port: entryPort }], ...withOwn(o.entry) } : { ...routeTo(entryPort), ...withOwn(o.exit) };
  client = await startClient({ ...dial, proxy: null, logger: clientLog.logger, ...base, ...clientOwn } as ClientOptions);
  t.after(() => client.stop());
  await Promise.all([serverUp, client.linkUp ? Promise.resolve() : nextEvent(client, 'link-up', 5000)]);
  const [entry, exit] = entryIs === 'server' ? [server, client] : [client, server];
  const [entryLog, exitLog] = entryIs === 'server' ? [serverLog, clientLog] : [clientLog, serverLog];
  return { entry, exit, entryLog, exitLog, address: { host: entryHost, port: entryPort } };
}
