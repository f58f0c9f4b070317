// IdIndex, the per-datagram session lookup by the 16 id bytes: lookups straight from a packet at an
// offset, identity-exact deletes, growth, and a model check (random add / delete / get against a Map) with
// ids drawn from a small set and a small table, so that probe runs collide, wrap and are shifted back.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { ID_INDEX_KEY_WORDS, IdIndex, idBytesFromHex, idIndexKey, isLowerHexId } from '../../src/session/id-index.js';
import { newSessionRecord, SessionTable } from '../../src/session/table.js';

interface Rec {
  readonly idBytes: Uint8Array;
  readonly n: number;
}

const KEY = Uint32Array.from({ length: ID_INDEX_KEY_WORDS }, (_, i) => 0x9e3779b9 * (i + 1));
const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
const idOf = (n: number): Uint8Array => {
  const b = new Uint8Array(16);
  b[0] = n & 0xff;
  b[7] = (n >>> 8) & 0xff;
  b[15] = 1;
  return b;
};
const rec = (n: number): Rec => ({ idBytes: idOf(n), n });
/** A datagram carrying `id` at byte 4 (as JV1 does), with other bytes around it. */
const packet = (id: Uint8Array): Buffer => Buffer.concat([Buffer.from([0x4a, 0x56, 1, 2]), id, Buffer.alloc(9, 0xee)]);

