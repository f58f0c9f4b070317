// HAProxy PROXY protocol v2 (binary) with Anchor's ownership TLVs (DESIGN §3): encoder for the per-datagram
// hot path and a decoder. Pure: no I/O, no clock; the decoder never throws on wire bytes.
import { bytesToIp, ipToBytes, ipv4MappedBytes } from './ip.js';
import { MalformedReason } from './types.js';
import type { Decoded, Transport } from './types.js';

/*
 * Layout (all big-endian):
 *   0   12  signature \r\n\r\n\0\r\nQUIT\n
 *   12  1   version (high nibble, 2) | command (low nibble: 0 LOCAL, 1 PROXY)
 *   13  1   family (high nibble: 0 UNSPEC, 1 INET, 2 INET6, 3 UNIX) | transport (low: 0 UNSPEC, 1 STREAM, 2 DGRAM)
 *   14  2   length of everything after these 16 bytes
 *   16  ..  addresses: src addr, dst addr, src port, dst port (INET 12 bytes, INET6 36, UNIX 216)
 *   ..  ..  TLVs: u8 type, u16 length, value
 *
 * Encoding is split so a forwarded datagram costs one copy and a few integer writes:
 *   const prefix = createPpv2Prefix('DGRAM', client, directorAddr); // once per (client transport, director address)
 *   const owner = ppv2OwnerBytes(nodeId);                           // once per owner
 *   const out = Buffer.allocUnsafe(ppv2HeaderLength(prefix, owner) + payload.length);
 *   const n = writePpv2(out, prefix, sessionId, version, owner, flags, seq); // copies prefix, writes the TLVs
 *   out.set(payload, n);                                            // (or send [out, payload] as a list)
 * The encoder always writes the five Anchor TLVs, in the order E0 E1 E2 E3 E4.
 */

export const PP2_FLAG = { UNBOUND_SOURCE: 1, REPLAYED: 2 } as const;
export type Pp2Flag = (typeof PP2_FLAG)[keyof typeof PP2_FLAG];
export const PP2_TLV = { SESSION_ID: 0xe0, VERSION: 0xe1, OWNER: 0xe2, FLAGS: 0xe3, SEQ: 0xe4 } as const;
export type Pp2TlvType = (typeof PP2_TLV)[keyof typeof PP2_TLV];

export const PP2_FIXED_LEN = 16; // signature + ver/cmd + fam + length
export const PP2_OWNER_MAX_LEN = 64;
/** Bytes of the five Anchor TLVs not counting the owner id's own bytes: 5 TLV heads + 16 + 8 + 1 + 8. */
export const PP2_ANCHOR_TLVS_FIXED_LEN = 5 * 3 + 16 + 8 + 1 + 8;

const SIGNATURE: readonly number[] = [0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a];
const SIG_LEN = SIGNATURE.length;
const VER_CMD_LOCAL = 0x20;
const VER_CMD_PROXY = 0x21;
const FAMILY_ADDR_LEN: readonly number[] = [0, 12, 36, 216]; // UNSPEC, INET, INET6, UNIX
const TRANSPORTS = ['UNSPEC', 'STREAM', 'DGRAM'] as const;
const SESSION_ID_LEN = 16;

export type Ppv2Transport = 'DGRAM' | 'STREAM';

export interface Ppv2Fields {
  readonly transport: Ppv2Transport;
  readonly src: Transport;
  readonly dst: Transport;
  readonly sessionId: Uint8Array;
  readonly version: bigint;
  readonly owner: string;
  readonly flags: number;
  readonly seq: number | bigint;
}

export interface Ppv2Header {
  readonly command: 'PROXY' | 'LOCAL';
  readonly transport: 'DGRAM' | 'STREAM' | 'UNSPEC';
  /** Present for PROXY over INET / INET6 (canonical address text, see bytesToIp). */
  readonly src?: Transport;
  readonly dst?: Transport;
  /** 16 + the length field: the payload starts here. */
  readonly headerLength: number;
  /** View into the input (no copy). */
  readonly sessionId?: Uint8Array;
  readonly version?: bigint;
  readonly owner?: string;
  readonly flags?: number;
  readonly seq?: bigint;
  /** Every TLV in wire order (Anchor's and unknown ones); values are views into the input. */
  readonly tlvs: readonly { readonly type: number; readonly value: Uint8Array }[];
}

// ---------------------------------------------------------------------------------------------- encoder

