/**
 * A window-growth and link trace for tcpipe, loaded into a tcpipe process by
 * the WAN bench's --diagnose mode:
 *
 *   TCPIPE_WAN_TRACE=/tmp/x.jsonl node --import <dist>/bench/wan/trace.js dist/src/cli/main.js ...
 *
 * It subscribes to what tcpipe publishes on node:diagnostics_channel
 * (src/observe.ts) and writes JSON lines:
 *   {"k":"win", t, s, before, after, consumed, rttMs}  a WINDOW sent by a receiving stream
 *   {"k":"stall", t, s, ms, why}                       a sending stream waited `ms` for window or link
 *   {"k":"rtt", t, ms}                                 a heartbeat RTT sample
 *   {"k":"sess", t, rttMs, buffered, grown, linkQueued, congested, bytesIn, bytesOut, streams}  every 100 ms
 *   {"k":"pace", t, rttMs, minRttMs, cap, inFlight}      an answered link probe (src/mux/link-pacer.ts)
 * t is CLOCK_MONOTONIC in µs (the bench's clock); s is "<id><e|x>" (entry or exit side's stream).
 * A stall is the time from a stream's tcpipe:stream:blocked to its next
 * tcpipe:stream:unblocked; a change of reason (window to link) ends one stall
 * and starts another.
 */
import { appendFileSync, writeFileSync } from 'node:fs';
import { subscribe, type SessionSnapshot } from '../../src/observe.js';

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

if (file !== '') {
  writeFileSync(file, '');
  /** Blocked streams by tag: since when, and why. */
  const blockedSince = new Map<string, { at: number; why: string }>();
  const sessions = new Set<() => SessionSnapshot>();

  subscribe('tcpipe:stream:window', (m) => {
    emit({ k: 'win', t: nowUs(), s: m.stream, before: m.before, after: m.after, consumed: m.consumed, rttMs: m.rttMs });
  });
  subscribe('tcpipe:stream:blocked', (m) => {
    blockedSince.set(m.stream, { at: nowUs(), why: m.why });
  });
  subscribe('tcpipe:stream:unblocked', (m) => {
    const since = blockedSince.get(m.stream);
    if (since === undefined) return;
    blockedSince.delete(m.stream);
    const t = nowUs();
    emit({ k: 'stall', t, s: m.stream, ms: (t - since.at) / 1000, why: since.why });
  });
  subscribe('tcpipe:link:rtt', (m) => {
    if (m.source === 'heartbeat') emit({ k: 'rtt', t: nowUs(), ms: m.ms });
  });
  subscribe('tcpipe:link:pace', (m) => {
    emit({ k: 'pace', t: nowUs(), rttMs: m.rttMs, minRttMs: m.minRttMs, cap: m.cap, inFlight: m.inFlight });
  });
  subscribe('tcpipe:session:start', (m) => {
    sessions.add(m.snapshot);
  });

  setInterval(() => {
    for (const snapshot of sessions) {
      const s = snapshot();
      if (s.ended) {
        sessions.delete(snapshot);
        continue;
      }
      emit({
        k: 'sess',
        t: nowUs(),
        rttMs: s.rttMs,
        buffered: s.buffered,
        grown: s.grown,
        linkQueued: s.linkQueued,
        congested: s.congested,
        bytesIn: s.bytesIn,
        bytesOut: s.bytesOut,
        streams: s.streams,
      });
    }
    flush();
  }, 100).unref();
  process.on('exit', flush);
}
