/**
 * Unit tests for the PROXY protocol codec (src/protocol/proxy-header.ts) and
 * the address helpers (src/protocol/ip.ts).
 *
 * 1. Byte vectors from HAProxy's doc/proxy-protocol.txt (the v1 examples and
 *    worst cases, the v2 signature and layout) and one captured from HAProxy.
 * 2. Every header split at every offset: 'more' until the last byte, then the
 *    same header, with the bytes that follow handed back untouched.
 * 3. Bad input: each rule, refused with a reason, as early as it can be.
 * 4. fast-check: encode/parse round trips, any split; random bytes never throw
 *    and never make the parser wait past its bound.
 */
import { Buffer } from 'node:buffer';
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  PROXY_HEADER_MAX_LENGTH,
  PROXY_V1_MAX_LENGTH,
  PROXY_V2_MAX_PAYLOAD,
  PROXY_V2_SIGNATURE,
  ProxyHeaderReader,
  encodeProxyV1,
  encodeProxyV2,
  parseProxyHeader,
  type ProxyAddresses,
  type ProxyParse,
} from '../../src/protocol/proxy-header.js';
import { ipv6Bytes, ipv6Text, unmapIPv4 } from '../../src/protocol/ip.js';
import { FrameDecoder, parseOpen } from '../../src/protocol/decode.js';
import { encodeOpen, encodeOpenWithOrigin } from '../../src/protocol/encode.js';
import { ProtocolError } from '../../src/errors.js';

const hex = (text: string): Buffer => Buffer.from(text.replace(/\s+/g, ''), 'hex');
const ascii = (text: string): Buffer => Buffer.from(text, 'latin1');

function tcp4(src: string, dst: string, sp: number, dp: number): ProxyAddresses {
  return { family: 4, transport: 'stream', sourceAddress: src, destinationAddress: dst, sourcePort: sp, destinationPort: dp };
}
function tcp6(src: string, dst: string, sp: number, dp: number): ProxyAddresses {
  return { family: 6, transport: 'stream', sourceAddress: src, destinationAddress: dst, sourcePort: sp, destinationPort: dp };
}

function header(parse: ProxyParse): { addresses: ProxyAddresses | null; length: number; command: string; version: number } {
  assert.equal(parse.kind, 'header', `expected a header, got ${JSON.stringify(parse)}`);
  if (parse.kind !== 'header') throw new Error('unreachable');
  return { ...parse.header, length: parse.length };
}

function reason(parse: ProxyParse): string {
  assert.equal(parse.kind, 'error', `expected an error, got ${JSON.stringify(parse)}`);
  return parse.kind === 'error' ? parse.reason : '';
}

const FFFF6 = 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff';
/** From HAProxy (send-proxy-v2), captured: TCP over IPv4, 172.19.0.1:42578 -> 172.19.0.3:80, then "GET". */
const HAPROXY_V2 = hex('0d0a0d0a000d0a515549540a 21 11 000c ac130001 ac130003 a652 0050');

