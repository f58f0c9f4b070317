// DirectorCore, the pure per-packet decision, with a manual clock: tables of
// {description, packets in order, expected outcome} for the client side and the node side, strict TTL,
// sweep, the rate limits, and properties over arbitrary bytes and random packet sequences.
import { beforeAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { CANDIDATE_TTL_MS, DirectorCore, type ClientOutcome, type CoreLimits, type NodeOutcome } from '../../src/director/core.js';
import { decodeJv1, encodeBind, encodeJv1, encodeReject, encodeRevoke, sessionIdHex } from '../../src/codec/jv1.js';
import { PacketType, RejectReason, type Transport } from '../../src/codec/types.js';
import { PP2_FLAG } from '../../src/codec/ppv2.js';
import { createHasher, type Hasher } from '../../src/ring/hash.js';
import { buildRing, type Ring } from '../../src/ring/ring.js';
import { pb, sid } from '../helpers/packet-builder.js';
import { createCodec } from '../../src/codec/codec.js';
import { TCP_LISTENER } from '../../src/director/outcomes.js';
import { LifecycleEvent, SessionState } from '../../src/session/lifecycle.js';
import { transportKey } from '../../src/codec/ip.js';

let hasher: Hasher;
let ring: Ring;
const NODES = [
  { id: 'node-a', weight: 1 },
  { id: 'node-b', weight: 1 },
  { id: 'node-c', weight: 1 },
];

beforeAll(async () => {
  hasher = await createHasher();
  ring = buildRing(hasher, NODES);
});

const LIMITS: CoreLimits = {
  sessionMax: 100,
  idleTtlMs: 1000,
  tombstoneMs: 5000,
  admissionRate: 1000,
  admissionBurst: 1000,
  rejectRate: 1000,
  rejectBurst: 1000,
  holdMax: 8,
};

// ------------------------------------------------------------------------------------------ helpers
const TRANSPORTS = {
  A: { family: 4, address: '198.51.100.7', port: 40000 },
  B: { family: 4, address: '203.0.113.9', port: 50000 },
  A2: { family: 4, address: '198.51.100.7', port: 40001 }, // same IP as A, other port
  C: { family: 6, address: '2001:db8::1', port: 443 },
} as const satisfies Record<string, Transport>;
type TName = keyof typeof TRANSPORTS;
const keyOf = (t: Transport): string => (t.family === 6 ? `[${t.address}]:${t.port}` : `${t.address}:${t.port}`);

const SID = sid(0x42);
const SID2 = sid(0x43);
const PAYLOAD = new Uint8Array([1, 2, 3, 4]); // 24-byte packets: big enough to be answered by a REJECT

const pkt = (type: PacketType, id: Uint8Array = SID, payload: Uint8Array = PAYLOAD): Buffer => encodeJv1(type, id, payload);
const hello = (id: Uint8Array = SID): Buffer => pkt(PacketType.HELLO, id);
const data = (id: Uint8Array = SID): Buffer => pkt(PacketType.DATA, id);
const close = (id: Uint8Array = SID): Buffer => pkt(PacketType.CLOSE, id);

/**
 * One client datagram. An admission is two-phase (the shell creates the session in the store, then
 * calls `admitted`); here the store always accepts, so an 'admit' outcome is completed at once and
 * reported as the forward of the HELLO carrying the admit transition.
 */
function client(core: DirectorCore, buf: Uint8Array, now: number, t: TName = 'A', listener = 0): ClientOutcome {
  const tr = TRANSPORTS[t];
  const out = core.onClient(Buffer.from(buf.buffer, buf.byteOffset, buf.length), tr, keyOf(tr), listener, now);
  if (out.kind !== 'admit') return out;
  const { note, forwards } = core.admitted(out.session, now);
  expect(forwards).toHaveLength(1);
  return { ...forwards[0]!, transition: note };
}

function otherNode(owner: string): string {
  const n = NODES.find((x) => x.id !== owner);
  if (n === undefined) throw new Error('no other node');
  return n.id;
}

// ------------------------------------------------------------------------------------- table cases
/** What we check of an outcome: only the fields named. */
interface Expect {
  kind: 'forward' | 'reject' | 'drop' | 'relay' | 'bind' | 'conflict' | 'revoke-ack';
  reason?: string | number;
  detail?: string;
  seq?: number;
  flags?: number;
  /** `null`: no transition; otherwise the event and versions. */
  transition?: { event: string; from: bigint | null; to: bigint } | null;
}

type Step =
  | { from: 'client'; buf: Uint8Array; t?: TName; at?: number; expect: Expect }
  | { from: 'node'; node: 'owner' | 'other'; buf: Uint8Array; at?: number; expect: Expect };

interface Case {
  description: string;
  limits?: Partial<CoreLimits>;
  steps: Step[];
  /** Checks after the last step. */
  after?: (core: DirectorCore) => void;
}

const c = (buf: Uint8Array, expect: Expect, t: TName = 'A', at?: number): Step => ({ from: 'client', buf, t, ...(at !== undefined ? { at } : {}), expect });
const n = (node: 'owner' | 'other', buf: Uint8Array, expect: Expect, at?: number): Step => ({ from: 'node', node, buf, ...(at !== undefined ? { at } : {}), expect });

const fwd = (seq: number, flags = 0, transition: Expect['transition'] = null): Expect => ({ kind: 'forward', seq, flags, transition });
const rej = (reason: RejectReason): Expect => ({ kind: 'reject', reason });
const drop = (reason: string, detail?: string): Expect => ({ kind: 'drop', reason, ...(detail !== undefined ? { detail } : {}) });
const relay = (transition: Expect['transition'] = null): Expect => ({ kind: 'relay', transition });
const ADMIT = { event: 'admit', from: null, to: 1n };

const live = (core: DirectorCore, id = SID) => core.table.get(sessionIdHex(id));

function checkOutcome(got: ClientOutcome | NodeOutcome, want: Expect, where: string): void {
  expect(got.kind, where).toBe(want.kind);
  if (want.reason !== undefined) expect('reason' in got ? got.reason : undefined, where).toBe(want.reason);
  if (want.detail !== undefined) expect('detail' in got ? got.detail : undefined, where).toBe(want.detail);
  if (got.kind === 'forward') {
    if (want.seq !== undefined) expect(got.seq, where).toBe(want.seq);
    if (want.flags !== undefined) expect(got.flags, where).toBe(want.flags);
  }

  if (want.transition !== undefined) {
    const t = 'transition' in got ? got.transition ?? null : null;
    if (want.transition === null) expect(t, where).toBeNull();
    else {
      expect(t, where).not.toBeNull();
      expect(t!.event, where).toBe(want.transition.event);
      expect(t!.fromVersion, where).toBe(want.transition.from);
      expect(t!.toVersion, where).toBe(want.transition.to);
    }
  }
}

function runCase(tc: Case, r: Ring = ring): DirectorCore {
  const core = new DirectorCore({ ...LIMITS, ...tc.limits }, r);
  const owner = r.pick(SID);
  tc.steps.forEach((s, i) => {
    const at = s.at ?? i; // one millisecond per step unless told
    const where = `step ${i} (${s.from})`;
    if (s.from === 'client') {
      checkOutcome(client(core, s.buf, at, s.t ?? 'A'), s.expect, where);
    } else {
      const nodeId = s.node === 'owner' ? owner! : otherNode(owner!);
      checkOutcome(core.onNode(nodeId, s.buf, at), s.expect, where);
    }
  });
  tc.after?.(core);
  return core;
}

const CLIENT_CASES: Case[] = [
  {
    description: 'HELLO admits at version 1, seq 1, owner = ring.pick',
    steps: [c(hello(), fwd(1, 0, ADMIT))],
    after: (core) => {
      const r = live(core)!;
      expect(r.version).toBe(1n);
      expect(r.state).toBe('ATTACHED');
      expect(r.owner).toBe(ring.pick(SID));
      expect(r.transportKey).toBe(keyOf(TRANSPORTS.A));
      expect(r.transport).toEqual(TRANSPORTS.A);
      expect(r.lastSeen).toBe(0);
      expect(r.expiresAt).toBe(1000);
      expect(r.idBytes).toEqual(SID);
    },
  },
  {
    description: 'DATA from the bound transport forwards with seq 2, 3, … and no transition',
    steps: [c(hello(), fwd(1, 0, ADMIT)), c(data(), fwd(2)), c(data(), fwd(3)), c(data(), fwd(4))],
    after: (core) => {
      expect(live(core)!.version).toBe(1n);
      expect(live(core)!.nextSeq).toBe(5);
    },
  },
  {
    description: 'HELLO retransmission from the bound transport forwards like DATA (no new admission)',
    steps: [c(hello(), fwd(1, 0, ADMIT)), c(hello(), fwd(2)), c(data(), fwd(3)), c(hello(), fwd(4))],
    after: (core) => {
      expect(core.table.size).toBe(1);
      expect(live(core)!.version).toBe(1n);
    },
  },
  {
    description: 'DATA for an unknown session → REJECT UNKNOWN_SESSION',
    steps: [c(data(), rej(RejectReason.UNKNOWN_SESSION))],
    after: (core) => expect(core.table.size).toBe(0),
  },
  {
    description: 'CLOSE for an unknown session → REJECT UNKNOWN_SESSION',
    steps: [c(close(), rej(RejectReason.UNKNOWN_SESSION))],
    after: (core) => expect(core.table.size).toBe(0),
  },
  {
    description: 'CLOSE from the bound transport forwards and ends the session (version 2, tombstone); then SESSION_TERMINATED',
    steps: [
      c(hello(), fwd(1, 0, ADMIT)),
      c(data(), fwd(2)),
      c(close(), fwd(3, 0, { event: 'close', from: 1n, to: 2n })),
      c(data(), rej(RejectReason.SESSION_TERMINATED)),
      c(hello(), rej(RejectReason.SESSION_TERMINATED)),
      c(close(), rej(RejectReason.SESSION_TERMINATED)),
      c(hello(), rej(RejectReason.SESSION_TERMINATED), 'B'),
    ],
    after: (core) => {
      expect(live(core)).toBeUndefined();
      expect(core.table.tombstoneUntil(sessionIdHex(SID), 10)).toBe(2 + 5000);
    },
  },
  {
    description: 'a packet from another transport of a live session forwards UNBOUND_SOURCE; nothing changes',
    steps: [
      c(hello(), fwd(1, 0, ADMIT), 'A'),
      c(data(), fwd(2, PP2_FLAG.UNBOUND_SOURCE), 'B'),
      c(hello(), fwd(3, PP2_FLAG.UNBOUND_SOURCE), 'A2'),
      c(data(), fwd(4, PP2_FLAG.UNBOUND_SOURCE), 'C'),
      c(data(), fwd(5, 0), 'A'),
    ],
    after: (core) => {
      const r = live(core)!;
      expect(r.transportKey).toBe(keyOf(TRANSPORTS.A));
      expect(r.transport).toEqual(TRANSPORTS.A);
      expect(r.version).toBe(1n);
    },
  },
  {
    description: 'a CLOSE from an unbound transport is forwarded flagged but does NOT end the session',
    steps: [
      c(hello(), fwd(1, 0, ADMIT), 'A'),
      c(close(), fwd(2, PP2_FLAG.UNBOUND_SOURCE, null), 'B'),
      c(data(), fwd(3, 0), 'A'),
      c(close(), fwd(4, 0, { event: 'close', from: 1n, to: 2n }), 'A'),
    ],
  },
  ...(
    [
      ['REVOKE', encodeRevoke(SID, 3n)],
      ['REJECT', encodeReject(SID, RejectReason.UNKNOWN_SESSION, 'x')!],
      ['BIND', encodeBind(SID, 1n, TRANSPORTS.B)],
    ] as const
  ).flatMap(([name, buf]): Case[] => [
    {
      description: `${name} from a client → drop client_forbidden_type (no session)`,
      steps: [c(buf, drop('client_forbidden_type'))],
      after: (core) => expect(core.table.size).toBe(0),
    },
    {
      description: `${name} from the bound transport of a live session → drop client_forbidden_type, seq untouched`,
      steps: [c(hello(), fwd(1, 0, ADMIT)), c(buf, drop('client_forbidden_type')), c(data(), fwd(2))],
    },
  ]),
  { description: 'empty datagram → drop not_jv1', steps: [c(new Uint8Array(0), drop('not_jv1'))] },
  { description: 'one byte → drop not_jv1', steps: [c(new Uint8Array([0x4a]), drop('not_jv1'))] },
  { description: 'another magic → drop not_jv1', steps: [c(pb().jv1(PacketType.HELLO, SID, { magic: 0x4a57 }).u32(0).build(), drop('not_jv1'))] },
  { description: 'truncated header → drop malformed truncated', steps: [c(pb().jv1(PacketType.HELLO, SID).cut(19), drop('malformed', 'truncated'))] },
  { description: 'bad version → drop malformed bad_version', steps: [c(pb().jv1(PacketType.HELLO, SID, { version: 2 }).u32(0).build(), drop('malformed', 'bad_version'))] },
  { description: 'bad type → drop malformed bad_type', steps: [c(pb().jv1(0x05, SID).u32(0).build(), drop('malformed', 'bad_type'))] },
  { description: 'zero session id → drop malformed zero_session_id', steps: [c(pb().jv1(PacketType.HELLO, sid(0)).u32(0).build(), drop('malformed', 'zero_session_id'))] },
  { description: 'REVOKE with a short payload → drop malformed bad_payload', steps: [c(pb().jv1(PacketType.REVOKE, SID).u8(1, 2, 3).build(), drop('malformed', 'bad_payload'))] },
  {
    description: 'malformed packets never touch a live session',
    steps: [c(hello(), fwd(1, 0, ADMIT)), c(pb().jv1(PacketType.DATA, SID, { version: 9 }).build(), drop('malformed', 'bad_version')), c(data(), fwd(2))],
  },
  {
    description: '20-byte DATA for an unknown session → drop reject_too_small (never a REJECT)',
    steps: [c(encodeJv1(PacketType.DATA, SID), drop('reject_too_small'))],
  },
  {
    description: '20-byte CLOSE for a terminated session → drop reject_too_small',
    steps: [c(hello(), fwd(1, 0, ADMIT)), c(close(), fwd(2, 0, { event: 'close', from: 1n, to: 2n })), c(encodeJv1(PacketType.CLOSE, SID), drop('reject_too_small'))],
  },
  {
    description: '21-byte DATA for an unknown session is big enough for a REJECT',
    steps: [c(encodeJv1(PacketType.DATA, SID, new Uint8Array([0])), rej(RejectReason.UNKNOWN_SESSION))],
  },
  {
    description: 'a 20-byte HELLO that is admitted needs no REJECT: forwarded',
    steps: [c(encodeJv1(PacketType.HELLO, SID), fwd(1, 0, ADMIT)), c(encodeJv1(PacketType.DATA, SID), fwd(2))],
  },
  {
    description: 'reject rate limit per source IP: burst of REJECTs, then drop reject_rate_limited (other ports of that IP too)',
    limits: { rejectBurst: 3, rejectRate: 1 },
    steps: [
      c(data(), rej(RejectReason.UNKNOWN_SESSION), 'A', 0),
      c(data(), rej(RejectReason.UNKNOWN_SESSION), 'A', 0),
      c(data(), rej(RejectReason.UNKNOWN_SESSION), 'A2', 0),
      c(data(), drop('reject_rate_limited'), 'A', 0),
      c(data(), drop('reject_rate_limited'), 'A2', 0),
      // Too-small packets get silence before the limiter and do not spend its tokens.
      c(encodeJv1(PacketType.DATA, SID), drop('reject_too_small'), 'A', 0),
      c(data(), rej(RejectReason.UNKNOWN_SESSION), 'B', 0),
      c(data(), drop('reject_rate_limited'), 'A', 999),
      c(data(), rej(RejectReason.UNKNOWN_SESSION), 'A', 1000),
      c(data(), drop('reject_rate_limited'), 'A', 1000),
    ],
  },
  {
    description: 'admission rate limit per source IP → REJECT RATE_LIMITED after the burst',
    limits: { admissionBurst: 2, admissionRate: 1 },
    steps: [
      c(hello(sid(1)), fwd(1, 0, ADMIT), 'A', 0),
      c(hello(sid(2)), fwd(1, 0, ADMIT), 'A2', 0),
      c(hello(sid(3)), rej(RejectReason.RATE_LIMITED), 'A', 0),
      c(hello(sid(3)), fwd(1, 0, ADMIT), 'B', 0),
      // Live sessions are not admissions: DATA and retransmitted HELLOs are not limited.
      c(hello(sid(1)), fwd(2), 'A', 0),
      c(data(sid(1)), fwd(3), 'A', 0),
      c(hello(sid(4)), fwd(1, 0, ADMIT), 'A', 1000),
    ],
    after: (core) => expect(core.table.size).toBe(4),
  },
  {
    description: 'table full → REJECT NO_CAPACITY; a slot freed by CLOSE admits again',
    limits: { sessionMax: 2 },
    steps: [
      c(hello(sid(1)), fwd(1, 0, ADMIT)),
      c(hello(sid(2)), fwd(1, 0, ADMIT)),
      c(hello(sid(3)), rej(RejectReason.NO_CAPACITY)),
      c(data(sid(1)), fwd(2)),
      c(close(sid(2)), fwd(2, 0, { event: 'close', from: 1n, to: 2n })),
      c(hello(sid(3)), fwd(1, 0, ADMIT)),
    ],
  },
];

describe('DirectorCore.onClient: packet tables', () => {
  it.each(CLIENT_CASES)('$description', (tc) => {
    runCase(tc);
  });

  it('empty ring → REJECT NO_HEALTHY_NODE; setRing keeps existing owners and admits again', () => {
    const empty = buildRing(hasher, []);
    const core = new DirectorCore(LIMITS, empty);
    checkOutcome(client(core, hello(), 0), rej(RejectReason.NO_HEALTHY_NODE), 'empty');
    expect(core.table.size).toBe(0);
    core.setRing(ring);
    expect(core.ring).toBe(ring);
    checkOutcome(client(core, hello(), 1), fwd(1, 0, ADMIT), 'admit');
    const owner = live(core)!.owner;
    core.setRing(ring.without([owner])); // membership change: no silent re-homing (invariant 3)
    checkOutcome(client(core, data(), 2), fwd(2), 'data');
    expect(live(core)!.owner).toBe(owner);
    core.setRing(empty);
    checkOutcome(client(core, data(), 3), fwd(3), 'existing session on empty ring');
    checkOutcome(client(core, hello(SID2), 3), rej(RejectReason.NO_HEALTHY_NODE), 'new session on empty ring');
  });

  it('setDraining(true) → DIRECTOR_DRAINING for new sessions while existing ones still forward', () => {
    const core = new DirectorCore(LIMITS, ring);
    checkOutcome(client(core, hello(), 0), fwd(1, 0, ADMIT), 'admit');
    core.setDraining(true);
    expect(core.draining).toBe(true);
    checkOutcome(client(core, hello(SID2), 1), rej(RejectReason.DIRECTOR_DRAINING), 'new');
    checkOutcome(client(core, data(), 2), fwd(2), 'existing data');
    checkOutcome(client(core, hello(), 3), fwd(3), 'existing retransmitted hello');
    checkOutcome(client(core, data(), 4, 'B'), fwd(4, PP2_FLAG.UNBOUND_SOURCE), 'existing, other transport');
    checkOutcome(client(core, data(SID2), 5), rej(RejectReason.UNKNOWN_SESSION), 'unknown data');
    checkOutcome(client(core, encodeJv1(PacketType.HELLO, SID2), 5), drop('reject_too_small'), 'small hello');
    core.setDraining(false);
    checkOutcome(client(core, hello(SID2), 6), fwd(1, 0, ADMIT), 'after drain off');
  });

  it('not following the shared store → an unknown session\'s DATA/CLOSE is dropped (store_not_following), not REJECT UNKNOWN_SESSION; known sessions and HELLOs as always', () => {
    const core = new DirectorCore(LIMITS, ring);
    let following = false;
    core.setFollowing(() => following);
    checkOutcome(client(core, hello(), 0), fwd(1, 0, ADMIT), 'admit');
    checkOutcome(client(core, data(), 1), fwd(2), 'known data');
    checkOutcome(client(core, data(SID2), 2), drop('store_not_following'), 'unknown data');
    checkOutcome(client(core, close(SID2), 3), drop('store_not_following'), 'unknown close');
    expect(core.onTcpPreamble(PacketType.DATA, SID2, TRANSPORTS.A, keyOf(TRANSPORTS.A), 40, 4)).toEqual({ kind: 'drop', reason: 'store_not_following' });
    following = true;
    checkOutcome(client(core, data(SID2), 5), rej(RejectReason.UNKNOWN_SESSION), 'following again');
  });

  it('ownerAvailable false → drop owner_unavailable; no seq is spent; forwarding resumes after', () => {
    let available = true;
    const core = new DirectorCore(LIMITS, ring, () => available);
    checkOutcome(client(core, hello(), 0), fwd(1, 0, ADMIT), 'admit');
    available = false;
    const out = client(core, data(), 1);
    checkOutcome(out, drop('owner_unavailable'), 'down');
    expect(live(core)).toBeDefined();
    checkOutcome(client(core, data(), 2, 'B'), drop('owner_unavailable'), 'down, unbound');
    checkOutcome(client(core, close(), 3), drop('owner_unavailable'), 'down, close');
    expect(live(core)).toBeDefined();
    available = true;
    checkOutcome(client(core, data(), 4), fwd(2), 'up again');
  });

  it('ownerAvailable is asked about the session owner', () => {
    const asked: string[] = [];
    const core = new DirectorCore(LIMITS, ring, (id) => {
      asked.push(id);
      return true;
    });
    client(core, hello(), 0);
    client(core, data(), 1);
    expect(asked).toEqual([ring.pick(SID)]);
  });

  it('the admitted record owns a copy of the session id bytes and remembers the listener', () => {
    const core = new DirectorCore(LIMITS, ring);
    const buf = hello();
    const out = core.onClient(buf, TRANSPORTS.A, keyOf(TRANSPORTS.A), 3, 0);
    expect(out.kind).toBe('admit');
    const r = live(core)!;
    expect(out.kind === 'admit' && out.session).toBe(r);
    // The HELLO itself is held until the store accepts the session.
    expect(r.pending).toBe('admit');
    expect(r.held).toEqual([buf]);
    buf.fill(0xff);
    expect(r.idBytes).toEqual(SID);
    expect(r.listener).toBe(3);
  });

  it('REJECT outcomes carry the session id of the packet', () => {
    const core = new DirectorCore(LIMITS, ring);
    const out = client(core, data(SID2), 0);
    expect(out.kind).toBe('reject');
    if (out.kind === 'reject') {
      expect(Uint8Array.from(out.sessionId)).toEqual(SID2);
    }
  });
});

describe('DirectorCore: strict TTL and sweep', () => {
  it('a packet at expiresAt finds the session expired: expire transition, version + 1, SESSION_TERMINATED', () => {
    const core = new DirectorCore(LIMITS, ring);
    checkOutcome(client(core, hello(), 0), fwd(1, 0, ADMIT), 'admit');
    checkOutcome(client(core, data(), 999), fwd(2), 'just before expiry: touches');
    expect(live(core)!.expiresAt).toBe(1999);
    checkOutcome(client(core, data(), 1998), fwd(3), 'still alive');
    const rec = live(core)!;
    expect(rec.expiresAt).toBe(2998);
    expect(core.expiredOnArrival).toHaveLength(0);
    checkOutcome(client(core, data(), 2998), rej(RejectReason.SESSION_TERMINATED), 'at expiresAt');
    expect(core.expiredOnArrival).toHaveLength(1);
    const note = core.expiredOnArrival[0]!;
    expect(note.session).toBe(rec);
    expect(note.transition).toMatchObject({ event: 'expire', cause: 'idle_ttl', fromVersion: 1n, toVersion: 2n, fromOwner: rec.owner, toOwner: null });
    expect(rec.version).toBe(2n);
    expect(rec.state).toBe('TERMINATED');
    expect(live(core)).toBeUndefined();
    // The tombstone answers everything, HELLO included, and nothing is expired twice.
    checkOutcome(client(core, hello(), 3000), rej(RejectReason.SESSION_TERMINATED), 'hello on tombstone');
    expect(core.expiredOnArrival).toHaveLength(1);
    expect(core.sweep(4000)).toEqual([]);
  });

  it('a HELLO retransmission after expiresAt is not a retransmission any more', () => {
    const core = new DirectorCore(LIMITS, ring);
    client(core, hello(), 0);
    checkOutcome(client(core, hello(), 1000), rej(RejectReason.SESSION_TERMINATED), 'expired');
    expect(core.expiredOnArrival.map((e) => e.transition.event)).toEqual(['expire']);
  });

  it('with tombstoneMs = 0 an expired session is unknown and a new HELLO admits at version 1 again', () => {
    const core = new DirectorCore({ ...LIMITS, tombstoneMs: 0 }, ring);
    client(core, hello(), 0);
    checkOutcome(client(core, data(), 1000), rej(RejectReason.UNKNOWN_SESSION), 'expired, no tombstone');
    expect(core.expiredOnArrival).toHaveLength(1);
    checkOutcome(client(core, hello(), 1001), fwd(1, 0, ADMIT), 'fresh admission');
    expect(live(core)!.version).toBe(1n);
  });

  it('packets from an unbound transport do not keep the session alive', () => {
    const core = new DirectorCore(LIMITS, ring);
    client(core, hello(), 0, 'A');
    checkOutcome(client(core, data(), 900, 'B'), fwd(2, PP2_FLAG.UNBOUND_SOURCE), 'unbound');
    expect(live(core)!.expiresAt).toBe(1000);
    checkOutcome(client(core, data(), 1000, 'A'), rej(RejectReason.SESSION_TERMINATED), 'expired');
  });

  it('sweep(now) expires exactly the idle sessions with an expire transition', () => {
    const core = new DirectorCore(LIMITS, ring);
    client(core, hello(sid(1)), 0);
    client(core, hello(sid(2)), 0);
    client(core, hello(sid(3)), 500);
    client(core, data(sid(2)), 600); // sid(2) lives to 1600
    expect(core.sweep(999)).toEqual([]);
    const first = core.sweep(1000);
    expect(first.map((e) => e.session.id)).toEqual([sessionIdHex(sid(1))]);
    expect(first[0]!.transition).toMatchObject({ event: 'expire', cause: 'idle_ttl', fromVersion: 1n, toVersion: 2n, toOwner: null });
    expect(first[0]!.session.state).toBe('TERMINATED');
    expect(core.table.size).toBe(2);
    const second = core.sweep(1600);
    expect(second.map((e) => e.session.id).sort()).toEqual([sessionIdHex(sid(2)), sessionIdHex(sid(3))].sort());
    expect(core.table.size).toBe(0);
    checkOutcome(client(core, data(sid(1)), 1700), rej(RejectReason.SESSION_TERMINATED), 'tombstone');
    expect(core.expiredOnArrival).toHaveLength(0);
  });

  it('sweep respects its limit', () => {
    const core = new DirectorCore(LIMITS, ring);
    for (let i = 1; i <= 5; i++) client(core, hello(sid(i)), 0);
    expect(core.sweep(1000, 2)).toHaveLength(2);
    expect(core.sweep(1000, 2)).toHaveLength(2);
    expect(core.sweep(1000, 2)).toHaveLength(1);
    expect(core.table.size).toBe(0);
  });

  it('sweepLimiters forgets refilled buckets: a rate-limited source is served again', () => {
    const core = new DirectorCore({ ...LIMITS, admissionBurst: 1, admissionRate: 1 }, ring);
    checkOutcome(client(core, hello(sid(1)), 0), fwd(1, 0, ADMIT), 'first');
    checkOutcome(client(core, hello(sid(2)), 0), rej(RejectReason.RATE_LIMITED), 'limited');
    core.sweepLimiters(500);
    checkOutcome(client(core, hello(sid(2)), 500), rej(RejectReason.RATE_LIMITED), 'still limited');
    core.sweepLimiters(1500);
    checkOutcome(client(core, hello(sid(2)), 1500), fwd(1, 0, ADMIT), 'refilled');
  });
});

const NODE_CASES: Case[] = [
  {
    description: 'a reply from the owner relays',
    steps: [c(hello(), fwd(1, 0, ADMIT)), n('owner', hello(), relay()), n('owner', data(), relay()), c(data(), fwd(2))],
  },
  {
    description: 'a reply from a non-owner → drop node_not_owner',
    steps: [c(hello(), fwd(1, 0, ADMIT)), n('other', data(), drop('node_not_owner', sessionIdHex(SID)))],
  },
  {
    description: 'a CLOSE from a non-owner → drop node_not_owner; the session lives on',
    steps: [c(hello(), fwd(1, 0, ADMIT)), n('other', close(), drop('node_not_owner')), c(data(), fwd(2))],
  },
  {
    description: 'a reply for an unknown session → drop node_unknown_session',
    steps: [n('owner', data(), drop('node_unknown_session'))],
  },
  {
    description: 'a reply for an expired session → drop node_unknown_session',
    steps: [c(hello(), fwd(1, 0, ADMIT), 'A', 0), n('owner', data(), drop('node_unknown_session'), 1000)],
  },
  {
    description: 'node CLOSE relays and ends the session (close, version 2); then SESSION_TERMINATED',
    steps: [
      c(hello(), fwd(1, 0, ADMIT)),
      n('owner', close(), relay({ event: 'close', from: 1n, to: 2n })),
      n('owner', data(), drop('node_unknown_session')),
      c(data(), rej(RejectReason.SESSION_TERMINATED)),
    ],
    after: (core) => expect(core.table.size).toBe(0),
  },
  {
    description: 'node REJECT → drop node_forbidden_type',
    steps: [c(hello(), fwd(1, 0, ADMIT)), n('owner', encodeReject(SID, RejectReason.NO_CAPACITY)!, drop('node_forbidden_type'))],
  },
  {
    description: 'node BIND: only for a transport that sent packets, naming the current version; REVOKE is an ack',
    steps: [
      c(hello(), fwd(1, 0, ADMIT)),
      n('owner', encodeBind(SID, 1n, TRANSPORTS.B), drop('bind_unknown_transport')),
      c(data(), fwd(2, PP2_FLAG.UNBOUND_SOURCE), 'B'),
      n('owner', encodeBind(SID, 5n, TRANSPORTS.B), drop('bind_bad_version')),
      n('owner', encodeBind(SID, 0n, TRANSPORTS.B), { kind: 'conflict' }),
      n('owner', encodeBind(SID, 1n, TRANSPORTS.A), drop('bind_noop')),
      n('owner', encodeBind(SID, 1n, TRANSPORTS.B), { kind: 'bind' }),
      n('owner', encodeRevoke(SID, 1n), { kind: 'revoke-ack' }),
    ],
    // Nothing changes in the core until the shell has CASed the binding in the store.
    after: (core) => expect(live(core)!.transportKey).toBe(keyOf(TRANSPORTS.A)),
  },
  {
    description: 'node garbage → drop not_jv1 / malformed',
    steps: [
      c(hello(), fwd(1, 0, ADMIT)),
      n('owner', new Uint8Array([1, 2, 3]), drop('not_jv1')),
      n('owner', pb().jv1(PacketType.DATA, SID, { version: 0 }).build(), drop('malformed', 'bad_version')),
      n('owner', pb().jv1(PacketType.DATA, SID).cut(10), drop('malformed', 'truncated')),
    ],
  },
];

describe('DirectorCore.onNode: packet tables', () => {
  it.each(NODE_CASES)('$description', (tc) => {
    runCase(tc);
  });

  it('a relay names the session (for the reply transport)', () => {
    const core = new DirectorCore(LIMITS, ring);
    client(core, hello(), 0, 'A');
    const out = core.onNode(ring.pick(SID)!, data(), 1);
    expect(out.kind).toBe('relay');
    if (out.kind === 'relay') expect(out.session.transport).toEqual(TRANSPORTS.A);
  });
});

describe('DirectorCore: properties', () => {
  const jv1ish = fc
    .tuple(
      fc.constantFrom(0x4a56, 0x4a56, 0x4a56, 0x1234),
      fc.constantFrom(1, 1, 1, 0, 2),
      fc.constantFrom(0x01, 0x01, 0x02, 0x03, 0x04, 0x10, 0x20, 0x00, 0xff),
      fc.oneof(fc.constant(sid(0)), fc.constant(SID), fc.uint8Array({ minLength: 16, maxLength: 16 })),
      fc.uint8Array({ maxLength: 40 }),
      fc.option(fc.integer({ min: 0, max: 80 }), { nil: undefined }),
    )
    .map(([magic, version, type, id, payload, cut]) => {
      const b = pb().jv1(type, id, { magic, version }).bytes(payload);
      return cut === undefined ? b.build() : b.cut(cut);
    });
  const bytes = fc.oneof(fc.uint8Array({ maxLength: 64 }), jv1ish);

  it('arbitrary bytes never throw and admit a session only when they decode as a HELLO', () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(bytes, fc.constantFrom<TName>('A', 'B', 'C'), fc.integer({ min: 0, max: 400 })), { maxLength: 40 }), (packets) => {
        const core = new DirectorCore({ ...LIMITS, rejectBurst: 5, rejectRate: 1 }, ring);
        let now = 0;
        for (const [buf, t, gap] of packets) {
          now += gap;
          const before = core.table.size;
          const d = decodeJv1(buf);
          const isHello = d.kind === 'ok' && d.value.type === PacketType.HELLO;
          const liveBefore = d.kind === 'ok' ? core.table.get(sessionIdHex(d.value.sessionId)) : undefined;
          let out: ClientOutcome | undefined;
          expect(() => {
            out = client(core, buf, now, t);
          }).not.toThrow();
          const admitted = out!.kind === 'forward' && out!.transition?.event === 'admit';
          if (!isHello) {
            expect(admitted).toBe(false);
            expect(core.table.size).toBeLessThanOrEqual(before);
          }
          if (admitted) {
            expect(core.table.size).toBeLessThanOrEqual(before + 1);
            expect(liveBefore === undefined || liveBefore.expiresAt <= now).toBe(true);
          }
          if (d.kind !== 'ok') {
            expect(out!.kind).toBe('drop');
            expect(core.table.size).toBe(before);
          }
          // The node side never throws either.
          expect(() => core.onNode('node-a', buf, now)).not.toThrow();
        }
      }),
      { numRuns: 300 },
    );
  });

  it('random client sequences: seq +1 per forward, versions never go back, one record per id, ≤ max', () => {
    const ids = [sid(1), sid(2), sid(3)];
    const step = fc.tuple(
      fc.constantFrom(PacketType.HELLO, PacketType.DATA, PacketType.CLOSE),
      fc.integer({ min: 0, max: 2 }),
      fc.constantFrom<TName>('A', 'B'),
      fc.integer({ min: 0, max: 600 }),
      fc.boolean(),
    );
    fc.assert(
      fc.property(fc.array(step, { maxLength: 80 }), (steps) => {
        const core = new DirectorCore({ ...LIMITS, sessionMax: 2, tombstoneMs: 700 }, ring);
        const lastSeq = new Map<object, number>();
        const lastVersion = new Map<object, bigint>();
        let now = 0;
        for (const [type, i, t, gap, doSweep] of steps) {
          now += gap;
          if (doSweep) {
            for (const e of core.sweep(now)) {
              expect(e.transition.toVersion).toBe(e.transition.fromVersion! + 1n);
              expect(e.session.state).toBe('TERMINATED');
            }
          }
          const out = client(core, pkt(type, ids[i]!), now, t);
          expect(core.table.size).toBeLessThanOrEqual(2);
          if (out.kind === 'forward') {
            const s = out.session;
            const prev = lastSeq.get(s);
            if (out.transition?.event === 'admit') {
              expect(prev).toBeUndefined();
              expect(out.seq).toBe(1);
              expect(s.version).toBe(1n);
            } else {
              expect(out.seq).toBe((prev ?? 0) + 1);
            }
            lastSeq.set(s, out.seq);
            const pv = lastVersion.get(s);
            if (pv !== undefined) expect(s.version >= pv).toBe(true);
            lastVersion.set(s, s.version);
            if (out.transition !== null) expect(out.transition.toVersion).toBe(s.version);
            if (out.transition?.event === 'close') expect(core.table.get(s.id)).toBeUndefined();
          }
          for (const e of core.expiredOnArrival.splice(0)) {
            expect(e.transition.event).toBe('expire');
            expect(e.transition.toVersion).toBe(e.transition.fromVersion! + 1n);
          }
        }
      }),
      { numRuns: 300 },
    );
  });
});

