import { test } from 'node:test';
import assert from 'node:assert/strict';
import { RouteTable } from '../../src/endpoints/routes.js';
import { parseTargets } from '../../src/cli/args.js';
import { UsageError } from '../../src/errors.js';

const table = (defaultHost: string | null, routes: [number, string, number][], allow: number[] | null): RouteTable =>
  new RouteTable({
    defaultHost,
    routes: new Map(routes.map(([p, host, port]) => [p, { host, port }])),
    allow: allow === null ? null : new Set(allow),
  });

test('the seed: every port goes to the -t host on the same port', () => {
  assert.deepEqual(table('appli2', [], null).resolve(40000), { ok: true, route: { host: 'appli2', port: 40000 } });
});

test('a route sends one port elsewhere; others still go to the default host', () => {
  const t = table('appli2', [[5432, 'db.internal', 15432]], null);
  assert.deepEqual(t.resolve(5432), { ok: true, route: { host: 'db.internal', port: 15432 } });
  assert.deepEqual(t.resolve(40000), { ok: true, route: { host: 'appli2', port: 40000 } });
});

test('without a default host, only routed ports are served', () => {
  const t = table(null, [[5432, 'db', 5432]], null);
  assert.equal(t.resolve(5432).ok, true);
  assert.deepEqual(t.resolve(22), { ok: false, reason: 'no route for port 22' });
  assert.deepEqual(table(null, [], null).resolve(22), { ok: false, reason: 'this side has no target (-t)' });
});

test('--allow is checked before routes', () => {
  const t = table('appli2', [[5432, 'db', 5432]], [40000]);
  assert.equal(t.resolve(40000).ok, true);
  assert.deepEqual(t.resolve(5432), { ok: false, reason: 'port 5432 is not in --allow' });
});

test('reload changes are described one per line', () => {
  const a = table('appli2', [[5432, 'db', 5432]], null);
  const b = table('appli3', [[5432, 'db2', 15432], [22, 'bastion', 22]], [22, 5432]);
  assert.deepEqual(a.describeChanges(b), [
    'default target appli2 -> appli3',
    'route 22: none -> bastion:22',
    'route 5432: db:5432 -> db2:15432',
    'allow any -> 22,5432',
  ]);
  assert.deepEqual(a.describeChanges(a), []);
});

test('-t parses a default host and PORT=HOST[:TPORT] routes', () => {
  assert.deepEqual(parseTargets(['appli2', '5432=db.internal:15432', '5433=[::1]:5433', '6000=[::1]', '7000=cache']), {
    target: 'appli2',
    routes: [
      { port: 5432, host: 'db.internal', targetPort: 15432 },
      { port: 5433, host: '::1', targetPort: 5433 },
      { port: 6000, host: '::1' },
      { port: 7000, host: 'cache' },
    ],
  });
  assert.deepEqual(parseTargets(['[::1]']), { target: '::1', routes: [] });
  for (const [bad, message] of [
    [['a', 'b'], /two default hosts/],
    [['1=a', '1=b'], /port 1 has two routes/],
    [['appli2:5000'], /route it: -t PORT=HOST:TPORT/],
    [['0=a'], /outside 1-65535/],
    [['5432='], /no host/],
    [['5432=db:99999'], /outside 1-65535/],
  ] as const) {
    assert.throws(() => parseTargets(bad), (err: unknown) => err instanceof UsageError && message.test(err.message), String(bad));
  }
});
