/**
 * The WAN bench's --diagnose mode: the evidence behind a missed target. For
 * each profile and path asked for, it runs the bulk (1 and 8 streams) and
 * interactive workloads with
 *   - tcpipe's window-growth and link trace (bench/wan/trace.ts, loaded with --import),
 *   - `ss -tmi` of the link's TCP socket in both namespaces every 250 ms,
 *   - during the interactive workload, `ss -ti` of the sending end of the link
 *     every 20 ms beside the time of every ping (a ping that waits long, and
 *     what the link's congestion control was doing meanwhile),
 *   - CPU profiles of both tcpipe processes (node --cpu-prof),
 * and writes DIR/diagnose.md with the summaries (raw files beside it).
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { summariseFile } from '../profile-summary.js';
import { median, percentile } from '../stats.js';
import { nowUs } from './api.js';
import { PROFILES, buildLink, type EmulatedLink, type Profile } from './emulation.js';
import type { WanOptions } from './options.js';
import { PATH_PORT, SSHD_PORT, WAN_LABELS, startPath, type WanPathId } from './paths.js';
import { distRoot, log, pathEnv, startApps, type Session } from './session.js';
import { bulk, interactive, waitReady, type Ctx } from './workloads.js';

/** TCP sockets of the path's link, as `ss -tmi` shows them. */
interface SsSample {
  readonly t: number;
  readonly phase: string;
  readonly side: 'a' | 'b';
  readonly local: string;
  readonly peer: string;
  readonly recvQ: number;
  readonly sendQ: number;
  readonly fields: Readonly<Record<string, string>>;
}

const LINK_PORTS: Readonly<Record<WanPathId, number>> = { direct: PATH_PORT.direct, ssh: SSHD_PORT, tcpipe: 7003, 'tcpipe-secret': 7004 };

function parseSs(text: string, t: number, phase: string, side: 'a' | 'b', port: number): SsSample[] {
  const out: SsSample[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const head = lines[i] ?? '';
    if (head === '' || /^\s/.test(head)) continue;
    let info = '';
    while (i + 1 < lines.length && /^\s/.test(lines[i + 1] ?? '')) info += ` ${(lines[++i] ?? '').trim()}`;
    // State Recv-Q Send-Q Local Peer
    const cols = head.trim().split(/\s+/);
    if (cols[0] !== 'ESTAB') continue;
    const local = cols[3] ?? '';
    const peer = cols[4] ?? '';
    if (!local.endsWith(`:${port}`) && !peer.endsWith(`:${port}`)) continue;
    const fields: Record<string, string> = {};
    for (const token of info.trim().split(/\s+/)) {
      const at = token.indexOf(':');
      if (at > 0) fields[token.slice(0, at)] = token.slice(at + 1);
      else fields[token] = 'true';
    }
    // "send 5.2Gbps", "pacing_rate 1Gbps", "delivery_rate 900Mbps": values after a space.
    for (const key of ['send', 'pacing_rate', 'delivery_rate']) {
      const m = new RegExp(`(?:^|\\s)${key} (\\S+)`).exec(info);
      if (m?.[1] !== undefined) fields[key] = m[1];
    }
    out.push({ t, phase, side, local, peer, recvQ: Number(cols[1] ?? 0), sendQ: Number(cols[2] ?? 0), fields });
  }
  return out;
}

function ssNow(link: EmulatedLink, port: number, phase: string): SsSample[] {
  const out: SsSample[] = [];
  for (const side of [link.a, link.b]) {
    const r = spawnSync('ip', ['netns', 'exec', side.ns, 'ss', '-tmiHn'], { encoding: 'utf8', timeout: 5000 });
    out.push(...parseSs(r.stdout ?? '', nowUs(), phase, side.name, port));
  }
  return out;
}

/** "87040" or "1.2M"-style numbers from ss into plain numbers; rates into bit/s. */
function rate(text: string | undefined): number {
  if (text === undefined) return Number.NaN;
  const m = /^([\d.]+)([KMG]?)bps$/.exec(text);
  if (m === null) return Number.NaN;
  const mult = { '': 1, K: 1e3, M: 1e6, G: 1e9 }[m[2] ?? ''] ?? 1;
  return Number(m[1]) * mult;
}