describe('held packets of a non-JV1 listener', () => {
  it('an OpenVPN packet whose fourth byte equals the JV1 CLOSE type is released as data: the session lives on', () => {
    const core = new DirectorCore(LIMITS, ring, () => true, [createCodec({ codec: 'openvpn' }).datagram]);
    const t: Transport = { family: 4, address: '198.51.100.7', port: 1194 };
    // P_CONTROL_HARD_RESET_CLIENT_V2 (opcode 7 << 3), an 8-byte session id whose third byte (packet byte 3) is 0x03.
    const reset = Buffer.concat([Buffer.from([7 << 3]), Buffer.from([0xaa, 0xbb, PacketType.CLOSE, 1, 2, 3, 4, 5]), Buffer.alloc(40, 0x5a)]);
    expect(reset[3]).toBe(PacketType.CLOSE);
    const out = core.onClient(reset, t, '198.51.100.7:1194', 0, 1000);
    expect(out.kind).toBe('admit');
    const rec = (out as Extract<ClientOutcome, { kind: 'admit' }>).session;
    const { forwards } = core.admitted(rec, 1001);
    expect(forwards).toHaveLength(1);
    expect(forwards[0]!.transition).toBeNull();
    expect(core.table.get(rec.id)).toBe(rec);
  });
});

