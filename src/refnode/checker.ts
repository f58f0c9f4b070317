// The history checker: proves invariants 1 (one owner) and 2 (monotonic version) from what the reference
// nodes recorded. Pure: no I/O, no clock; it reads record lines and returns violations as values.
// (readRecords in ./records.ts reads the files.)
//
// Per session, over deliveries only — records with accepted=true that are not REVOKE (type 4); fenced,
// stale, forged and misaddressed drops are the node refusing a packet, not a delivery:
//   fence   a node never accepts a packet whose version is below a REVOKE(V) it acknowledged earlier
//           (its REVOKE record comes first in that node's arrival order);
//   owner   ordered by (version, seq), each version's packets went to exactly one node: a node's packets
//           form one contiguous run per ownership, so A…B…A at one version (or two nodes sharing a
//           version) is dual delivery. A…B…A across versions (v1 on A, v2 on B, v3 on A) is a session
//           that came back to A at a higher version (DESIGN §4), which is allowed;
//   seq     a sequence number is delivered once (on two nodes: dual delivery; twice on one: a duplicate);
//   order   the higher the seq, the higher or equal the version (versions never go back as seq advances);
//   monotone within each node, in arrival (file) order, versions never go back, and at one version a
//           datagram's seq never goes back (TCP connections, numbered before they connect, left out).
// Sequence numbers are one counter per session per director (DESIGN §3), so seq, order and monotone are
// checked per PROXY destination (`dst`, the director address the packet arrived on); with one director
// that is per session. Records without version/seq (encapsulation `none`) carry nothing to order by and
// are skipped, with a note in the result (wall-clock times across processes prove nothing).
// A TCP connection is recorded once, when it opens (proto 'tcp'), and is checked exactly like a packet:
// the director gives it a version and a sequence number from the same per-session counter.
import { PacketType } from '../codec/types.js';

/** Why a node dropped a packet it received (records with accepted=false). */
export const RecordDrop = {
  /** The version is below a REVOKE(V) this node acknowledged. */
  FENCED: 'fenced',
  /** A jump candidate (UNBOUND_SOURCE) without a valid MAC. */
  FORGED: 'forged',
  /** The version is below the one at which this node started owning the session. */
  STALE: 'stale',
  /** A REVOKE without a PROXY v2 header naming this node as owner (0xE2): not acknowledged. */
  MISADDRESSED: 'misaddressed',
} as const;
export type RecordDrop = (typeof RecordDrop)[keyof typeof RecordDrop];

/** One JSON line of a reference node's record file: one received packet, or one TCP connection at its start. */
export interface RecordLine {
  readonly node: string;
  /** 32 lowercase hex characters. */
  readonly session: string;
  /** Decimal string (u64) from PROXY v2 TLV 0xE1; null when the packet came without a PROXY v2 header. */
  readonly version: string | null;
  /** Decimal string (u64) from TLV 0xE4; null likewise. */
  readonly seq: string | null;
  /** TLV 0xE3 (bit0 UNBOUND_SOURCE, bit1 REPLAYED); 0 when absent. */
  readonly flags: number;
  /** The JV1 type (1 HELLO, 2 DATA, 3 CLOSE, 4 REVOKE); for TCP the type of the header opening the stream. */
  readonly type: number;
  /** Wall-clock milliseconds. */
  readonly t: number;
  /** Whether the node took the packet (a delivery). Absent in records of older nodes: read as true. */
  readonly accepted?: boolean;
  readonly drop?: RecordDrop;
  /** REVOKE records: V, the version at which the session left the node (decimal). */
  readonly revoke?: string;
  /** The PROXY v2 destination ("ip:port" / "[ip6]:port"); null or absent for bare JV1. */
  readonly dst?: string | null;
  /** 'tcp' for a TCP connection (its opening preamble); absent (or 'udp') for a datagram. */
  readonly proto?: 'udp' | 'tcp';
}

/**
 * Whether a parsed JSON value has a record line's shape (node, session, type, t; version and seq strings
 * or null; proto, when present, 'udp' or 'tcp'). Other JSON lines (e.g. an audit log beside the records)
 * are not records.
 */
export function isRecordLine(x: unknown): x is RecordLine {
  if (typeof x !== 'object' || x === null) return false;
  const r = x as Record<string, unknown>;
  const bigOrNull = (v: unknown): boolean => v === null || (typeof v === 'string' && /^\d+$/.test(v));
  return (
    typeof r.node === 'string' &&
    typeof r.session === 'string' &&
    typeof r.type === 'number' &&
    typeof r.t === 'number' &&
    bigOrNull(r.version) &&
    bigOrNull(r.seq) &&
    (r.proto === undefined || r.proto === 'udp' || r.proto === 'tcp')
  );
}

export interface Violation {
  readonly session: string;
  readonly problem: string;
}

export interface CheckResult {
  readonly ok: boolean;
  /** Distinct sessions in the records. */
  readonly sessions: number;
  /** Deliveries checked (accepted, not REVOKE, with version and seq). */
  readonly packets: number;
  readonly violations: Violation[];
  /** What was not checked, and why (unversioned records, violations past the per-session cap). */
  readonly notes: string[];
}

/** At most this many violations are listed per session (the rest are counted in a note). */
export const MAX_VIOLATIONS_PER_SESSION = 10;

interface Delivery {
  readonly node: string;
  readonly dst: string;
  readonly version: bigint;
  readonly seq: bigint;
  /** A TCP connection (its preamble): numbered before its connect, so it may arrive after later datagrams. */
  readonly tcp: boolean;
}