function skmem(text: string | undefined, key: string): number {
  const m = new RegExp(`[(,]${key}(\\d+)`).exec(text ?? '');
  return m?.[1] === undefined ? Number.NaN : Number(m[1]);
}

function limitedPct(text: string | undefined): string {
  // "123ms(45.6%)"
  const m = /\(([\d.]+)%\)/.exec(text ?? '');
  return m?.[1] === undefined ? '0' : m[1];
}

function ssSummary(samples: readonly SsSample[], phase: string, side: 'a' | 'b'): string[] {
  const list = samples.filter((s) => s.phase === phase && s.side === side);
  if (list.length === 0) return [`(no ${side === 'a' ? 'A' : 'B'} socket samples in ${phase})`];
  const col = (fn: (s: SsSample) => number): string => {
    const v = list.map(fn).filter((x) => Number.isFinite(x));
    if (v.length === 0) return '–';
    return `${(median(v) ?? 0).toFixed(1)} / ${Math.max(...v).toFixed(1)}`;
  };
  const last = list[list.length - 1];
  return [
    `| ${phase} | ${side === 'a' ? 'A (entry)' : 'B (exit)'} | ${list.length} | ${col((s) => Number(s.fields['rtt']?.split('/')[0]))} | ${col((s) => Number(s.fields['cwnd']))} | ${col((s) => s.sendQ / 1e6)} | ${col((s) => Number(s.fields['notsent'] ?? 0) / 1e6)} | ${col((s) => s.recvQ / 1e6)} | ${col((s) => skmem(s.fields['skmem'], 'tb') / 1e6)} | ${col((s) => skmem(s.fields['skmem'], 'rb') / 1e6)} | ${col((s) => rate(s.fields['delivery_rate']) / 1e6)} | ${col((s) => rate(s.fields['pacing_rate']) / 1e6)} | ${limitedPct(last?.fields['rwnd_limited'])}% / ${limitedPct(last?.fields['sndbuf_limited'])}% |`,
  ];
}

/** One `ss -ti` look at the sending end of the link, from the 20 ms timeline. */
interface FineSample {
  readonly t: number;
  readonly cwnd: number;
  readonly notsentMB: number;
  readonly unacked: number;
  /** BBR's gains, "pacing/cwnd" (PROBE_RTT runs both at 1 with cwnd 4). */
  readonly gains: string;
}

/** `ss -ti` of the link socket every 20 ms in one namespace, timestamped as each answer arrives. */
class FineSampler {
  readonly samples: FineSample[] = [];
  private readonly child;
  private partial = '';

  constructor(ns: string, port: number) {
    const filter = `( sport = :${port} or dport = :${port} )`;
    const script = `while :; do echo @; ss -tinH '${filter}'; sleep 0.02; done`;
    this.child = spawn('ip', ['netns', 'exec', ns, 'sh', '-c', script], { stdio: ['ignore', 'pipe', 'ignore'] });
    this.child.stdout.setEncoding('utf8');
    this.child.stdout.on('data', (chunk: string) => this.read(chunk));
  }

  private read(chunk: string): void {
    const t = nowUs();
    const blocks = (this.partial + chunk).split('@\n');
    this.partial = blocks.pop() ?? '';
    for (const block of blocks) {
      if (!block.includes('ESTAB')) continue;
      const num = (re: RegExp): number => Number(re.exec(block)?.[1] ?? Number.NaN);
      this.samples.push({
        t,
        cwnd: num(/\bcwnd:(\d+)/),
        notsentMB: num(/\bnotsent:(\d+)/) / 1e6 || 0,
        unacked: num(/\bunacked:(\d+)/),
        gains: /pacing_gain:([\d.]+),cwnd_gain:([\d.]+)/.exec(block)?.slice(1, 3).join('/') ?? '?',
      });
    }
  }

  stop(): void {
    this.child.kill('SIGKILL');
  }
}

