#!/usr/bin/env node
// Writes docs/vectors/tcpipe-v1.json: the test vectors of docs/PROTOCOL.md.
// Built from the byte layouts in the text with plain Buffer writes and
// node:crypto, never with tcpipe's own encoder, so that the vectors test
// (test/unit/vectors.test.ts) checks the code against the text.
// Usage: node scripts/gen-vectors.mjs [out.json]
import crypto from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';

const out = process.argv[2] ?? 'docs/vectors/tcpipe-v1.json';
const hex = (b) => Buffer.from(b).toString('hex');
const u8 = (v) => Buffer.from([v]);
const u16 = (v) => { const b = Buffer.alloc(2); b.writeUInt16BE(v); return b; };
const u32 = (v) => { const b = Buffer.alloc(4); b.writeUInt32BE(v); return b; };
const u64 = (v) => { const b = Buffer.alloc(8); b.writeBigUInt64BE(BigInt(v)); return b; };
const frame = (type, flags, stream, payload = Buffer.alloc(0)) =>
  Buffer.concat([u8(type), u8(flags), u32(stream), u32(payload.length), payload]);
const tlv = (key, value) => Buffer.concat([u16(key), u16(value.length), value]);
const T = { HELLO: 1, OPEN: 2, ACCEPT: 3, DATA: 4, WINDOW: 5, RESET: 6, PING: 7, GOAWAY: 8, RESUME: 9, FLOW_OPEN: 0x0a, DATAGRAM: 0x0b, FLOW_CLOSE: 0x0c };
// Capability ids ("Capabilities"): a vector that needs one says so in its "capabilities".
const CAP = { origin: 1, udp: 2 };
const PREFACE = Buffer.from('54435049504500' + '01', 'hex');

const frames = [];
const add = (name, type, flags, stream, payload, fields, capabilities) =>
  frames.push({ name, hex: hex(frame(type, flags, stream, payload)), type, flags, stream, ...(capabilities ? { capabilities } : {}), fields });
// Addresses as "Origin addresses" and "Datagrams" lay them out: network order, written by hand.
const ip4 = (text) => Buffer.from(text.split('.').map(Number));
const ip6 = (groups) => Buffer.concat(groups.map(u16)); // eight u16 groups

// ---- stream frames
add('OPEN stream 1, port 40000', T.OPEN, 0, 1, u16(40000), { port: 40000 });
add('OPEN stream 4294967295 (the last id), port 65535', T.OPEN, 0, 0xffffffff, u16(65535), { port: 65535 });
add('ACCEPT stream 1 (LOCAL always set)', T.ACCEPT, 0x80, 1, undefined, {});
add('DATA stream 1 from the entry side, "hi"', T.DATA, 0x00, 1, Buffer.from('hi'), { data: hex('hi') });
add('DATA stream 1 from the exit side, "hi"', T.DATA, 0x80, 1, Buffer.from('hi'), { data: hex('hi') });
add('DATA stream 1 from the entry side, "bye" and FIN', T.DATA, 0x01, 1, Buffer.from('bye'), { data: hex('bye') });
add('DATA stream 1 from the exit side, FIN alone', T.DATA, 0x81, 1, undefined, { data: '' });
add('DATA stream 1, empty without FIN (a sender never sends it; a receiver ignores it)', T.DATA, 0x00, 1, undefined, { data: '' });
add('WINDOW stream 1 from the exit side', T.WINDOW, 0x80, 1, Buffer.concat([u64(131072), u32(262144)]), { consumed: 131072, window: 262144 });
add('WINDOW stream 7 from the entry side, consumed above 2^32', T.WINDOW, 0x00, 7, Buffer.concat([u64(2 ** 32 + 5), u32(1024)]), { consumed: 2 ** 32 + 5, window: 1024 });
add('WINDOW with FIN_RECEIVED (resumable link), stream 1 from the exit side', T.WINDOW, 0x81, 1, Buffer.concat([u64(2048), u32(262144)]), { consumed: 2048, window: 262144 });
add('WINDOW with FIN_RECEIVED answering for a stream closed during an outage', T.WINDOW, 0x01, 3, Buffer.concat([u64(0), u32(0)]), { consumed: 0, window: 0 });
add('WINDOW with RESUMED (stream-list entry), from the entry side', T.WINDOW, 0x02, 2, Buffer.concat([u64(1000), u32(262144), u64(1500)]), { consumed: 1000, window: 262144, received: 1500 });
add('WINDOW with RESUMED|ACCEPTED|LOCAL (exit side, target reached)', T.WINDOW, 0x86, 2, Buffer.concat([u64(0), u32(262144), u64(0)]), { consumed: 0, window: 262144, received: 0 });
add('WINDOW with RESUMED|ACCEPTED|FIN_RECEIVED|LOCAL', T.WINDOW, 0x87, 9, Buffer.concat([u64(70000), u32(65536), u64(70000)]), { consumed: 70000, window: 65536, received: 70000 });
const resets = [
  [0, 'peer-reset', 'user application: read ECONNRESET'],
  [1, 'target-refused', 'refused'],
  [2, 'target-unreachable', 'cannot connect to target 10.0.0.9:22: no answer within 10s'],
  [3, 'not-allowed', 'port 23 is not allowed'],
  [4, 'limit', 'cannot connect to target: EMFILE'],
  [5, 'shutdown', 'server shutting down'],
  [6, 'internal', 'the stream ended while the link was down'],
];
for (const [code, name, reason] of resets) {
  add(`RESET stream 1 from the exit side, code ${code} ${name}`, T.RESET, 0x80, 1, Buffer.concat([u8(code), Buffer.from(reason)]), { code, reason });
}
add('RESET stream 2 from the entry side, empty reason', T.RESET, 0x00, 2, u8(0), { code: 0, reason: '' });

