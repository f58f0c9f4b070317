// IP address text <-> bytes and transport text forms ("ip:port" / "[ip6]:port"). Pure: no I/O, no clock;
// never throws — input that is not an IP literal yields undefined.
import ipaddr from 'ipaddr.js';
import type { Transport } from './types.js';

// Strict dotted quad: four decimal octets 0–255, no leading zeros (ipaddr.js alone would also accept
// "127.1", "0x7f.0.0.1" and octal forms, which node:dgram never reports and configs should not contain).
const IPV4_RE = /^(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?:\.(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;
const IPV6_CHARS_RE = /^[0-9a-fA-F:.]+$/;
const IPV6_GROUP_RE = /^[0-9a-fA-F]{1,4}$/;
const ZONE_RE = /^[0-9A-Za-z._~-]{1,64}$/;
const PORT_RE = /^\d{1,5}$/;

/** Whether `address` is the wildcard (unspecified) address of its family, as a listener is written: 0.0.0.0 or ::. */
export function isUnspecified(address: string): boolean {
  return address === '0.0.0.0' || address === '::';
}

/**
 * Whether `address` (an IP literal) is a loopback address: 127.0.0.0/8, ::1, or 127.x mapped into IPv6
 * (::ffff:127.0.0.1). False for anything that is not an IP literal.
 */
export function isLoopback(address: string): boolean {
  const a = address.split('%')[0] as string;
  if (!ipaddr.isValid(a)) return false;
  const ip = ipaddr.parse(a);
  if (ip.kind() === 'ipv6' && (ip as ipaddr.IPv6).isIPv4MappedAddress()) return (ip as ipaddr.IPv6).toIPv4Address().range() === 'loopback';
  return ip.range() === 'loopback';
}

/** 4 or 6 for an IPv4 / IPv6 literal (an IPv6 zone suffix "%eth0" is allowed), undefined otherwise. */
export function familyOf(address: string): 4 | 6 | undefined {
  if (IPV4_RE.test(address)) return 4;
  return parseIpv6(address) === undefined ? undefined : 6;
}

/**
 * The 4 (IPv4) or 16 (IPv6) network-order bytes of an IP literal, undefined if it is not one.
 * An IPv6 zone suffix ("fe80::1%eth0") is accepted and dropped: wire formats have no room for it.
 */
export function ipToBytes(address: string): Uint8Array | undefined {
  const v4 = parseIpv4(address);
  if (v4 !== undefined) return v4;
  return parseIpv6(address);
}

/** 4 address bytes as a new 16-byte IPv4-mapped IPv6 address (::ffff:a.b.c.d); other lengths as they are. */
export function ipv4MappedBytes(b: Uint8Array): Uint8Array {
  if (b.length !== 4) return b;
  const out = new Uint8Array(16);
  out[10] = 0xff;
  out[11] = 0xff;
  out.set(b, 12);
  return out;
}

/**
 * Canonical text of 4 or 16 address bytes, exactly as node:dgram / node:net report addresses
 * (libuv's inet_ntop): IPv4 dotted quad; IPv6 lowercase with the longest (first on a tie) run of two or
 * more zero groups compressed to "::". This equals ipaddr.js `toString()` except that IPv4-mapped and
 * IPv4-compatible addresses keep a dotted tail ("::ffff:1.2.3.4", "::1.2.3.4") — matching what
 * `rinfo.address` says, so a decoded transport compares equal to the one a socket reported.
 * Any other length yields "" (never thrown: the caller checks lengths of wire fields itself).
 */
export function bytesToIp(b: Uint8Array): string {
  if (b.length === 4) return `${b[0]}.${b[1]}.${b[2]}.${b[3]}`;
  if (b.length !== 16) return '';
  const words: number[] = new Array<number>(8);
  for (let i = 0; i < 8; i++) words[i] = ((b[2 * i] ?? 0) << 8) | (b[2 * i + 1] ?? 0);
  let bestBase = -1;
  let bestLen = 0;
  let curBase = -1;
  for (let i = 0; i <= 8; i++) {
    if (i < 8 && words[i] === 0) {
      if (curBase === -1) curBase = i;
    } else if (curBase !== -1) {
      if (i - curBase > bestLen) {
        bestBase = curBase;
        bestLen = i - curBase;
      }
      curBase = -1;
    }
  }
  if (bestLen < 2) bestBase = -1;
  // IPv4-compatible (::a.b.c.d, six zero groups) and IPv4-mapped (::ffff:a.b.c.d), as inet_ntop prints them.
  if (bestBase === 0 && (bestLen === 6 || (bestLen === 5 && words[5] === 0xffff))) {
    return `::${bestLen === 5 ? 'ffff:' : ''}${b[12]}.${b[13]}.${b[14]}.${b[15]}`;
  }
  let out = '';
  for (let i = 0; i < 8; i++) {
    if (bestBase !== -1 && i >= bestBase && i < bestBase + bestLen) {
      if (i === bestBase) out += '::';
      continue;
    }
    if (i !== 0 && !(bestBase !== -1 && i === bestBase + bestLen)) out += ':';
    out += (words[i] ?? 0).toString(16);
  }
  return out;
}

/**
 * The canonical form of an IP literal (see bytesToIp), keeping an IPv6 zone suffix; undefined if the
 * text is not an IP literal. Use it on addresses from config or the admin API before comparing them with
 * socket-reported ones.
 */
export function canonicalIp(address: string): string | undefined {
  const bytes = ipToBytes(address);
  if (bytes === undefined) return undefined;
  const pct = address.indexOf('%');
  return pct === -1 ? bytesToIp(bytes) : bytesToIp(bytes) + address.slice(pct);
}

/**
 * The text form of a transport: "1.2.3.4:5" or "[::1]:5" (also its JSON form in the admin API).
 * Hot path: formats only; the address is expected to be canonical already (as sockets report it).
 */
export function transportKey(t: Transport): string {
  return t.address.includes(':') ? `[${t.address}]:${t.port}` : `${t.address}:${t.port}`;
}

/** Whether `a` and `b` are the same transport (what equal `transportKey`s say, without making them). */
export function sameTransport(a: Transport, b: Transport): boolean {
  return a === b || (a.port === b.port && a.address === b.address);
}

/**
 * Parses "1.2.3.4:5" or "[::1]:5" (IP literals only — no host names; port 0–65535) into a transport
 * with a canonical address; undefined otherwise.
 */
export function parseHostPort(s: string): Transport | undefined {
  let host: string;
  let port: string;
  if (s.startsWith('[')) {
    const close = s.indexOf(']');
    if (close === -1 || s[close + 1] !== ':') return undefined;
    host = s.slice(1, close);
    port = s.slice(close + 2);
    if (!host.includes(':')) return undefined; // brackets are for IPv6 only
  } else {
    const colon = s.lastIndexOf(':');
    if (colon === -1) return undefined;
    host = s.slice(0, colon);
    port = s.slice(colon + 1);
    if (host.includes(':')) return undefined; // bare IPv6 with a port is ambiguous
  }
  if (!PORT_RE.test(port)) return undefined;
  const portNum = Number(port);
  if (portNum > 65535) return undefined;
  const address = canonicalIp(host);
  if (address === undefined) return undefined;
  return { family: host.includes(':') ? 6 : 4, address, port: portNum };
}

function parseIpv4(s: string): Uint8Array | undefined {
  if (!IPV4_RE.test(s)) return undefined;
  const parts = s.split('.');
  return Uint8Array.of(Number(parts[0]), Number(parts[1]), Number(parts[2]), Number(parts[3]));
}

function parseIpv6(address: string): Uint8Array | undefined {
  let s = address;
  const pct = s.indexOf('%');
  if (pct !== -1) {
    if (!ZONE_RE.test(s.slice(pct + 1))) return undefined;
    s = s.slice(0, pct);
  }
  if (!s.includes(':') || !IPV6_CHARS_RE.test(s)) return undefined;
  // A dotted IPv4 tail becomes two hex groups here: ipaddr.js would read "::a.b.c.d" as "::ffff:a.b.c.d".
  const lastColon = s.lastIndexOf(':');
  const tail = s.slice(lastColon + 1);
  if (tail.includes('.')) {
    const v4 = parseIpv4(tail);
    if (v4 === undefined) return undefined;
    const hi = (((v4[0] ?? 0) << 8) | (v4[1] ?? 0)).toString(16);
    const lo = (((v4[2] ?? 0) << 8) | (v4[3] ?? 0)).toString(16);
    s = `${s.slice(0, lastColon + 1)}${hi}:${lo}`;
  }
  // ipaddr.js accepts hex groups longer than four digits; the textual form (RFC 4291) does not.
  for (const group of s.split(':')) if (group !== '' && !IPV6_GROUP_RE.test(group)) return undefined;
  if (!ipaddr.IPv6.isValid(s)) return undefined;
  let bytes: number[];
  try {
    bytes = ipaddr.IPv6.parse(s).toByteArray(); // isValid said yes; the try only guards a library surprise
  } catch {
    return undefined;
  }
  return bytes.length === 16 ? Uint8Array.from(bytes) : undefined;
}
