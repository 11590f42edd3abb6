/**
 * The HAProxy PROXY protocol header, versions 1 (text) and 2 (binary), as in
 * HAProxy's doc/proxy-protocol.txt: encoding for the exit side (written to a
 * target before any relayed byte), and an incremental parser for the entry
 * side (the header a load balancer writes at the start of a connection).
 * Pure: no sockets, timers or logs. Quotes are from the specification.
 *
 * Bounds: "a receiver may reject an incomplete line which does not contain the
 * CRLF sequence in the first 107 characters" (v1, CRLF included); a v2 header
 * is at most 16 + PROXY_V2_MAX_PAYLOAD bytes (the address block and TLVs), a
 * limit of this implementation: a larger length field is refused at once,
 * before its bytes are awaited.
 */
import { Buffer } from 'node:buffer';
import { ipv4Bytes, ipv4Text, ipv6Bytes, ipv6Text } from './ip.js';

/** "the maximum line lengths the receiver must support including the CRLF are: ... 107 chars". */
export const PROXY_V1_MAX_LENGTH = 107;
/** "The binary header format starts with a constant 12 bytes block containing the protocol signature". */
export const PROXY_V2_SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);
/** Signature, version and command, family and transport, length u16. */
export const PROXY_V2_FIXED_LENGTH = 16;
/**
 * This implementation's cap on the v2 length field: the address block (at
 * most 216 bytes, AF_UNIX) and TLVs. Load balancers send well under it
 * (HAProxy's SSL TLVs, AWS's VPC endpoint id, Azure's link id: tens of bytes).
 */
export const PROXY_V2_MAX_PAYLOAD = 4080;
/** The largest header this parser reads, either version. */
export const PROXY_HEADER_MAX_LENGTH = PROXY_V2_FIXED_LENGTH + PROXY_V2_MAX_PAYLOAD;

const V1_PREFIX = Buffer.from('PROXY ', 'latin1');
/** "\x20 : v2 + LOCAL", "\x21 : v2 + PROXY". */
const V2_LOCAL = 0x20;
const V2_PROXY = 0x21;
/** The family and transport byte: high nibble AF_UNSPEC 0, AF_INET 1, AF_INET6 2, AF_UNIX 3; low nibble UNSPEC 0, STREAM 1, DGRAM 2. */
const V2_FAMILIES = new Set([0x00, 0x11, 0x12, 0x21, 0x22, 0x31, 0x32]);
/** Address block length by family nibble: "12 bytes" (INET), "36 bytes" (INET6), "216 bytes" (UNIX). */
const V2_ADDRESS_LENGTH: Readonly<Record<number, number>> = { 0: 0, 1: 12, 2: 36, 3: 216 };

/** Source and destination of a proxied connection. */
export interface ProxyAddresses {
  readonly family: 4 | 6;
  /** TCP, or UDP (v2 only: v1 has no datagram form). */
  readonly transport: 'stream' | 'dgram';
  readonly sourceAddress: string;
  readonly sourcePort: number;
  readonly destinationAddress: string;
  readonly destinationPort: number;
}

export interface ProxyHeader {
  readonly version: 1 | 2;
  /** 'local' (v2 LOCAL): "the connection was established on purpose by the proxy without being relayed", e.g. a health check. */
  readonly command: 'proxy' | 'local';
  /**
   * null for LOCAL, v1 UNKNOWN, v2 AF_UNSPEC and AF_UNIX: the specification
   * says the receiver then uses the connection's own addresses.
   */
  readonly addresses: ProxyAddresses | null;
}

export type ProxyParse =
  | { readonly kind: 'more' }
  /** `length`: the header's bytes; what follows them is the connection's data. */
  | { readonly kind: 'header'; readonly header: ProxyHeader; readonly length: number }
  | { readonly kind: 'error'; readonly reason: string };

const MORE: ProxyParse = Object.freeze({ kind: 'more' });
const fail = (reason: string): ProxyParse => ({ kind: 'error', reason });

/**
 * Parses the header at the start of `bytes` (everything received so far).
 * 'more' only while `bytes` is a proper prefix of a header that can still
 * be valid: anything that cannot become one is an error at once.
 */
