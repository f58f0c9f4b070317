// Transport text as the director writes it (codec/ip.ts transportKey: "a.b.c.d:port", "[v6]:port") ↔
// numbers, for the store's columns (issue 7: memory per session): a text is held as numbers only when
// formatting them gives back exactly that text, byte for byte; the caller keeps anything else as text.
// Pure: no I/O, no clock, never throws on any string.
import { bytesToIp } from '../codec/ip.js';

/**
 * The port of an IPv4 transport text in its one canonical form — four decimal octets 0–255 and a decimal
 * port 0–65535, none with a leading zero ("1.2.3.4:80") — with the address as a u32 in `out[0]`; -1 for
 * any other string ("01.2.3.4:80", "1.2.3.4:080", "1.2.3.4:+80", " 1.2.3.4:80", ...). Only that form is
 * accepted, so formatV4Transport gives back exactly the text (no second formatting to compare with: this
 * runs on every store write; the property tests check it).
 */
export function parseV4Transport(s: string, out: Uint32Array): number {
  const n = s.length;
  if (n < 9 || n > 21) return -1;
  let addr = 0;
  let dots = 0;
  let v = 0; // the octet so far
  let d = 0; // its digits
  let i = 0;
  for (; ; i++) {
    if (i === n) return -1;
    const c = s.charCodeAt(i);
    if (c >= 48 && c <= 57) {
      if (d === 1 && v === 0) return -1; // a leading zero
      v = v * 10 + c - 48;
      d++;
      continue;
    }
    if (d === 0 || d > 3 || v > 255) return -1;
    addr = addr * 256 + v;
    if (c === 58 /* : */ && dots === 3) break;
    if (c !== 46 /* . */ || dots === 3) return -1;
    dots++;
    v = 0;
    d = 0;
  }
  out[0] = addr;
  return parsePort(s, i + 1, n);
}

/** "0" .. "255". */
const OCTETS: readonly string[] = Array.from({ length: 256 }, (_, i) => String(i));

/** "a.b.c.d:port" of a u32 address and a port (the inverse of parseV4Transport). */
export function formatV4Transport(addr: number, port: number): string {
  return formatV4Address(addr) + ':' + port;
}

/** The u32 of an IPv4 address in its one canonical text (four decimal octets, no leading zero), -1 for any other. */
export function parseV4Address(s: string): number {
  return parseQuad(s, 0, s.length);
}

/** "a.b.c.d" of a u32 address (the inverse of parseV4Address). */
export function formatV4Address(addr: number): string {
  const o = OCTETS;
  return o[addr >>> 24] + '.' + o[(addr >>> 16) & 255] + '.' + o[(addr >>> 8) & 255] + '.' + o[addr & 255];
}

/**
 * The port of an IPv6 transport text "[v6]:port", its 16 address bytes written to `out`, when
 * formatV6Transport gives back exactly `s` (the canonical address as node:dgram reports it, see
 * codec/ip.ts bytesToIp: lower case, "::" for the longest zero run, "::ffff:a.b.c.d"; a decimal port with
 * no leading zero); -1 otherwise (a zone, upper case, leading zeros, another compression, not IPv6).
 * `out` may have been written to either way.
 */
export function parseV6Transport(s: string, out: Uint8Array): number {
  if (s.length < 6 || s.charCodeAt(0) !== 91 /* [ */) return -1;
  const close = s.indexOf(']', 1);
  if (close === -1 || s.charCodeAt(close + 1) !== 58 /* : */) return -1;
  const port = parsePort(s, close + 2, s.length);
  if (port === -1 || !parseV6(s, 1, close, out)) return -1;
  // The parse accepts every spelling of an address; only the canonical one formats back to `s`.
  return formatV6Transport(out, port) === s ? port : -1;
}

/** "[v6]:port" of 16 address bytes and a port. */
export function formatV6Transport(bytes: Uint8Array, port: number): string {
  return `[${bytesToIp(bytes)}]:${port}`;
}

/** A u32 from strict dotted-quad text in s[from, to), or -1. */
function parseQuad(s: string, from: number, to: number): number {
  let addr = 0;
  let i = from;
  for (let k = 0; k < 4; k++) {
    const start = i;
    let v = 0;
    for (; i < to; i++) {
      const c = s.charCodeAt(i) - 48;
      if (c < 0 || c > 9) break;
      v = v * 10 + c;
    }
    const d = i - start;
    if (d === 0 || d > 3 || v > 255 || (d > 1 && s.charCodeAt(start) === 48)) return -1;
    if (k < 3) {
      if (i >= to || s.charCodeAt(i) !== 46 /* . */) return -1;
      i++;
    }
    addr = addr * 256 + v;
  }
  return i === to ? addr : -1;
}

/** A port 0–65535 from decimal text in s[from, to) with no leading zero, or -1. */
function parsePort(s: string, from: number, to: number): number {
  const d = to - from;
  if (d < 1 || d > 5 || (d > 1 && s.charCodeAt(from) === 48)) return -1;
  let v = 0;
  for (let i = from; i < to; i++) {
    const c = s.charCodeAt(i) - 48;
    if (c < 0 || c > 9) return -1;
    v = v * 10 + c;
  }
  return v > 65535 ? -1 : v;
}

/** 0–15 for a hex digit's character code (either case), -1 otherwise. */
function hexDigit(c: number): number {
  if (c >= 48 && c <= 57) return c - 48;
  const l = c | 0x20;
  return l >= 97 && l <= 102 ? l - 87 : -1;
}

/**
 * The 16 bytes of any textual IPv6 address in s[from, to) (hex groups of 1–4 digits, at most one "::",
 * an optional dotted IPv4 tail) into `out`; false if it is not one. Lenient about spelling: the caller
 * compares the canonical text with what it was given.
 */
function parseV6(s: string, from: number, to: number, out: Uint8Array): boolean {
  let n = 0; // groups written
  let gap = -1; // the group index "::" stands at
  let i = from;
  if (to - from >= 2 && s.charCodeAt(i) === 58 && s.charCodeAt(i + 1) === 58) {
    gap = 0;
    i += 2;
  }
  while (i < to) {
    const start = i;
    let v = 0;
    for (; i < to && i - start < 5; i++) {
      const h = hexDigit(s.charCodeAt(i));
      if (h < 0) break;
      v = v * 16 + h;
    }
    if (i < to && s.charCodeAt(i) === 46 /* . */) {
      // A dotted IPv4 tail: the last two groups.
      const q = n > 6 ? -1 : parseQuad(s, start, to);
      if (q === -1) return false;
      out[2 * n] = q >>> 24;
      out[2 * n + 1] = (q >>> 16) & 255;
      out[2 * n + 2] = (q >>> 8) & 255;
      out[2 * n + 3] = q & 255;
      n += 2;
      break;
    }
    const d = i - start;
    if (d === 0 || d > 4 || n === 8) return false;
    out[2 * n] = v >>> 8;
    out[2 * n + 1] = v & 255;
    n++;
    if (i === to) break;
    if (s.charCodeAt(i) !== 58 /* : */) return false;
    i++;
    if (i < to && s.charCodeAt(i) === 58) {
      if (gap !== -1) return false;
      gap = n;
      i++;
    } else if (i === to) return false; // a trailing single ':'
  }
  if (gap === -1) return n === 8;
  if (n > 7) return false;
  // The groups after "::" go to the end; the ones it stands for are zero.
  const tail = n - gap;
  out.copyWithin(2 * (8 - tail), 2 * gap, 2 * n);
  out.fill(0, 2 * gap, 2 * (8 - tail));
  return true;
}
