/**
 * The fault suite's agent: one process inside a network namespace playing
 * user applications, targets, a fake tcpipe partner or a man in the middle,
 * driven by the test over stdin/stdout (../agent-driver.ts, startAgent).
 *
 * Protocol: the test writes one JSON object per line, {id, op, args}; the
 * agent answers each with one line `@@ {"id":..,"ok":true,"result":..}` or
 * `@@ {"id":..,"ok":false,"error":".."}`. Anything else on stdout or stderr
 * is diagnostics.
 *
 * Its parts, by what they do: targets.ts, loads.ts (users), connections.ts
 * (ping-pong, plain connects), fake-partner.ts, forwarder.ts (relay, replay).
 * Not a test file (no .test. in its name): the runner never loads it.
 */
import http from 'node:http';
import { createInterface } from 'node:readline';
import { num, str, type Args, type Json, type Op } from './common.js';
import { connectionOps } from './connections.js';
import { fakeOps } from './fake-partner.js';
import { forwardOps } from './forwarder.js';
import { loadOps } from './loads.js';
import { targetOps } from './targets.js';

const ops: Readonly<Record<string, Op>> = {
  ping: () => ({ pid: process.pid }),
  ...targetOps,
  ...loadOps,
  ...connectionOps,
  ...fakeOps,
  ...forwardOps,
  memory: () => ({ rss: process.memoryUsage().rss }),
  /** GET url: {status, body} (for a tcpipe's --metrics inside this namespace). */
  fetch: (args) =>
    new Promise<Json>((resolve, reject) => {
      const req = http.get(str(args, 'url'), (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => (body += d));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      });
      req.on('error', reject);
      req.setTimeout(num(args, 'timeoutMs', 5000), () => req.destroy(new Error('timeout')));
    }),
};

function reply(message: Record<string, Json>): void {
  process.stdout.write(`@@ ${JSON.stringify(message)}\n`);
}

const rl = createInterface({ input: process.stdin });
rl.on('line', (line) => {
  let id = -1;
  void (async () => {
    const msg = JSON.parse(line) as { id: number; op: string; args?: Args };
    id = msg.id;
    const op = ops[msg.op];
    if (op === undefined) throw new Error(`unknown op ${msg.op}`);
    const result = await op(msg.args ?? {});
    reply({ id, ok: true, result });
  })().catch((err: unknown) => {
    reply({ id, ok: false, error: err instanceof Error ? err.message : String(err) });
  });
});
rl.on('close', () => process.exit(0));
process.on('uncaughtException', (err) => {
  process.stderr.write(`agent uncaught: ${err.stack ?? err.message}\n`);
});
reply({ id: 0, ok: true, result: { ready: true, pid: process.pid } });