export function parseProxyHeader(bytes: Buffer): ProxyParse {
  if (bytes.length === 0) return MORE;
  if (bytes[0] === 0x0d) return parseV2(bytes);
  if (bytes[0] === 0x50) return parseV1(bytes);
  return fail('not a PROXY protocol header');
}

function startsLike(bytes: Buffer, prefix: Buffer): boolean {
  const n = Math.min(bytes.length, prefix.length);
  return bytes.compare(prefix, 0, n, 0, n) === 0;
}

function parseV1(bytes: Buffer): ProxyParse {
  if (!startsLike(bytes, V1_PREFIX)) return fail('not a PROXY protocol header');
  const window = Math.min(bytes.length, PROXY_V1_MAX_LENGTH);
  let end = -1;
  for (let i = 0; i < window; i++) {
    const b = bytes[i] ?? 0;
    if (b === 0x0d) {
      end = i;
      break;
    }
    if (b === 0x0a) return fail('v1 header: line ends without CR');
    if (b < 0x20 || b > 0x7e) return fail('v1 header: a byte that is not printable ASCII');
  }
  if (end < 0) return bytes.length >= PROXY_V1_MAX_LENGTH ? fail(`v1 header: no CRLF within ${PROXY_V1_MAX_LENGTH} bytes`) : MORE;
  if (end + 1 >= bytes.length) return end + 1 >= PROXY_V1_MAX_LENGTH ? fail(`v1 header: no CRLF within ${PROXY_V1_MAX_LENGTH} bytes`) : MORE;
  if (bytes[end + 1] !== 0x0a) return fail('v1 header: CR without LF');
  const line = bytes.toString('latin1', 0, end);
  const length = end + 2;
  const parts = line.split(' ');
  const protocol = parts[1] ?? '';
  // "the receiver must ignore anything presented before the CRLF is found" after UNKNOWN.
  if (protocol === 'UNKNOWN') return { kind: 'header', header: { version: 1, command: 'proxy', addresses: null }, length };
  if (protocol !== 'TCP4' && protocol !== 'TCP6') return fail(`v1 header: unknown protocol '${protocol.slice(0, 16)}'`);
  if (parts.length !== 6) return fail(`v1 header: ${protocol} needs four fields separated by single spaces`);
  const [, , source = '', destination = '', sourcePort = '', destinationPort = ''] = parts;
  const family = protocol === 'TCP4' ? 4 : 6;
  const toBytes = family === 4 ? ipv4Bytes : ipv6Bytes;
  const sourceBytes = source.includes('%') ? null : toBytes(source);
  const destinationBytes = destination.includes('%') ? null : toBytes(destination);
  if (sourceBytes === null || destinationBytes === null) return fail(`v1 header: bad ${protocol} address`);
  const sp = v1Port(sourcePort);
  const dp = v1Port(destinationPort);
  if (sp < 0 || dp < 0) return fail('v1 header: bad port');
  const text = family === 4 ? ipv4Text : ipv6Text;
  const addresses: ProxyAddresses = {
    family,
    transport: 'stream',
    sourceAddress: text(sourceBytes),
    sourcePort: sp,
    destinationAddress: text(destinationBytes),
    destinationPort: dp,
  };
  return { kind: 'header', header: { version: 1, command: 'proxy', addresses }, length };
}

/** "a number between 0 and 65535 inclusive", in decimal; -1 if not. */
function v1Port(text: string): number {
  if (!/^(0|[1-9]\d{0,4})$/.test(text)) return -1;
  const port = Number(text);
  return port <= 65535 ? port : -1;
}

