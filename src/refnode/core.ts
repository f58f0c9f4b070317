// The reference node's decisions (DESIGN §4 from the node's side): answer, echo, validate jump candidates
// and BIND them, honour REVOKE fences — for datagrams and for the preambles that open TCP streams, over
// one shared fencing state. Pure: no sockets, no clock, no logger; it returns the bytes to send back and
// whether the packet or stream was accepted. node.ts and tcp.ts are the shell.
import { decodeRevoke, encodeBind, encodeJv1, encodeRevoke } from '../codec/jv1.js';
import { PP2_FLAG } from '../codec/ppv2.js';
import { PacketType, type Transport } from '../codec/types.js';
import { RecordDrop } from './checker.js';
import { JUMP_MAC_LEN, sessionKey, verifyPacket } from './keys.js';

/** A DATA payload (the app bytes) starting with these bytes makes the node end the session with a CLOSE. */
export const CLOSE_ME = Buffer.from('!close');

/** What the PROXY v2 header said; absent for bare JV1 (encapsulation `none`). */
export interface NodeProxyInfo {
  readonly version?: bigint;
  readonly seq?: bigint;
  readonly flags: number;
  readonly owner?: string;
  /** The client transport (PROXY source). */
  readonly src?: Transport;
}

export interface NodeInput {
  readonly type: PacketType;
  readonly sessionId: Uint8Array;
  /** The whole JV1 packet (header ‖ payload): the MAC covers its header. */
  readonly packet: Uint8Array;
  readonly payload: Uint8Array;
  readonly proxy?: NodeProxyInfo;
}

export type NodeOutcome =
  | {
      readonly kind: 'accepted';
      /** Datagrams for the sender, in order (a BIND comes before the echo it precedes). */
      readonly replies: Buffer[];
      readonly bound: boolean;
      /** For REVOKE: V. */
      readonly revoke?: bigint;
      /** True when the packet had no effect (a CLOSE from an unbound source). */
      readonly ignored: boolean;
    }
  | { readonly kind: 'dropped'; readonly drop: RecordDrop }
  /** A type a node never receives (REJECT, BIND): not a session packet. */
  | { readonly kind: 'unexpected' };

/** The preamble that opens a TCP stream (after its PROXY v2 header, if any): a JV1 header, then for DATA its MAC. */
export interface StreamOpen {
  readonly type: PacketType;
  readonly sessionId: Uint8Array;
  /** The 20-byte JV1 header. */
  readonly header: Uint8Array;
  /** DATA: jumpMac(key, header, empty app bytes), the 16 bytes after the header. */
  readonly mac?: Uint8Array;
  readonly proxy?: NodeProxyInfo;
}

export type StreamOutcome =
  | {
      readonly kind: 'accepted';
      /** Bytes to write before the echo (HELLO: header ‖ key; a validated jump: its BIND). */
      readonly preface: Buffer[];
      readonly bound: boolean;
      /** True for CLOSE: the node ends the stream instead of echoing. */
      readonly end: boolean;
      /** True when the stream had no effect on the session (a CLOSE from an unbound source). */
      readonly ignored: boolean;
    }
  | { readonly kind: 'dropped'; readonly drop: RecordDrop }
  /** A type that never opens a stream (REVOKE, REJECT, BIND). */
  | { readonly kind: 'unexpected' };

/**
 * Bytes of the preamble after the JV1 header for a stream of this type: DATA carries its MAC (16);
 * HELLO and CLOSE nothing.
 */
export function streamPreambleExtra(type: PacketType): number {
  return type === PacketType.DATA ? JUMP_MAC_LEN : 0;
}

/**
 * Whether a REVOKE fence at `fence` cuts a stream opened at `version`: only versioned streams below it
 * (with encapsulation `none` there is no version, and no fencing).
 */
export function fencedBy(version: bigint | undefined, fence: bigint | undefined): boolean {
  return version !== undefined && fence !== undefined && version < fence;
}

export interface NodeCoreOptions {
  readonly id: string;
  /** The secret every reference node shares; session keys derive from it (keys.ts). */
  readonly secret: Uint8Array;
}

/**
 * Per-session state: live sessions, the version each one's ownership here began at, and REVOKE fences.
 * Fences are kept for the node's lifetime (a session may come back later); the rest is forgotten on
 * CLOSE and REVOKE. Memory grows with the sessions a node has seen revoked: fine for a reference node.
 */
export class NodeCore {
  readonly #id: string;
  readonly #secret: Uint8Array;
  readonly #live = new Set<string>();
  readonly #ownedSince = new Map<string, bigint>();
  readonly #revokedBelow = new Map<string, bigint>();

  constructor(opts: NodeCoreOptions) {
    this.#id = opts.id;
    this.#secret = opts.secret;
  }

  /** Sessions currently live on this node. */
  get sessions(): number {
    return this.#live.size;
  }

  /** The fence of a session (packets below it are dropped), if it was ever revoked here. */
  revokedBelow(sessionHex: string): bigint | undefined {
    return this.#revokedBelow.get(sessionHex);
  }

  /** The version at which this node began to own the session, while it is live here. */
  ownedSince(sessionHex: string): bigint | undefined {
    return this.#ownedSince.get(sessionHex);
  }