// ---- link frames
add('PING', T.PING, 0x00, 0, Buffer.from('0102030405060708', 'hex'), { opaque: '0102030405060708' });
add('PING answer (ACK)', T.PING, 0x01, 0, Buffer.from('0102030405060708', 'hex'), { opaque: '0102030405060708' });
add('PING probe of a link pacer ("pace", sequence 7)', T.PING, 0x00, 0, Buffer.from('7061636500000007', 'hex'), { opaque: '7061636500000007' });
const goaways = [
  [0, 'normal', 'replaced by a new partner'],
  [1, 'shutdown', 'bye'],
  [2, 'protocol-error', 'unknown frame type 0x2a'],
  [3, 'partner-busy', 'this server already has a live partner (127.0.0.1:40000)'],
  [4, 'limit-exceeded', 'partner opened more than 8 streams'],
  [5, 'heartbeat-timeout', 'heartbeat timeout: no answer from the partner for 10.0s'],
  [6, 'internal-error', 'internal error'],
  [7, 'unsupported-version', 'unsupported protocol version 2 (this side speaks 1)'],
  [8, 'auth-required', 'plaintext link refused: this server requires a secret'],
  [9, 'resume-refused', 'resume refused: proof does not match'],
  [10, 'missing-capability', "the partner (x) lacks capability 'origin', which --proxy-protocol needs: upgrade it or drop the option"],
];
for (const [code, name, reason] of goaways) {
  add(`GOAWAY code ${code} ${name}`, T.GOAWAY, 0, 0, Buffer.concat([u8(code), Buffer.from(reason)]), { code, reason });
}
add('GOAWAY with an empty reason', T.GOAWAY, 0, 0, u8(1), { code: 1, reason: '' });
add('GOAWAY with a 256-byte reason (the longest)', T.GOAWAY, 0, 0, Buffer.concat([u8(2), Buffer.alloc(256, 0x78)]), { code: 2, reason: 'x'.repeat(256) });
add('RESUME NEW', T.RESUME, 0, 0, u8(1), { kind: 1, body: '' });
add('RESUME FRESH with a reason', T.RESUME, 0, 0, Buffer.concat([u8(4), Buffer.from('new session')]), { kind: 4, body: hex('new session') });
add('RESUME FRESH without a reason', T.RESUME, 0, 0, u8(4), { kind: 4, body: '' });
add('RESUME DONE, last id seen 12', T.RESUME, 0, 0, Buffer.concat([u8(5), u32(12)]), { kind: 5, body: hex(u32(12)) });

// ---- capability origin (1): OPEN with the user's addresses ("Origin addresses (capability 1)")
// payload: port u16 | fam u8 | source addr | dest addr | sport u16 | dport u16
const openOrigin = (port, fam, src, dst, sport, dport) => Buffer.concat([u16(port), u8(fam), src, dst, u16(sport), u16(dport)]);
const DB8_7 = ip6([0x2001, 0x0db8, 0, 0, 0, 0, 0, 7]);
const DB8_1 = ip6([0x2001, 0x0db8, 0, 0, 0, 0, 0, 1]);
add('OPEN with an origin, TCP over IPv4 (fam 0x11): stream 1, port 5432, user 127.0.0.9:40000 connected to 127.0.0.2:5432', T.OPEN, 0, 1,
  openOrigin(5432, 0x11, ip4('127.0.0.9'), ip4('127.0.0.2'), 40000, 5432),
  { port: 5432, origin: { fam: 0x11, source: '127.0.0.9', dest: '127.0.0.2', sport: 40000, dport: 5432 } }, [CAP.origin]);