function parseV2(bytes: Buffer): ProxyParse {
  if (!startsLike(bytes, PROXY_V2_SIGNATURE)) return fail('not a PROXY protocol header');
  if (bytes.length < PROXY_V2_FIXED_LENGTH) {
    // Fail on a bad version, command or family as soon as its byte is in.
    if (bytes.length > 12 && bytes[12] !== V2_LOCAL && bytes[12] !== V2_PROXY) return badVersionCommand(bytes[12] ?? 0);
    if (bytes.length > 13 && !V2_FAMILIES.has(bytes[13] ?? 0)) return badFamily(bytes[13] ?? 0);
    return MORE;
  }
  const versionCommand = bytes[12] ?? 0;
  const familyByte = bytes[13] ?? 0;
  if (versionCommand !== V2_LOCAL && versionCommand !== V2_PROXY) return badVersionCommand(versionCommand);
  if (!V2_FAMILIES.has(familyByte)) return badFamily(familyByte);
  const payloadLength = bytes.readUInt16BE(14);
  if (payloadLength > PROXY_V2_MAX_PAYLOAD) {
    return fail(`v2 header: length ${payloadLength} is above this side's limit of ${PROXY_V2_MAX_PAYLOAD}`);
  }
  const length = PROXY_V2_FIXED_LENGTH + payloadLength;
  const familyNibble = familyByte >> 4;
  const addressLength = V2_ADDRESS_LENGTH[familyNibble] ?? 0;
  // A length too short for its own family can never become valid: refuse it before waiting.
  if (versionCommand === V2_PROXY && payloadLength < addressLength) {
    return fail(`v2 header: length ${payloadLength} is too short for the family's ${addressLength}-byte address block`);
  }
  if (bytes.length < length) return MORE;
  // "the receiver must ... ignore the protocol block" of a LOCAL header, TLVs included.
  if (versionCommand === V2_LOCAL) return { kind: 'header', header: { version: 2, command: 'local', addresses: null }, length };
  const block = bytes.subarray(PROXY_V2_FIXED_LENGTH, length);
  const tlvError = checkTlvs(block.subarray(addressLength));
  if (tlvError !== null) return fail(tlvError);
  if (familyNibble !== 1 && familyNibble !== 2) return { kind: 'header', header: { version: 2, command: 'proxy', addresses: null }, length };
  const family = familyNibble === 1 ? 4 : 6;
  const size = family === 4 ? 4 : 16;
  const text = family === 4 ? ipv4Text : ipv6Text;
  const addresses: ProxyAddresses = {
    family,
    transport: (familyByte & 0x0f) === 2 ? 'dgram' : 'stream',
    sourceAddress: text(block.subarray(0, size)),
    destinationAddress: text(block.subarray(size, size * 2)),
    sourcePort: block.readUInt16BE(size * 2),
    destinationPort: block.readUInt16BE(size * 2 + 2),
  };
  return { kind: 'header', header: { version: 2, command: 'proxy', addresses }, length };
}

function badVersionCommand(byte: number): ProxyParse {
  return fail(byte >> 4 !== 2 ? `v2 header: unsupported version ${byte >> 4}` : `v2 header: unknown command ${byte & 0x0f}`);
}

function badFamily(byte: number): ProxyParse {
  return fail(`v2 header: unknown family and transport 0x${byte.toString(16).padStart(2, '0')}`);
}

/**
 * TLVs (type u8, length u16, value) after the address block. Their types are
 * not interpreted: "a receiver ... must ignore unknown TLVs" (and tcpipe uses
 * none); only their framing is checked, so a bogus length is caught.
 */
function checkTlvs(tlvs: Buffer): string | null {
  let at = 0;
  while (at < tlvs.length) {
    if (tlvs.length - at < 3) return 'v2 header: truncated TLV';
    const length = tlvs.readUInt16BE(at + 1);
    if (tlvs.length - at - 3 < length) return `v2 header: TLV 0x${(tlvs[at] ?? 0).toString(16)} of ${length} bytes overruns the header`;
    at += 3 + length;
  }
  return null;
}

/** The outcome of ProxyHeaderReader.push: `rest` holds the bytes after the header. */
export type ProxyRead =
  | { readonly kind: 'more' }
  | { readonly kind: 'header'; readonly header: ProxyHeader; readonly rest: Buffer }
  | { readonly kind: 'error'; readonly reason: string };

/**
 * Collects a connection's first bytes until its header is complete. It never
 * holds more than PROXY_HEADER_MAX_LENGTH bytes of header: past that the
 * parser has already answered.
 */