describe('spec vectors', () => {
  test('v1 TCP4, the worst case for IPv4 (56 bytes in the spec)', () => {
    const bytes = ascii('PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n');
    assert.equal(bytes.length, 56);
    const h = header(parseProxyHeader(bytes));
    assert.deepEqual(h.addresses, tcp4('255.255.255.255', '255.255.255.255', 65535, 65535));
    assert.equal(h.length, 56);
    assert.deepEqual(encodeProxyV1(tcp4('255.255.255.255', '255.255.255.255', 65535, 65535)), bytes);
  });

  test('v1 TCP6 worst case (104 bytes) and UNKNOWN worst case (107 bytes) are accepted', () => {
    const six = ascii(`PROXY TCP6 ${FFFF6} ${FFFF6} 65535 65535\r\n`);
    assert.equal(six.length, 104);
    assert.deepEqual(header(parseProxyHeader(six)).addresses, tcp6(FFFF6, FFFF6, 65535, 65535));
    const unknown = ascii(`PROXY UNKNOWN ${FFFF6} ${FFFF6} 65535 65535\r\n`);
    assert.equal(unknown.length, PROXY_V1_MAX_LENGTH);
    const h = header(parseProxyHeader(unknown));
    assert.equal(h.addresses, null, 'UNKNOWN: the rest of the line is ignored');
    assert.equal(h.length, 107);
  });

  test("the spec's own examples", () => {
    const a = header(parseProxyHeader(ascii('PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\nGET / HTTP/1.1\r\n')));
    assert.deepEqual(a.addresses, tcp4('192.168.0.1', '192.168.0.11', 56324, 443));
    assert.equal(a.length, 'PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n'.length);
    assert.deepEqual(header(parseProxyHeader(ascii('PROXY UNKNOWN\r\n'))).addresses, null);
    assert.deepEqual(encodeProxyV1(null), ascii('PROXY UNKNOWN\r\n'));
  });

  test('v2 as HAProxy sends it', () => {
    const h = header(parseProxyHeader(Buffer.concat([HAPROXY_V2, ascii('GET / HTTP/1.1\r\n')])));
    assert.deepEqual(h.addresses, tcp4('172.19.0.1', '172.19.0.3', 42578, 80));
    assert.equal(h.length, 28);
    assert.equal(h.version, 2);
    assert.deepEqual(encodeProxyV2(tcp4('172.19.0.1', '172.19.0.3', 42578, 80)), HAPROXY_V2);
  });

  test('v2 TCP6, UDP and LOCAL layouts, byte by byte', () => {
    const six = encodeProxyV2(tcp6('2001:db8::1', '::1', 1, 0xfffe));
    assert.deepEqual(
      six,
      hex(`0d0a0d0a000d0a515549540a 21 21 0024 20010db8000000000000000000000001 00000000000000000000000000000001 0001 fffe`),
    );
    assert.deepEqual(header(parseProxyHeader(six)).addresses, tcp6('2001:db8::1', '::1', 1, 0xfffe));
    const udp = encodeProxyV2({ ...tcp4('10.0.0.1', '10.0.0.2', 53, 53), transport: 'dgram' });
    assert.equal(udp[13], 0x12, 'UDP over IPv4');
    assert.equal(header(parseProxyHeader(udp)).addresses?.transport, 'dgram');
    assert.deepEqual(encodeProxyV2(null), hex('0d0a0d0a000d0a515549540a 20 00 0000'), 'LOCAL, AF_UNSPEC, no block');
    const local = header(parseProxyHeader(encodeProxyV2(null)));
    assert.equal(local.command, 'local');
    assert.equal(local.addresses, null);
  });

  test('v1 has no UDP: a datagram flow is written UNKNOWN', () => {
    assert.deepEqual(encodeProxyV1({ ...tcp4('10.0.0.1', '10.0.0.2', 53, 53), transport: 'dgram' }), ascii('PROXY UNKNOWN\r\n'));
  });

  test('v2 with TLVs: unknown types are skipped, the data after the header is kept', () => {
    // PP2_TYPE_ALPN "h2", an unknown 0xee of 5 bytes, PP2_TYPE_NOOP of 0 bytes.
    const tlvs = hex('01 0002 6832  ee 0005 0102030405  04 0000');
    const base = encodeProxyV2(tcp4('1.2.3.4', '5.6.7.8', 1000, 2000));
    const withTlvs = Buffer.concat([base, tlvs]);
    withTlvs.writeUInt16BE(12 + tlvs.length, 14);
    const h = header(parseProxyHeader(Buffer.concat([withTlvs, ascii('data')])));
    assert.deepEqual(h.addresses, tcp4('1.2.3.4', '5.6.7.8', 1000, 2000));
    assert.equal(h.length, withTlvs.length);
  });

  test('v2 PROXY over AF_UNSPEC or AF_UNIX: no addresses (the connection is used as is)', () => {
    const unspec = hex('0d0a0d0a000d0a515549540a 21 00 0000');
    assert.equal(header(parseProxyHeader(unspec)).addresses, null);
    const unix = Buffer.concat([hex('0d0a0d0a000d0a515549540a 21 31 00d8'), Buffer.alloc(216)]);
    assert.equal(header(parseProxyHeader(unix)).addresses, null);
  });
});

