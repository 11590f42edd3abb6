// The pure parts of src/link/proxy.ts, and the two proxy handshakes against tiny
// fake proxies on loopback (net.createServer, written here): the proxy URL, the
// choice of a proxy from the environment, the password that never prints, HTTP
// CONNECT (200, 407, odd replies) and SOCKS5 (methods, RFC 1929, errors, addresses).
import { test, describe } from 'node:test';
import type { TestContext } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { inspect } from 'node:util';
import {
  ProxyPassword,
  describeProxy,
  dialViaProxy,
  httpConnect,
  parseProxyUrl,
  proxyFromEnv,
  socks5Connect,
  type ProxySpec,
} from '../../src/link/proxy.js';
import { TcpipeError } from '../../src/errors.js';

// ---------------------------------------------------------------------------
// parseProxyUrl, describeProxy, ProxyPassword
// ---------------------------------------------------------------------------

describe('parseProxyUrl', () => {
  test('schemes and default ports', () => {
    assert.deepEqual(pick(parseProxyUrl('http://proxy.corp', 'p')), { kind: 'http', host: 'proxy.corp', port: 1080 }, 'as curl: a proxy without a port is on 1080');
    assert.deepEqual(pick(parseProxyUrl('http://proxy.corp:3128', 'p')), { kind: 'http', host: 'proxy.corp', port: 3128 });
    assert.deepEqual(pick(parseProxyUrl('socks5://socks.corp', 'p')), { kind: 'socks5', host: 'socks.corp', port: 1080 });
    assert.deepEqual(pick(parseProxyUrl('socks5h://socks.corp:9050', 'p')), { kind: 'socks5', host: 'socks.corp', port: 9050 });
    assert.deepEqual(pick(parseProxyUrl('HTTP://Proxy.Corp:3128/', 'p')), { kind: 'http', host: 'proxy.corp', port: 3128 });
    assert.deepEqual(pick(parseProxyUrl('http://[::1]:3128', 'p')), { kind: 'http', host: '::1', port: 3128 });
    assert.deepEqual(pick(parseProxyUrl('http://10.0.0.1:8888', 'p')), { kind: 'http', host: '10.0.0.1', port: 8888 });
    assert.deepEqual(pick(parseProxyUrl('socks5://10.0.0.1:80', 'p')), { kind: 'socks5', host: '10.0.0.1', port: 80 });
  });

  test('an explicit port 80 is kept (http://proxy:80 is port 80, not the default 1080)', () => {
    // WHATWG URL drops a scheme's default port: url.port is '' for http://proxy:80.
    assert.equal(parseProxyUrl('http://proxy.corp:80', 'p').port, 80);
    assert.equal(parseProxyUrl('http://u:pw@10.0.0.1:80/', 'p').port, 80);
  });

  test('user and password are percent-decoded; no user, no password', () => {
    const spec = parseProxyUrl('http://al%40ice:p%40ss%3Aw%2Ford%25@proxy:3128', 'p');
    assert.equal(spec.username, 'al@ice');
    assert.equal(spec.password?.reveal(), 'p@ss:w/ord%');
    const userOnly = parseProxyUrl('socks5://bob@socks:1080', 'p');
    assert.equal(userOnly.username, 'bob');
    assert.equal(userOnly.password, undefined);
    const anonymous = parseProxyUrl('http://proxy:3128', 'p');
    assert.equal(anonymous.username, undefined);
    assert.equal(anonymous.password, undefined);
    assert.equal(parseProxyUrl('http://caf%C3%A9:%E2%82%AC@proxy:1', 'p').password?.reveal(), '€');
  });

  test('errors name what was wrong, never the password', () => {
    const password = 'hunter2-Secret';
    const cases: [string, RegExp][] = [
      [`https://u:${password}@proxy:443`, /HTTPS_PROXY: unsupported proxy scheme 'https:' \(use http:\/\/ or socks5:\/\/\)/],
      [`ftp://u:${password}@proxy:21`, /unsupported proxy scheme 'ftp:'/],
      [`socks4://u:${password}@proxy:1080`, /unsupported proxy scheme 'socks4:'/],
      [`http://u:${password}@[bad:3128`, /HTTPS_PROXY: not a URL \(expected http:\/\/host:port or socks5:\/\/host:port\)/],
      [`u:${password}@proxy:3128`, /unsupported proxy scheme 'u:'/],
      [`proxy.corp:${password}`, /unsupported proxy scheme|not a URL/],
      [`http://u:${password}@:3128`, /not a URL|has no host/],
      [`http://u:${password}@proxy:99999`, /not a URL/],
    ];
    for (const [text, expected] of cases) {
      assert.throws(
        () => parseProxyUrl(text, 'HTTPS_PROXY'),
        (err: unknown) => {
          assert.ok(err instanceof TcpipeError, `${text}: a TcpipeError`);
          assert.match(err.message, expected, text);
          assert.ok(!err.message.includes(password), `the password in: ${err.message}`);
          assert.ok(!inspect(err).includes(password), 'nor in the inspected error');
          return true;
        },
      );
    }
  });
});