  /** `id` is the session id as hex (the caller has it already for its records). */
  handle(id: string, p: NodeInput): NodeOutcome {
    const pp = p.proxy;
    if (p.type === PacketType.REVOKE) return this.#revoke(id, p);
    if (p.type !== PacketType.HELLO && p.type !== PacketType.DATA && p.type !== PacketType.CLOSE) {
      return { kind: 'unexpected' };
    }
    const v = pp?.version;
    const refused = this.#refuse(id, v);
    if (refused !== undefined) return { kind: 'dropped', drop: refused };
    const unbound = pp !== undefined && (pp.flags & PP2_FLAG.UNBOUND_SOURCE) !== 0;
    const replies: Buffer[] = [];
    let bound = false;
    switch (p.type) {
      case PacketType.HELLO:
        // Answered even from an unbound source (a retransmission); never BINDs one.
        this.#accept(id, v);
        replies.push(encodeJv1(PacketType.HELLO, p.sessionId, sessionKey(this.#secret, p.sessionId)));
        break;
      case PacketType.DATA:
        if (unbound) {
          if (!verifyPacket(sessionKey(this.#secret, p.sessionId), p.packet)) return { kind: 'dropped', drop: RecordDrop.FORGED };
          if (v !== undefined && pp?.src !== undefined) {
            replies.push(encodeBind(p.sessionId, v, pp.src));
            bound = true;
          }
        }
        this.#accept(id, v);
        // The app bytes come first (the MAC follows them), so the prefix test reads the payload's start.
        if (p.payload.length >= CLOSE_ME.length && CLOSE_ME.equals(p.payload.subarray(0, CLOSE_ME.length))) {
          this.#forget(id);
          replies.push(encodeJv1(PacketType.CLOSE, p.sessionId));
        } else {
          replies.push(encodeJv1(PacketType.DATA, p.sessionId, p.payload));
        }
        break;
      case PacketType.CLOSE:
        // Only the bound transport may close: a CLOSE from an unbound source is delivered but ignored.
        if (unbound) return { kind: 'accepted', replies, bound, ignored: true };
        this.#forget(id);
        break;
    }
    return { kind: 'accepted', replies, bound, ignored: false };
  }

  /**
   * A TCP stream opens with this preamble: the same fences and ownership rules as a datagram. HELLO is
   * answered with header ‖ key; DATA from an unbound source must carry a valid MAC (over the header and
   * no app bytes) and is then BOUND to the PROXY source; bound DATA is echoed unchecked; CLOSE ends the
   * session (ignored from an unbound source) and the stream.
   */
  openStream(id: string, p: StreamOpen): StreamOutcome {
    if (p.type !== PacketType.HELLO && p.type !== PacketType.DATA && p.type !== PacketType.CLOSE) {
      return { kind: 'unexpected' };
    }
    const pp = p.proxy;
    const v = pp?.version;
    const refused = this.#refuse(id, v);
    if (refused !== undefined) return { kind: 'dropped', drop: refused };
    const unbound = pp !== undefined && (pp.flags & PP2_FLAG.UNBOUND_SOURCE) !== 0;
    const preface: Buffer[] = [];
    let bound = false;
    switch (p.type) {
      case PacketType.HELLO:
        this.#accept(id, v);
        preface.push(encodeJv1(PacketType.HELLO, p.sessionId, sessionKey(this.#secret, p.sessionId)));
        break;
      case PacketType.DATA:
        if (unbound) {
          const mac = p.mac ?? new Uint8Array(0);
          const sealed = Buffer.concat([p.header, mac]);
          if (mac.length !== JUMP_MAC_LEN || !verifyPacket(sessionKey(this.#secret, p.sessionId), sealed)) {
            return { kind: 'dropped', drop: RecordDrop.FORGED };
          }
          if (v !== undefined && pp?.src !== undefined) {
            preface.push(encodeBind(p.sessionId, v, pp.src));
            bound = true;
          }
        }
        this.#accept(id, v);
        break;
      case PacketType.CLOSE:
        if (unbound) return { kind: 'accepted', preface, bound, end: true, ignored: true };
        this.#forget(id);
        return { kind: 'accepted', preface, bound, end: true, ignored: false };
    }
    return { kind: 'accepted', preface, bound, end: false, ignored: false };
  }

  /** Why a packet or stream at version `v` is refused (a REVOKE fence, or older than this ownership). */
  #refuse(id: string, v: bigint | undefined): RecordDrop | undefined {
    if (v === undefined) return undefined;
    if (fencedBy(v, this.#revokedBelow.get(id))) return RecordDrop.FENCED;
    const since = this.#ownedSince.get(id);
    if (since !== undefined && v < since) return RecordDrop.STALE;
    return undefined;
  }

  #revoke(id: string, p: NodeInput): NodeOutcome {
    const v = decodeRevoke(p.payload);
    if (p.proxy === undefined || p.proxy.owner !== this.#id || v === undefined) {
      return { kind: 'dropped', drop: RecordDrop.MISADDRESSED };
    }
    const prev = this.#revokedBelow.get(id);
    if (prev === undefined || v > prev) this.#revokedBelow.set(id, v);
    this.#forget(id);
    // Acknowledged every time (the director retries until it hears back).
    return { kind: 'accepted', replies: [encodeRevoke(p.sessionId, v)], bound: false, revoke: v, ignored: false };
  }

  #accept(id: string, v: bigint | undefined): void {
    this.#live.add(id);
    if (v !== undefined && !this.#ownedSince.has(id)) this.#ownedSince.set(id, v);
  }

  #forget(id: string): void {
    this.#live.delete(id);
    this.#ownedSince.delete(id);
  }
}