describe('split at every offset', () => {
  const vectors: [string, Buffer][] = [
    ['v1 TCP4', encodeProxyV1(tcp4('127.0.0.9', '127.0.0.2', 40000, 5432))],
    ['v1 TCP6', encodeProxyV1(tcp6('::1', 'fe80::1:2', 1, 2))],
    ['v1 UNKNOWN', ascii('PROXY UNKNOWN whatever\r\n')],
    ['v2 TCP4', HAPROXY_V2],
    ['v2 TCP6', encodeProxyV2(tcp6('2001:db8::7', '2001:db8::8', 9, 10))],
    ['v2 LOCAL', encodeProxyV2(null)],
  ];
  for (const [name, bytes] of vectors) {
    test(name, () => {
      const whole = parseProxyHeader(bytes);
      assert.equal(whole.kind, 'header');
      const after = ascii('PROXY TCP4 6.6.6.6 6.6.6.6 1 1\r\n'); // data that looks like a header stays data
      for (let cut = 0; cut < bytes.length; cut++) {
        assert.equal(parseProxyHeader(bytes.subarray(0, cut)).kind, 'more', `prefix of ${cut} bytes`);
        const reader = new ProxyHeaderReader();
        assert.equal(reader.push(bytes.subarray(0, cut)).kind, cut === 0 ? 'more' : 'more');
        const read = reader.push(Buffer.concat([bytes.subarray(cut), after]));
        assert.equal(read.kind, 'header');
        if (read.kind === 'header' && whole.kind === 'header') {
          assert.deepEqual(read.header, whole.header);
          assert.deepEqual(read.rest, after);
        }
      }
      const reader = new ProxyHeaderReader();
      for (let i = 0; i < bytes.length - 1; i++) assert.equal(reader.push(bytes.subarray(i, i + 1)).kind, 'more');
      const last = reader.push(bytes.subarray(bytes.length - 1));
      assert.equal(last.kind, 'header');
      if (last.kind === 'header') assert.equal(last.rest.length, 0);
    });
  }
});