/** Slow pings beside what the sending end of the link did while each waited. */
function pingTimeline(pings: readonly { at: number; ms: number }[], fine: readonly FineSample[], rttMs: number): string[] {
  const probeRtt = fine.filter((f) => f.gains === '1/1' || f.cwnd <= 4);
  const episodes: { from: number; to: number }[] = [];
  for (const f of probeRtt) {
    const last = episodes[episodes.length - 1];
    if (last !== undefined && f.t - last.to < 100_000) last.to = f.t;
    else episodes.push({ from: f.t, to: f.t });
  }
  const t0 = pings[0]?.at ?? 0;
  const rel = (us: number): string => ((us - t0) / 1000).toFixed(0);
  const out = [
    `${fine.length} samples of the sending end of the link (every 20 ms) over ${pings.length} pings. BBR PROBE_RTT (gains 1/1 or cwnd ≤ 4) at ms: ${episodes.map((e) => `${rel(e.from)}–${rel(e.to)}`).join(', ') || 'none'}.`,
    '',
    '| ping sent at ms | round trip ms | overlaps PROBE_RTT | cwnd min | notsent MB max | unacked max | gains seen |',
    '|---:|---:|---|---:|---:|---:|---|',
  ];
  for (const p of pings) {
    if (p.ms <= rttMs + 10) continue;
    const during = fine.filter((f) => f.t >= p.at && f.t <= p.at + p.ms * 1000);
    const overlaps = episodes.some((e) => e.from <= p.at + p.ms * 1000 && e.to >= p.at);
    const cw = during.map((f) => f.cwnd).filter(Number.isFinite);
    const ns = during.map((f) => f.notsentMB);
    const un = during.map((f) => f.unacked).filter(Number.isFinite);
    out.push(
      `| ${rel(p.at)} | ${p.ms.toFixed(1)} | ${overlaps ? 'yes' : 'no'} | ${cw.length > 0 ? Math.min(...cw) : '–'} | ${ns.length > 0 ? Math.max(...ns).toFixed(1) : '–'} | ${un.length > 0 ? Math.max(...un) : '–'} | ${[...new Set(during.map((f) => f.gains))].join(' ')} |`,
    );
  }
  const slow = pings.filter((p) => p.ms > rttMs + 10).length;
  out.push('', `${slow} of ${pings.length} pings over RTT + 10 ms.`);
  return out;
}

interface TraceLine {
  readonly k: string;
  readonly t: number;
  readonly s?: string;
  readonly before?: number;
  readonly after?: number;
  readonly consumed?: number;
  readonly rttMs?: number;
  readonly ms?: number;
  readonly why?: string;
  readonly buffered?: number;
  readonly grown?: number;
  readonly linkQueued?: number;
  readonly congested?: boolean;
  readonly bytesOut?: number;
  readonly bytesIn?: number;
}

function readTrace(file: string): TraceLine[] {
  if (!existsSync(file)) return [];
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as TraceLine);
}

/** Window growth of the receiving streams and stalls of the sending ones, per phase window of time. */
function traceSummary(exitTrace: readonly TraceLine[], entryTrace: readonly TraceLine[], phases: readonly { name: string; from: number; to: number }[]): string[] {
  const out = ['| phase | stream | WINDOWs sent | window at start → end (KiB) | time to the largest window | RTT used by growth, ms | sender stalled on window / link, ms (share of phase) |', '|---|---|---:|---:|---:|---:|---:|'];
  for (const ph of phases) {
    const wins = exitTrace.filter((l) => l.k === 'win' && l.t >= ph.from && l.t <= ph.to);
    const streams = [...new Set(wins.map((w) => w.s ?? ''))];
    // The busiest few streams of the phase (the interactive one sends few WINDOWs).
    streams.sort((x, y) => wins.filter((w) => w.s === y).length - wins.filter((w) => w.s === x).length);
    for (const s of streams.slice(0, 8)) {
      const list = wins.filter((w) => w.s === s);
      const first = list[0];
      const lastW = list[list.length - 1];
      if (first === undefined || lastW === undefined) continue;
      const maxWin = Math.max(...list.map((w) => w.after ?? 0));
      const reached = list.find((w) => (w.after ?? 0) >= maxWin);
      const rtts = list.map((w) => w.rttMs ?? Number.NaN).filter((x) => Number.isFinite(x));
      const sender = `${s.slice(0, -1)}e`;
      const stalls = entryTrace.filter((l) => l.k === 'stall' && l.s === sender && l.t >= ph.from && l.t <= ph.to + 1e6);
      const onWindow = stalls.filter((l) => l.why === 'window').reduce((a, l) => a + (l.ms ?? 0), 0);
      const onLink = stalls.filter((l) => l.why === 'link').reduce((a, l) => a + (l.ms ?? 0), 0);
      const span = (ph.to - ph.from) / 1000;
      out.push(
        `| ${ph.name} | ${s} | ${list.length} | ${((first.before ?? 0) / 1024).toFixed(0)} → ${((lastW.after ?? 0) / 1024).toFixed(0)} | ${reached === undefined ? '–' : `${((reached.t - first.t) / 1000).toFixed(0)} ms`} | ${rtts.length === 0 ? '–' : `${(median(rtts) ?? 0).toFixed(1)} (${Math.min(...rtts).toFixed(1)}–${Math.max(...rtts).toFixed(1)})`} | ${onWindow.toFixed(0)} / ${onLink.toFixed(0)} (${((100 * onWindow) / span).toFixed(0)}% / ${((100 * onLink) / span).toFixed(0)}%) |`,
      );
    }
  }
  return out;
}