function addressBytes(t: Transport): Uint8Array {
  const b = ipToBytes(t.address);
  if (b === undefined) throw new RangeError(`not an IP address: ${t.address}`);
  if (!Number.isInteger(t.port) || t.port < 0 || t.port > 0xffff) throw new RangeError(`bad port: ${t.port}`);
  return b;
}

/**
 * The constant part of a header for one (client transport, director address) pair: signature, PROXY
 * command, family/transport, a length placeholder (writePpv2 fills it) and the address block.
 * `src` is the client transport, `dst` the director address the packet arrived on. PROXY v2 has one
 * family for both: when one is IPv4 and the other IPv6 (e.g. a dual-stack socket), the IPv4 one is
 * written as IPv4-mapped IPv6 (::ffff:a.b.c.d) and the header is INET6. Throws on a non-IP address.
 */
export function createPpv2Prefix(transport: Ppv2Transport, src: Transport, dst: Transport): Buffer {
  let s = addressBytes(src);
  let d = addressBytes(dst);
  if (s.length !== d.length) {
    s = ipv4MappedBytes(s);
    d = ipv4MappedBytes(d);
  }
  const inet6 = s.length === 16;
  const out = Buffer.alloc(PP2_FIXED_LEN + (inet6 ? 36 : 12));
  out.set(SIGNATURE, 0);
  out[12] = VER_CMD_PROXY;
  out[13] = ((inet6 ? 2 : 1) << 4) | (transport === 'STREAM' ? 1 : 2);
  let at = PP2_FIXED_LEN;
  out.set(s, at);
  out.set(d, (at += s.length));
  at = out.writeUInt16BE(src.port, at + d.length);
  out.writeUInt16BE(dst.port, at);
  return out;
}

/** The owner node id as the 0xE2 value; throws when it is longer than 64 UTF-8 bytes. */
export function ppv2OwnerBytes(owner: string): Buffer {
  const b = Buffer.from(owner, 'utf8');
  if (b.length > PP2_OWNER_MAX_LEN) throw new RangeError(`owner id longer than ${PP2_OWNER_MAX_LEN} bytes`);
  return b;
}

/** Total header length writePpv2 produces for this prefix and owner. */
export function ppv2HeaderLength(prefix: Uint8Array, ownerBytes: Uint8Array): number {
  return prefix.length + PP2_ANCHOR_TLVS_FIXED_LEN + ownerBytes.length;
}

function writeTlvHead(out: Buffer, at: number, type: number, len: number): number {
  out[at] = type;
  return out.writeUInt16BE(len, at + 1);
}

/**
 * Hot path: writes a complete header at `offset` of `out` — the prefix, its length field and the
 * five Anchor TLVs — and returns the header length. `seq` may be a number (a non-negative safe integer,
 * written without allocating a bigint) or a bigint. Throws on misuse (short `out`, bad lengths, values
 * out of range), never on wire bytes (there are none here).
 */
export function writePpv2(
  out: Buffer,
  prefix: Uint8Array,
  sessionId: Uint8Array,
  version: bigint,
  ownerBytes: Uint8Array,
  flags: number,
  seq: number | bigint,
  offset = 0,
): number {
  const len = ppv2HeaderLength(prefix, ownerBytes);
  if (offset < 0 || offset + len > out.length) throw new RangeError('PROXY v2 header does not fit');
  if (sessionId.length !== SESSION_ID_LEN) throw new RangeError('session id must be 16 bytes');
  if (ownerBytes.length > PP2_OWNER_MAX_LEN) throw new RangeError('owner id longer than 64 bytes');
  out.set(prefix, offset);
  out.writeUInt16BE(len - PP2_FIXED_LEN, offset + 14);
  let at = writeTlvHead(out, offset + prefix.length, PP2_TLV.SESSION_ID, SESSION_ID_LEN);
  out.set(sessionId, at);
  at = writeTlvHead(out, at + SESSION_ID_LEN, PP2_TLV.VERSION, 8);
  at = out.writeBigUInt64BE(version, at);
  at = writeTlvHead(out, at, PP2_TLV.OWNER, ownerBytes.length);
  out.set(ownerBytes, at);
  at = writeTlvHead(out, at + ownerBytes.length, PP2_TLV.FLAGS, 1);
  at = out.writeUInt8(flags, at);
  at = writeTlvHead(out, at, PP2_TLV.SEQ, 8);
  if (typeof seq === 'bigint') {
    out.writeBigUInt64BE(seq, at);
  } else {
    if (!Number.isSafeInteger(seq) || seq < 0) throw new RangeError(`bad seq: ${seq}`);
    out.writeUInt32BE(Math.floor(seq / 0x1_0000_0000), at);
    out.writeUInt32BE(seq >>> 0, at + 4);
  }
  return len;
}

