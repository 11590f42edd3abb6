#!/usr/bin/env node
/**
 * The tcpipe command: turns argv and signals into a running instance.
 * Exit status: 0 normal stop, 1 runtime failure, 2 usage.
 */
import { startClient, startServer } from '../index.js';
import type { Tcpipe } from '../instance.js';
import { ErrorCodes, TcpipeError, UsageError, errorMessage } from '../errors.js';
import { createLogger, type LogLevel, type Logger } from '../log/logger.js';
import { VERSION } from '../version.js';
import { parseCommandLine, type RunCommand } from './args.js';
import { HELP_TEXT, USAGE } from './help.js';
import { runDemo } from './demo.js';
import { fetchStatus, renderStatus } from './status.js';
import type { MetricsServer } from '../metrics/metrics.js';
import { readFileSync } from 'node:fs';
import { SECRET_ENV, generateSecret, loadSecrets } from '../security/secret.js';
import type { ClientOptions, CommonOptions } from '../instance.js';

/** Environment variable that may hold the proxy password (instead of the URL). */
const PROXY_PASSWORD_ENV = 'TCPIPE_PROXY_PASSWORD';

/** Reads the secret (file or TCPIPE_SECRET) or the certificate files named on the command line. */
function loadSecurity(command: RunCommand): { options: Pick<CommonOptions, 'secret' | 'tls'>; warnings: readonly string[] } {
  if (command.tls !== undefined) {
    const read = (path: string, what: string): Buffer => {
      try {
        return readFileSync(path);
      } catch (err) {
        throw new TcpipeError(ErrorCodes.CONFIG, `cannot read ${what}: ${errorMessage(err)}`);
      }
    };
    const { cert, key, ca, serverName } = command.tls;
    const tls = { cert: read(cert, '--tls-cert'), key: read(key, '--tls-key'), ca: read(ca, '--tls-ca'), ...(serverName !== undefined ? { serverName } : {}) };
    if (process.env[SECRET_ENV] !== undefined) {
      throw new TcpipeError(ErrorCodes.CONFIG, `${SECRET_ENV} is set and certificates are given: use one or the other`);
    }
    return { options: { tls }, warnings: [] };
  }
  if (command.sites !== undefined) {
    // Each [[client]] has its own secret file, read with the configuration.
    const warnings = process.env[SECRET_ENV] !== undefined ? [`${SECRET_ENV} is ignored: each [[client]] has its own secret-file`] : [];
    return { options: {}, warnings };
  }
  const loaded = loadSecrets({ file: command.secretFile, env: process.env[SECRET_ENV] });
  return { options: loaded.secrets.length > 0 ? { secret: loaded.secrets } : {}, warnings: loaded.warnings };
}

export const EXIT_OK = 0;
export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;

async function main(argv: readonly string[]): Promise<number> {
  process.stdout.on('error', () => undefined); // a closed pipe (tcpipe --help | head) is not a crash
  let command;
  try {
    command = parseCommandLine(argv);
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`tcpipe: ${err.message}\n${USAGE}\n`);
      return EXIT_USAGE;
    }
    throw err;
  }
  switch (command.kind) {
    case 'help':
      process.stdout.write(HELP_TEXT + '\n');
      return EXIT_OK;
    case 'version':
      process.stdout.write(`tcpipe ${VERSION}\n`);
      return EXIT_OK;
    case 'keygen':
      process.stdout.write(generateSecret() + '\n');
      return EXIT_OK;
    case 'demo':
      return runDemo(command.verbosity);
    case 'status':
      try {
        const status = await fetchStatus(command.metrics.host, command.metrics.port);
        process.stdout.write(renderStatus(status, Date.now()) + '\n');
        return EXIT_OK;
      } catch (err) {
        process.stderr.write(`tcpipe: ${errorMessage(err)}\n`);
        return EXIT_FAILURE;
      }
    case 'run':
      return run(command);
  }
}