test('describeProxy shows scheme, user and address, never the password', () => {
  const password = 'Pr0xy-Pa55';
  const http = parseProxyUrl(`http://alice:${password}@proxy.corp:3128`, 'p');
  assert.equal(describeProxy(http), 'http://alice@proxy.corp:3128');
  assert.equal(describeProxy(parseProxyUrl('socks5://[2001:db8::1]:1080', 'p')), 'socks5://[2001:db8::1]:1080');
  assert.equal(describeProxy(parseProxyUrl(`socks5://bob:${password}@10.0.0.1`, 'p')), 'socks5://bob@10.0.0.1:1080');
  // The spec itself, however it is printed.
  for (const shown of [JSON.stringify(http), inspect(http), inspect(http, { depth: 10, showHidden: true }), String(http.password), `${String(http.password)}`]) {
    assert.ok(!shown.includes(password), shown);
  }
});

test('a ProxyPassword prints as [password] through String(), JSON.stringify and util.inspect', () => {
  const value = 'correct horse battery staple';
  const pw = new ProxyPassword(value);
  assert.equal(String(pw), '[password]');
  assert.equal(`${String(pw)}`, '[password]');
  assert.equal(JSON.stringify(pw), '"[password]"');
  assert.equal(JSON.stringify({ pw }), '{"pw":"[password]"}');
  assert.equal(inspect(pw), '[password]');
  assert.equal(inspect({ nested: { pw } }), '{ nested: { pw: [password] } }');
  assert.ok(!inspect(pw, { showHidden: true, depth: Infinity }).includes(value));
  assert.ok(!Object.keys(pw).length, 'no enumerable field holds it');
  assert.equal(pw.reveal(), value);
});

// ---------------------------------------------------------------------------
// proxyFromEnv
// ---------------------------------------------------------------------------

