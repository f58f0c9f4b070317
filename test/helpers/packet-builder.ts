// Test helper: a fluent byte builder for JV1 packets and PROXY v2 headers, valid or deliberately broken,
// for fixture tables. Independent of src/codec (it writes bytes by hand) so tests do not grade themselves.
import { Buffer } from 'node:buffer';
import ipaddr from 'ipaddr.js';

export const PP2_SIGNATURE = Object.freeze([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);

/** A 16-byte session id: `sid(7)` is 07 07 … 07; `sid([1, 2])` is 01 02 00 … 00. */
export function sid(fill: number | readonly number[]): Uint8Array {
  const id = new Uint8Array(16);
  if (typeof fill === 'number') id.fill(fill);
  else id.set(fill);
  return id;
}

/** Bytes from hex text; spaces, newlines and '|' separators are ignored. */
export function hex(s: string): Buffer {
  return Buffer.from(s.replace(/[\s|]/g, ''), 'hex');
}

export interface Jv1HeaderOptions {
  readonly magic?: number;
  readonly version?: number;
}

export interface Ppv2HeaderOptions {
  readonly signature?: readonly number[];
  /** Default 0x21 (v2, PROXY). */
  readonly verCmd?: number;
  /** Default 0x12 (INET, DGRAM). */
  readonly fam?: number;
  /** Default: filled in by build() with the number of bytes written after the 16-byte head. */
  readonly len?: number;
}

export class PacketBuilder {
  private readonly out: number[] = [];
  private lenField: { at: number; fixed: number | undefined } | undefined;

  /** Raw bytes. */
  bytes(b: Uint8Array | readonly number[]): this {
    for (const x of b) this.out.push(x & 0xff);
    return this;
  }
  u8(...values: number[]): this {
    return this.bytes(values);
  }
  u16(v: number): this {
    return this.u8(v >>> 8, v);
  }
  u32(v: number): this {
    return this.u8(v >>> 24, v >>> 16, v >>> 8, v);
  }
  u64(v: bigint): this {
    for (let shift = 56n; shift >= 0n; shift -= 8n) this.out.push(Number((v >> shift) & 0xffn));
    return this;
  }
  hex(s: string): this {
    return this.bytes(hex(s));
  }
  utf8(s: string): this {
    return this.bytes(Buffer.from(s, 'utf8'));
  }
  zeros(n: number): this {
    return this.bytes(new Uint8Array(n));
  }
  /** The 4 or 16 bytes of an IP literal. */
  ip(address: string): this {
    return this.bytes(ipaddr.parse(address).toByteArray());
  }

  // ------------------------------------------------------------------------------------------ JV1
  /** "JV", version 1, type, session id (each overridable to build broken headers). */
  jv1(type: number, sessionId: Uint8Array = sid(0xab), opts: Jv1HeaderOptions = {}): this {
    return this.u16(opts.magic ?? 0x4a56)
      .u8(opts.version ?? 1, type)
      .bytes(sessionId);
  }
  /** BIND payload: u64 version, u8 family, address, u16 port (family defaults to the address's). */
  bindPayload(version: bigint, address: string, port: number, family?: number): this {
    const a = ipaddr.parse(address).toByteArray();
    return this.u64(version)
      .u8(family ?? (a.length === 4 ? 4 : 6))
      .bytes(a)
      .u16(port);
  }

  // ------------------------------------------------------------------------------------- PROXY v2
  /** Signature, ver/cmd, fam and a length field (auto-filled by build() unless `len` is given). */
  ppv2(opts: Ppv2HeaderOptions = {}): this {
    this.bytes(opts.signature ?? PP2_SIGNATURE).u8(opts.verCmd ?? 0x21, opts.fam ?? 0x12);
    this.lenField = { at: this.out.length, fixed: opts.len };
    return this.u16(0);
  }
  /** Address block: src addr, dst addr, src port, dst port. */
  addresses(src: string, srcPort: number, dst: string, dstPort: number): this {
    return this.ip(src).ip(dst).u16(srcPort).u16(dstPort);
  }
  /** One TLV; `len` overrides the length field (for overrunning / lying TLVs). */
  tlv(type: number, value: Uint8Array | readonly number[] | string, len?: number): this {
    const v = typeof value === 'string' ? Buffer.from(value, 'utf8') : value;
    return this.u8(type)
      .u16(len ?? v.length)
      .bytes(v);
  }
  /** The five Anchor TLVs in encoder order. */
  anchorTlvs(f: { sessionId: Uint8Array; version: bigint; owner: string; flags: number; seq: bigint }): this {
    this.tlv(0xe0, f.sessionId).u8(0xe1).u16(8).u64(f.version).tlv(0xe2, f.owner).tlv(0xe3, [f.flags]);
    return this.u8(0xe4).u16(8).u64(f.seq);
  }
  /** Ends the PROXY v2 header here: the auto length stops counting (payload bytes may follow). */
  endPpv2(): this {
    if (this.lenField !== undefined && this.lenField.fixed === undefined) {
      this.lenField = { at: this.lenField.at, fixed: this.out.length - this.lenField.at - 2 };
    }
    return this;
  }

  /** The bytes built so far (a new Buffer). */
  build(): Buffer {
    const b = Buffer.from(this.out);
    if (this.lenField !== undefined) {
      const len = this.lenField.fixed ?? this.out.length - this.lenField.at - 2;
      b[this.lenField.at] = (len >>> 8) & 0xff;
      b[this.lenField.at + 1] = len & 0xff;
    }
    return b;
  }
  /** The first `n` bytes (a truncated packet). */
  cut(n: number): Buffer {
    return this.build().subarray(0, n);
  }
}

/** Shorthand: `pb().jv1(…).build()`. */
export const pb = (): PacketBuilder => new PacketBuilder();