/** The client's link address, proxy and wss:// CA, read from the command line, files and environment. */
function clientLinkOptions(command: RunCommand): ClientOptions {
  const address: ClientOptions =
    command.linkUrl !== undefined ? { url: command.linkUrl } : { host: command.linkHost ?? '', port: command.linkPort };
  let proxyPassword = process.env[PROXY_PASSWORD_ENV];
  if (command.proxyPasswordFile !== undefined) {
    try {
      proxyPassword = readFileSync(command.proxyPasswordFile, 'utf8').split('\n')[0]?.trim() ?? '';
    } catch (err) {
      throw new TcpipeError(ErrorCodes.CONFIG, `cannot read --proxy-password-file: ${errorMessage(err)}`);
    }
  }
  let wsCa: Buffer | undefined;
  if (command.wsCaFile !== undefined) {
    try {
      wsCa = readFileSync(command.wsCaFile);
    } catch (err) {
      throw new TcpipeError(ErrorCodes.CONFIG, `cannot read --tls-ca: ${errorMessage(err)}`);
    }
  }
  return {
    ...address,
    ...(command.proxy === 'none' ? { proxy: null } : command.proxy !== undefined ? { proxy: command.proxy } : {}),
    ...(proxyPassword !== undefined && command.proxy !== 'none' ? { proxyPassword } : {}),
    ...(wsCa !== undefined ? { wsCa } : {}),
  };
}

/**
 * SIGHUP: re-reads the command line and config file; routes, --allow (TCP and
 * UDP), --proxy-protocol, the entry ports and a server's [[client]] tables change in place. A bad file changes nothing.
 */
async function reload(instance: Tcpipe, started: RunCommand, logger: Logger): Promise<void> {
  let next;
  let changes: string[];
  try {
    next = parseCommandLine(process.argv.slice(2));
    if (next.kind !== 'run') return;
    changes = await instance.reconfigure({
      ...(next.target !== undefined ? { target: next.target } : {}),
      routes: next.routes,
      ...(next.allow !== undefined ? { allow: next.allow } : {}),
      ...(next.allowUdp !== undefined ? { allowUdp: next.allowUdp } : {}),
      ...(next.proxyProtocol !== undefined ? { proxyProtocol: next.proxyProtocol } : {}),
      ports: next.ports,
      ...(next.sites !== undefined ? { clients: next.sites } : {}),
    });
  } catch (err) {
    logger.error('reload_failed', `reload failed, keeping the running configuration: ${errorMessage(err)}`);
    return;
  }
  const reloadable = new Set(['target', 'routes', 'allow', 'allowUdp', 'proxyProtocol', 'ports', 'sites']);
  const fixed = (Object.keys(next) as (keyof RunCommand)[]).filter(
    (key) => !reloadable.has(key) && JSON.stringify(next[key]) !== JSON.stringify(started[key]),
  );
  logger.info('reload', changes.length === 0 ? 'reloaded: nothing changed' : `reloaded: ${changes.join('; ')}`, {
    reason: changes.join('; '),
  });
  if (fixed.length > 0) logger.warn('reload', `changes to ${fixed.join(', ')} need a restart; they were not applied`);
}