describe('OpenVPN pins', () => {
  it('an admission the store refused leaves no pin of its transport behind (one per failed HELLO from a new port, for good)', () => {
    const core = new DirectorCore(LIMITS, ring, () => true, [createCodec({ codec: 'openvpn' }).datagram]);
    for (let i = 0; i < 50; i++) {
      const t: Transport = { family: 4, address: '198.51.100.9', port: 2000 + i };
      const reset = Buffer.concat([Buffer.from([7 << 3]), Buffer.from([9, 9, 9, 9, 0, 0, 0, i]), Buffer.alloc(30, 0x5a)]);
      const out = core.onClient(reset, t, transportKey(t), 0, 1000 + i);
      expect(out.kind).toBe('admit');
      core.admissionFailed((out as Extract<ClientOutcome, { kind: 'admit' }>).session, RejectReason.STORE_UNAVAILABLE, 1000 + i);
    }
    expect(core.table.size).toBe(0);
    expect(core.pinCount).toBe(0);
    // An admitted one is pinned.
    const t: Transport = { family: 4, address: '198.51.100.9', port: 3000 };
    const out = core.onClient(Buffer.concat([Buffer.from([7 << 3]), Buffer.from([8, 8, 8, 8, 8, 8, 8, 8]), Buffer.alloc(30, 0x5a)]), t, transportKey(t), 0, 2000);
    core.admitted((out as Extract<ClientOutcome, { kind: 'admit' }>).session, 2000);
    expect(core.pinCount).toBe(1);
  });
});