add('OPEN with an origin, TCP over IPv6 (fam 0x21): stream 3, port 443, user [2001:db8::7]:51000 connected to [2001:db8::1]:8443', T.OPEN, 0, 3,
  openOrigin(443, 0x21, DB8_7, DB8_1, 51000, 8443),
  { port: 443, origin: { fam: 0x21, source: '2001:db8::7', dest: '2001:db8::1', sport: 51000, dport: 8443 } }, [CAP.origin]);
add('OPEN with an origin that a PROXY v2 header named as UDP over IPv4 (fam 0x12): accepted like 0x11', T.OPEN, 0, 4,
  openOrigin(53, 0x12, ip4('192.0.2.7'), ip4('198.51.100.1'), 40000, 53),
  { port: 53, origin: { fam: 0x12, source: '192.0.2.7', dest: '198.51.100.1', sport: 40000, dport: 53 } }, [CAP.origin]);
add('OPEN of 2 bytes on a link with capability origin: no address known (PROXY LOCAL)', T.OPEN, 0, 2, u16(5432),
  { port: 5432, origin: null }, [CAP.origin]);

// ---- capability udp (2): FLOW_OPEN, DATAGRAM, FLOW_CLOSE ("Datagrams (capability 2)")
add('FLOW_OPEN flow 1, port 53, no address', T.FLOW_OPEN, 0, 1, u16(53), { port: 53 }, [CAP.udp]);
add('FLOW_OPEN flow 1, port 53, user 192.0.2.7:40000 (family 4)', T.FLOW_OPEN, 0, 1,
  Buffer.concat([u16(53), u8(4), ip4('192.0.2.7'), u16(40000)]), { port: 53, family: 4, address: '192.0.2.7', srcPort: 40000 }, [CAP.udp]);
add('FLOW_OPEN flow 9, port 51820, user [2001:db8::7]:51000 (family 6)', T.FLOW_OPEN, 0, 9,
  Buffer.concat([u16(51820), u8(6), DB8_7, u16(51000)]), { port: 51820, family: 6, address: '2001:db8::7', srcPort: 51000 }, [CAP.udp]);
add('FLOW_OPEN flow 4294967295 (the last id), port 65535, no address', T.FLOW_OPEN, 0, 0xffffffff, u16(65535), { port: 65535 }, [CAP.udp]);
add('DATAGRAM flow 1 from the entry side, "hi"', T.DATAGRAM, 0x00, 1, Buffer.from('hi'), { data: hex('hi') }, [CAP.udp]);
add('DATAGRAM flow 1 from the exit side (LOCAL), "hello"', T.DATAGRAM, 0x80, 1, Buffer.from('hello'), { data: hex('hello') }, [CAP.udp]);
add('DATAGRAM flow 1 from the entry side, empty: a zero-length datagram', T.DATAGRAM, 0x00, 1, undefined, { data: '' }, [CAP.udp]);
add('DATAGRAM flow 1 from the exit side, empty', T.DATAGRAM, 0x80, 1, undefined, { data: '' }, [CAP.udp]);
const flowCloses = [
  [0x80, 0, 'idle', 'idle'],
  [0x80, 1, 'target-refused', 'target 127.0.0.3:53: ICMP port unreachable'],
  [0x80, 3, 'not-allowed', 'udp: port 23 is not allowed'],
  [0x00, 4, 'limit', 'udp-max-flows 4096 reached'],
  [0x00, 5, 'shutdown', ''],
  [0x80, 6, 'no-flow', 'no such flow'],
  [0x80, 7, 'internal', 'internal error'],
];
for (const [flags, code, name, reason] of flowCloses) {
  add(`FLOW_CLOSE flow 1 from the ${flags ? 'exit' : 'entry'} side, code ${code} ${name}${reason === '' ? ', empty reason' : ''}`, T.FLOW_CLOSE, flags, 1,
    Buffer.concat([u8(code), Buffer.from(reason)]), { code, reason }, [CAP.udp]);
}

