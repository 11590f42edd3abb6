/**
 * UDP through the pair, side by side with the same traffic sent directly
 * (issue 20, "Measured"). Two tcpipe CLIs on loopback: the server listens on
 * 127.0.0.2 (-p P/udp, and P,P/udp for iperf3, whose control channel is TCP),
 * the client routes them to 127.0.0.3.
 *
 *   node dist/bench/udp.js [--seconds=5] [--skip-iperf] [--skip-flows]
 *
 * 1. DNS: dnsmasq on 127.0.0.3 answers a local zone; 16 users (16 flows), one
 *    query in flight each, for N seconds: queries per second, p50 and p99.
 * 2. iperf3 -u at rising rates (1,200-byte datagrams): rate carried, loss, jitter;
 *    then 100 Mbit/s beside a TCP bulk stream through the same link.
 * 3. 10,000 flows: RSS of each tcpipe process before and after, per flow.
 *
 * Needs dnsmasq and iperf3 (apt-get install dnsmasq-base iperf3). Figures from
 * a shared 2-core machine: shape, not absolutes.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import dgram from 'node:dgram';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { fileURLToPath } from 'node:url';

const MAIN = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));
const args = new Map(process.argv.slice(2).map((a) => [a.replace(/^--/, '').split('=')[0] ?? '', a.split('=')[1] ?? 'true']));
const SECONDS = Number(args.get('seconds') ?? 5);
const children: ChildProcess[] = [];

function start(cmd: string, argv: string[], ready: RegExp): Promise<ChildProcess> {
  const child = spawn(cmd, argv, { stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  let out = '';
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${cmd} not ready: ${out}`)), 10_000);
    const onData = (d: Buffer): void => {
      out += d.toString();
      if (ready.test(out)) {
        clearTimeout(timer);
        resolve(child);
      }
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
  });
}

function rssKiB(child: ChildProcess): number {
  const m = /VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${child.pid ?? 0}/status`, 'utf8'));
  return Number(m?.[1] ?? 0);
}

function dnsQuery(id: number, name: string): Buffer {
  const labels = name.split('.').map((l) => Buffer.concat([Buffer.from([l.length]), Buffer.from(l)]));
  const head = Buffer.alloc(12);
  head.writeUInt16BE(id, 0);
  head.writeUInt16BE(0x0100, 2);
  head.writeUInt16BE(1, 4);
  return Buffer.concat([head, ...labels, Buffer.from([0, 0, 1, 0, 1])]);
}

async function dnsLoad(host: string, port: number, users: number, seconds: number): Promise<{ qps: number; p50: number; p99: number; lost: number }> {
  const latencies: number[] = [];
  let lost = 0;
  const end = performance.now() + seconds * 1000;
  await Promise.all(
    Array.from({ length: users }, async (_, u) => {
      const socket = dgram.createSocket('udp4');
      socket.bind(0, '127.0.0.1');
      await once(socket, 'listening');
      let id = u * 1000;
      while (performance.now() < end) {
        id = (id + 1) & 0xffff;
        const sent = performance.now();
        const want = id;
        const answered = await new Promise<boolean>((resolve) => {
          const timer = setTimeout(() => {
            socket.off('message', onMessage);
            resolve(false);
          }, 1000);
          const onMessage = (msg: Buffer): void => {
            if (msg.readUInt16BE(0) !== want) return;
            clearTimeout(timer);
            socket.off('message', onMessage);
            resolve(true);
          };
          socket.on('message', onMessage);
          socket.send(dnsQuery(want, `host${u}.example.test`), port, host);
        });
        if (answered) latencies.push(performance.now() - sent);
        else lost++;
      }
      socket.close();
    }),
  );
  latencies.sort((a, b) => a - b);
  const at = (q: number): number => latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))] ?? NaN;
  return { qps: latencies.length / seconds, p50: at(0.5), p99: at(0.99), lost };
}

interface IperfResult {
  mbps: number;
  lost: number;
  jitter: number;
}

async function iperf(host: string, port: number, rate: string, seconds: number, tcpBeside?: { host: string; port: number }): Promise<IperfResult> {
  const run = (argv: string[]): Promise<string> =>
    new Promise((resolve) => {
      const child = spawn('iperf3', argv, { stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      child.stdout.on('data', (d: Buffer) => (out += d.toString()));
      child.on('close', () => resolve(out));
    });
  const bulk = tcpBeside === undefined ? null : run(['-c', tcpBeside.host, '-p', String(tcpBeside.port), '-t', String(seconds + 1), '--json']);
  const out = await run(['-c', host, '-p', String(port), '-u', '-b', rate, '-l', '1200', '-t', String(seconds), '--json']);
  await bulk;
  try {
    const sum = (JSON.parse(out) as { end: { sum: { bits_per_second: number; lost_percent: number; jitter_ms: number } } }).end.sum;
    return { mbps: sum.bits_per_second / 1e6, lost: sum.lost_percent, jitter: sum.jitter_ms };
  } catch {
    return { mbps: NaN, lost: NaN, jitter: NaN };
  }
}

/** 64-byte ping-pong on one TCP connection for `seconds`: p50 and p99 in ms. */
async function tcpRtt(host: string, port: number, seconds: number): Promise<{ p50: number; p99: number }> {
  const socket = net.connect(port, host);
  socket.setNoDelay(true);
  await once(socket, 'connect');
  const samples: number[] = [];
  const ping = Buffer.alloc(64, 7);
  const end = performance.now() + seconds * 1000;
  while (performance.now() < end) {
    const sent = performance.now();
    socket.write(ping);
    let got = 0;
    while (got < 64) got += ((await once(socket, 'data')) as [Buffer])[0].length;
    samples.push(performance.now() - sent);
  }
  socket.destroy();
  samples.sort((a, b) => a - b);
  const at = (q: number): number => samples[Math.floor(q * samples.length)] ?? NaN;
  return { p50: at(0.5), p99: at(0.99) };
}