describe('IdIndex', () => {
  it('finds a record from the id bytes at an offset of a packet, and nothing for another id', () => {
    const x = new IdIndex<Rec>(KEY);
    const a = rec(1);
    expect(x.add(a)).toBe(true);
    expect(x.get(packet(a.idBytes), 4)).toBe(a);
    expect(x.get(a.idBytes, 0)).toBe(a);
    expect(x.get(packet(idOf(2)), 4)).toBeUndefined();
    expect(x.size).toBe(1);
  });

  it('refuses a second record with the same id bytes; deletes by identity only', () => {
    const x = new IdIndex<Rec>(KEY);
    const a = rec(7);
    const twin = rec(7);
    expect(x.add(a)).toBe(true);
    expect(x.add(twin)).toBe(false);
    expect(x.delete(twin)).toBe(false);
    expect(x.get(a.idBytes, 0)).toBe(a);
    expect(x.delete(a)).toBe(true);
    expect(x.delete(a)).toBe(false);
    expect(x.get(a.idBytes, 0)).toBeUndefined();
    expect(x.size).toBe(0);
  });

  it('grows past its load factor and keeps every record', () => {
    const x = new IdIndex<Rec>(idIndexKey());
    const rs = Array.from({ length: 5000 }, (_, i) => rec(i));
    for (const r of rs) expect(x.add(r)).toBe(true);
    expect(x.capacity).toBeGreaterThanOrEqual(5000 * 1.6);
    for (const r of rs) expect(x.get(packet(r.idBytes), 4)).toBe(r);
    for (const r of rs.filter((_, i) => i % 3 === 0)) expect(x.delete(r)).toBe(true);
    for (const [i, r] of rs.entries()) expect(x.get(r.idBytes, 0)).toBe(i % 3 === 0 ? undefined : r);
  });

  it('works with any key (the key places records, it never changes what is found)', () => {
    fc.assert(
      fc.property(fc.uint32Array({ minLength: ID_INDEX_KEY_WORDS, maxLength: ID_INDEX_KEY_WORDS }), fc.uniqueArray(fc.integer({ min: 0, max: 5000 }), { maxLength: 60 }), (key, ns) => {
        const x = new IdIndex<Rec>(key);
        const rs = ns.map(rec);
        for (const r of rs) expect(x.add(r)).toBe(true);
        for (const r of rs) expect(x.get(r.idBytes, 0)).toBe(r);
        expect(x.get(idOf(6000), 0)).toBeUndefined();
      }),
    );
  });

  it('model: random add / delete / get agree with a Map (small table, colliding runs)', () => {
    const op = fc.oneof(
      fc.record({ k: fc.constant('add' as const), n: fc.integer({ min: 0, max: 40 }) }),
      fc.record({ k: fc.constant('del' as const), n: fc.integer({ min: 0, max: 40 }) }),
      fc.record({ k: fc.constant('get' as const), n: fc.integer({ min: 0, max: 40 }) }),
    );
    fc.assert(
      fc.property(fc.uint32Array({ minLength: ID_INDEX_KEY_WORDS, maxLength: ID_INDEX_KEY_WORDS }), fc.array(op, { maxLength: 300 }), (key, ops) => {
        const x = new IdIndex<Rec>(key);
        const model = new Map<string, Rec>();
        for (const o of ops) {
          const id = idOf(o.n);
          const have = model.get(hex(id));
          if (o.k === 'add') {
            const r = rec(o.n);
            expect(x.add(r)).toBe(have === undefined);
            if (have === undefined) model.set(hex(id), r);
          } else if (o.k === 'del') {
            expect(x.delete(have ?? rec(o.n))).toBe(have !== undefined);
            model.delete(hex(id));
          } else {
            expect(x.get(packet(id), 4)).toBe(have);
          }
          expect(x.size).toBe(model.size);
        }
        for (const r of model.values()) expect(x.get(r.idBytes, 0)).toBe(r);
      }),
      { numRuns: 300 },
    );
  });

  it('getByHex finds the record the 32 hex characters spell (either case), and nothing for any other text', () => {
    fc.assert(
      fc.property(fc.uniqueArray(fc.uint8Array({ minLength: 16, maxLength: 16 }), { minLength: 1, maxLength: 40, selector: hex }), (ids) => {
        const x = new IdIndex<{ idBytes: Uint8Array }>(KEY);
        const rs = ids.slice(1).map((idBytes) => ({ idBytes }));
        for (const r of rs) x.add(r);
        for (const r of rs) {
          expect(x.getByHex(hex(r.idBytes))).toBe(r);
          expect(x.getByHex(hex(r.idBytes).toUpperCase())).toBe(r);
        }
        expect(x.getByHex(hex(ids[0]!))).toBeUndefined(); // not added
      }),
    );
    const x = new IdIndex<Rec>(KEY);
    const a = rec(0); // 32 hex characters, mostly '0'
    x.add(a);
    const text = hex(a.idBytes);
    expect(x.getByHex(text)).toBe(a);
    // Any character that is not a hex digit, at any place, and any other length: undefined, never a throw.
    for (let i = 0; i < 32; i++) {
      for (const c of ['g', 'G', ':', '/', '@', '`', ' ', 'é', '\u0130']) expect(x.getByHex(text.slice(0, i) + c + text.slice(i + 1))).toBeUndefined();
    }
    for (const bad of ['', text.slice(1), `${text}0`, `${text}00`]) expect(x.getByHex(bad)).toBeUndefined();
  });

  it('a record with its id as text is placed, found, retagged and deleted from the text alone (its bytes never decoded), either case', () => {
    interface TextRec {
      readonly id: string;
      readonly idBytes: Uint8Array;
    }
    const textRec = (n: number, upper = false): TextRec => ({
      id: upper ? hex(idOf(n)).toUpperCase() : hex(idOf(n)),
      get idBytes(): Uint8Array {
        throw new Error('idBytes read');
      },
    });
    const x = new IdIndex<TextRec>(KEY);
    const recs = Array.from({ length: 300 }, (_, n) => textRec(n, n % 3 === 0));
    for (const r of recs) expect(x.add(r, 7)).toBe(true); // grows on the way
    expect(x.add(textRec(5), 1)).toBe(false); // the same bytes, though another object (and case)
    for (const [n, r] of recs.entries()) {
      expect(x.get(packet(idOf(n)), 4)).toBe(r);
      expect(x.getByHex(hex(idOf(n)))).toBe(r);
    }
    expect(x.retag(recs[10]!, 3)).toBe(true);
    expect(x.smallest(1, null, null, 3)[0]).toBe(recs[10]);
    expect(x.delete(textRec(11))).toBe(false); // not that object
    for (const r of recs.slice(0, 150)) expect(x.delete(r)).toBe(true);
    for (const [n, r] of recs.entries()) expect(x.get(packet(idOf(n)), 4)).toBe(n < 150 ? undefined : r);
    expect(x.size).toBe(150);
  });

  it('at(slot) and values(): every record once, each in exactly one slot', () => {
    fc.assert(
      fc.property(fc.uniqueArray(fc.integer({ min: 0, max: 5000 }), { maxLength: 80 }), fc.array(fc.nat(79), { maxLength: 40 }), (ns, dels) => {
        const x = new IdIndex<Rec>(KEY);
        const rs = ns.map(rec);
        for (const r of rs) x.add(r);
        for (const d of dels) if (rs[d] !== undefined) x.delete(rs[d]);
        const live = rs.filter((r) => x.get(r.idBytes, 0) === r);
        const inSlots: Rec[] = [];
        for (let i = 0; i < x.capacity; i++) {
          const r = x.at(i);
          if (r !== null) inSlots.push(r);
        }
        expect(inSlots).toHaveLength(live.length);
        expect(new Set(inSlots)).toEqual(new Set(live));
        expect([...x.values()]).toEqual(inSlots); // slot order
        expect(x.at(x.capacity)).toBeNull();
      }),
    );
  });

  it('refuses ids that are not 16 bytes and keys that are too short', () => {
    const x = new IdIndex<Rec>(KEY);
    expect(() => x.add({ idBytes: new Uint8Array(15), n: 0 })).toThrow(RangeError);
    expect(() => new IdIndex<Rec>(new Uint32Array(4))).toThrow(RangeError);
  });
});