/**
 * A whole header for one session, owner and version, with flags 0 and sequence number 0: built once
 * (writePpv2), then copied and completed per datagram by `stampPpv2`, which only writes the last two TLVs'
 * values. Throws on misuse, as writePpv2.
 */
export function createPpv2Template(prefix: Uint8Array, sessionId: Uint8Array, version: bigint, ownerBytes: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(ppv2HeaderLength(prefix, ownerBytes));
  writePpv2(out, prefix, sessionId, version, ownerBytes, 0, 0);
  return out;
}

/** Bytes from a header's end back to its flags value (E3 value, E4 head, E4 value): 1 + 3 + 8. */
const STAMP_FLAGS_FROM_END = 12;

/**
 * Per datagram: copies `template` (createPpv2Template) into `out` at `at` and writes `flags` (a byte) and
 * `seq` (a non-negative safe integer; the caller's counter) into its last two TLVs; returns the header
 * length. No checks beyond the template's, no bigint: the per-datagram cost is one copy and nine stores.
 */
export function stampPpv2(out: Uint8Array, template: Uint8Array, flags: number, seq: number, at = 0): number {
  const len = template.length;
  const n = at + len;
  out.set(template, at);
  out[n - STAMP_FLAGS_FROM_END] = flags;
  const hi = Math.floor(seq / 0x1_0000_0000);
  out[n - 8] = hi >>> 24;
  out[n - 7] = hi >>> 16;
  out[n - 6] = hi >>> 8;
  out[n - 5] = hi;
  out[n - 4] = seq >>> 24;
  out[n - 3] = seq >>> 16;
  out[n - 2] = seq >>> 8;
  out[n - 1] = seq;
  return len;
}

/** Convenience (not the hot path): a whole header from its fields. */
export function encodePpv2(f: Ppv2Fields): Buffer {
  const prefix = createPpv2Prefix(f.transport, f.src, f.dst);
  const owner = ppv2OwnerBytes(f.owner);
  const out = Buffer.allocUnsafe(ppv2HeaderLength(prefix, owner));
  writePpv2(out, prefix, f.sessionId, f.version, owner, f.flags, f.seq);
  return out;
}

// ---------------------------------------------------------------------------------------------- decoder

function signatureMismatch(buf: Uint8Array): boolean {
  for (let i = 0; i < SIG_LEN && i < buf.length; i++) if (buf[i] !== SIGNATURE[i]) return true;
  return false;
}

/**
 * For a stream reader: how many bytes the whole header needs. 'not-mine' when the bytes so far differ
 * from the signature; 16 while fewer than 16 bytes are present (and match); then 16 + the length field.
 * It does not validate the header: decode once this many bytes are buffered.
 */
export function ppv2NeedBytes(buf: Uint8Array): number | 'not-mine' {
  if (signatureMismatch(buf)) return 'not-mine';
  if (buf.length < PP2_FIXED_LEN) return PP2_FIXED_LEN;
  return PP2_FIXED_LEN + (((buf[14] ?? 0) << 8) | (buf[15] ?? 0));
}