// Headers a receiver MUST accept: it waits for the payload they announce (too long to spell out).
const headers = [];
headers.push({
  name: 'DATAGRAM header announcing 65,535 bytes (the largest): accepted, whatever the HELLO max-frame',
  hex: hex(Buffer.concat([u8(T.DATAGRAM), u8(0), u32(1), u32(65535)])),
  capabilities: [CAP.udp],
  maxFrame: 1024,
  payloadLength: 65535,
});
headers.push({
  name: 'DATA header announcing exactly max-frame 65,536: accepted',
  hex: hex(Buffer.concat([u8(T.DATA), u8(0), u32(1), u32(65536)])),
  maxFrame: 65536,
  payloadLength: 65536,
});

// ---- HELLOs
const KEY = { role: 1, initialWindow: 2, maxFrame: 3, maxStreams: 4, heartbeat: 5, software: 6, resume: 7, keyShare: 8, session: 9, capabilities: 10 };
const helloPayload = (entries) => Buffer.concat(entries.map(([k, v]) => tlv(k, v)));
const hellos = [];
const addHello = (name, entries, decoded) =>
  hellos.push({ name, hex: hex(frame(T.HELLO, 0, 0, helloPayload(entries))), decoded });
const base = (role) => [
  [KEY.role, u8(role)],
  [KEY.initialWindow, u32(262144)],
  [KEY.maxFrame, u32(65536)],
  [KEY.maxStreams, u32(65536)],
];
const baseDecoded = (role) => ({ role, initialWindow: 262144, maxFramePayload: 65536, maxStreams: 65536, heartbeatMs: 0, software: '', resumeGraceMs: 0, keyShare: null, sessionId: null, capabilities: [] });
addHello('client HELLO, required keys only', base(0), baseDecoded('client'));
addHello('server HELLO, required keys only', base(1), baseDecoded('server'));
addHello('client HELLO as tcpipe 0.1.0 sends it', [...base(0), [KEY.heartbeat, u32(15000)], [KEY.software, Buffer.from('tcpipe 0.1.0')]], {
  ...baseDecoded('client'), heartbeatMs: 15000, software: 'tcpipe 0.1.0',
});
addHello('keys in another order, and an unknown key 999 (ignored)', [[999, Buffer.from('future')], [KEY.maxStreams, u32(1)], [KEY.maxFrame, u32(1024)], [KEY.initialWindow, u32(1024)], [KEY.role, u8(1)]], {
  ...baseDecoded('server'), initialWindow: 1024, maxFramePayload: 1024, maxStreams: 1,
});
addHello('heartbeat 0: no preference', [...base(0), [KEY.heartbeat, u32(0)]], baseDecoded('client'));
addHello('heartbeat 100 ms is raised to 300', [...base(0), [KEY.heartbeat, u32(100)]], { ...baseDecoded('client'), heartbeatMs: 300 });
addHello('software of 70 bytes: accepted, shown cut to 64', [...base(0), [KEY.software, Buffer.alloc(70, 0x61)]], { ...baseDecoded('client'), software: 'a'.repeat(64) });
addHello('software with control bytes: shown with ? for each', [...base(0), [KEY.software, Buffer.from('a\nb\u00e9')]], { ...baseDecoded('client'), software: 'a?b?' });
addHello('capabilities 1, 2 and an unknown 700', [...base(0), [KEY.capabilities, Buffer.concat([u16(1), u16(2), u16(700)])]], { ...baseDecoded('client'), capabilities: [1, 2, 700] });
addHello('capabilities [1, 2] (origin, udp), as tcpipe 0.1 lists them', [...base(1), [KEY.capabilities, Buffer.concat([u16(1), u16(2)])]], { ...baseDecoded('server'), capabilities: [1, 2] });
addHello('capabilities: only an unknown id 0x8001 (private range): ignored, no feature', [...base(0), [KEY.capabilities, u16(0x8001)]], { ...baseDecoded('client'), capabilities: [0x8001] });
addHello('capabilities empty list', [...base(1), [KEY.capabilities, Buffer.alloc(0)]], baseDecoded('server'));
const share32 = Buffer.alloc(32, 0x11);
const session16 = Buffer.alloc(16, 0x22);
addHello('client HELLO with resume, key-share and session', [...base(0), [KEY.resume, u32(60000)], [KEY.keyShare, share32], [KEY.session, session16]], {
  ...baseDecoded('client'), resumeGraceMs: 60000, keyShare: hex(share32), sessionId: hex(session16),
});
addHello('resume 0 with a key-share: no resumption', [...base(1), [KEY.resume, u32(0)], [KEY.keyShare, share32]], baseDecoded('server'));

