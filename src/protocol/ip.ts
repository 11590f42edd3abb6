/**
 * IP addresses as text and as bytes (4 or 16, network order), for the PROXY
 * protocol header and OPEN's origin. Pure: no sockets, no name resolution.
 */
import { isIPv4, isIPv6 } from 'node:net';

/** Dotted quad to 4 bytes; null if `text` is not one. */
export function ipv4Bytes(text: string): Buffer | null {
  if (!isIPv4(text)) return null;
  return Buffer.from(text.split('.').map(Number));
}

/**
 * IPv6 text (with `::`, an embedded dotted quad, a zone that is dropped) to
 * 16 bytes; null if `text` is not one.
 */
export function ipv6Bytes(text: string): Buffer | null {
  const bare = text.replace(/%.*$/, '');
  if (!isIPv6(bare)) return null;
  let body = bare;
  const tail: number[] = [];
  const lastColon = body.lastIndexOf(':');
  const last = body.slice(lastColon + 1);
  if (last.includes('.')) {
    const quad = ipv4Bytes(last);
    if (quad === null) return null;
    tail.push(((quad[0] ?? 0) << 8) | (quad[1] ?? 0), ((quad[2] ?? 0) << 8) | (quad[3] ?? 0));
    // `x` marks where the embedded quad's two groups go.
    body = body.slice(0, lastColon + 1) + 'x';
  }
  const groupsOf = (part: string): string[] => (part === '' ? [] : part.split(':'));
  const halves = body.split('::');
  const head = groupsOf(halves[0] ?? '');
  const rest = halves.length > 1 ? groupsOf(halves[1] ?? '') : [];
  const expand = (groups: string[]): number[] => groups.flatMap((g) => (g === 'x' ? tail : [parseInt(g, 16)]));
  const front = expand(head);
  const back = expand(rest);
  const missing = 8 - front.length - back.length;
  if (missing < 0 || (halves.length === 1 && missing !== 0)) return null;
  const words = [...front, ...new Array<number>(missing).fill(0), ...back];
  const out = Buffer.alloc(16);
  words.forEach((w, i) => out.writeUInt16BE(w, i * 2));
  return out;
}

export function ipv4Text(bytes: Buffer): string {
  return `${bytes[0] ?? 0}.${bytes[1] ?? 0}.${bytes[2] ?? 0}.${bytes[3] ?? 0}`;
}

/** RFC 5952 text: lower case, the longest run of two or more zero groups as `::`, IPv4-mapped as ::ffff:a.b.c.d. */
export function ipv6Text(bytes: Buffer): string {
  const words: number[] = [];
  for (let i = 0; i < 16; i += 2) words.push(bytes.readUInt16BE(i));
  if (words.slice(0, 5).every((w) => w === 0) && words[5] === 0xffff) return `::ffff:${ipv4Text(bytes.subarray(12, 16))}`;
  let bestAt = -1;
  let bestLength = 1;
  for (let i = 0; i < 8; ) {
    if (words[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && words[j] === 0) j++;
    if (j - i > bestLength) {
      bestAt = i;
      bestLength = j - i;
    }
    i = j;
  }
  const hex = (ws: number[]): string => ws.map((w) => w.toString(16)).join(':');
  if (bestAt < 0) return hex(words);
  return `${hex(words.slice(0, bestAt))}::${hex(words.slice(bestAt + bestLength))}`;
}

/** The dotted quad inside an IPv4-mapped IPv6 address (::ffff:a.b.c.d), or null. */
export function unmapIPv4(text: string): string | null {
  const m = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(text);
  return m !== null && m[1] !== undefined && isIPv4(m[1]) ? m[1] : null;
}