const NOT_MINE: Decoded<never> = Object.freeze({ kind: 'not-mine' });
const malformed = (reason: MalformedReason): Decoded<never> => ({ kind: 'malformed', reason });
// Stateless in non-streaming use, so sharing one instance is safe. ignoreBOM keeps a leading U+FEFF.
const UTF8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** The text of a UTF-8 value, undefined if invalid (the decoder's own error is caught, never escapes). */
function utf8(b: Uint8Array): string | undefined {
  try {
    return UTF8.decode(b);
  } catch {
    return undefined;
  }
}

function readU64(b: Uint8Array, at: number): bigint {
  return new DataView(b.buffer, b.byteOffset, b.byteLength).getBigUint64(at, false);
}

/** The i-th (0 src, 1 dst) transport of the address block at `at` with `ipLen`-byte addresses. */
function readTransport(buf: Uint8Array, at: number, ipLen: number, i: number): Transport {
  const portAt = at + 2 * ipLen + 2 * i;
  const address = bytesToIp(buf.subarray(at + i * ipLen, at + (i + 1) * ipLen));
  return { family: ipLen === 4 ? 4 : 6, address, port: ((buf[portAt] ?? 0) << 8) | (buf[portAt + 1] ?? 0) };
}

/**
 * Decodes a PROXY v2 header at the start of `buf` (the payload follows at `headerLength`).
 * not-mine: the bytes present differ from the signature. truncated: fewer than 16 bytes, or than
 * 16 + length (version/command/family are checked as soon as their bytes are present, so a bad header
 * fails early). bad_header: version != 2, command not LOCAL/PROXY, unknown family or transport, or an
 * address block longer than the length field. bad_tlv: a TLV overrunning the header, a wrong length for
 * E0 (16), E1 (8), E3 (1) or E4 (8), an E2 longer than 64 bytes or not UTF-8, or an Anchor TLV twice.
 * Unknown TLVs are kept in `tlvs` and otherwise ignored. Addresses are reported for PROXY only (the
 * spec says a receiver ignores them for LOCAL).
 */
export function decodePpv2(buf: Uint8Array): Decoded<Ppv2Header> {
  if (signatureMismatch(buf)) return NOT_MINE;
  const verCmd = buf[12];
  if (verCmd !== undefined && verCmd !== VER_CMD_PROXY && verCmd !== VER_CMD_LOCAL) {
    return malformed(MalformedReason.BAD_HEADER);
  }
  const fam = buf[13];
  const addrFamily = fam === undefined ? 0 : fam >>> 4;
  const transport = TRANSPORTS[fam === undefined ? 0 : fam & 0x0f];
  const addrLen = FAMILY_ADDR_LEN[addrFamily];
  if (addrLen === undefined || transport === undefined) return malformed(MalformedReason.BAD_HEADER);
  if (buf.length < PP2_FIXED_LEN) return malformed(MalformedReason.TRUNCATED);
  const headerLength = PP2_FIXED_LEN + (((buf[14] ?? 0) << 8) | (buf[15] ?? 0));
  if (buf.length < headerLength) return malformed(MalformedReason.TRUNCATED);
  if (PP2_FIXED_LEN + addrLen > headerLength) return malformed(MalformedReason.BAD_HEADER);
  const command = verCmd === VER_CMD_PROXY ? 'PROXY' : 'LOCAL';

  let src: Transport | undefined;
  let dst: Transport | undefined;
  if (command === 'PROXY' && (addrFamily === 1 || addrFamily === 2)) {
    src = readTransport(buf, PP2_FIXED_LEN, addrFamily === 1 ? 4 : 16, 0);
    dst = readTransport(buf, PP2_FIXED_LEN, addrFamily === 1 ? 4 : 16, 1);
  }

  let sessionId: Uint8Array | undefined;
  let version: bigint | undefined;
  let owner: string | undefined;
  let flags: number | undefined;
  let seq: bigint | undefined;
  const tlvs: { type: number; value: Uint8Array }[] = [];
  let at = PP2_FIXED_LEN + addrLen;
  while (at < headerLength) {
    if (headerLength - at < 3) return malformed(MalformedReason.BAD_TLV);
    const type = buf[at] ?? 0;
    const len = ((buf[at + 1] ?? 0) << 8) | (buf[at + 2] ?? 0);
    const end = at + 3 + len;
    if (end > headerLength) return malformed(MalformedReason.BAD_TLV);
    const value = buf.subarray(at + 3, end);
    switch (type) {
      case PP2_TLV.SESSION_ID:
        if (len !== SESSION_ID_LEN || sessionId !== undefined) return malformed(MalformedReason.BAD_TLV);
        sessionId = value;
        break;
      case PP2_TLV.VERSION:
        if (len !== 8 || version !== undefined) return malformed(MalformedReason.BAD_TLV);
        version = readU64(value, 0);
        break;
      case PP2_TLV.OWNER:
        if (len > PP2_OWNER_MAX_LEN || owner !== undefined) return malformed(MalformedReason.BAD_TLV);
        owner = utf8(value);
        if (owner === undefined) return malformed(MalformedReason.BAD_TLV);
        break;
      case PP2_TLV.FLAGS:
        if (len !== 1 || flags !== undefined) return malformed(MalformedReason.BAD_TLV);
        flags = value[0];
        break;
      case PP2_TLV.SEQ:
        if (len !== 8 || seq !== undefined) return malformed(MalformedReason.BAD_TLV);
        seq = readU64(value, 0);
        break;
    }
    tlvs.push({ type, value });
    at = end;
  }
  // Absent fields are present-but-undefined (one object shape for every header).
  return {
    kind: 'ok',
    value: { command, transport, src, dst, headerLength, sessionId, version, owner, flags, seq, tlvs },
  };
}