describe('IdIndex.smallest (the ordered page the admin list is made of)', () => {
  const byteOrder = (a: Rec, b: Rec): number => Buffer.compare(a.idBytes, b.idBytes);

  it('property: the `limit` smallest ids above `after` that `keep` accepts, in byte order (ids differing in any word, high bytes set)', () => {
    // Or four words from a few (around a word's sign bit): many ids tie on their first words.
    const id16 = fc.oneof(
      fc.uint8Array({ minLength: 16, maxLength: 16 }),
      fc.array(fc.constantFrom([0, 0, 0, 0], [0, 0, 0, 1], [0x7f, 0xff, 0xff, 0xff], [0x80, 0, 0, 0], [0xff, 0xff, 0xff, 0xfe]), { minLength: 4, maxLength: 4 }).map((ws) => Uint8Array.from(ws.flat())),
    );
    fc.assert(
      fc.property(
        fc.uniqueArray(id16, { maxLength: 80, selector: hex }),
        fc.integer({ min: 0, max: 20 }),
        fc.option(id16, { nil: null }),
        fc.option(fc.integer({ min: 2, max: 4 }), { nil: null }),
        (idList, limit, after, mod) => {
          const x = new IdIndex<Rec>(KEY);
          const rs = idList.map((idBytes, n) => ({ idBytes, n }));
          for (const r of rs) x.add(r);
          const asked: number[] = [];
          const keep = mod === null ? null : (r: Rec): boolean => (asked.push(r.n), r.n % mod === 0);
          const want = rs
            .filter((r) => (after === null || Buffer.compare(r.idBytes, after) > 0) && (mod === null || r.n % mod === 0))
            .sort(byteOrder)
            .slice(0, limit);
          expect(x.smallest(limit, after, keep)).toEqual(want);
          expect(asked.length).toBeLessThanOrEqual(rs.length);
        },
      ),
      { numRuns: 400 },
    );
  });

  it('reads a record only when its id could still be on the page', () => {
    const x = new IdIndex<Rec>(KEY);
    const rs = Array.from({ length: 2000 }, (_, i) => ({ idBytes: Uint8Array.from(Buffer.from(`${i.toString(16).padStart(8, '0')}${'5a'.repeat(12)}`, 'hex')), n: i }));
    for (const r of [...rs].reverse()) x.add(r);
    let asked = 0;
    const page = x.smallest(10, null, () => (asked++, true));
    expect(page.map((r) => r.n)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect(asked).toBeLessThan(rs.length / 4); // slots are in hash order: far fewer than every record
  });

  it('property: tags follow their records through deletes (backward shifts), growth and retags; a page by tag reads only that tag\'s records and tag 0\'s', () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.integer({ min: 0, max: 400 }), fc.integer({ min: 0, max: 3 }), fc.constantFrom('add', 'del', 'retag')), { maxLength: 300 }), (ops) => {
        const x = new IdIndex<Rec>(KEY);
        const model = new Map<number, { rec: Rec; tag: number }>();
        for (const [n, tag, op] of ops) {
          const have = model.get(n);
          if (op === 'add' && have === undefined) {
            const r = rec(n);
            expect(x.add(r, tag)).toBe(true);
            model.set(n, { rec: r, tag });
          } else if (op === 'del' && have !== undefined) {
            expect(x.delete(have.rec)).toBe(true);
            model.delete(n);
          } else if (op === 'retag') {
            expect(x.retag(have?.rec ?? rec(n), tag)).toBe(have !== undefined);
            if (have !== undefined) have.tag = tag;
          }
        }
        const seen = new Map<Rec, number>();
        for (let i = 0; i < x.capacity; i++) {
          const r = x.at(i);
          if (r !== null) seen.set(r, x.tagAt(i));
        }
        expect(seen.size).toBe(model.size);
        for (const { rec: r, tag } of model.values()) expect(seen.get(r)).toBe(tag);
        const read: Rec[] = [];
        const page = x.smallest(1000, null, (r) => (read.push(r), true), 2);
        expect(new Set(page)).toEqual(new Set([...model.values()].filter((m) => m.tag === 2 || m.tag === 0).map((m) => m.rec)));
        for (const r of read) expect([0, 2]).toContain(seen.get(r));
      }),
      { numRuns: 200 },
    );
  });

  it('nothing for a limit of 0; a bound that is not 16 bytes is a RangeError', () => {
    const x = new IdIndex<Rec>(KEY);
    x.add(rec(1));
    expect(x.smallest(0, null, null)).toEqual([]);
    expect(() => x.smallest(5, new Uint8Array(15), null)).toThrow(RangeError);
  });
});