export class ProxyHeaderReader {
  private buffered: Buffer = Buffer.alloc(0);
  private done = false;

  push(chunk: Buffer): ProxyRead {
    if (this.done) throw new Error('ProxyHeaderReader: the header was already read');
    this.buffered = this.buffered.length === 0 ? chunk : Buffer.concat([this.buffered, chunk]);
    const parsed = parseProxyHeader(this.buffered);
    if (parsed.kind === 'more') return parsed;
    this.done = true;
    if (parsed.kind === 'error') return parsed;
    const rest = this.buffered.subarray(parsed.length);
    this.buffered = Buffer.alloc(0);
    return { kind: 'header', header: parsed.header, rest };
  }

  /** Bytes received so far (for the log line of a header that never finished). */
  get bufferedBytes(): number {
    return this.buffered.length;
  }
}

/**
 * Version 1: "PROXY TCP4|TCP6 <src> <dst> <sport> <dport>\r\n"; without
 * addresses, or for a datagram flow (v1 has no UDP), "PROXY UNKNOWN\r\n".
 */
export function encodeProxyV1(addresses: ProxyAddresses | null): Buffer {
  const a = addresses;
  if (a === null || a.transport !== 'stream' || !validAddresses(a)) return Buffer.from('PROXY UNKNOWN\r\n', 'latin1');
  return Buffer.from(`PROXY TCP${a.family} ${canonical(a.family, a.sourceAddress)} ${canonical(a.family, a.destinationAddress)} ${a.sourcePort} ${a.destinationPort}\r\n`, 'latin1');
}

/** The address as the header writes it (IPv6 compressed, no zone). */
function canonical(family: 4 | 6, text: string): string {
  const bytes = addressBytes(family, text);
  if (bytes === null) return text;
  return family === 4 ? ipv4Text(bytes) : ipv6Text(bytes);
}

/** Version 2: PROXY with the addresses (STREAM or DGRAM, AF_INET or AF_INET6); without them, LOCAL. */
export function encodeProxyV2(addresses: ProxyAddresses | null): Buffer {
  const a = addresses;
  const source = a === null ? null : addressBytes(a.family, a.sourceAddress);
  const destination = a === null ? null : addressBytes(a.family, a.destinationAddress);
  if (a === null || source === null || destination === null || !validPort(a.sourcePort) || !validPort(a.destinationPort)) {
    const local = Buffer.alloc(PROXY_V2_FIXED_LENGTH);
    PROXY_V2_SIGNATURE.copy(local);
    local[12] = V2_LOCAL;
    return local; // family 0x00, length 0
  }
  const size = source.length;
  const buf = Buffer.allocUnsafe(PROXY_V2_FIXED_LENGTH + size * 2 + 4);
  PROXY_V2_SIGNATURE.copy(buf);
  buf[12] = V2_PROXY;
  buf[13] = ((a.family === 4 ? 1 : 2) << 4) | (a.transport === 'dgram' ? 2 : 1);
  buf.writeUInt16BE(size * 2 + 4, 14);
  source.copy(buf, 16);
  destination.copy(buf, 16 + size);
  buf.writeUInt16BE(a.sourcePort, 16 + size * 2);
  buf.writeUInt16BE(a.destinationPort, 18 + size * 2);
  return buf;
}

export function encodeProxyHeader(version: 1 | 2, addresses: ProxyAddresses | null): Buffer {
  return version === 1 ? encodeProxyV1(addresses) : encodeProxyV2(addresses);
}

/** 4 or 16 bytes for an address of `family`, or null if it is not one. */
export function addressBytes(family: 4 | 6, text: string): Buffer | null {
  return family === 4 ? ipv4Bytes(text) : ipv6Bytes(text);
}

function validPort(port: number): boolean {
  return Number.isInteger(port) && port >= 0 && port <= 65535;
}

function validAddresses(a: ProxyAddresses): boolean {
  return addressBytes(a.family, a.sourceAddress) !== null && addressBytes(a.family, a.destinationAddress) !== null && validPort(a.sourcePort) && validPort(a.destinationPort);
}