// ---- what a receiver refuses (GOAWAY code it sends)
const invalid = [];
const bad = (name, bytes, goaway, context = {}) => invalid.push({ name, hex: hex(bytes), goaway, ...context });
bad('unknown frame type 0x2a', frame(0x2a, 0, 0, Buffer.alloc(0)), 2);
bad('frame type 0', frame(0, 0, 1, Buffer.alloc(0)), 2);
bad('unknown flag 0x02 on DATA', frame(T.DATA, 0x02, 1, Buffer.from('x')), 2);
bad('ACK flag on a PING of length 8 with unknown bit 0x02', frame(T.PING, 0x03, 0, Buffer.alloc(8)), 2);
bad('LOCAL on OPEN', frame(T.OPEN, 0x80, 1, u16(80)), 2);
bad('flag on GOAWAY', frame(T.GOAWAY, 0x01, 0, u8(1)), 2);
bad('PING with a stream id', frame(T.PING, 0, 5, Buffer.alloc(8)), 2);
bad('GOAWAY with a stream id', frame(T.GOAWAY, 0, 1, u8(0)), 2);
bad('HELLO with a stream id', frame(T.HELLO, 0, 1, Buffer.alloc(0)), 2, { expect: 'hello' });
bad('RESUME with a stream id', frame(T.RESUME, 0, 3, u8(1)), 2);
bad('DATA with stream id 0', frame(T.DATA, 0, 0, Buffer.from('x')), 2);
bad('OPEN with stream id 0', frame(T.OPEN, 0, 0, u16(80)), 2);
bad('WINDOW with stream id 0', frame(T.WINDOW, 0, 0, Buffer.alloc(12)), 2);
bad('control frame of 1,025 bytes (header only)', Buffer.concat([u8(T.GOAWAY), u8(0), u32(0), u32(1025)]), 4);
bad('DATA above max-frame 65,536 (header only)', Buffer.concat([u8(T.DATA), u8(0), u32(1), u32(65537)]), 4, { maxFrame: 65536 });
bad('OPEN of 3 bytes', frame(T.OPEN, 0, 1, Buffer.from([0, 80, 0])), 2);
bad('OPEN for port 0', frame(T.OPEN, 0, 1, u16(0)), 2);
bad('ACCEPT with a payload', frame(T.ACCEPT, 0x80, 1, u8(0)), 2);
bad('PING of 7 bytes', frame(T.PING, 0, 0, Buffer.alloc(7)), 2);
bad('WINDOW of 11 bytes', frame(T.WINDOW, 0, 1, Buffer.alloc(11)), 2);
bad('WINDOW with RESUMED of 12 bytes', frame(T.WINDOW, 0x02, 1, Buffer.alloc(12)), 2);
bad('WINDOW consumed at 2^53', frame(T.WINDOW, 0, 1, Buffer.concat([u64(2 ** 53), u32(0)])), 2);
bad('RESET without a code', frame(T.RESET, 0, 1, Buffer.alloc(0)), 2);
bad('GOAWAY with a 257-byte reason', frame(T.GOAWAY, 0, 0, Buffer.concat([u8(2), Buffer.alloc(257, 0x78)])), 2);
bad('RESUME without a kind', frame(T.RESUME, 0, 0, Buffer.alloc(0)), 2);
bad('wrong preface (HTTP)', Buffer.from('GET / HTTP/1.1\r\n'), 2, { preface: true });
bad('preface of version 2', Buffer.from('5443504950450002', 'hex'), 7, { preface: true });
const badHello = (name, entries, goaway = 2) => bad(name, frame(T.HELLO, 0, 0, helloPayload(entries)), goaway, { expect: 'hello' });
badHello('HELLO without role', base(0).slice(1));
badHello('HELLO without initial-window', base(0).filter(([k]) => k !== KEY.initialWindow));
badHello('HELLO without max-frame', base(0).filter(([k]) => k !== KEY.maxFrame));
badHello('HELLO without max-streams', base(0).filter(([k]) => k !== KEY.maxStreams));
badHello('HELLO with role 2', [[KEY.role, u8(2)], ...base(0).slice(1)]);
badHello('HELLO with a 4-byte role', [[KEY.role, u32(0)], ...base(0).slice(1)]);
badHello('HELLO with initial-window 1,023', [...base(0).filter(([k]) => k !== KEY.initialWindow), [KEY.initialWindow, u32(1023)]]);
badHello('HELLO with max-frame 1,023', [...base(0).filter(([k]) => k !== KEY.maxFrame), [KEY.maxFrame, u32(1023)]]);
badHello('HELLO with max-frame 1 MiB + 1', [...base(0).filter(([k]) => k !== KEY.maxFrame), [KEY.maxFrame, u32(1048577)]]);
badHello('HELLO with max-streams 0', [...base(0).filter(([k]) => k !== KEY.maxStreams), [KEY.maxStreams, u32(0)]]);
badHello('HELLO with a repeated key', [...base(0), [KEY.heartbeat, u32(1)], [KEY.heartbeat, u32(2)]]);
badHello('HELLO with a truncated parameter', [...base(0)].concat([[KEY.software, Buffer.from('abc')]]).map(([k, v]) => [k, v]), 2);
invalid[invalid.length - 1].hex = hex(frame(T.HELLO, 0, 0, Buffer.concat([helloPayload(base(0)), u16(KEY.software), u16(9), Buffer.from('abc')])));
badHello('HELLO with resume and a 31-byte key-share', [...base(0), [KEY.resume, u32(1000)], [KEY.keyShare, Buffer.alloc(31)]]);
badHello('HELLO with resume and no key-share', [...base(0), [KEY.resume, u32(1000)]]);
badHello('HELLO with a 15-byte session', [...base(0), [KEY.resume, u32(1000)], [KEY.keyShare, share32], [KEY.session, Buffer.alloc(15)]]);
badHello('HELLO with an odd-length capability list', [...base(0), [KEY.capabilities, Buffer.from([0, 1, 0])]]);

