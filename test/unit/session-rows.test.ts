// SessionRows, the session table's columns (issue 7: no object per session): a row's fields read back
// exactly as written, rare forms included (a version, life or sequence number of 2^32 - 1 or more, an IPv6
// or non-canonical transport, an upper-case id text); rows freed and reused leave nothing of the session
// before; names counted, more of them than a u16 numbers; listeners outside an i16; the flags byte's
// fields independent; id texts flat strings; the canonical IPv4 parse; and `smallest`, the admin page in id order, against a
// model that sorts.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { hexWords } from '../../src/session/id-index.js';
import { type RowFields, SessionRows } from '../../src/session/rows.js';
import { parseV4Address } from '../../src/store/transport-text.js';
import { MAX_RESERVED, reservedCapacity } from '../../src/util/reserve.js';

const fields = (over: Partial<RowFields> = {}): RowFields => ({
  owner: 'node-a',
  version: 1n,
  incarnation: 0,
  state: 'ATTACHED',
  transport: { family: 4, address: '192.0.2.1', port: 1000 },
  listener: 0,
  nextSeq: 1,
  lastSeen: 0,
  expiresAt: 1000,
  servedHere: true,
  storeExpiresAt: 1000,
  formerOwner: null,
  ...over,
});

function words(id: string): Int32Array {
  const w = new Int32Array(4);
  if (!hexWords(id, w)) throw new Error(`not an id: ${id}`);
  return w;
}

