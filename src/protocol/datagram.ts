/**
 * The datagram frames of capability udp (docs/PROTOCOL.md, "Datagrams
 * (capability 2)"): FLOW_OPEN, DATAGRAM and FLOW_CLOSE. Pure: no sockets.
 *
 * A flow is one user address on an entry /udp port. Its id travels in the
 * header's stream field; ids are the entry side's, and the LOCAL flag tells
 * them apart from the partner's, as for streams. Flows use no window: a
 * datagram the link cannot take is dropped by the sender, never queued.
 */
import { Buffer } from 'node:buffer';
import { ProtocolError } from '../errors.js';
import { FrameType, GoAwayCode, HEADER_LENGTH, MAX_DATAGRAM_PAYLOAD } from './constants.js';
import { reasonBytes } from './encode.js';

/** The user's address, as the entry side saw it. */
export interface FlowOrigin {
  /** An IPv4 dotted quad or an IPv6 address (IPv4-mapped IPv6 is given as IPv4). */
  readonly address: string;
  readonly port: number;
}

export interface FlowOpen {
  /** The entry port, which the exit side routes like a TCP port (with /udp routes). */
  readonly port: number;
  readonly origin: FlowOrigin | null;
}

/** "family u8: 4 (then 4 address bytes) or 6 (then 16 address bytes)." */
const FAMILY_IPV4 = 4;
const FAMILY_IPV6 = 6;

function header(type: number, flags: number, flowId: number, length: number): Buffer {
  const buf = Buffer.allocUnsafe(HEADER_LENGTH + length);
  buf[0] = type;
  buf[1] = flags;
  buf.writeUInt32BE(flowId, 2);
  buf.writeUInt32BE(length, 6);
  return buf;
}

/** FLOW_OPEN: port u16, then optionally family u8, address (4 or 16 bytes), source port u16. */
export function encodeFlowOpen(flowId: number, port: number, origin: FlowOrigin | null): Buffer {
  const address = origin === null ? null : ipBytes(origin.address);
  const length = 2 + (address === null ? 0 : 1 + address.length + 2);
  const buf = header(FrameType.FLOW_OPEN, 0, flowId, length);
  buf.writeUInt16BE(port, HEADER_LENGTH);
  if (address !== null && origin !== null) {
    buf[HEADER_LENGTH + 2] = address.length === 4 ? FAMILY_IPV4 : FAMILY_IPV6;
    address.copy(buf, HEADER_LENGTH + 3);
    buf.writeUInt16BE(origin.port, HEADER_LENGTH + 3 + address.length);
  }
  return buf;
}

export function parseFlowOpen(payload: Buffer): FlowOpen {
  if (payload.length !== 2 && payload.length !== 9 && payload.length !== 21) {
    throw protocolError(`FLOW_OPEN must carry 2, 9 or 21 bytes, not ${payload.length}`);
  }
  const port = payload.readUInt16BE(0);
  if (port === 0) throw protocolError('FLOW_OPEN for port 0');
  if (payload.length === 2) return { port, origin: null };
  const family = payload[2];
  const size = family === FAMILY_IPV4 ? 4 : family === FAMILY_IPV6 ? 16 : -1;
  if (size < 0 || payload.length !== 3 + size + 2) throw protocolError(`FLOW_OPEN: bad address family ${family ?? '?'}`);
  const address = ipText(payload.subarray(3, 3 + size));
  return { port, origin: { address, port: payload.readUInt16BE(3 + size) } };
}

/**
 * A whole DATAGRAM frame in one buffer: one write, so nothing can come
 * between the header and its datagram. The copy is at most 64 KiB.
 */
export function encodeDatagram(flowId: number, flags: number, datagram: Buffer): Buffer {
  if (datagram.length > MAX_DATAGRAM_PAYLOAD) throw new RangeError(`datagram of ${datagram.length} bytes`);
  const buf = header(FrameType.DATAGRAM, flags, flowId, datagram.length);
  datagram.copy(buf, HEADER_LENGTH);
  return buf;
}

/** FLOW_CLOSE: code u8 (FlowCloseCode), reason UTF-8 (0..256 bytes). Parse it with parseCodeAndReason. */
export function encodeFlowClose(flowId: number, flags: number, code: number, reason: string): Buffer {
  const text = reasonBytes(reason);
  const buf = header(FrameType.FLOW_CLOSE, flags, flowId, 1 + text.length);
  buf[HEADER_LENGTH] = code;
  text.copy(buf, HEADER_LENGTH + 1);
  return buf;
}

/** IPv4 (4 bytes) or IPv6 (16 bytes) from text; an IPv4-mapped IPv6 address becomes its IPv4 bytes. */
export function ipBytes(text: string): Buffer {
  const address = text.replace(/^\[|\]$/g, '').replace(/%.*$/, '');
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (mapped?.[1] !== undefined) return ipv4Bytes(mapped[1]);
  if (!address.includes(':')) return ipv4Bytes(address);
  const halves = address.split('::');
  if (halves.length > 2) throw new RangeError(`not an IP address: ${text}`);
  const groups = (part: string | undefined): number[] => {
    if (part === undefined || part === '') return [];
    const out: number[] = [];
    for (const g of part.split(':')) {
      if (g.includes('.')) {
        const v4 = ipv4Bytes(g);
        out.push(v4.readUInt16BE(0), v4.readUInt16BE(2));
      } else {
        if (!/^[0-9a-f]{1,4}$/i.test(g)) throw new RangeError(`not an IP address: ${text}`);
        out.push(parseInt(g, 16));
      }
    }
    return out;
  };
  const head = groups(halves[0]);
  const tail = groups(halves[1]);
  const missing = 8 - head.length - tail.length;
  if (missing < 0 || (halves.length === 1 && missing !== 0)) throw new RangeError(`not an IP address: ${text}`);
  const all = [...head, ...new Array<number>(missing).fill(0), ...tail];
  const buf = Buffer.allocUnsafe(16);
  all.forEach((g, i) => buf.writeUInt16BE(g, i * 2));
  return buf;
}

function ipv4Bytes(text: string): Buffer {
  const parts = text.split('.');
  if (parts.length !== 4 || !parts.every((p) => /^\d{1,3}$/.test(p) && Number(p) <= 255)) {
    throw new RangeError(`not an IP address: ${text}`);
  }
  return Buffer.from(parts.map(Number));
}

/** Text of 4 or 16 address bytes (IPv6 in its short form). */
export function ipText(bytes: Buffer): string {
  if (bytes.length === 4) return [...bytes].join('.');
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(bytes.readUInt16BE(i).toString(16));
  return new URL(`http://[${groups.join(':')}]/`).hostname.replace(/^\[|\]$/g, '');
}

function protocolError(message: string): ProtocolError {
  return new ProtocolError(GoAwayCode.PROTOCOL_ERROR, message);
}