// capability origin: OPEN lengths and fam
const badCap = (name, bytes, goaway, capabilities, extra = {}) => bad(name, bytes, goaway, { capabilities, ...extra });
const v4origin = openOrigin(5432, 0x11, ip4('127.0.0.9'), ip4('127.0.0.2'), 40000, 5432);
badCap('OPEN of 15 bytes whose fam is 0x21 (IPv6)', frame(T.OPEN, 0, 1, Buffer.concat([u16(5432), u8(0x21), v4origin.subarray(3)])), 2, [CAP.origin]);
badCap('OPEN of 39 bytes whose fam is 0x11 (IPv4)', frame(T.OPEN, 0, 1, openOrigin(443, 0x11, DB8_7, DB8_1, 51000, 443)), 2, [CAP.origin]);
badCap('OPEN of 15 bytes with an unknown fam 0x31', frame(T.OPEN, 0, 1, Buffer.concat([u16(5432), u8(0x31), v4origin.subarray(3)])), 2, [CAP.origin]);
badCap('OPEN of 16 bytes (neither 2, 15 nor 39)', frame(T.OPEN, 0, 1, Buffer.concat([v4origin, u8(0)])), 2, [CAP.origin]);
badCap('OPEN with an origin on a link without capability origin', frame(T.OPEN, 0, 1, v4origin), 2, []);
badCap('OPEN with an origin when only udp was negotiated', frame(T.OPEN, 0, 1, v4origin), 2, [CAP.udp]);
// capability udp: the frames' limits and layouts
badCap('DATAGRAM header announcing 65,536 bytes (header only)', Buffer.concat([u8(T.DATAGRAM), u8(0), u32(1), u32(65536)]), 4, [CAP.udp]);
badCap('FLOW_OPEN of 3 bytes', frame(T.FLOW_OPEN, 0, 1, Buffer.concat([u16(53), u8(4)])), 2, [CAP.udp]);
badCap('FLOW_OPEN of 8 bytes (a truncated IPv4 address)', frame(T.FLOW_OPEN, 0, 1, Buffer.concat([u16(53), u8(4), ip4('192.0.2.7'), u8(0)])), 2, [CAP.udp]);
badCap('FLOW_OPEN of 9 bytes with family 6', frame(T.FLOW_OPEN, 0, 1, Buffer.concat([u16(53), u8(6), ip4('192.0.2.7'), u16(40000)])), 2, [CAP.udp]);
badCap('FLOW_OPEN of 9 bytes with family 5', frame(T.FLOW_OPEN, 0, 1, Buffer.concat([u16(53), u8(5), ip4('192.0.2.7'), u16(40000)])), 2, [CAP.udp]);
badCap('FLOW_OPEN for port 0', frame(T.FLOW_OPEN, 0, 1, u16(0)), 2, [CAP.udp]);
badCap('FLOW_OPEN with flag LOCAL', frame(T.FLOW_OPEN, 0x80, 1, u16(53)), 2, [CAP.udp]);
badCap('DATAGRAM with flow id 0', frame(T.DATAGRAM, 0, 0, Buffer.from('hi')), 2, [CAP.udp]);
badCap('FLOW_CLOSE without a code', frame(T.FLOW_CLOSE, 0x80, 1, Buffer.alloc(0)), 2, [CAP.udp]);
badCap('FLOW_CLOSE with a 257-byte reason', frame(T.FLOW_CLOSE, 0x80, 1, Buffer.concat([u8(0), Buffer.alloc(257, 0x78)])), 2, [CAP.udp]);
// capability udp not negotiated: every datagram frame is a protocol-error (the session refuses it; its layout is fine)
badCap('FLOW_OPEN on a link without capability udp', frame(T.FLOW_OPEN, 0, 1, u16(53)), 2, [], { refusedBy: 'session' });
badCap('DATAGRAM on a link without capability udp', frame(T.DATAGRAM, 0, 1, Buffer.from('hi')), 2, [], { refusedBy: 'session' });
badCap('FLOW_CLOSE on a link without capability udp', frame(T.FLOW_CLOSE, 0x80, 1, u8(6)), 2, [CAP.origin], { refusedBy: 'session' });
badHello('HELLO with a 1-byte capability list', [...base(0), [KEY.capabilities, u8(1)]]);
badHello('HELLO with a 5-byte capability list', [...base(1), [KEY.capabilities, Buffer.from([0, 1, 0, 2, 0])]]);