describe('a non-JV1 listener while the shared store is not followed', () => {
  it('an OpenVPN packet of a session not held is dropped store_not_following (not counted as an unanswered UNKNOWN_SESSION) until followed again', () => {
    const core = new DirectorCore(LIMITS, ring, () => true, [createCodec({ codec: 'openvpn' }).datagram]);
    let following = false;
    core.setFollowing(() => following);
    const t: Transport = { family: 4, address: '198.51.100.8', port: 1194 };
    // P_CONTROL_V1 (opcode 4 << 3) of a session this director does not hold.
    const control = Buffer.concat([Buffer.from([4 << 3]), Buffer.from([1, 2, 3, 4, 5, 6, 7, 8]), Buffer.alloc(30, 0x5a)]);
    expect(core.onClient(control, t, '198.51.100.8:1194', 0, 1000)).toEqual({ kind: 'drop', reason: 'store_not_following' });
    following = true;
    expect(core.onClient(control, t, '198.51.100.8:1194', 0, 1001)).toEqual({ kind: 'drop', reason: 'unanswered', detail: 'unknown_session' });
  });
});

describe('the bound transport is an ip:port on one listener', () => {
  it('a datagram from the ip:port of a TCP-bound session is a candidate, not the bound transport: its CLOSE does not end the session', () => {
    const core = new DirectorCore(LIMITS, ring);
    const t = TRANSPORTS.A;
    const out = core.onTcpPreamble(PacketType.HELLO, SID, t, keyOf(t), 24, 0);
    expect(out.kind).toBe('admit');
    if (out.kind !== 'admit') return;
    core.admitted(out.session, 0);
    expect(live(core)?.listener).toBe(TCP_LISTENER);
    const v = client(core, close(), 10, 'A', 0);
    expect(v).toMatchObject({ kind: 'forward', flags: PP2_FLAG.UNBOUND_SOURCE, transition: null });
    expect(live(core)?.state).toBe(SessionState.ATTACHED);
    expect(live(core)?.candidates?.size).toBe(1);
  });

  it('a datagram from the bound ip:port on another UDP listener is a candidate too; on its own listener it is the session\'s', () => {
    const core = new DirectorCore(LIMITS, ring);
    expect(client(core, hello(), 0, 'A', 0)).toMatchObject({ kind: 'forward', flags: 0 });
    expect(client(core, data(), 1, 'A', 1)).toMatchObject({ kind: 'forward', flags: PP2_FLAG.UNBOUND_SOURCE });
    expect(client(core, data(), 2, 'A', 0)).toMatchObject({ kind: 'forward', flags: 0 });
    expect(client(core, close(), 3, 'A', 1)).toMatchObject({ kind: 'forward', flags: PP2_FLAG.UNBOUND_SOURCE, transition: null });
    expect(live(core)?.state).toBe(SessionState.ATTACHED);
  });
});

