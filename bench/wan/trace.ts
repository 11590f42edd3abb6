/**
 * A window-growth and link trace for tcpipe, loaded into a tcpipe process by
 * the WAN bench's --diagnose mode without touching src/:
 *
 *   TCPIPE_WAN_TRACE=/tmp/x.jsonl node --import <dist>/bench/wan/trace.js dist/src/cli/main.js ...
 *
 * It wraps methods of the Stream and Session classes (the same module
 * instances the CLI loads) and writes JSON lines:
 *   {"k":"win", t, s, before, after, consumed, rttMs}  a WINDOW sent by a receiving stream
 *   {"k":"stall", t, s, ms, why}                       a sending stream waited `ms` for window or link
 *   {"k":"rtt", t, ms}                                 a heartbeat RTT sample
 *   {"k":"sess", t, rttMs, buffered, grown, linkQueued, congested, bytesIn, bytesOut, streams}  every 100 ms
 *   {"k":"pace", t, rttMs, minRttMs, cap, inFlight}      an answered link probe (src/mux/link-pacer.ts)
 * t is CLOCK_MONOTONIC in µs (the bench's clock); s is "<id><e|x>" (entry or exit side's stream).
 */
import { appendFileSync, writeFileSync } from 'node:fs';
import { Session } from '../../src/mux/session.js';
import { Stream } from '../../src/mux/stream.js';
import { LinkPacer } from '../../src/mux/link-pacer.js';

const file = process.env['TCPIPE_WAN_TRACE'] ?? '';
const nowUs = (): number => Number(process.hrtime.bigint() / 1000n);
let lines: string[] = [];

function emit(record: Record<string, number | string | boolean>): void {
  lines.push(JSON.stringify(record));
}

function flush(): void {
  if (lines.length === 0 || file === '') return;
  const text = `${lines.join('\n')}\n`;
  lines = [];
  appendFileSync(file, text);
}

function num(target: object, key: string): number {
  const v: unknown = Reflect.get(target, key);
  return typeof v === 'number' ? v : Number.NaN;
}

function wrap(proto: object, name: string, around: (self: object, args: unknown[], call: () => unknown) => unknown): void {
  const original: unknown = Reflect.get(proto, name);
  if (typeof original !== 'function') throw new Error(`trace: ${name} is not a method any more (src/ changed): update bench/wan/trace.ts`);
  Reflect.set(proto, name, function (this: object, ...args: unknown[]): unknown {
    return around(this, args, () => Reflect.apply(original, this, args));
  });
}

const streamKey = (s: Stream): string => `${s.id}${s.isEntry ? 'e' : 'x'}`;

/** Sending streams that wait: since when, and why. */
const stalledSince = new WeakMap<object, { at: number; why: string }>();

function checkStall(self: Stream): void {
  const pending = num(self, 'pendingBytes');
  const sent = num(self, 'sentBytes');
  const limit = num(self, 'sendLimit');
  const owner: unknown = Reflect.get(self, 'owner');
  const congested = typeof owner === 'object' && owner !== null && Reflect.get(owner, 'congested') === true;
  const waiting = pending > 0 && (sent >= limit || congested);
  const since = stalledSince.get(self);
  if (waiting && since === undefined) stalledSince.set(self, { at: nowUs(), why: sent >= limit ? 'window' : 'link' });
  else if (!waiting && since !== undefined) {
    stalledSince.delete(self);
    emit({ k: 'stall', t: nowUs(), s: streamKey(self), ms: (nowUs() - since.at) / 1000, why: since.why });
  }
}

if (file !== '') {
  writeFileSync(file, '');
  wrap(Stream.prototype, 'sendWindowUpdate', (self, _args, call) => {
    const window: unknown = Reflect.get(self, 'receiveWindow');
    const rw = typeof window === 'object' && window !== null ? window : {};
    const before = num(rw, 'window');
    const result = call();
    const owner: unknown = Reflect.get(self, 'owner');
    const rtt: unknown = typeof owner === 'object' && owner !== null ? Reflect.apply(Reflect.get(owner, 'rttMs') as (this: unknown) => number, owner, []) : Number.NaN;
    emit({ k: 'win', t: nowUs(), s: streamKey(self as Stream), before, after: num(rw, 'window'), consumed: num(rw, 'consumed'), rttMs: Number(rtt) });
    return result;
  });
  wrap(Stream.prototype, 'flush', (self, _args, call) => {
    const result = call();
    checkStall(self as Stream);
    return result;
  });
  wrap(Stream.prototype, 'handleWindow', (self, _args, call) => {
    const result = call();
    checkStall(self as Stream);
    return result;
  });
  wrap(Session.prototype, 'recordRtt', (_self, args, call) => {
    emit({ k: 'rtt', t: nowUs(), ms: Number(args[0]) });
    return call();
  });
  const sessions = new Set<Session>();
  wrap(Session.prototype, 'start', (self, _args, call) => {
    sessions.add(self as Session);
    return call();
  });
  wrap(LinkPacer.prototype, 'sample', (self, args, call) => {
    const result = call();
    emit({ k: 'pace', t: nowUs(), rttMs: Number(args[0]), minRttMs: num(self, 'minRtt'), cap: num(self, 'cap'), inFlight: num(self, 'inFlight') });
    return result;
  });
  setInterval(() => {
    for (const s of sessions) {
      if (s.isEnded) {
        sessions.delete(s);
        continue;
      }
      const link: unknown = Reflect.get(s, 'link');
      const queued = typeof link === 'object' && link !== null ? num(link, 'writableLength') : Number.NaN;
      emit({
        k: 'sess',
        t: nowUs(),
        rttMs: s.roundTrip.smoothed,
        buffered: s.bufferedBytes,
        grown: num(s, 'grownWindows'),
        linkQueued: queued,
        congested: s.snapshot().congested,
        bytesIn: s.bytesIn,
        bytesOut: s.bytesOut,
        streams: s.streamCount,
      });
    }
    flush();
  }, 100).unref();
  process.on('exit', flush);
}
