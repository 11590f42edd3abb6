/**
 * An experiment, not a fix: what tcpipe's new-stream latency would be if the
 * session coalesced the frames it writes in one event-loop turn into one
 * write to the link. Loaded into both tcpipe processes by
 * `npm run bench:wan -- --experiment coalesce` (node --import), it corks the
 * link at the first frame of a turn and uncorks it in setImmediate, so the
 * OPEN, ACCEPT, DATA and WINDOW frames of many streams leave in a few full
 * TCP segments instead of one small segment each (which TCP's congestion
 * window counts one by one). With TCPIPE_WAN_COALESCE_MS=<n> (--experiment
 * batch1ms) the link stays corked for n ms from the first frame instead, so
 * streams opened a few hundred µs apart share segments too. src/ is not
 * touched; see docs/BENCHMARKS-WAN.md for the change proposed there.
 */
import { Session } from '../../src/mux/session.js';

const corked = new WeakSet<object>();
const HOLD_MS = Number(process.env['TCPIPE_WAN_COALESCE_MS'] ?? '0') || 0;

function coalesce(self: object): void {
  const link: unknown = Reflect.get(self, 'link');
  if (typeof link !== 'object' || link === null || corked.has(link)) return;
  const cork: unknown = Reflect.get(link, 'cork');
  const uncork: unknown = Reflect.get(link, 'uncork');
  if (typeof cork !== 'function' || typeof uncork !== 'function') return;
  corked.add(link);
  Reflect.apply(cork, link, []);
  const release = (): void => {
    corked.delete(link);
    Reflect.apply(uncork, link, []);
  };
  if (HOLD_MS > 0) setTimeout(release, HOLD_MS);
  else setImmediate(release);
}

for (const name of ['writeFrame', 'writeData']) {
  const original: unknown = Reflect.get(Session.prototype, name);
  if (typeof original !== 'function') throw new Error(`experiment-coalesce: Session.${name} is gone (src/ changed)`);
  Reflect.set(Session.prototype, name, function (this: object, ...args: unknown[]): unknown {
    if (Reflect.get(this, 'ended') !== true) coalesce(this);
    return Reflect.apply(original, this, args);
  });
}