async function run(command: RunCommand): Promise<number> {
  const level: LogLevel = command.verbosity === 'quiet' ? 'warn' : command.verbosity === 'verbose' ? 'debug' : 'info';
  const logger = createLogger({ level, format: command.logFormat, write: (line) => process.stderr.write(line) });
  let security;
  try {
    security = loadSecurity(command);
  } catch (err) {
    logger.error('config', errorMessage(err));
    return EXIT_FAILURE;
  }
  for (const warning of security.warnings) logger.warn('config', warning);
  const common = {
    ports: command.ports,
    ...security.options,
    ...(command.allow !== undefined ? { allow: command.allow } : {}),
    ...(command.allowUdp !== undefined ? { allowUdp: command.allowUdp } : {}),
    limits: {
      ...(command.udpTimeoutSeconds !== undefined ? { udpTimeoutSeconds: command.udpTimeoutSeconds } : {}),
      ...(command.udpMaxFlows !== undefined ? { udpMaxFlows: command.udpMaxFlows } : {}),
      ...(command.maxHandshakes !== undefined ? { maxPendingHandshakes: command.maxHandshakes } : {}),
      ...(command.maxWindow !== undefined ? { maxWindow: command.maxWindow } : {}),
      ...(command.sessionBudget !== undefined ? { receiveBudget: command.sessionBudget } : {}),
    },
    ...(command.target !== undefined ? { target: command.target } : {}),
    routes: command.routes,
    onePerPort: command.onePerPort,
    ...(command.heartbeatSeconds !== undefined ? { heartbeatSeconds: command.heartbeatSeconds } : {}),
    ...(command.resumeSeconds !== undefined ? { resumeSeconds: command.resumeSeconds } : {}),
    ...(command.proxyProtocol !== undefined ? { proxyProtocol: command.proxyProtocol } : {}),
    acceptProxyProtocol: command.acceptProxyProtocol,
    logger,
  };
  if (command.ports.length === 0 && command.target === undefined && command.routes.length === 0 && command.sites === undefined) {
    logger.warn('config', 'neither -p nor -t given: this instance will hold the link but relay nothing');
  }
  let instance: Tcpipe;
  // prom-client is loaded only when metrics are asked for, and before the instance starts: its
  // counters attach as soon as the instance exists, so they count the first streams too.
  let metricsModule: typeof import('../metrics/metrics.js') | null = null;
  if (command.metrics !== undefined) {
    try {
      metricsModule = await import('../metrics/metrics.js');
    } catch (err) {
      logger.error('start_failed', `cannot load the metrics module: ${errorMessage(err)}`);
      return EXIT_FAILURE;
    }
  }
  try {
    instance =
      command.mode === 'server'
        ? await startServer({
            port: command.linkPort,
            ...(command.linkHost !== undefined ? { host: command.linkHost } : {}),
            ...(command.transports !== undefined ? { transports: command.transports } : {}),
            ...(command.wsPath !== undefined ? { wsPath: command.wsPath } : {}),
            ...(command.sites !== undefined ? { clients: command.sites } : {}),
            ...common,
          })
        : await startClient({ ...clientLinkOptions(command), ...common });
  } catch (err) {
    logger.error('start_failed', errorMessage(err));
    return EXIT_FAILURE;
  }
  const ports = command.ports
    .map((p) => `${p.host !== undefined ? `${p.host}:${p.port}` : String(p.port)}${p.protocol === 'udp' ? '/udp' : ''}`)
    .join(',');
  const where =
    command.mode === 'server'
      ? `link port ${instance.linkAddress?.port ?? command.linkPort}`
      : `server ${command.linkUrl ?? `${command.linkHost ?? ''}:${command.linkPort}`}`;
  logger.info(
    'started',
    `tcpipe ${VERSION} ${command.mode}: ${where}${ports ? `, ports ${ports}` : ''}${command.target !== undefined ? `, target ${command.target}` : ''}${command.sites !== undefined ? `, ${command.sites.length} clients` : ''}`,
  );
  let metrics: MetricsServer | null = null;
  if (command.metrics !== undefined && metricsModule !== null) {
    try {
      metrics = await metricsModule.startMetricsServer(instance, command.metrics.host, command.metrics.port, logger);
    } catch (err) {
      logger.error('start_failed', `cannot serve metrics on ${command.metrics.host}:${command.metrics.port}: ${errorMessage(err)}`);
      await instance.stop('start failed');
      return EXIT_FAILURE;
    }
  }
  // One reload at a time, in the order the signals came.
  let reloading = Promise.resolve();
  process.on('SIGHUP', () => {
    reloading = reloading.then(() => reload(instance, command, logger));
  });
  // Timers inside are unref'd: hold the process until a signal stops it.
  const keepAlive = setInterval(() => undefined, 1 << 30);
  const signal = await new Promise<NodeJS.Signals>((resolve) => {
    process.once('SIGINT', () => resolve('SIGINT'));
    process.once('SIGTERM', () => resolve('SIGTERM'));
  });
  logger.info('stopping', `${signal}: stopping`);
  const hardStop = setTimeout(() => {
    logger.error('stop_timeout', 'could not stop cleanly within 2s: exiting');
    process.exit(EXIT_FAILURE);
  }, 2000);
  await Promise.all([instance.stop(`partner shutting down (${signal})`), metrics?.close()]);
  clearTimeout(hardStop);
  clearInterval(keepAlive);
  return EXIT_OK;
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
    // Everything is closed by now; a handle that still holds the event loop must not hold the
    // process past the promised two seconds (unref'd: a clean exit does not wait for it).
    setTimeout(() => process.exit(code), 250).unref();
  },
  (err: unknown) => {
    const message = err instanceof TcpipeError ? err.message : errorMessage(err);
    process.stderr.write(`tcpipe: ${message}\n`);
    process.exitCode = EXIT_FAILURE;
  },
);