// ---- handshakes (bytes each side sends, in order)
const clientHello = frame(T.HELLO, 0, 0, helloPayload(base(0)));
const serverHello = frame(T.HELLO, 0, 0, helloPayload(base(1)));
const handshakes = [
  { name: 'plain link, admitted', client: [hex(PREFACE), hex(clientHello)], server: [hex(PREFACE), hex(serverHello)] },
  {
    name: 'refused: the server has a live partner',
    client: [hex(PREFACE), hex(clientHello)],
    server: [hex(PREFACE), hex(frame(T.GOAWAY, 0, 0, Buffer.concat([u8(3), Buffer.from('this server already has a live partner (127.0.0.1:40000)')])))],
  },
  {
    name: 'refused: wrong version',
    client: ['5443504950450002', hex(clientHello)],
    server: [hex(PREFACE), hex(frame(T.GOAWAY, 0, 0, Buffer.concat([u8(7), Buffer.from('unsupported protocol version 2 (this side speaks 1)')])))],
  },
  {
    name: 'a first stream: OPEN, DATA before ACCEPT, ACCEPT, DATA back, FIN both ways',
    client: [hex(PREFACE), hex(clientHello), hex(frame(T.OPEN, 0, 1, u16(40000))), hex(frame(T.DATA, 0, 1, Buffer.from('ping'))), hex(frame(T.DATA, 0x01, 1))],
    server: [hex(PREFACE), hex(serverHello), hex(frame(T.ACCEPT, 0x80, 1)), hex(frame(T.DATA, 0x80, 1, Buffer.from('pong'))), hex(frame(T.DATA, 0x81, 1))],
  },
];

// ---- resumption: key derivation and proofs with fixed inputs
const PKCS8_X25519 = Buffer.from('302e020100300506032b656e04220420', 'hex');
const SPKI_X25519 = Buffer.from('302a300506032b656e032100', 'hex');
const keyPair = (seedHex) => {
  const raw = Buffer.from(seedHex, 'hex');
  const privateKey = crypto.createPrivateKey({ key: Buffer.concat([PKCS8_X25519, raw]), format: 'der', type: 'pkcs8' });
  const der = crypto.createPublicKey(privateKey).export({ format: 'der', type: 'spki' });
  return { raw, privateKey, publicKey: Buffer.from(der.subarray(der.length - 32)) };
};
const dh = (own, peerPublic) =>
  crypto.diffieHellman({ privateKey: own.privateKey, publicKey: crypto.createPublicKey({ key: Buffer.concat([SPKI_X25519, peerPublic]), format: 'der', type: 'spki' }) });
const client1 = keyPair('a8abababababababababababababababababababababababababababababab6b');
const server1 = keyPair('c8cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd4d');
const exporter1 = Buffer.from('00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff', 'hex');
const shared = dh(client1, server1.publicKey);
const info = Buffer.concat([Buffer.from('tcpipe resume key v1'), client1.publicKey, server1.publicKey]);
const key = Buffer.from(crypto.hkdfSync('sha256', shared, exporter1, info, 32));
const sessionId = crypto.createHmac('sha256', key).update('tcpipe session id v1').digest().subarray(0, 16);
const keyPlain = Buffer.from(crypto.hkdfSync('sha256', shared, Buffer.alloc(0), info, 32));
const sessionIdPlain = crypto.createHmac('sha256', keyPlain).update('tcpipe session id v1').digest().subarray(0, 16);
const client2 = keyPair('e0e1e2e3e4e5e6e7e8e9eaebecedeeeff0f1f2f3f4f5f6f7f8f9fafbfcfdfeff'.replace(/^e0/, 'e8').replace(/ff$/, '7f'));
const server2 = keyPair('1011121314151617181920212223242526272829303132333435363738393a7b'.replace(/^10/, '18'));
const exporter2 = Buffer.from('ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100', 'hex');
const proof = (role, cShare, sShare, exporter) =>
  crypto.createHmac('sha256', key).update(`tcpipe resume proof v1 ${role}`).update(sessionId).update(cShare).update(sShare).update(exporter).digest();
