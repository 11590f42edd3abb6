/**
 * The exit side: for each stream the partner opens, connect to the target on
 * the stream's port. This side alone decides where it connects: the partner
 * names only a port, checked against --allow.
 */
import net from 'node:net';
import { errorMessage } from '../errors.js';
import { ResetCode } from '../protocol/constants.js';
import type { Stream } from '../mux/stream.js';
import { formatAddress, tuneSocket } from '../link/transport.js';
import { StreamPipe, type PipeEvents } from './pipe.js';

export interface ExitOptions {
  /** Host to connect to; null when this side has no -t and refuses every stream. */
  readonly target: string | null;
  /** Ports the partner may ask for; null allows any. */
  readonly allow: ReadonlySet<number> | null;
  readonly connectTimeoutMs: number;
  readonly keepAliveMs: number;
}

export interface ExitHooks extends PipeEvents {
  onRefused(stream: Stream, reason: string): void;
  onPipe(pipe: StreamPipe, peer: string): void;
}

const REFUSED_CODES = new Set(['ECONNREFUSED']);

export class ExitDialer {
  constructor(
    private readonly options: ExitOptions,
    private readonly hooks: ExitHooks,
  ) {}

  handleStreamRequest(stream: Stream): void {
    const { target, allow } = this.options;
    if (target === null) return this.refuse(stream, ResetCode.NOT_ALLOWED, 'this side has no target (-t)');
    if (allow !== null && !allow.has(stream.port)) {
      return this.refuse(stream, ResetCode.NOT_ALLOWED, `port ${stream.port} is not in --allow`);
    }
    const address = formatAddress(target, stream.port);
    const socket = net.connect({ host: target, port: stream.port, allowHalfOpen: true });
    const pipe = new StreamPipe(socket, stream, this.hooks);
    const onConnectError = (err: NodeJS.ErrnoException): void => {
      socket.setTimeout(0);
      const code = REFUSED_CODES.has(err.code ?? '') ? ResetCode.TARGET_REFUSED : ResetCode.TARGET_UNREACHABLE;
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
