/** The PROXY protocol's command-line options (README, "The user's real address"). Pure. */
import { UsageError } from '../errors.js';
import type { RouteSpec } from '../instance.js';

/** --proxy-protocol=v1|v2 and --accept-proxy-protocol (which needs entry ports). */
export function parseProxyFlags(
  proxyProtocol: string | undefined,
  acceptProxyProtocol: boolean,
  hasPorts: boolean,
): { proxyProtocol: 'v1' | 'v2' | undefined; acceptProxyProtocol: boolean } {
  if (proxyProtocol !== undefined && proxyProtocol !== 'v1' && proxyProtocol !== 'v2') {
    throw new UsageError(`--proxy-protocol must be v1 or v2, not '${proxyProtocol}'`);
  }
  if (acceptProxyProtocol && !hasPorts) throw new UsageError('--accept-proxy-protocol applies to the entry ports: give -p too');
  return { proxyProtocol, acceptProxyProtocol };
}

/** A route's options after its address: `proxy-protocol=v1|v2|none` (the header written to its target). */
export function parseRouteOptions(options: readonly string[], what: string): Pick<RouteSpec, 'proxyProtocol'> {
  let proxyProtocol: 'v1' | 'v2' | 'none' | undefined;
  for (const option of options) {
    const [key, value] = option.split('=', 2);
    if (key !== 'proxy-protocol') throw new UsageError(`${what}: unknown route option '${option}' (known: proxy-protocol=v1|v2|none)`);
    if (value !== 'v1' && value !== 'v2' && value !== 'none') throw new UsageError(`${what}: proxy-protocol must be v1, v2 or none, not '${value ?? ''}'`);
    if (proxyProtocol !== undefined) throw new UsageError(`${what}: proxy-protocol given twice`);
    proxyProtocol = value;
  }
  return proxyProtocol === undefined ? {} : { proxyProtocol };
}

