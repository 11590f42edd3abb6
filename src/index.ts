/**
 * tcpipe's public API: start either side of a pair from code.
 *
 *   import { startServer, startClient } from 'tcpipe';
 *   const server = await startServer({ port: 50000, ports: [40000] });
 *   const client = await startClient({ host: 'host1', port: 50000, target: 'appli2' });
 */
import { Tcpipe, type ClientOptions, type ServerOptions } from './instance.js';

export async function startServer(options: ServerOptions): Promise<Tcpipe> {
  const instance = new Tcpipe('server', options);
  await instance.start();
  return instance;
}

export async function startClient(options: ClientOptions): Promise<Tcpipe> {
  const instance = new Tcpipe('client', options);
  await instance.start();
  return instance;
}

export { Tcpipe };
export type { ClientOptions, CommonOptions, Limits, ServerOptions, StreamCloseInfo, StreamInfo, TcpipeEvents } from './instance.js';
export type { ListenSpec } from './endpoints/entry.js';
export { DEFAULTS } from './config/defaults.js';
export { createLogger, silentLogger, type Logger, type LogLevel } from './log/logger.js';
export { ErrorCodes, TcpipeError, UsageError, ProtocolError } from './errors.js';
export { VERSION } from './version.js';