function sessionSummary(trace: readonly TraceLine[], phases: readonly { name: string; from: number; to: number }[], who: string): string[] {
  const out: string[] = [];
  for (const ph of phases) {
    const list = trace.filter((l) => l.k === 'sess' && l.t >= ph.from && l.t <= ph.to);
    if (list.length === 0) continue;
    const q = list.map((l) => l.linkQueued ?? 0);
    const b = list.map((l) => l.buffered ?? 0);
    const g = list.map((l) => l.grown ?? 0);
    const congested = list.filter((l) => l.congested === true).length;
    const rtts = list.map((l) => l.rttMs ?? 0);
    out.push(
      `| ${ph.name} | ${who} | ${(percentile(q, 50) / 1024).toFixed(0)} / ${(Math.max(...q) / 1024).toFixed(0)} | ${((100 * congested) / list.length).toFixed(0)}% | ${(percentile(b, 50) / 1048576).toFixed(1)} / ${(Math.max(...b) / 1048576).toFixed(1)} | ${(Math.max(...g) / 1048576).toFixed(1)} | ${(median(rtts) ?? 0).toFixed(1)} (${Math.min(...rtts).toFixed(1)}–${Math.max(...rtts).toFixed(1)}) |`,
    );
  }
  return out;
}

async function diagnoseOne(s: Session, o: WanOptions, profile: Profile, id: WanPathId, dir: string): Promise<string[]> {
  mkdirSync(dir, { recursive: true });
  const traceUrl = pathToFileURL(join(distRoot, 'bench', 'wan', 'trace.js')).href;
  const link = await buildLink(profile, { registry: s.registry, delayBinary: s.delayBinary, realtime: o.realtime, sysctls: o.sysctls, log });
  const samples: SsSample[] = [];
  const port = LINK_PORTS[id];
  const phases: { name: string; from: number; to: number }[] = [];
  const out: string[] = [`## ${WAN_LABELS[id]} at ${profile.label}`, ''];
  try {
    const apps = await startApps(s.registry, link);
    const isTcpipe = id === 'tcpipe' || id === 'tcpipe-secret';
    const env = pathEnv(s, o, {
      tcpipeNodeFlags: (side) => ['--cpu-prof', `--cpu-prof-dir=${dir}`, `--cpu-prof-name=${side}.cpuprofile`, '--import', traceUrl],
      tcpipeEnv: (side) => ({ TCPIPE_WAN_TRACE: join(dir, `${side}-trace.jsonl`) }),
    });
    const running = await startPath(id, link, env);
    const ctx: Ctx = {
      user: apps.user,
      sink: apps.sink,
      options: o,
      profile,
      log,
      sampler: { everyMs: 250, sample: (phase) => samples.push(...ssNow(link, port, phase)) },
    };
    try {
      await waitReady(ctx, running);
      const results: string[] = [];
      const show = (r: unknown): string => JSON.stringify(r, (k, v: unknown) => (k === 'pings' ? undefined : typeof v === 'number' ? Math.round(v * 1000) / 1000 : v));
      for (const [name, fn] of [
        ['bulk1', () => bulk(ctx, running, 1)],
        ['bulk8', () => bulk(ctx, running, 8)],
      ] as const) {
        const from = nowUs();
        const r = await fn();
        phases.push({ name, from, to: nowUs() });
        results.push(`- ${name}: \`${show(r)}\``);
        log(`  ${id} ${name}: ${show(r)}`);
      }
      // The interactive workload with the sending end of the link watched every 20 ms.
      const fine = new FineSampler(link.a.ns, port);
      const from = nowUs();
      const r = await interactive(ctx, running).finally(() => fine.stop());
      phases.push({ name: 'interactive', from, to: nowUs() });
      results.push(`- interactive: \`${show(r)}\``);
      log(`  ${id} interactive: ${show(r)}`);
      writeFileSync(join(dir, 'interactive-timeline.json'), JSON.stringify({ pings: r.pings ?? [], fine: fine.samples }));
      out.push('Workloads (as in the benchmark, with the instruments on):', '', ...results, '');
      out.push('Interactive pings slower than RTT + 10 ms, and the link\'s sending socket meanwhile:', '', ...pingTimeline(r.pings ?? [], fine.samples, profile.rttMs), '');
    } finally {
      await running.stop();
      for (const c of apps.children) await s.registry.stop(c, 2000);
    }
    writeFileSync(join(dir, 'ss.json'), JSON.stringify(samples));
    out.push(
      `\`ss -tmi\` of the link's TCP socket (port ${port}), every 250 ms: median / max per phase.`,
      '',
      '| phase | side | samples | rtt ms | cwnd (pkts) | Send-Q MB | notsent MB | Recv-Q MB | sndbuf (tb) MB | rcvbuf (rb) MB | delivery Mbit/s | pacing Mbit/s | rwnd / sndbuf limited (cumulative) |',
      '|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
      ...phases.flatMap((ph) => [...ssSummary(samples, ph.name, 'a'), ...ssSummary(samples, ph.name, 'b')]),
      '',
    );
    if (isTcpipe) {
      const entryTrace = readTrace(join(dir, 'entry-trace.jsonl'));
      const exitTrace = readTrace(join(dir, 'exit-trace.jsonl'));
      const rttSamples = [...entryTrace, ...exitTrace].filter((l) => l.k === 'rtt').map((l) => (l.ms ?? 0).toFixed(1));
      out.push(
        'Window growth (receiving streams on the exit side; their sender is the same stream on the entry side):',
        '',
        ...traceSummary(exitTrace, entryTrace, phases),
        '',
        `Heartbeat RTT samples (both ends, ms): ${rttSamples.join(', ')}.`,
        '',
        '| phase | end | link queued in user space KiB (median / max) | time congested | received, not consumed MiB (median / max) | grown windows MiB (max) | session RTT ms (median, range) |',
        '|---|---|---:|---:|---:|---:|---:|',
        ...sessionSummary(entryTrace, phases, 'entry'),
        ...sessionSummary(exitTrace, phases, 'exit'),
        '',
      );
      for (const side of ['entry', 'exit']) {
        const file = join(dir, `${side}.cpuprofile`);
        for (let i = 0; i < 50 && !existsSync(file); i++) await new Promise((resolve) => setTimeout(resolve, 100));
        if (existsSync(file)) out.push('```', summariseFile(file, `CPU profile, ${side} side (the whole life of the process)`, 15), '```', '');
        else out.push(`(no CPU profile for the ${side} side: ${readdirSync(dir).join(', ')})`, '');
      }
    }
  } finally {
    await link.destroy();
  }
  return out;
}

export async function diagnose(s: Session, o: WanOptions, dir: string): Promise<void> {
  mkdirSync(dir, { recursive: true });
  const report: string[] = [
    `# WAN bench diagnosis, ${new Date().toISOString()}`,
    '',
    `Profiles ${o.profiles.join(', ')}; paths ${o.paths.join(', ')}; bulk ${o.bulkBytes / 1048576} MiB, cap ${o.capMs / 1000} s. Instruments on: the figures are a little lower than the benchmark's.`,
    '',
  ];
  for (const pid of o.profiles) {
    const profile = PROFILES.find((p) => p.id === pid);
    if (profile === undefined) continue;
    for (const id of o.paths) {
      log(`diagnose ${id} at ${profile.label}`);
      try {
        report.push(...(await diagnoseOne(s, o, profile, id, join(dir, `${profile.id}-${id}`))));
      } catch (err) {
        s.failed = true;
        report.push(`## ${WAN_LABELS[id]} at ${profile.label}`, '', `failed: ${err instanceof Error ? err.message : String(err)}`, '');
      }
      writeFileSync(join(dir, 'diagnose.md'), `${report.join('\n')}\n`);
    }
  }
  log(`diagnosis in ${join(dir, 'diagnose.md')}`);
}