describe('SessionRows', () => {
  it('reads back every field as written, rare forms included, through growth', () => {
    const rows = new SessionRows();
    const written: RowFields[] = [];
    for (let i = 0; i < 200; i++) {
      const f = fields({
        owner: `node-${i % 5}`,
        version: i % 7 === 0 ? 2n ** 60n + BigInt(i) : BigInt(i + 1),
        incarnation: i * 1000,
        state: i % 2 === 0 ? 'ATTACHED' : 'FROZEN',
        transport: i % 3 === 0 ? { family: 6, address: '2001:db8::1', port: i } : i % 3 === 1 ? { family: 4, address: `10.0.${i}.1`, port: 65535 - i } : { family: 4, address: '01.2.3.4', port: i },
        listener: i % 4,
        nextSeq: 2 ** 40 + i,
        lastSeen: i + 0.5,
        expiresAt: i + 1000.25,
        servedHere: i % 2 === 0,
        storeExpiresAt: i + 2000.75,
        formerOwner: i % 4 === 0 ? null : `node-${(i + 1) % 5}`,
      });
      expect(rows.alloc(words(i.toString(16).padStart(32, '0')), null, f)).toBe(i);
      written.push(f);
    }
    for (let i = 0; i < 200; i++) {
      expect(rows.fields(i)).toEqual(written[i]);
      expect(rows.idText(i)).toBe(i.toString(16).padStart(32, '0'));
    }
    expect(rows.live).toBe(200);
  });

  it('reserved rows: the columns are made once for them and stay the same arrays until a row past them; a row starts in no heap and no cache', () => {
    const rows = new SessionRows(300);
    expect(rows.capacity).toBe(300);
    const before = [rows.ids, rows.owner, rows.version, rows.tAddr, rows.expiresAt, rows.heapPos, rows.cacheSlot];
    const f = (i: number): RowFields => fields({ owner: `node-${i % 3}`, version: BigInt(i + 1), transport: { family: 4, address: `10.1.${i >> 8}.${i & 255}`, port: i }, expiresAt: i * 2 });
    for (let i = 0; i < 300; i++) {
      const r = rows.alloc(words((i + 1).toString(16).padStart(32, '0')), null, f(i));
      // Nothing filled the reservation beforehand: a row handed out is in no heap and no cache.
      expect([rows.heapPos[r], rows.cacheSlot[r]]).toEqual([-1, -1]);
    }
    expect([rows.ids, rows.owner, rows.version, rows.tAddr, rows.expiresAt, rows.heapPos, rows.cacheSlot]).toEqual(before);
    expect(rows.ids === before[0] && rows.heapPos === before[5]).toBe(true);
    // One row more: the columns grow (new arrays), every row reads back as written.
    rows.alloc(words('f'.repeat(32)), null, f(300));
    expect(rows.capacity).toBe(450);
    expect(rows.ids === before[0]).toBe(false);
    for (let i = 0; i <= 300; i++) expect(rows.fields(i)).toEqual(f(i));
    // No reservation: the smallest columns, grown as rows come.
    expect(new SessionRows().capacity).toBe(16);
    for (const bad of [-5, Number.NaN, Infinity]) {
      const r = new SessionRows(bad);
      expect(r.capacity).toBe(16);
      for (let i = 0; i < 40; i++) r.alloc(words((i + 1).toString(16).padStart(32, '0')), null, f(i));
      expect(r.fields(39)).toEqual(f(39)); // grown as rows came, none lost
    }
  });

  it('a freed row is reused, and keeps nothing of the session before', () => {
    const rows = new SessionRows();
    const up = 'ABCDEF0123456789ABCDEF0123456789';
    const a = rows.alloc(words(up), up, fields({ version: 2n ** 62n, transport: { family: 6, address: '::1', port: 1 }, formerOwner: 'node-z' }));
    expect(rows.idText(a)).toBe(up);
    rows.release(a);
    const b = rows.alloc(words('00000000000000000000000000000001'), null, fields({ owner: 'node-b' }));
    expect(b).toBe(a);
    expect(rows.idText(b)).toBe('00000000000000000000000000000001');
    expect(rows.fields(b)).toEqual(fields({ owner: 'node-b' }));
    // Names are counted: one no row refers to is forgotten.
    expect([rows.names.find('node-z'), rows.names.find('node-a'), rows.names.find('node-b')]).toEqual([undefined, undefined, rows.owner[b]]);
    rows.setOwner(b, 'node-c');
    rows.setFormerOwner(b, 'node-b');
    expect([rows.ownerOf(b), rows.formerOwnerOf(b)]).toEqual(['node-c', 'node-b']);
    rows.setFormerOwner(b, null);
    expect(rows.names.find('node-b')).toBeUndefined();
  });

  it('a version, life or sequence number at 2^32 - 1 or beyond is kept whole, and a narrow one written after it reads back narrow', () => {
    const rows = new SessionRows();
    const edges = [0, 1, 2 ** 32 - 2, 2 ** 32 - 1, 2 ** 32, 2 ** 53 - 1];
    for (const [i, n] of edges.entries()) {
      const r = rows.alloc(words(i.toString(16).padStart(32, '0')), null, fields({ version: BigInt(n), incarnation: n, nextSeq: n }));
      expect([rows.versionOf(r), rows.incarnationOf(r), rows.seqOf(r)]).toEqual([BigInt(n), n, n]);
      rows.setVersion(r, 2n ** 64n + 1n);
      rows.setIncarnation(r, -1);
      rows.setSeq(r, 2 ** 40);
      expect([rows.versionOf(r), rows.incarnationOf(r), rows.seqOf(r)]).toEqual([2n ** 64n + 1n, -1, 2 ** 40]);
      rows.setVersion(r, 7n);
      rows.setIncarnation(r, 8);
      rows.setSeq(r, 9);
      expect([rows.versionOf(r), rows.incarnationOf(r), rows.seqOf(r)]).toEqual([7n, 8, 9]);
    }
  });

  it('more owner names than a u16 numbers, and listeners outside an i16, are kept whole; a reused row keeps none of them', () => {
    const rows = new SessionRows();
    const n = 0x10000 + 8; // names 0xfffe and up do not fit the owner columns
    for (let i = 0; i < n; i++) rows.alloc(words((i + 1).toString(16).padStart(32, '0')), null, fields({ owner: `o-${i}`, formerOwner: i % 2 === 0 ? null : `o-${n - 1 - i}` }));
    for (let i = 0; i < n; i++) {
      expect(rows.ownerOf(i)).toBe(`o-${i}`);
      expect(rows.formerOwnerOf(i)).toBe(i % 2 === 0 ? null : `o-${n - 1 - i}`);
    }
    const wide = n - 3;
    expect(rows.ownerNumOf(wide)).toBeGreaterThanOrEqual(0xfffe);
    // A wide owner is one page of its own, as any other.
    for (let r = 0; r < n; r++) rows.heapPos[r] = r;
    expect(rows.smallest(5, null, `o-${wide}`)).toEqual([wide]);
    expect(rows.smallest(5, null, 'o-3')).toEqual([3]);
    // Narrow and back, then the row freed and reused by a session with no wide field.
    rows.setOwner(wide, 'o-0');
    rows.setFormerOwner(wide, `o-${n - 1}`);
    expect([rows.ownerOf(wide), rows.formerOwnerOf(wide)]).toEqual(['o-0', `o-${n - 1}`]);
    rows.setOwner(wide, `o-${n - 2}`);
    expect(rows.ownerOf(wide)).toBe(`o-${n - 2}`);
    rows.release(wide);
    const again = rows.alloc(words('f'.repeat(32)), null, fields({ owner: 'o-1' }));
    expect(again).toBe(wide);
    expect(rows.fields(again)).toEqual(fields({ owner: 'o-1' }));
    // Listeners: any integer reads back as written, the i16 mark included, and a narrow one after a wide.
    for (const l of [-1, 0, 7, 32767, -32767, -32768, 32768, -32769, 2 ** 31 - 1, 1e9]) {
      rows.setListener(again, l);
      expect(rows.listenerOf(again)).toBe(l);
      expect(rows.fields(again).listener).toBe(l);
    }
    rows.setListener(again, 40000);
    rows.release(again);
    expect(rows.listenerOf(rows.alloc(words('e'.repeat(32)), null, fields({ listener: 3 })))).toBe(3);
    // Every wide field of a freed row leaves its map, a narrow one written over a wide one too.
    expect(rows.overflowEntries).toBeGreaterThan(0); // the wide owners and former owners still live
    for (let i = 0; i < n; i++) if (i !== wide) rows.release(i);
    rows.release(again);
    expect([rows.live, rows.overflowEntries]).toEqual([0, 0]);
    const r = rows.alloc(words('d'.repeat(32)), 'D'.repeat(32), fields({ version: 2n ** 40n, incarnation: 2 ** 40, nextSeq: 2 ** 40, listener: 1e6, transport: { family: 6, address: '::1', port: 1 } }));
    // Six wide fields; its owner's name takes the lowest number free, in the column.
    const wideNow = rows.overflowEntries;
    expect([wideNow, rows.ownerNumOf(r)]).toEqual([6, 0]);
    rows.setVersion(r, 1n);
    rows.setIncarnation(r, 1);
    rows.setSeq(r, 1);
    rows.setListener(r, 1);
    rows.setTransport(r, fields().transport);
    expect(rows.overflowEntries).toBe(1); // the id text
    rows.release(r);
    expect(rows.overflowEntries).toBe(0);
  });

  it('property: state, transport kind, served and a sequence number counted from the base share a byte without touching each other', () => {
    const v4 = { family: 4 as const, address: '192.0.2.9', port: 9 };
    const v6 = { family: 6 as const, address: '2001:db8::9', port: 9 };
    const base = 1_800_000_000_000 * 1024; // sequenceBase of a wall clock in 2027
    const seqs = fc.oneof(fc.nat(), fc.constantFrom(0, 1, base - 1, base, base + 1, base + 2 ** 32 - 2, base + 2 ** 32 - 1, base + 2 ** 32, 2 ** 53 - 1), fc.integer({ min: base, max: base + 2 ** 33 }));
    const step = fc.oneof(
      fc.record({ k: fc.constant('state' as const), v: fc.constantFrom('ATTACHED', 'FROZEN', 'TERMINATED') }),
      fc.record({ k: fc.constant('served' as const), v: fc.boolean() }),
      fc.record({ k: fc.constant('transport' as const), v: fc.constantFrom(v4, v6) }),
      fc.record({ k: fc.constant('seq' as const), v: seqs }),
    );
    fc.assert(
      fc.property(fc.boolean(), fc.boolean(), seqs, fc.array(step, { maxLength: 30 }), (reuse, based, first, steps) => {
        const rows = new SessionRows();
        if (based) rows.seqBase = base;
        if (reuse) rows.release(rows.alloc(words('1'.repeat(32)), null, fields({ state: 'TERMINATED', servedHere: true, transport: v6, nextSeq: base + 5 })));
        const r = rows.alloc(words('2'.repeat(32)), null, fields({ servedHere: false, nextSeq: first }));
        const want = { state: 'ATTACHED', servedHere: false, transport: fields().transport, seq: first };
        for (const s of steps) {
          if (s.k === 'state') rows.setState(r, (want.state = s.v));
          else if (s.k === 'served') rows.setServed(r, (want.servedHere = s.v));
          else if (s.k === 'seq') rows.setSeq(r, (want.seq = s.v));
          else rows.setTransport(r, (want.transport = s.v));
          expect([rows.stateOf(r), rows.servedOf(r), rows.transportOf(r), rows.seqOf(r)]).toEqual([want.state, want.servedHere, want.transport, want.seq]);
        }
        // Counted from the base, a session's numbers fit the column as its first ones do.
        if (based && want.seq >= base && want.seq - base < 2 ** 32 - 1) expect(rows.overflowEntries).toBe(want.transport === v6 ? 1 : 0);
      }),
      { numRuns: 200 },
    );
  });

  it('an id text is one flat string (~48 bytes of heap kept per text), not a rope of its words', () => {
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    const rows = new SessionRows();
    const n = 20_000;
    for (let i = 0; i < n; i++) rows.alloc(words((0x9e3779b1 * (i + 1)).toString(16).padStart(32, '0').slice(-32)), null, fields());
    const kept: string[] = new Array<string>(n);
    gc();
    const before = process.memoryUsage().heapUsed;
    for (let i = 0; i < n; i++) kept[i] = rows.idText(i);
    gc();
    const perText = (process.memoryUsage().heapUsed - before) / n;
    expect(kept[n - 1]).toBe((0x9e3779b1 * n).toString(16).padStart(32, '0').slice(-32));
    // A flat 32-character string is 48 bytes; the rope of four 8-character words and their joins was ~190.
    expect(perText).toBeLessThan(100);
  });

  it('refuses a state that is not a session state (a programming error, not data)', () => {
    const rows = new SessionRows();
    expect(() => rows.alloc(words('00000000000000000000000000000001'), null, fields({ state: 'NOPE' as 'ATTACHED' }))).toThrow(TypeError);
  });
});