const clientProof = proof('client', client2.publicKey, server2.publicKey, exporter2);
const serverProof = proof('server', client2.publicKey, server2.publicKey, exporter2);
const resumption = {
  description: 'first link: the session identity; second link: the proofs that resume it (docs/PROTOCOL.md, "The resume handshake")',
  firstLink: {
    clientPrivate: hex(client1.raw),
    serverPrivate: hex(server1.raw),
    clientShare: hex(client1.publicKey),
    serverShare: hex(server1.publicKey),
    exporter: hex(exporter1),
    sharedSecret: hex(shared),
    hkdfInfo: hex(info),
    key: hex(key),
    sessionId: hex(sessionId),
    withoutTls: { exporter: '', key: hex(keyPlain), sessionId: hex(sessionIdPlain) },
  },
  secondLink: {
    clientPrivate: hex(client2.raw),
    serverPrivate: hex(server2.raw),
    clientShare: hex(client2.publicKey),
    serverShare: hex(server2.publicKey),
    exporter: hex(exporter2),
    clientProofInput: hex(Buffer.concat([Buffer.from('tcpipe resume proof v1 client'), sessionId, client2.publicKey, server2.publicKey, exporter2])),
    clientProof: hex(clientProof),
    serverProof: hex(serverProof),
    clientHello: hex(frame(T.HELLO, 0, 0, helloPayload([...base(0), [KEY.resume, u32(60000)], [KEY.keyShare, client2.publicKey], [KEY.session, sessionId]]))),
    serverHello: hex(frame(T.HELLO, 0, 0, helloPayload([...base(1), [KEY.resume, u32(60000)], [KEY.keyShare, server2.publicKey]]))),
    resumeFrame: hex(frame(T.RESUME, 0, 0, Buffer.concat([u8(2), sessionId, clientProof]))),
    resumedFrame: hex(frame(T.RESUME, 0, 0, Buffer.concat([u8(3), serverProof]))),
  },
};

const vectors = {
  protocol: 'tcpipe',
  version: 1,
  spec: 'docs/PROTOCOL.md',
  generatedBy: 'scripts/gen-vectors.mjs',
  notes: [
    'Bytes are lowercase hex. "flags", "type" and "stream" are the header fields; "fields" are the payload as docs/PROTOCOL.md names them.',
    'frames: each decodes to its fields, and encoding the fields gives the bytes.',
    'hellos: HELLO frames and what a receiver takes from them (software after the receiver replaces control bytes and cuts it to 64 bytes; heartbeatMs after it raises 1..299 to 300).',
    'invalid: bytes a receiver refuses, with the GOAWAY code it sends. expect: "hello" means the bytes are the first frame after the preface. preface: true means the bytes are the first bytes of the link. maxFrame is the receiver\'s HELLO max-frame.',
    'capabilities: the capability ids both HELLOs listed on the link the vector belongs to ("Capabilities"); absent means none is needed, [] means a link where none was negotiated.',
    'headers: frame headers a receiver MUST accept (it then waits for payloadLength bytes); maxFrame is the receiver\'s HELLO max-frame.',
    'invalid with refusedBy "session": the frame decodes, and the receiving session refuses it (here: a datagram frame where capability udp was not negotiated).',
    'handshakes: each side\'s bytes in order; a side may send its first two entries in one write.',
    'resumption: X25519 private keys are raw 32-byte scalars (RFC 7748); the exporter stands for the TLS exporter of the link (empty without TLS).',
  ],
  preface: hex(PREFACE),
  frames,
  hellos,
  invalid,
  headers,
  handshakes,
  resumption,
};
mkdirSync(dirname(out), { recursive: true });
writeFileSync(out, JSON.stringify(vectors, null, 1) + '\n');
console.log(`${out}: ${frames.length} frames, ${hellos.length} hellos, ${invalid.length} invalid, ${headers.length} headers, ${handshakes.length} handshakes, resumption`);