describe('proxyFromEnv', () => {
  const P = (n: number): string => `http://proxy${n}:3128`;
  const from = (host: string, scheme: 'tcp' | 'ws' | 'wss', env: NodeJS.ProcessEnv): string | null => {
    const r = proxyFromEnv(host, scheme, env);
    return r === null ? null : `${r.variable} ${describeProxy(r.proxy)}`;
  };

  test('tcp and wss links follow HTTPS_PROXY, ws links HTTP_PROXY; lowercase first', () => {
    const both = { HTTPS_PROXY: P(1), HTTP_PROXY: P(2) };
    assert.equal(from('server', 'tcp', both), 'HTTPS_PROXY http://proxy1:3128');
    assert.equal(from('server', 'wss', both), 'HTTPS_PROXY http://proxy1:3128');
    assert.equal(from('server', 'ws', both), 'HTTP_PROXY http://proxy2:3128');
    assert.equal(from('server', 'tcp', { HTTP_PROXY: P(2) }), null, 'HTTP_PROXY is not for tcp links');
    assert.equal(from('server', 'wss', { http_proxy: P(2) }), null, 'nor for wss links');
    assert.equal(from('server', 'ws', { HTTPS_PROXY: P(1) }), null, 'HTTPS_PROXY is not for ws links');
    assert.equal(from('server', 'tcp', { HTTPS_PROXY: P(1), https_proxy: P(3) }), 'https_proxy http://proxy3:3128');
    assert.equal(from('server', 'ws', { HTTP_PROXY: P(2), http_proxy: P(4) }), 'http_proxy http://proxy4:3128');
  });

  test('ALL_PROXY when the scheme has none (lowercase first); empty values do not count', () => {
    assert.equal(from('server', 'tcp', { ALL_PROXY: 'socks5://s:1080' }), 'ALL_PROXY socks5://s:1080');
    assert.equal(from('server', 'ws', { ALL_PROXY: 'socks5://s:1080', all_proxy: 'socks5://t:1080' }), 'all_proxy socks5://t:1080');
    assert.equal(from('server', 'tcp', { https_proxy: '', HTTPS_PROXY: P(1) }), 'HTTPS_PROXY http://proxy1:3128');
    assert.equal(from('server', 'tcp', { HTTPS_PROXY: '', ALL_PROXY: P(5) }), 'ALL_PROXY http://proxy5:3128');
    assert.equal(from('server', 'tcp', { HTTPS_PROXY: P(1), ALL_PROXY: P(5) }), 'HTTPS_PROXY http://proxy1:3128');
    assert.equal(from('server', 'tcp', {}), null);
  });

  test('NO_PROXY: exact, .suffix, suffix, *, with a port, case and spaces; no_proxy first', () => {
    const env = (no: string): NodeJS.ProcessEnv => ({ HTTPS_PROXY: P(1), NO_PROXY: no });
    const direct = (host: string, no: string): boolean => proxyFromEnv(host, 'tcp', env(no)) === null;
    // exact
    assert.equal(direct('host1.corp', 'host1.corp'), true);
    assert.equal(direct('host2.corp', 'host1.corp'), false);
    assert.equal(direct('10.0.0.5', 'localhost,10.0.0.5'), true);
    assert.equal(direct('10.0.0.50', '10.0.0.5'), false);
    // .suffix: the domain's hosts, and the domain itself
    assert.equal(direct('a.corp.example', '.corp.example'), true);
    assert.equal(direct('a.b.corp.example', '.corp.example'), true);
    assert.equal(direct('corp.example', '.corp.example'), true);
    assert.equal(direct('othercorp.example', '.corp.example'), false);
    // suffix without a dot: whole labels only
    assert.equal(direct('a.corp.example', 'corp.example'), true);
    assert.equal(direct('evilcorp.example', 'corp.example'), false);
    // *
    assert.equal(direct('anything.at.all', '*'), true);
    assert.equal(direct('10.1.2.3', ' * '), true);
    // with a port: the entry still names the host
    assert.equal(direct('host1.corp', 'host1.corp:50000'), true);
    assert.equal(direct('a.corp.example', '.corp.example:443'), true);
    // case and spaces, empty entries
    assert.equal(direct('Host1.CORP', ' other , HOST1.corp ,'), true);
    assert.equal(direct('host1.corp', ',,'), false);
    // lowercase no_proxy first
    assert.equal(proxyFromEnv('host1.corp', 'tcp', { HTTPS_PROXY: P(1), no_proxy: 'host1.corp', NO_PROXY: 'other' }), null);
    assert.notEqual(proxyFromEnv('host1.corp', 'tcp', { HTTPS_PROXY: P(1), no_proxy: 'other', NO_PROXY: 'host1.corp' }), null);
    // also for ws, wss and ALL_PROXY
    assert.equal(proxyFromEnv('h.corp', 'ws', { HTTP_PROXY: P(2), NO_PROXY: '.corp' }), null);
    assert.equal(proxyFromEnv('h.corp', 'wss', { ALL_PROXY: P(5), NO_PROXY: '.corp' }), null);
  });

  for (const [host, entry] of [
    ['::1', 'localhost,127.0.0.1,::1'],
    ['2001:db8::1', '2001:db8::1'],
    ['::1', '[::1]'],
    ['::1', '[::1]:50000'],
  ] as const) {
    test(`NO_PROXY='${entry}' exempts ${host} (IPv6, as in the common "localhost,127.0.0.1,::1")`, () => {
      assert.equal(proxyFromEnv(host, 'tcp', { HTTPS_PROXY: P(1), NO_PROXY: entry }), null);
    });
  }

  test('NO_PROXY with IPv6: ::1 does not exempt ::2', () => {
    assert.notEqual(proxyFromEnv('::2', 'tcp', { HTTPS_PROXY: P(1), NO_PROXY: '::1' }), null);
  });

  test('a bad variable is named, its password never shown', () => {
    assert.throws(
      () => proxyFromEnv('server', 'tcp', { HTTPS_PROXY: 'https://u:SeCrEt@proxy:443' }),
      (err: unknown) => err instanceof TcpipeError && /^HTTPS_PROXY: /.test(err.message) && !err.message.includes('SeCrEt'),
    );
  });
});