describe('jump candidates after a bind', () => {
  it('the bound candidate is forgotten, the others stay; with none left the record holds none', () => {
    const core = new DirectorCore(LIMITS, ring);
    expect(client(core, hello(), 0, 'A')).toMatchObject({ kind: 'forward', flags: 0 });
    expect(client(core, data(), 1, 'B')).toMatchObject({ kind: 'forward', flags: PP2_FLAG.UNBOUND_SOURCE });
    expect(client(core, data(), 2, 'C')).toMatchObject({ kind: 'forward', flags: PP2_FLAG.UNBOUND_SOURCE });
    const rec = live(core)!;
    const bindTo = (key: string): void => {
      const cand = rec.candidates!.get(key)!;
      const p = core.plan(rec, LifecycleEvent.REATTACH, { cause: 'bind', bind: cand });
      if (typeof p !== 'object') throw new Error(`plan refused: ${p}`);
      core.commit(p, 3);
    };
    bindTo(keyOf(TRANSPORTS.B));
    expect(rec.transportKey).toBe(keyOf(TRANSPORTS.B));
    expect([...rec.candidates!.keys()]).toEqual([keyOf(TRANSPORTS.C)]);
    bindTo(keyOf(TRANSPORTS.C));
    expect(rec.transportKey).toBe(keyOf(TRANSPORTS.C));
    expect(rec.candidates).toBeNull();
  });
});