/** One flow of 1,420-byte datagrams at `pps`, echoed back (both ways): the share lost. */
async function wireguardLike(host: string, port: number, pps: number, seconds: number): Promise<number> {
  const socket = dgram.createSocket('udp4');
  socket.bind(0, '127.0.0.1');
  await once(socket, 'listening');
  let back = 0;
  socket.on('message', () => back++);
  const datagram = Buffer.alloc(1420, 3);
  let sent = 0;
  const start = performance.now();
  await new Promise<void>((resolve) => {
    const timer = setInterval(() => {
      const due = Math.floor(((performance.now() - start) / 1000) * pps);
      while (sent < due) {
        socket.send(datagram, port, host);
        sent++;
      }
      if (performance.now() - start >= seconds * 1000) {
        clearInterval(timer);
        resolve();
      }
    }, 2);
  });
  await new Promise((resolve) => setTimeout(resolve, 300));
  socket.close();
  return (1 - back / sent) * 100;
}

async function metric(port: number, re: RegExp): Promise<string[]> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  return text.split('\n').filter((l) => re.test(l));
}

async function drops(port: number): Promise<string> {
  const lines = await metric(port, /^tcpipe_udp_dropped_total\{/);
  return lines.filter((l) => !l.endsWith(' 0')).map((l) => l.replace(/^tcpipe_udp_dropped_total\{reason="([^"]+)"\} /, '$1=')).join(' ') || 'none';
}

async function flows(port: number): Promise<string> {
  return (await metric(port, /^tcpipe_udp_flows /))[0]?.split(' ')[1] ?? '?';
}

async function main(): Promise<void> {
  const [dnsPort, iperfPort, bulkPort, echoPort] = [61053, 61201, 61202, 61301];
  const [entryDns, entryIperf, entryBulk, entryEcho, linkPort] = [62053, 62201, 62202, 62301, 62000];
  await start('dnsmasq', ['--keep-in-foreground', '--log-facility=-', '--conf-file=/dev/null', '--no-resolv', '--no-hosts', '--address=/example.test/10.1.2.3', `--port=${dnsPort}`, '--listen-address=127.0.0.3', '--bind-interfaces', '--user=root', '--pid-file=', '--cache-size=0'], /started/);
  await start('iperf3', ['-s', '--forceflush', '-B', '127.0.0.3', '-p', String(iperfPort)], /listening/i);
  await start('iperf3', ['-s', '--forceflush', '-B', '127.0.0.3', '-p', String(bulkPort)], /listening/i);
  const echo = dgram.createSocket('udp4');
  echo.on('message', (m, r) => echo.send(m, r.port, r.address));
  echo.bind(echoPort, '127.0.0.3');
  const tcpEcho = net.createServer((s) => s.pipe(s)).listen(61302, '127.0.0.3');
  const [tcpEchoPort, entryTcpEcho] = [61302, 62302];
  const ports = `127.0.0.2:${entryDns}/udp,127.0.0.2:${entryIperf},127.0.0.2:${entryIperf}/udp,127.0.0.2:${entryBulk},127.0.0.2:${entryEcho}/udp,127.0.0.2:${entryTcpEcho}`;
  const server = await start(process.execPath, [MAIN, '-s', String(linkPort), '-p', ports, '--udp-max-flows=20000', '--metrics=127.0.0.1:62901'], /metrics on/);
  const client = await start(
    process.execPath,
    [MAIN, '-c', `127.0.0.1:${linkPort}`, '--udp-max-flows=20000', '--metrics=127.0.0.1:62902', '-t', `${entryDns}/udp=127.0.0.3:${dnsPort}`, '-t', `${entryIperf}=127.0.0.3:${iperfPort}`, '-t', `${entryIperf}/udp=127.0.0.3:${iperfPort}`, '-t', `${entryBulk}=127.0.0.3:${bulkPort}`, '-t', `${entryEcho}/udp=127.0.0.3:${echoPort}`, '-t', `${entryTcpEcho}=127.0.0.3:${tcpEchoPort}`],
    /link up/,
  );
  const out: string[] = ['| what | direct | through the pair |', '|---|---|---|'];
  const direct = await dnsLoad('127.0.0.3', dnsPort, 16, SECONDS);
  const pair = await dnsLoad('127.0.0.2', entryDns, 16, SECONDS);
  const fmt = (r: typeof direct): string => `${Math.round(r.qps)} q/s, p50 ${r.p50.toFixed(3)} ms, p99 ${r.p99.toFixed(3)} ms${r.lost > 0 ? `, ${r.lost} lost` : ''}`;
  out.push(`| DNS, dnsmasq, 16 flows, 1 query in flight each | ${fmt(direct)} | ${fmt(pair)} |`);
  const direct1 = await dnsLoad('127.0.0.3', dnsPort, 1, SECONDS);
  const pair1 = await dnsLoad('127.0.0.2', entryDns, 1, SECONDS);
  out.push(`| DNS, dnsmasq, 1 flow, 1 query in flight | ${fmt(direct1)} | ${fmt(pair1)} |`);
  console.log(out.join('\n'));
  if (args.get('skip-wg') === undefined) {
    const rtt = (r: { p50: number; p99: number }): string => `TCP RTT p50 ${r.p50.toFixed(3)} ms, p99 ${r.p99.toFixed(3)} ms`;
    const alone = await tcpRtt('127.0.0.2', entryTcpEcho, 3);
    const udpAlone = await wireguardLike('127.0.0.2', entryEcho, 2000, 3);
    const [beside, udpBeside] = await Promise.all([tcpRtt('127.0.0.2', entryTcpEcho, 3), wireguardLike('127.0.0.2', entryEcho, 2000, 3)]);
    console.log(`| WireGuard-like flow (1,420 B, 2,000/s each way, 23 Mbit/s) and an interactive TCP stream, through the pair | alone: ${rtt(alone)}; flow loss ${udpAlone.toFixed(2)}% | together: ${rtt(beside)}; flow loss ${udpBeside.toFixed(2)}% |`);
    console.log(`  drops so far: entry ${await drops(62901)}; exit ${await drops(62902)}`);
  }
  if (args.get('skip-iperf') === undefined) {
    const show = (r: IperfResult): string => `${r.mbps.toFixed(1)} Mbit/s, loss ${r.lost.toFixed(2)}%, jitter ${r.jitter.toFixed(3)} ms`;
    for (const rate of ['10M', '50M', '100M', '200M', '400M']) {
      const d = await iperf('127.0.0.3', iperfPort, rate, 3);
      const p = await iperf('127.0.0.2', entryIperf, rate, 3);
      console.log(`| iperf3 -u -b ${rate} -l 1200 | ${show(d)} | ${show(p)} |`);
      console.log(`  drops so far: entry ${await drops(62901)}; exit ${await drops(62902)}`);
    }
    const d = await iperf('127.0.0.3', iperfPort, '100M', 3, { host: '127.0.0.3', port: bulkPort });
    const p = await iperf('127.0.0.2', entryIperf, '100M', 3, { host: '127.0.0.2', port: entryBulk });
    console.log(`| iperf3 -u -b 100M beside a TCP bulk stream (iperf3) | ${show(d)} | ${show(p)} |`);
    console.log(`  drops so far: entry ${await drops(62901)}; exit ${await drops(62902)}`);
  }
  if (args.get('skip-flows') === undefined) {
    const before = [rssKiB(server), rssKiB(client)];
    const flowsBefore = Number(await flows(62901));
    for (let i = 0; i < 10_000; i++) {
      const s = dgram.createSocket('udp4');
      s.bind(0, '127.0.0.1');
      await once(s, 'listening');
      s.send('x', entryEcho, '127.0.0.2');
      // One I/O turn per flow, or the entry socket's receive buffer overflows.
      await new Promise((resolve) => setImmediate(resolve));
      s.close();
    }
    // Let the last flows open on both sides: an echo round on a fresh flow comes back after them.
    const probe = dgram.createSocket('udp4');
    probe.bind(0, '127.0.0.1');
    await once(probe, 'listening');
    probe.send('probe', entryEcho, '127.0.0.2');
    await Promise.race([once(probe, 'message'), new Promise((resolve) => setTimeout(resolve, 5000))]);
    probe.close();
    const opened = Number(await flows(62901)) - flowsBefore;
    console.log(`  flows: entry ${await flows(62901)}, exit ${await flows(62902)}`);
    const after = [rssKiB(server), rssKiB(client)];
    const per = (i: number): string => `${(((after[i] ?? 0) - (before[i] ?? 0)) * 1024 / opened).toFixed(0)} B`;
    console.log(`| ${opened} new flows (of 10,000 sent; the rest lost in the entry socket's receive buffer): RSS per flow, entry side, exit side | - | ${per(0)}, ${per(1)} (RSS ${before[0]} -> ${after[0]} KiB, ${before[1]} -> ${after[1]} KiB) |`);
  }
  echo.close();
  tcpEcho.close();
}

main()
  .catch((err: unknown) => {
    console.error(err);
    process.exitCode = 1;
  })
  .finally(() => {
    for (const c of children) c.kill('SIGTERM');
    process.exit();
  });