describe('bad input', () => {
  const cases: [string, Buffer, RegExp][] = [
    ['plain data', ascii('GET / HTTP/1.1\r\n'), /not a PROXY protocol header/],
    ['lower case', ascii('proxy TCP4 1.2.3.4 1.2.3.4 1 1\r\n'), /not a PROXY protocol header/],
    ['almost the v2 signature', hex('0d0a0d0a000d0a515549540b'), /not a PROXY protocol header/],
    ['v1 without CR', ascii('PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n'), /without CR/],
    ['v1 CR without LF', ascii('PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX'), /CR without LF/],
    ['v1 unknown protocol', ascii('PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n'), /unknown protocol 'UDP4'/],
    ['v1 IPv6 in TCP4', ascii('PROXY TCP4 ::1 ::1 1 2\r\n'), /bad TCP4 address/],
    ['v1 IPv4 in TCP6', ascii('PROXY TCP6 1.2.3.4 1.2.3.4 1 2\r\n'), /bad TCP6 address/],
    ['v1 bad address', ascii('PROXY TCP4 1.2.3.256 5.6.7.8 1 2\r\n'), /bad TCP4 address/],
    ['v1 port too large', ascii('PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n'), /bad port/],
    ['v1 port with a leading zero', ascii('PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n'), /bad port/],
    ['v1 double space', ascii('PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n'), /four fields/],
    ['v1 missing field', ascii('PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n'), /four fields/],
    ['v1 control byte', ascii('PROXY TCP4 1.2.3.4\t5.6.7.8 1 2\r\n'), /printable/],
    ['v1 too long', ascii(`PROXY UNKNOWN ${'x'.repeat(200)}\r\n`), /no CRLF within 107 bytes/],
    ['v2 version 1', hex('0d0a0d0a000d0a515549540a 11 11 000c'), /unsupported version 1/],
    ['v2 command 2', hex('0d0a0d0a000d0a515549540a 22 11 000c'), /unknown command 2/],
    ['v2 family 0x41', hex('0d0a0d0a000d0a515549540a 21 41 000c'), /unknown family and transport 0x41/],
    ['v2 family 0x13', hex('0d0a0d0a000d0a515549540a 21 13 000c'), /unknown family and transport 0x13/],
    ['v2 length too short for IPv4', hex('0d0a0d0a000d0a515549540a 21 11 000b'), /too short for the family's 12-byte/],
    ['v2 length too short for IPv6', hex('0d0a0d0a000d0a515549540a 21 21 000c'), /too short for the family's 36-byte/],
    ['v2 length above the limit', hex('0d0a0d0a000d0a515549540a 21 11 ffff'), /length 65535 is above this side's limit of 4080/],
    ['v2 TLV overrunning the header', Buffer.concat([hex('0d0a0d0a000d0a515549540a 21 11 000f'), Buffer.alloc(12), hex('ee0009')]), /TLV 0xee of 9 bytes overruns/],
    ['v2 truncated TLV', Buffer.concat([hex('0d0a0d0a000d0a515549540a 21 11 000e'), Buffer.alloc(12), hex('ee00')]), /truncated TLV/],
  ];
  for (const [name, bytes, expected] of cases) {
    test(name, () => assert.match(reason(parseProxyHeader(bytes)), expected));
  }

  test('refused as soon as the bytes cannot become a header (no waiting for more)', () => {
    assert.match(reason(parseProxyHeader(ascii('X'))), /not a PROXY/);
    assert.match(reason(parseProxyHeader(ascii('PROXX'))), /not a PROXY/);
    assert.match(reason(parseProxyHeader(hex('0d0a0d0a000d0a515549540a 31'))), /unsupported version 3/);
    assert.match(reason(parseProxyHeader(hex('0d0a0d0a000d0a515549540a 21 11 ffff'))), /above this side's limit/);
    assert.match(reason(parseProxyHeader(ascii(`PROXY TCP4 ${'1'.repeat(101)}`))), /no CRLF within 107 bytes/);
    assert.equal(parseProxyHeader(ascii(`PROXY TCP4 ${'1'.repeat(95)}`)).kind, 'more');
  });

  test('the largest v2 header accepted, and one byte more refused', () => {
    const max = Buffer.concat([hex('0d0a0d0a000d0a515549540a 21 11'), Buffer.from([0x0f, 0xf0]), Buffer.alloc(12), hex('ee'), Buffer.from([0x0f, 0xe1]), Buffer.alloc(4065)]);
    assert.equal(max.length, PROXY_HEADER_MAX_LENGTH);
    assert.equal(header(parseProxyHeader(max)).length, PROXY_HEADER_MAX_LENGTH);
    const over = Buffer.from(max);
    over.writeUInt16BE(PROXY_V2_MAX_PAYLOAD + 1, 14);
    assert.match(reason(parseProxyHeader(over)), /above this side's limit/);
  });

  test('the reader refuses to be fed after its answer', () => {
    const reader = new ProxyHeaderReader();
    assert.equal(reader.push(ascii('junk')).kind, 'error');
    assert.throws(() => reader.push(ascii('more')));
  });
});

describe('addresses', () => {
  test('IPv6 text and bytes', () => {
    const cases: [string, string][] = [
      ['::', '::'],
      ['::1', '::1'],
      ['2001:DB8:0:0:0:0:0:1', '2001:db8::1'],
      ['2001:db8:0:1:0:0:0:1', '2001:db8:0:1::1'],
      ['2001:0:0:1:0:0:0:1', '2001:0:0:1::1'],
      ['1:0:2:3:4:5:6:7', '1:0:2:3:4:5:6:7'],
      ['fe80::1%eth0', 'fe80::1'],
      ['::ffff:1.2.3.4', '::ffff:1.2.3.4'],
      ['64:ff9b::1.2.3.4', '64:ff9b::102:304'],
    ];
    for (const [input, text] of cases) {
      const bytes = ipv6Bytes(input);
      assert.ok(bytes !== null, input);
      assert.equal(ipv6Text(bytes), text, input);
    }
    assert.equal(ipv6Bytes('1.2.3.4'), null);
    assert.equal(ipv6Bytes('1::2::3'), null);
    assert.equal(unmapIPv4('::ffff:127.0.0.9'), '127.0.0.9');
    assert.equal(unmapIPv4('::1'), null);
  });
});

describe('properties', () => {
  const port = fc.integer({ min: 0, max: 65535 });
  const v4 = fc.ipV4();
  const v6 = fc.ipV6();
  const addressesArb: fc.Arbitrary<ProxyAddresses> = fc.oneof(
    fc.record({ family: fc.constant(4 as const), transport: fc.constantFrom('stream' as const, 'dgram' as const), sourceAddress: v4, destinationAddress: v4, sourcePort: port, destinationPort: port }),
    fc.record({ family: fc.constant(6 as const), transport: fc.constantFrom('stream' as const, 'dgram' as const), sourceAddress: v6, destinationAddress: v6, sourcePort: port, destinationPort: port }),
  );
  /** What the parser gives back: addresses in canonical text. */
  const canonical = (a: ProxyAddresses): ProxyAddresses => {
    if (a.family === 4) return { ...a };
    const text = (t: string): string => ipv6Text(ipv6Bytes(t) ?? Buffer.alloc(16));
    return { ...a, sourceAddress: text(a.sourceAddress), destinationAddress: text(a.destinationAddress) };
  };

  test('v2 round trip, split anywhere, data after it kept', () => {
    fc.assert(
      fc.property(addressesArb, fc.uint8Array({ maxLength: 40 }), fc.nat(), (addresses, data, cutSeed) => {
        const bytes = Buffer.concat([encodeProxyV2(addresses), Buffer.from(data)]);
        const cut = cutSeed % (bytes.length + 1);
        const reader = new ProxyHeaderReader();
        const first = reader.push(bytes.subarray(0, cut));
        const read = first.kind === 'more' ? reader.push(bytes.subarray(cut)) : first;
        assert.equal(read.kind, 'header');
        if (read.kind !== 'header') return;
        assert.deepEqual(read.header.addresses, canonical(addresses));
        // Whatever came with or after the header's last byte is the connection's data.
        assert.deepEqual(first.kind === 'more' ? read.rest : Buffer.concat([read.rest, bytes.subarray(cut)]), Buffer.from(data));
      }),
    );
  });

  test('v1 round trip (TCP), within 107 bytes', () => {
    fc.assert(
      fc.property(addressesArb, (addresses) => {
        const stream = { ...addresses, transport: 'stream' as const };
        const bytes = encodeProxyV1(stream);
        assert.ok(bytes.length <= PROXY_V1_MAX_LENGTH);
        assert.deepEqual(header(parseProxyHeader(bytes)).addresses, canonical(stream));
      }),
    );
  });

  test('random bytes: an answer, never a throw, never "more" past the bound; chunking does not change it', () => {
    const prefix = fc.constantFrom(Buffer.alloc(0), ascii('PROXY '), ascii('PROXY TCP4 '), PROXY_V2_SIGNATURE, Buffer.concat([PROXY_V2_SIGNATURE, hex('2111')]));
    fc.assert(
      fc.property(prefix, fc.uint8Array({ maxLength: 300 }), fc.nat(), (head, tail, cutSeed) => {
        const bytes = Buffer.concat([head, Buffer.from(tail)]);
        const whole = parseProxyHeader(bytes);
        if (whole.kind === 'more') assert.ok(bytes.length < PROXY_HEADER_MAX_LENGTH);
        if (whole.kind === 'more' && bytes[0] === 0x50) assert.ok(bytes.length < PROXY_V1_MAX_LENGTH);
        const cut = cutSeed % (bytes.length + 1);
        const reader = new ProxyHeaderReader();
        let read = reader.push(bytes.subarray(0, cut));
        if (read.kind === 'more') read = reader.push(bytes.subarray(cut));
        assert.equal(read.kind, whole.kind);
        if (read.kind === 'error' && whole.kind === 'error' && cut === bytes.length) assert.equal(read.reason, whole.reason);
      }),
      { numRuns: 2000 },
    );
  });
});

describe('OPEN with an origin (capability 1, docs/PROTOCOL.md "Origin addresses")', () => {
  const decoder = (origin: boolean): FrameDecoder => {
    const d = new FrameDecoder({ maxDataPayload: 65536, expectPreface: false });
    if (origin) d.acceptOpenOrigin();
    return d;
  };
  const decodeOne = (bytes: Buffer, origin = true): { port: number; origin: ProxyAddresses | null } => {
    const d = decoder(origin);
    d.push(bytes);
    const frame = d.next();
    assert.ok(frame !== null);
    return parseOpen(frame.payload);
  };

  test('the documented example, byte for byte', () => {
    const bytes = encodeOpenWithOrigin(1, 0, 5432, tcp4('127.0.0.9', '127.0.0.2', 40000, 5432));
    assert.deepEqual(bytes, hex('02 00 00000001 0000000f 1538 11 7f000009 7f000002 9c40 1538'));
    assert.deepEqual(decodeOne(bytes), { port: 5432, origin: tcp4('127.0.0.9', '127.0.0.2', 40000, 5432) });
  });

  test('IPv6: 39 bytes; no origin: the plain 2-byte OPEN', () => {
    const bytes = encodeOpenWithOrigin(7, 0, 80, tcp6('::1', '2001:db8::2', 1, 80));
    assert.equal(bytes.readUInt32BE(6), 39);
    assert.equal(bytes[12], 0x21);
    assert.deepEqual(decodeOne(bytes).origin, tcp6('::1', '2001:db8::2', 1, 80));
    assert.deepEqual(encodeOpenWithOrigin(7, 0, 80, null), encodeOpen(7, 0, 80));
    assert.deepEqual(decodeOne(encodeOpen(7, 0, 80)), { port: 80, origin: null });
  });

  test('without the capability, an OPEN with an origin closes the link (protocol-error)', () => {
    const bytes = encodeOpenWithOrigin(1, 0, 5432, tcp4('1.2.3.4', '5.6.7.8', 1, 2));
    assert.throws(() => decodeOne(bytes, false), (err: unknown) => err instanceof ProtocolError && /must carry 2 bytes, not 15/.test(err.message));
  });

  test('bad lengths and families are protocol errors', () => {
    const raw = (payload: Buffer): Buffer => Buffer.concat([hex('02 00 00000001'), Buffer.from([0, 0, 0, payload.length]), payload]);
    for (const length of [3, 14, 16, 38, 40]) {
      assert.throws(() => decodeOne(raw(Buffer.alloc(length, 1))), /OPEN must carry 2, 15 or 39 bytes/);
    }
    assert.throws(() => decodeOne(raw(Buffer.concat([hex('0050 21'), Buffer.alloc(12)]))), /origin family 0x21 with 13 bytes/);
    assert.throws(() => decodeOne(raw(Buffer.concat([hex('0050 31'), Buffer.alloc(12)]))), /origin family 0x31/);
    assert.throws(() => decodeOne(raw(Buffer.concat([hex('0000 11'), Buffer.alloc(12)]))), /OPEN for port 0/);
  });

  test('round trip, any origin', () => {
    const port = fc.integer({ min: 0, max: 65535 });
    const arb = fc.oneof(
      fc.record({ family: fc.constant(4 as const), transport: fc.constantFrom('stream' as const, 'dgram' as const), sourceAddress: fc.ipV4(), destinationAddress: fc.ipV4(), sourcePort: port, destinationPort: port }),
      fc.record({ family: fc.constant(6 as const), transport: fc.constantFrom('stream' as const, 'dgram' as const), sourceAddress: fc.ipV6(), destinationAddress: fc.ipV6(), sourcePort: port, destinationPort: port }),
    );
    fc.assert(
      fc.property(arb, fc.integer({ min: 1, max: 65535 }), (origin, openPort) => {
        const decoded = decodeOne(encodeOpenWithOrigin(3, 0, openPort, origin));
        assert.equal(decoded.port, openPort);
        const text = (t: string): string => (origin.family === 4 ? t : ipv6Text(ipv6Bytes(t) ?? Buffer.alloc(16)));
        assert.deepEqual(decoded.origin, { ...origin, sourceAddress: text(origin.sourceAddress), destinationAddress: text(origin.destinationAddress) });
      }),
    );
  });
});