describe('jump candidates are forgotten CANDIDATE_TTL_MS after their last packet', () => {
  it('a stray candidate goes at the next packet from the bound transport after the TTL, and the record holds none; its BIND is then a BIND of an unknown transport', () => {
    const core = new DirectorCore({ ...LIMITS, idleTtlMs: 10 * CANDIDATE_TTL_MS }, ring);
    expect(client(core, hello(), 0, 'A')).toMatchObject({ kind: 'forward', flags: 0 });
    // The old path's late packets after a jump: B sends twice, C once.
    expect(client(core, data(), 10, 'B')).toMatchObject({ kind: 'forward', flags: PP2_FLAG.UNBOUND_SOURCE });
    expect(client(core, data(), 20, 'C')).toMatchObject({ kind: 'forward', flags: PP2_FLAG.UNBOUND_SOURCE });
    expect(client(core, data(), 5_000, 'B')).toMatchObject({ kind: 'forward', flags: PP2_FLAG.UNBOUND_SOURCE });
    const rec = live(core)!;
    // Within the TTL of each: both kept.
    expect(client(core, data(), 20 + CANDIDATE_TTL_MS, 'A')).toMatchObject({ kind: 'forward', flags: 0 });
    expect([...rec.candidates!.keys()].sort()).toEqual([keyOf(TRANSPORTS.B), keyOf(TRANSPORTS.C)]);
    // C's TTL passed, B's (its last packet at 5,000) not yet.
    expect(client(core, data(), 21 + CANDIDATE_TTL_MS, 'A')).toMatchObject({ kind: 'forward', flags: 0 });
    expect([...rec.candidates!.keys()]).toEqual([keyOf(TRANSPORTS.B)]);
    expect(core.onNode(rec.owner, encodeBind(SID, 1n, TRANSPORTS.C), 22 + CANDIDATE_TTL_MS)).toMatchObject({ kind: 'drop', reason: 'bind_unknown_transport' });
    expect(client(core, data(), 5_001 + CANDIDATE_TTL_MS, 'A')).toMatchObject({ kind: 'forward', flags: 0 });
    expect(rec.candidates).toBeNull();
  });

  it('a candidate being bound (its reattach CAS in flight) is kept; a new candidate forgets the stale ones', () => {
    const core = new DirectorCore({ ...LIMITS, idleTtlMs: 10 * CANDIDATE_TTL_MS }, ring);
    expect(client(core, hello(), 0, 'A')).toMatchObject({ kind: 'forward', flags: 0 });
    expect(client(core, data(), 1, 'B')).toMatchObject({ kind: 'forward', flags: PP2_FLAG.UNBOUND_SOURCE });
    const rec = live(core)!;
    rec.candidates!.get(keyOf(TRANSPORTS.B))!.binding = true;
    expect(client(core, data(), 2 + CANDIDATE_TTL_MS, 'A')).toMatchObject({ kind: 'forward', flags: 0 });
    expect([...rec.candidates!.keys()]).toEqual([keyOf(TRANSPORTS.B)]);
    rec.candidates!.get(keyOf(TRANSPORTS.B))!.binding = false;
    // C's first packet, long after B's: B is forgotten, C kept.
    expect(client(core, data(), 3 + CANDIDATE_TTL_MS, 'C')).toMatchObject({ kind: 'forward', flags: PP2_FLAG.UNBOUND_SOURCE });
    expect([...rec.candidates!.keys()]).toEqual([keyOf(TRANSPORTS.C)]);
  });
});