describe('parseV4Address (the rows keep an IPv4 address as a number only in its canonical text)', () => {
  it('is the address as a u32 for exactly the canonical dotted quad, -1 for any other text', () => {
    expect(parseV4Address('0.0.0.0')).toBe(0);
    expect(parseV4Address('255.255.255.255')).toBe(0xffffffff);
    expect(parseV4Address('10.1.2.3')).toBe(0x0a010203);
    for (const bad of ['', '1.2.3', '1.2.3.4.5', '01.2.3.4', '1.2.3.256', '1..2.3', '1.2.3.4 ', 'a.b.c.d', '::1', '1.2.3.-4', '1.2.3.0004'])
      expect(parseV4Address(bad)).toBe(-1);
  });

  it('agrees with formatting for every address (property)', () => {
    fc.assert(
      fc.property(fc.ipV4(), (a) => {
        expect(parseV4Address(a)).toBe(a.split('.').reduce((w, p) => w * 256 + Number(p), 0));
      }),
    );
  });
});

describe('SessionRows.smallest (the admin page in id order)', () => {
  it('property: the `limit` smallest live ids above `after`, of one owner or all, in byte order', () => {
    const idArb = fc.uint8Array({ minLength: 16, maxLength: 16 }).map((b) => Buffer.from(b).toString('hex'));
    fc.assert(
      fc.property(
        fc.uniqueArray(fc.record({ id: idArb, owner: fc.constantFrom('a', 'b', 'c'), dead: fc.boolean() }), { selector: (x) => x.id, maxLength: 80 }),
        fc.integer({ min: 0, max: 12 }),
        fc.option(idArb, { nil: null }),
        fc.option(fc.constantFrom('a', 'b', 'c', 'zz'), { nil: null }),
        (sessions, limit, after, owner) => {
          const rows = new SessionRows();
          const row = new Map<string, number>();
          for (const s of sessions) {
            const r = rows.alloc(words(s.id), null, fields({ owner: s.owner }));
            rows.heapPos[r] = s.dead ? -1 : r; // live rows are in the expiry heap
            row.set(s.id, r);
          }
          for (const s of sessions) if (s.dead) rows.release(row.get(s.id)!);
          const want = sessions
            .filter((s) => !s.dead && (owner === null || s.owner === owner) && (after === null || s.id > after))
            .map((s) => s.id)
            .sort()
            .slice(0, limit);
          const got = rows.smallest(limit, after === null ? null : Buffer.from(after, 'hex'), owner).map((r) => rows.idText(r));
          expect(got).toEqual(want);
        },
      ),
      { numRuns: 300 },
    );
  });

  it('nothing for a limit of 0; a bound that is not 16 bytes is a RangeError', () => {
    const rows = new SessionRows();
    rows.heapPos[rows.alloc(words('00000000000000000000000000000001'), null, fields())] = 0;
    expect(rows.smallest(0, null, null)).toEqual([]);
    expect(rows.smallest(1, null, null)).toEqual([0]);
    expect(() => rows.smallest(1, new Uint8Array(15), null)).toThrow(RangeError);
  });
});

describe('reservedCapacity (how much room a reservation makes)', () => {
  it('is the reservation floored, within [min, max]; a reservation that is not a positive number is none', () => {
    expect(reservedCapacity(1000.7, 16)).toBe(1000);
    expect(reservedCapacity(3, 16)).toBe(16);
    expect(reservedCapacity(1e12, 16)).toBe(MAX_RESERVED);
    expect(reservedCapacity(1e12, 16, Infinity)).toBe(1e12);
    for (const bad of [0, -1, Number.NaN, Infinity, -Infinity]) expect(reservedCapacity(bad, 16)).toBe(16);
  });
});