function cmp(a: bigint, b: bigint): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function toBig(s: string | null | undefined): bigint | undefined {
  if (s === null || s === undefined || !/^\d+$/.test(s)) return undefined;
  return BigInt(s);
}

/** Checks every session in `lines` (records of all nodes, each node's own lines in arrival order). */
export function checkRecords(lines: readonly RecordLine[]): CheckResult {
  const bySession = new Map<string, RecordLine[]>();
  for (const l of lines) {
    let a = bySession.get(l.session);
    if (a === undefined) bySession.set(l.session, (a = []));
    a.push(l);
  }
  const violations: Violation[] = [];
  const notes: string[] = [];
  let packets = 0;
  for (const [session, recs] of bySession) {
    const found: string[] = [];
    packets += checkSession(recs, found, notes, session);
    for (const problem of found.slice(0, MAX_VIOLATIONS_PER_SESSION)) violations.push({ session, problem });
    if (found.length > MAX_VIOLATIONS_PER_SESSION) {
      notes.push(`session ${session}: ${found.length - MAX_VIOLATIONS_PER_SESSION} more violations not listed`);
    }
  }
  return { ok: violations.length === 0, sessions: bySession.size, packets, violations, notes };
}

/** Appends the problems of one session to `out`; returns the number of deliveries checked. */
function checkSession(recs: readonly RecordLine[], out: string[], notes: string[], session: string): number {
  const deliveries: Delivery[] = [];
  const fence = new Map<string, bigint>(); // node → highest REVOKE(V) it acknowledged so far
  let unversioned = 0;
  for (const r of recs) {
    if (r.accepted === false) continue;
    if (r.type === PacketType.REVOKE) {
      const v = toBig(r.revoke ?? r.version);
      const prev = fence.get(r.node);
      if (v !== undefined && (prev === undefined || v > prev)) fence.set(r.node, v);
      continue;
    }
    const version = toBig(r.version);
    const seq = toBig(r.seq);
    if (version === undefined || seq === undefined) {
      unversioned++;
      continue;
    }
    const below = fence.get(r.node);
    if (below !== undefined && version < below) {
      out.push(`fence: ${r.node} accepted version ${version} (seq ${seq}) after acknowledging REVOKE(${below})`);
    }
    deliveries.push({ node: r.node, dst: r.dst ?? '', version, seq, tcp: r.proto === 'tcp' });
  }
  if (unversioned > 0) {
    notes.push(`session ${session}: ${unversioned} deliveries without version/seq (encapsulation none) not checked`);
  }

  // owner: each version on exactly one node.
  const sorted = [...deliveries].sort((a, b) => cmp(a.version, b.version) || cmp(a.seq, b.seq));
  for (let i = 0; i < sorted.length; ) {
    const v = (sorted[i] as Delivery).version;
    const nodes: string[] = [];
    for (; i < sorted.length && (sorted[i] as Delivery).version === v; i++) {
      const n = (sorted[i] as Delivery).node;
      if (!nodes.includes(n)) nodes.push(n);
    }
    if (nodes.length > 1) out.push(`owner: version ${v} delivered to ${nodes.join(' and ')}`);
  }

  // seq and order, per director (PROXY destination).
  const byDst = new Map<string, Delivery[]>();
  for (const d of deliveries) {
    let a = byDst.get(d.dst);
    if (a === undefined) byDst.set(d.dst, (a = []));
    a.push(d);
  }
  for (const ds of byDst.values()) {
    const bySeq = [...ds].sort((a, b) => cmp(a.seq, b.seq));
    let maxVersion: Delivery | undefined;
    for (let i = 0; i < bySeq.length; i++) {
      const d = bySeq[i] as Delivery;
      const prev = bySeq[i - 1];
      if (prev !== undefined && prev.seq === d.seq) {
        out.push(
          prev.node === d.node
            ? `seq: seq ${d.seq} delivered twice to ${d.node}`
            : `seq: seq ${d.seq} delivered to both ${prev.node} and ${d.node}`,
        );
        continue;
      }
      if (maxVersion !== undefined && d.version < maxVersion.version) {
        out.push(
          `order: seq ${d.seq} on ${d.node} has version ${d.version}, below version ${maxVersion.version} of seq ${maxVersion.seq} on ${maxVersion.node}`,
        );
      }
      if (maxVersion === undefined || d.version > maxVersion.version) maxVersion = d;
    }
  }

  // monotone: per node (and director), in arrival order, versions never go back, and within a version
  // the datagrams' seq only rises (a director's counter never goes back; loopback and one socket per node
  // keep the order it sent in). A TCP connection takes its seq before it connects: left out of the seq test.
  const last = new Map<string, Delivery>();
  const lastDatagram = new Map<string, Delivery>();
  for (const d of deliveries) {
    const key = `${d.node}\u0000${d.dst}`;
    const prev = last.get(key);
    if (prev !== undefined && d.version < prev.version) {
      out.push(`monotone: ${d.node} received version ${d.version} (seq ${d.seq}) after version ${prev.version} (seq ${prev.seq})`);
      continue; // keep the highest as the reference
    }
    last.set(key, d);
    if (d.tcp) continue;
    const p = lastDatagram.get(key);
    if (p !== undefined && d.version === p.version && d.seq < p.seq) {
      out.push(`monotone: ${d.node} received seq ${d.seq} after seq ${p.seq}, both at version ${d.version}`);
      continue;
    }
    lastDatagram.set(key, d);
  }
  return deliveries.length;
}