// ---------------------------------------------------------------------------
// Fake proxies on loopback
// ---------------------------------------------------------------------------

/** Reads a socket by exact amounts or up to a delimiter, each read bounded. */
class Reader {
  private buf = Buffer.alloc(0);
  private wake: (() => void) | null = null;
  private ended = false;
  constructor(socket: net.Socket) {
    socket.on('data', (d: Buffer) => {
      this.buf = Buffer.concat([this.buf, d]);
      this.wake?.();
    });
    socket.on('end', () => {
      this.ended = true;
      this.wake?.();
    });
    socket.on('error', () => undefined);
    // The handshakes leave the socket paused for the next layer, which resumes it.
    socket.resume();
  }
  private async until(ready: () => number, timeoutMs: number): Promise<Buffer> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const n = ready();
      if (n >= 0) {
        const out = this.buf.subarray(0, n);
        this.buf = this.buf.subarray(n);
        return out;
      }
      if (this.ended) throw new Error(`peer ended; have ${this.buf.length} bytes`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`read timed out; have ${JSON.stringify(this.buf.toString('latin1'))}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.wake = () => {
          clearTimeout(timer);
          this.wake = null;
          resolve();
        };
      });
    }
  }
  bytes(n: number, timeoutMs = 2000): Promise<Buffer> {
    return this.until(() => (this.buf.length >= n ? n : -1), timeoutMs);
  }
  head(timeoutMs = 2000): Promise<string> {
    return this.until(() => {
      const i = this.buf.indexOf('\r\n\r\n');
      return i < 0 ? -1 : i + 4;
    }, timeoutMs).then((b) => b.toString('latin1'));
  }
}

/**
 * A one-connection fake proxy on 127.0.0.1: `script` plays the proxy's side.
 * Resolves with a connected client socket and the script's result.
 */
async function fakeProxy<T>(t: TestContext, script: (socket: net.Socket, read: Reader) => Promise<T>): Promise<{ client: net.Socket; done: Promise<T> }> {
  let resolveDone: (v: Promise<T>) => void = () => undefined;
  const done = new Promise<T>((resolve) => {
    resolveDone = (v) => resolve(v);
  });
  const server = net.createServer((socket) => {
    resolveDone(script(socket, new Reader(socket)));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  const client = net.connect({ host: '127.0.0.1', port });
  t.after(() => {
    client.destroy();
    server.close();
  });
  await new Promise<void>((resolve, reject) => {
    client.once('connect', resolve);
    client.once('error', reject);
  });
  done.catch(() => undefined);
  return { client, done };
}

/** Reads from `socket` until `n` bytes arrived (bounded). */
function readN(socket: net.Socket, n: number, timeoutMs = 2000): Promise<Buffer> {
  return new Reader(socket).bytes(n, timeoutMs);
}

const spec = (text: string): ProxySpec => parseProxyUrl(text, 'proxy');

function assertRejects(promise: Promise<unknown>, expected: RegExp, secret?: string): Promise<void> {
  return assert.rejects(promise, (err: unknown) => {
    assert.ok(err instanceof TcpipeError, `a TcpipeError: ${String(err)}`);
    assert.match(err.message, expected);
    if (secret !== undefined) assert.ok(!err.message.includes(secret), err.message);
    return true;
  });
}

describe('httpConnect against a fake HTTP proxy', { timeout: 15_000 }, () => {
  test('200: CONNECT with Host and Basic credentials; bytes after the reply are kept for the link', async (t) => {
    const { client, done } = await fakeProxy(t, async (socket, read) => {
      const head = await read.head();
      // The reply and the tunnel's first bytes in one write.
      socket.write('HTTP/1.1 200 Connection established\r\nVia: fake\r\n\r\nFIRST-BYTES');
      const more = await read.bytes(5);
      return { head, more: more.toString() };
    });
    await httpConnect(client, spec('http://alice:p%40ss@proxy:3128'), 'server.corp', 50000);
    const first = await readN(client, 11);
    assert.equal(first.toString(), 'FIRST-BYTES', 'the bytes that came with the reply reach the link');
    client.write('hello');
    const { head, more } = await done;
    const lines = head.split('\r\n');
    assert.equal(lines[0], 'CONNECT server.corp:50000 HTTP/1.1');
    assert.ok(lines.includes('Host: server.corp:50000'), head);
    assert.ok(lines.includes(`Proxy-Authorization: Basic ${Buffer.from('alice:p@ss').toString('base64')}`), head);
    assert.equal(more, 'hello', 'the tunnel carries data both ways');
  });

  test('no user: no Proxy-Authorization; an IPv6 target is bracketed; HTTP/1.0 200 is fine', async (t) => {
    const { client, done } = await fakeProxy(t, async (socket, read) => {
      const head = await read.head();
      socket.write('HTTP/1.0 200 OK\r\n\r\n');
      return head;
    });
    await httpConnect(client, spec('http://proxy:3128'), '2001:db8::7', 443);
    const head = await done;
    assert.match(head, /^CONNECT \[2001:db8::7\]:443 HTTP\/1\.1\r\n/);
    assert.match(head, /\r\nHost: \[2001:db8::7\]:443\r\n/);
    assert.doesNotMatch(head, /Proxy-Authorization/i);
  });

  test('407: "proxy refused CONNECT: 407 Proxy Authentication Required", without the password', async (t) => {
    const { client } = await fakeProxy(t, async (socket, read) => {
      await read.head();
      socket.end('HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm="x"\r\nContent-Length: 0\r\n\r\n');
    });
    await assertRejects(httpConnect(client, spec('http://alice:Wr0ngPass@proxy:3128'), 'server', 50000), /^proxy refused CONNECT: 407 Proxy Authentication Required$/, 'Wr0ngPass');
  });

  test('other refusals, a reply in pieces, a malformed reply, a proxy that hangs up', async (t) => {
    const play = async (reply: string | string[], close: boolean): Promise<void> => {
      const { client } = await fakeProxy(t, async (socket, read) => {
        await read.head();
        for (const part of Array.isArray(reply) ? reply : [reply]) {
          socket.write(part);
          await new Promise((r) => setTimeout(r, 5));
        }
        if (close) socket.end();
      });
      return httpConnect(client, spec('http://proxy:3128'), 'server', 50000);
    };
    await assertRejects(play('HTTP/1.1 403 Forbidden\r\n\r\n', false), /^proxy refused CONNECT: 403 Forbidden$/);
    await assertRejects(play('HTTP/1.1 502 Bad \x1b[31mGateway\r\n\r\n', false), /^proxy refused CONNECT: 502 Bad \[31mGateway$/);
    await play(['HTTP/1.1 2', '00 OK\r', '\n\r', '\n'], false);
    await assertRejects(play('SSH-2.0-OpenSSH_9.2\r\n\r\n', false), /^proxy sent a malformed reply to CONNECT$/);
    await assertRejects(play('HTTP/1.1 200 OK\r\n', true), /^proxy closed the connection$/);
    await assertRejects(play('', true), /^proxy closed the connection$/);
  });

  test('a reply head that never ends is cut off at 16 KiB', async (t) => {
    const { client } = await fakeProxy(t, async (socket, read) => {
      await read.head();
      socket.write('HTTP/1.1 200 OK\r\n' + 'X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n'.repeat(400));
    });
    await assertRejects(httpConnect(client, spec('http://proxy:3128'), 'server', 50000), /^proxy reply too long$/);
  });
});

describe('socks5Connect against a fake SOCKS5 proxy', { timeout: 15_000 }, () => {
  const ok = Buffer.from([5, 0, 0, 1, 127, 0, 0, 1, 0x1f, 0x90]);

  test('username/password accepted: RFC 1929 exchange, then CONNECT by name; data flows', async (t) => {
    const { client, done } = await fakeProxy(t, async (socket, read) => {
      const greeting = await read.bytes(4);
      socket.write(Buffer.from([5, 2]));
      const ver = await read.bytes(2);
      const user = await read.bytes(ver[1] ?? 0);
      const plen = await read.bytes(1);
      const pass = await read.bytes(plen[0] ?? 0);
      socket.write(Buffer.from([1, 0]));
      const head = await read.bytes(5);
      const rest = await read.bytes((head[4] ?? 0) + 2);
      socket.write(Buffer.concat([ok, Buffer.from('tunnel!')]));
      const after = await read.bytes(4);
      return { greeting: [...greeting], ver: ver[0], user: user.toString(), pass: pass.toString(), head: [...head], rest, after: after.toString() };
    });
    await socks5Connect(client, spec('socks5://b%C3%B6b:s%40cret@socks:1080'), 'server.corp', 50000);
    assert.equal((await readN(client, 7)).toString(), 'tunnel!', 'bytes after the reply reach the link');
    client.write('ping');
    const r = await done;
    assert.deepEqual(r.greeting, [5, 2, 0, 2], 'offers no-auth and username/password');
    assert.equal(r.ver, 1, 'RFC 1929 version 1');
    assert.equal(r.user, 'böb');
    assert.equal(r.pass, 's@cret');
    assert.deepEqual(r.head, [5, 1, 0, 3, 'server.corp'.length], 'CONNECT, domain name');
    assert.equal(r.rest.subarray(0, -2).toString(), 'server.corp');
    assert.equal(r.rest.readUInt16BE(r.rest.length - 2), 50000);
    assert.equal(r.after, 'ping');
  });

  test('username/password refused: "SOCKS5 proxy refused the username or password", without it', async (t) => {
    const { client } = await fakeProxy(t, async (socket, read) => {
      await read.bytes(4);
      socket.write(Buffer.from([5, 2]));
      const ver = await read.bytes(2);
      await read.bytes(ver[1] ?? 0);
      const plen = await read.bytes(1);
      await read.bytes(plen[0] ?? 0);
      socket.end(Buffer.from([1, 1]));
    });
    await assertRejects(socks5Connect(client, spec('socks5://bob:N0tThis@socks:1080'), 'server', 50000), /^SOCKS5 proxy refused the username or password$/, 'N0tThis');
  });

  test('error code 5 is "connection refused"; the other codes are named too', async (t) => {
    const codes: [number, string][] = [
      [5, 'connection refused'],
      [1, 'general failure'],
      [2, 'connection not allowed by ruleset'],
      [4, 'host unreachable'],
      [0x42, 'error 66'],
    ];
    for (const [code, text] of codes) {
      const { client } = await fakeProxy(t, async (socket, read) => {
        await read.bytes(3);
        socket.write(Buffer.from([5, 0]));
        await read.bytes(4 + 4 + 2);
        socket.write(Buffer.from([5, code, 0, 1, 0, 0, 0, 0, 0, 0]));
      });
      await assertRejects(socks5Connect(client, spec('socks5://socks:1080'), '10.1.2.3', 50000), new RegExp(`^SOCKS5 proxy could not connect: ${text}$`));
    }
  });

  test('without credentials: offers only no-auth; a proxy that demands a method we lack is named', async (t) => {
    {
      const { client, done } = await fakeProxy(t, async (socket, read) => {
        const greeting = await read.bytes(3);
        socket.end(Buffer.from([5, 0xff]));
        return [...greeting];
      });
      await assertRejects(socks5Connect(client, spec('socks5://socks:1080'), 'server', 1), /^SOCKS5 proxy requires authentication$/);
      assert.deepEqual(await done, [5, 1, 0]);
    }
    {
      const { client } = await fakeProxy(t, async (socket, read) => {
        await read.bytes(4);
        socket.end(Buffer.from([5, 0xff]));
      });
      await assertRejects(socks5Connect(client, spec('socks5://u:p@socks:1080'), 'server', 1), /^SOCKS5 proxy accepts none of our methods$/);
    }
    {
      const { client } = await fakeProxy(t, async (socket, read) => {
        await read.bytes(3);
        socket.end(Buffer.from([4, 0x5a]));
      });
      await assertRejects(socks5Connect(client, spec('socks5://socks:1080'), 'server', 1), /^proxy does not speak SOCKS5$/);
    }
  });

  test('IPv4 and IPv6 targets are sent as addresses; replies of every address type, in pieces', async (t) => {
    const targets: [string, number[]][] = [
      ['10.1.2.3', [1, 10, 1, 2, 3]],
      ['::1', [4, ...new Array<number>(15).fill(0), 1]],
      ['2001:db8::2:1', [4, 0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 1]],
      ['fe80:1:2:3:4:5:6:7', [4, 0xfe, 0x80, 0, 1, 0, 2, 0, 3, 0, 4, 0, 5, 0, 6, 0, 7]],
    ];
    const replies: Buffer[] = [
      Buffer.from([5, 0, 0, 1, 1, 2, 3, 4, 0, 80]),
      Buffer.from([5, 0, 0, 4, ...new Array<number>(16).fill(9), 0, 80]),
      Buffer.from([5, 0, 0, 3, 5, ...Buffer.from('proxy'), 0, 80]),
    ];
    for (const [i, [host, address]] of targets.entries()) {
      const reply = replies[i % replies.length] ?? ok;
      const { client, done } = await fakeProxy(t, async (socket, read) => {
        await read.bytes(3);
        socket.write(Buffer.from([5, 0]));
        const request = await read.bytes(3 + address.length + 2);
        for (const byte of reply) {
          socket.write(Buffer.from([byte]));
          await new Promise((r) => setTimeout(r, 1));
        }
        socket.write('after');
        return request;
      });
      await socks5Connect(client, spec('socks5://socks:1080'), host, 8080);
      const request = await done;
      assert.deepEqual([...request.subarray(0, 3)], [5, 1, 0], host);
      assert.deepEqual([...request.subarray(3, 3 + address.length)], address, `${host} as bytes`);
      assert.equal(request.readUInt16BE(request.length - 2), 8080);
      assert.equal((await readN(client, 5)).toString(), 'after', `${host}: nothing of the tunnel is eaten by the reply`);
    }
  });

  test('a malformed reply (unknown address type) is named', async (t) => {
    const { client } = await fakeProxy(t, async (socket, read) => {
      await read.bytes(3);
      socket.write(Buffer.from([5, 0]));
      await read.bytes(10);
      socket.write(Buffer.from([5, 0, 0, 9, 0, 0, 0, 0, 0, 0]));
    });
    await assertRejects(socks5Connect(client, spec('socks5://socks:1080'), '10.1.2.3', 1), /^SOCKS5 proxy sent a malformed reply$/);
  });
});

test('dialViaProxy: an unreachable proxy is "proxy unreachable", and a refusal closes the socket', { timeout: 10_000 }, async (t) => {
  await assertRejects(
    dialViaProxy(spec('http://u:Pw1@127.0.0.1:1'), 'server', 50000, () => Promise.reject(new Error('connect ECONNREFUSED 127.0.0.1:1'))),
    /^proxy unreachable: connect ECONNREFUSED 127\.0\.0\.1:1$/,
    'Pw1',
  );
  const { client } = await fakeProxy(t, async (socket, read) => {
    await read.head();
    socket.write('HTTP/1.1 407 Proxy Authentication Required\r\n\r\n');
  });
  await assertRejects(dialViaProxy(spec('http://u:Pw1@proxy:3128'), 'server', 50000, () => Promise.resolve(client)), /^proxy refused CONNECT: 407 /, 'Pw1');
  assert.equal(client.destroyed, true, 'the socket to the proxy is closed');
});

function pick(s: ProxySpec): { kind: string; host: string; port: number } {
  return { kind: s.kind, host: s.host, port: s.port };
}
