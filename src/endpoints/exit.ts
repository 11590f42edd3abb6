/**
 * The exit side: for each stream the partner opens, connect to the target on
 * the route of the stream's port. This side alone decides where it connects:
 * the partner names only a port (see routes.ts). A route with a PROXY
 * protocol version gets the header, naming the user's origin as the partner's
 * OPEN carried it, before any relayed byte.
 */
import net from 'node:net';
import { errorMessage } from '../errors.js';
import { ResetCode } from '../protocol/constants.js';
import { encodeProxyHeader } from '../protocol/proxy-header.js';
import type { Stream } from '../mux/stream.js';
import { formatAddress, tuneSocket } from '../link/transport.js';
import { StreamPipe, type PipeEvents } from './pipe.js';
import type { RouteTable } from './routes.js';

export interface ExitOptions {
  readonly routes: RouteTable;
  readonly connectTimeoutMs: number;
  readonly keepAliveMs: number;
}

export interface ExitHooks extends PipeEvents {
  onRefused(stream: Stream, reason: string): void;
  onPipe(pipe: StreamPipe, peer: string): void;
}

const REFUSED_CODES = new Set(['ECONNREFUSED']);
/** This side ran out of something (descriptors, buffers, local ports): a limit, not the target's fault. */
const LIMIT_CODES = new Set(['EMFILE', 'ENFILE', 'ENOBUFS', 'ENOMEM', 'EADDRNOTAVAIL']);

export class ExitDialer {
  private routes: RouteTable;

  constructor(
    private readonly options: ExitOptions,
    private readonly hooks: ExitHooks,
  ) {
    this.routes = options.routes;
  }

  get routeTable(): RouteTable {
    return this.routes;
  }

  /** New routes apply to streams opened from now on; open streams keep theirs. */
  setRoutes(routes: RouteTable): void {
    this.routes = routes;
  }

  handleStreamRequest(stream: Stream): void {
    const decision = this.routes.resolve(stream.port);
    if (!decision.ok) return this.refuse(stream, ResetCode.NOT_ALLOWED, decision.reason);
    const { host, port, proxyProtocol } = decision.route;
    const address = formatAddress(host, port);
    const socket = net.connect({ host, port, allowHalfOpen: true });
    // Written before the pipe exists, so ahead of any relayed byte (the socket queues both until it connects).
    // Without an origin (a partner's LOCAL, or no capability): v1 UNKNOWN, v2 LOCAL.
    if (proxyProtocol !== undefined) socket.write(encodeProxyHeader(proxyProtocol === 'v1' ? 1 : 2, stream.origin));
    const pipe = new StreamPipe(socket, stream, this.hooks);
    const onConnectError = (err: NodeJS.ErrnoException): void => {
      socket.setTimeout(0);
      const errno = err.code ?? '';
      const code = REFUSED_CODES.has(errno) ? ResetCode.TARGET_REFUSED : LIMIT_CODES.has(errno) ? ResetCode.LIMIT : ResetCode.TARGET_UNREACHABLE;
      pipe.abort(code, `cannot connect to target ${address}: ${errorMessage(err)}`);
    };
    socket.setTimeout(this.options.connectTimeoutMs, () => {
      onConnectError(Object.assign(new Error(`no answer within ${this.options.connectTimeoutMs / 1000}s`), { code: 'ETIMEDOUT' }));
    });
    socket.once('error', onConnectError);
    socket.once('connect', () => {
      socket.off('error', onConnectError);
      socket.setTimeout(0);
      tuneSocket(socket, this.options.keepAliveMs);
      stream.accept();
      this.hooks.onPipe(pipe, address);
    });
  }

  private refuse(stream: Stream, code: number, reason: string): void {
    stream.reset(code, reason);
    this.hooks.onRefused(stream, reason);
  }
}