describe('jump candidates: the TTL the shell gives, and the bound on their number', () => {
  it('CoreLimits.candidateTtlMs replaces the default (the shell gives at least the TCP connect and BIND timeouts)', () => {
    const core = new DirectorCore({ ...LIMITS, idleTtlMs: 10 * CANDIDATE_TTL_MS, candidateTtlMs: 2 * CANDIDATE_TTL_MS }, ring);
    expect(client(core, hello(), 0, 'A')).toMatchObject({ kind: 'forward', flags: 0 });
    expect(client(core, data(), 1, 'B')).toMatchObject({ kind: 'forward', flags: PP2_FLAG.UNBOUND_SOURCE });
    const rec = live(core)!;
    expect(client(core, data(), 2 + CANDIDATE_TTL_MS, 'A')).toMatchObject({ kind: 'forward', flags: 0 });
    expect(rec.candidates?.size).toBe(1);
    core.forgetStaleCandidates(rec, 2 + 2 * CANDIDATE_TTL_MS);
    expect(rec.candidates).toBeNull();
  });

  it('past the bound on candidates, the oldest one not being bound makes room', () => {
    const core = new DirectorCore(LIMITS, ring);
    expect(client(core, hello(), 0, 'A')).toMatchObject({ kind: 'forward', flags: 0 });
    const rec = live(core)!;
    const from = (i: number): Transport => ({ family: 4, address: '203.0.113.50', port: 1000 + i });
    const send = (i: number): ClientOutcome => core.onClient(data(), from(i), keyOf(from(i)), 0, 1 + i);
    for (let i = 0; i < 8; i++) expect(send(i)).toMatchObject({ kind: 'forward', flags: PP2_FLAG.UNBOUND_SOURCE });
    rec.candidates!.get(keyOf(from(0)))!.binding = true; // the oldest: its reattach CAS in flight
    send(8);
    expect([...rec.candidates!.keys()]).toEqual([0, 2, 3, 4, 5, 6, 7, 8].map((i) => keyOf(from(i))));
  });
});