describe('isLowerHexId (the session id text of the API, the CLI and the table\'s byte order)', () => {
  it('is exactly /^[0-9a-f]{32}$/', () => {
    for (const ok of ['0'.repeat(32), 'f'.repeat(32), '0123456789abcdef'.repeat(2)]) expect(isLowerHexId(ok)).toBe(true);
    for (const bad of ['', '0'.repeat(31), '0'.repeat(33), 'A'.repeat(32), `${'0'.repeat(31)}g`, `${'0'.repeat(31)}/`, `${'0'.repeat(31)}:`, `${'0'.repeat(31)}\u0660`, ` ${'0'.repeat(31)}`]) {
      expect(isLowerHexId(bad)).toBe(false);
    }
    fc.assert(fc.property(fc.string({ maxLength: 40 }), (t) => isLowerHexId(t) === /^[0-9a-f]{32}$/.test(t)));
    fc.assert(fc.property(fc.stringMatching(/^[0-9a-fA-F]{32}$/), (t) => isLowerHexId(t) === /^[0-9a-f]{32}$/.test(t)));
  });
});

describe('SessionTable.getByIdBytes', () => {
  const session = (n: number) => {
    const idBytes = idOf(n);
    return newSessionRecord({
      id: hex(idBytes),
      owner: 'node-a',
      version: 1n,
      state: 'ATTACHED',
      transport: { family: 4, address: '192.0.2.1', port: 1000 + n },
      listener: 0,
      now: 0,
      idleTtlMs: 1000,
    });
  };

  it('finds exactly the live records: after insert, not after remove or discard, again after a new insert', () => {
    const t = new SessionTable({ max: 10, idleTtlMs: 1000, tombstoneMs: 100, idKey: KEY });
    const a = session(1);
    const b = session(2);
    expect(t.insert(a)).toBe(true);
    expect(t.insert(b)).toBe(true);
    expect(t.getByIdBytes(packet(a.idBytes), 4)).toBe(a);
    expect(t.getByIdBytes(packet(b.idBytes), 4)).toBe(b);
    t.remove(a, 0);
    expect(t.getByIdBytes(packet(a.idBytes), 4)).toBeUndefined();
    t.discard(b);
    expect(t.getByIdBytes(packet(b.idBytes), 4)).toBeUndefined();
    const a2 = session(1);
    expect(t.insert(a2)).toBe(true);
    expect(t.getByIdBytes(packet(a2.idBytes), 4)).toBe(a2);
    // A stale record (already replaced) is not removed by mistake.
    t.remove(a, 0);
    expect(t.getByIdBytes(packet(a2.idBytes), 4)).toBe(a2);
    expect(t.get(a2.id)).toBe(a2);
  });
});

describe('idBytesFromHex and SessionRecord.idBytes', () => {
  it('decodes 32 hex characters of either case, and refuses anything else', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 16, maxLength: 16 }), (b) => {
        expect(idBytesFromHex(hex(b))).toEqual(b);
        expect(idBytesFromHex(hex(b).toUpperCase())).toEqual(b);
      }),
    );
    for (const bad of ['', '00'.repeat(15), '00'.repeat(17), `${'00'.repeat(15)}0g`, `${'00'.repeat(15)}:0`, `${'00'.repeat(15)}0/`, `${'00'.repeat(15)}@0`]) {
      expect(() => idBytesFromHex(bad)).toThrow(RangeError);
    }
  });

  it('a record keeps no bytes of its own: each read is a fresh copy decoded from the id', () => {
    const r = newSessionRecord({
      id: hex(idOf(9)),
      owner: 'node-a',
      version: 1n,
      state: 'ATTACHED',
      transport: { family: 4, address: '192.0.2.1', port: 1 },
      listener: 0,
      now: 0,
      idleTtlMs: 1000,
    });
    const a = r.idBytes;
    expect(a).toEqual(idOf(9));
    a[0] = 0xff; // a reader may scribble on its copy
    expect(r.idBytes).toEqual(idOf(9));
    expect(r.idBytes).not.toBe(r.idBytes);
    // Nor its transport's text form: made from the transport when read, and following it.
    expect(r.transportKey).toBe('192.0.2.1:1');
    r.transport = { family: 6, address: '2001:db8::1', port: 443 };
    expect(r.transportKey).toBe('[2001:db8::1]:443');
  });

  it('newSessionRecord refuses an id that is not 32 hex characters', () => {
    const f = { owner: 'node-a', version: 1n, state: 'ATTACHED' as const, transport: { family: 4 as const, address: '192.0.2.1', port: 1 }, listener: 0, now: 0, idleTtlMs: 1000 };
    expect(() => newSessionRecord({ ...f, id: 'abc' })).toThrow(RangeError);
    expect(() => newSessionRecord({ ...f, id: 'zz'.repeat(16) })).toThrow(RangeError);
  });
});