describe('held packets are bounded in bytes as well as in count', () => {
  it('a frozen session holds packets until hold_max_bytes, then drops them as hold_overflow; the count bound still applies', () => {
    const core = new DirectorCore({ ...LIMITS, holdMax: 8, holdMaxBytes: 3000 }, ring);
    expect(client(core, hello(), 0, 'A', 0)).toMatchObject({ kind: 'forward' });
    const rec = live(core)!;
    const p = core.plan(rec, LifecycleEvent.FREEZE, { cause: 'test' });
    expect(typeof p).toBe('object');
    const big = (): Buffer => pkt(PacketType.DATA, SID, new Uint8Array(1000)); // 1,020 bytes
    expect(client(core, big(), 1)).toMatchObject({ kind: 'hold' });
    expect(client(core, big(), 2)).toMatchObject({ kind: 'hold' });
    expect(client(core, big(), 3)).toMatchObject({ kind: 'drop', reason: 'hold_overflow' }); // 3,060 > 3,000
    expect(client(core, data(), 4)).toMatchObject({ kind: 'hold' }); // 24 bytes still fit
    expect(rec.held?.map((b) => b.length)).toEqual([1020, 1020, 24]);
  });

  it('property: whatever arrives, the held bytes never pass hold_max_bytes nor the count hold_max_packets', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 10 }), fc.integer({ min: 20, max: 5000 }), fc.array(fc.integer({ min: 0, max: 1400 }), { maxLength: 40 }), (holdMax, holdMaxBytes, sizes) => {
        const core = new DirectorCore({ ...LIMITS, holdMax, holdMaxBytes }, ring);
        client(core, hello(), 0, 'A', 0);
        const rec = live(core)!;
        core.plan(rec, LifecycleEvent.FREEZE, { cause: 'test' });
        let t = 1;
        for (const n of sizes) {
          const before = (rec.held ?? []).reduce((a, b) => a + b.length, 0);
          const fits = (rec.held?.length ?? 0) < holdMax && before + 20 + n <= holdMaxBytes;
          const out = client(core, pkt(PacketType.DATA, SID, new Uint8Array(n)), t++);
          expect(out.kind === 'hold', `a ${20 + n}-byte packet with ${before} bytes held`).toBe(fits);
          const held = rec.held ?? [];
          expect(held.length).toBeLessThanOrEqual(holdMax);
          expect(held.reduce((a, b) => a + b.length, 0)).toBeLessThanOrEqual(holdMaxBytes);
        }
      }),
      { seed: 11, numRuns: 200 },
    );
  });
});

describe('speaksJv1: whether a listener\'s clients can be answered with a REJECT', () => {
  it('JV1 listeners (and a core without codecs) do; OpenVPN and offset listeners do not', () => {
    expect(new DirectorCore(LIMITS, ring).speaksJv1(0)).toBe(true);
    const core = new DirectorCore(LIMITS, ring, () => true, [createCodec({ codec: 'jv1' }).datagram, createCodec({ codec: 'openvpn' }).datagram, null]);
    expect([0, 1, 2].map((l) => core.speaksJv1(l))).toEqual([true, false, true]);
  });
});
