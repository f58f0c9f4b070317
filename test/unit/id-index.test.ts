// IdIndex, the per-datagram session lookup by the 16 id bytes, as an index of row numbers whose id words
// live in the rows' own column (`rows.ids[4r .. 4r+3]`, read through on every call, so the caller may
// replace it by a bigger array): lookups straight from a packet at an offset, by hex text in either case
// and by words; exact deletes by row (never a row's twin of the same id); tags, retags and `at(slot)`
// walks; growth; and model checks (random add / delete / get against
// a Map, rows freed and reused) with ids drawn from a small set and a small table, so that probe runs
// collide, wrap and are shifted back.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { hexWords, ID_INDEX_KEY_WORDS, IdIndex, idBytesFromHex, idIndexKey, isLowerHexId } from '../../src/session/id-index.js';
import { newSessionRecord, SessionTable } from '../../src/session/table.js';

const KEY = Uint32Array.from({ length: ID_INDEX_KEY_WORDS }, (_, i) => 0x9e3779b9 * (i + 1));
const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
const idOf = (n: number): Uint8Array => {
  const b = new Uint8Array(16);
  b[0] = n & 0xff;
  b[7] = (n >>> 8) & 0xff;
  b[15] = 1;
  return b;
};
/** A datagram carrying `id` at byte 4 (as JV1 does), with other bytes around it. */
const packet = (id: Uint8Array): Buffer => Buffer.concat([Buffer.from([0x4a, 0x56, 1, 2]), id, Buffer.alloc(9, 0xee)]);

/** The four little-endian signed 32-bit words of a 16-byte id, as the index reads them. */
const wordsOf = (id: Uint8Array): [number, number, number, number] => {
  const b = Buffer.from(id.buffer, id.byteOffset, id.length);
  return [b.readInt32LE(0), b.readInt32LE(4), b.readInt32LE(8), b.readInt32LE(12)];
};

/** The rows' id column as the session table keeps it: replaced by a bigger copy when a row does not fit. */
interface Rows {
  ids: Int32Array;
}
const newRows = (rowCapacity = 4): Rows => ({ ids: new Int32Array(rowCapacity * 4) });

/** Writes `id` as row `row`'s four words (before the row is added), growing the column when needed. */
function setId(rows: Rows, row: number, id: Uint8Array): void {
  expect(id.length).toBe(16);
  if ((row + 1) * 4 > rows.ids.length) {
    let n = Math.max(4, rows.ids.length);
    while (n < (row + 1) * 4) n *= 2;
    const bigger = new Int32Array(n);
    bigger.set(rows.ids);
    rows.ids = bigger;
  }
  rows.ids.set(wordsOf(id), row * 4);
}

/** An index over rows 0 .. ids.length - 1, row r having id ids[r] (each added with `tag`, all expected to be accepted). */
function indexOver(key: Uint32Array, ids: readonly Uint8Array[], tag = 0): { x: IdIndex; rows: Rows } {
  const rows = newRows();
  const x = new IdIndex(key, rows);
  for (const [r, id] of ids.entries()) {
    setId(rows, r, id);
    expect(x.add(r, tag)).toBe(true);
  }
  return { x, rows };
}

/** Every row in a slot, with its tag, in slot order. */
function walk(x: IdIndex): { row: number; tag: number }[] {
  const out: { row: number; tag: number }[] = [];
  for (let i = 0; i < x.capacity; i++) {
    const row = x.at(i);
    if (row !== -1) out.push({ row, tag: x.tagAt(i) });
  }
  return out;
}

describe('IdIndex', () => {
  it('finds a row from the id bytes at an offset of a packet (or from its words), and nothing (-1) for another id', () => {
    const { x } = indexOver(KEY, [idOf(1)]);
    expect(x.get(packet(idOf(1)), 4)).toBe(0);
    expect(x.get(idOf(1), 0)).toBe(0);
    expect(x.find(...wordsOf(idOf(1)))).toBe(0);
    expect(x.get(packet(idOf(2)), 4)).toBe(-1);
    expect(x.get(packet(idOf(1)), 3)).toBe(-1); // the same bytes one place off are another id
    expect(x.find(...wordsOf(idOf(2)))).toBe(-1);
    expect(x.size).toBe(1);
  });

  it('refuses a second row with the same id bytes; deletes exactly the row it holds, never its twin', () => {
    const rows = newRows();
    const x = new IdIndex(KEY, rows);
    setId(rows, 3, idOf(7));
    setId(rows, 5, idOf(7)); // a twin: another row, the same id
    expect(x.add(3)).toBe(true);
    expect(x.add(5)).toBe(false);
    expect(x.size).toBe(1);
    expect(x.delete(5)).toBe(false);
    expect(x.get(idOf(7), 0)).toBe(3);
    expect(x.delete(3)).toBe(true);
    expect(x.delete(3)).toBe(false);
    expect(x.get(idOf(7), 0)).toBe(-1);
    expect(x.size).toBe(0);
    expect(x.add(5)).toBe(true); // the id is free again: now the twin is the row of it
    expect(x.get(packet(idOf(7)), 4)).toBe(5);
  });

  it('grows past its load factor and keeps every row, findable after deletes (backward shifts) elsewhere', () => {
    const ids = Array.from({ length: 5000 }, (_, i) => idOf(i));
    const { x } = indexOver(idIndexKey(), ids);
    expect(x.size).toBe(5000);
    expect(x.capacity).toBeGreaterThanOrEqual(5000 * 1.6);
    for (const [r, id] of ids.entries()) expect(x.get(packet(id), 4)).toBe(r);
    for (let r = 0; r < ids.length; r += 3) expect(x.delete(r)).toBe(true);
    for (const [r, id] of ids.entries()) expect(x.get(id, 0)).toBe(r % 3 === 0 ? -1 : r);
    expect(x.size).toBe(5000 - Math.ceil(5000 / 3));
  });

  it('a capacity asked for is rounded up to a power of two, at least 16', () => {
    expect(new IdIndex(KEY, newRows()).capacity).toBe(16);
    expect(new IdIndex(KEY, newRows(), 3).capacity).toBe(16);
    expect(new IdIndex(KEY, newRows(), 100).capacity).toBe(128);
    expect(new IdIndex(KEY, newRows(), 256).capacity).toBe(256);
  });

  it('reads the rows\' id column through on every call: the caller may replace it by a bigger copy at any time', () => {
    const rows = newRows(4);
    const x = new IdIndex(KEY, rows);
    for (let r = 0; r < 4; r++) {
      setId(rows, r, idOf(r));
      expect(x.add(r)).toBe(true);
    }
    const old = rows.ids;
    setId(rows, 4, idOf(4)); // does not fit: the column is replaced
    expect(rows.ids).not.toBe(old);
    old.fill(0); // nothing may still read the old array
    expect(x.add(4)).toBe(true);
    for (let r = 0; r <= 4; r++) expect(x.get(idOf(r), 0)).toBe(r);
    expect(x.delete(2)).toBe(true);
    for (let r = 0; r <= 4; r++) expect(x.get(idOf(r), 0)).toBe(r === 2 ? -1 : r);
  });

  it('works with any key (the key places rows, it never changes what is found)', () => {
    fc.assert(
      fc.property(fc.uint32Array({ minLength: ID_INDEX_KEY_WORDS, maxLength: ID_INDEX_KEY_WORDS }), fc.uniqueArray(fc.integer({ min: 0, max: 5000 }), { maxLength: 60 }), (key, ns) => {
        const { x } = indexOver(key, ns.map(idOf));
        for (const [r, n] of ns.entries()) expect(x.get(idOf(n), 0)).toBe(r);
        expect(x.get(idOf(6000), 0)).toBe(-1);
        expect(x.size).toBe(ns.length);
      }),
    );
  });

  it('model: random add / delete / get agree with a Map (small table, colliding runs, rows freed and reused, the column replaced)', () => {
    const op = fc.oneof(
      fc.record({ k: fc.constant('add' as const), n: fc.integer({ min: 0, max: 40 }) }),
      fc.record({ k: fc.constant('del' as const), n: fc.integer({ min: 0, max: 40 }) }),
      fc.record({ k: fc.constant('get' as const), n: fc.integer({ min: 0, max: 40 }) }),
    );
    fc.assert(
      fc.property(fc.uint32Array({ minLength: ID_INDEX_KEY_WORDS, maxLength: ID_INDEX_KEY_WORDS }), fc.array(op, { maxLength: 300 }), (key, ops) => {
        const rows = newRows(1);
        const x = new IdIndex(key, rows);
        const model = new Map<number, number>(); // id number → its row
        const free: number[] = [];
        let next = 0;
        const alloc = (): number => free.pop() ?? next++;
        for (const o of ops) {
          const id = idOf(o.n);
          const have = model.get(o.n);
          if (o.k === 'add') {
            const r = alloc();
            setId(rows, r, id);
            expect(x.add(r)).toBe(have === undefined);
            if (have === undefined) model.set(o.n, r);
            else {
              expect(x.delete(r)).toBe(false); // the refused twin is not in the index
              free.push(r);
            }
          } else if (o.k === 'del') {
            if (have !== undefined) {
              expect(x.delete(have)).toBe(true);
              expect(x.delete(have)).toBe(false);
              model.delete(o.n);
              free.push(have);
            } else {
              const r = alloc();
              setId(rows, r, id);
              expect(x.delete(r)).toBe(false);
              free.push(r);
            }
          } else {
            expect(x.get(packet(id), 4)).toBe(have ?? -1);
            expect(x.find(...wordsOf(id))).toBe(have ?? -1);
          }
          expect(x.size).toBe(model.size);
        }
        for (const [n, r] of model) expect(x.get(idOf(n), 0)).toBe(r);
        expect(walk(x).map((s) => s.row).sort((a, b) => a - b)).toEqual([...model.values()].sort((a, b) => a - b));
      }),
      { numRuns: 300 },
    );
  });

  it('getByHex finds the row the 32 hex characters spell (either case), and nothing (-1) for any other text', () => {
    fc.assert(
      fc.property(fc.uniqueArray(fc.uint8Array({ minLength: 16, maxLength: 16 }), { minLength: 1, maxLength: 40, selector: hex }), (ids) => {
        const added = ids.slice(1);
        const { x } = indexOver(KEY, added);
        for (const [r, id] of added.entries()) {
          expect(x.getByHex(hex(id))).toBe(r);
          expect(x.getByHex(hex(id).toUpperCase())).toBe(r);
        }
        expect(x.getByHex(hex(ids[0]!))).toBe(-1); // not added
      }),
    );
    const { x } = indexOver(KEY, [idOf(0)]); // 32 hex characters, mostly '0'
    const text = hex(idOf(0));
    expect(x.getByHex(text)).toBe(0);
    // Any character that is not a hex digit, at any place, and any other length: -1, never a throw.
    for (let i = 0; i < 32; i++) {
      for (const c of ['g', 'G', ':', '/', '@', '`', ' ', 'é', '\u0130']) expect(x.getByHex(text.slice(0, i) + c + text.slice(i + 1))).toBe(-1);
    }
    for (const bad of ['', text.slice(1), `${text}0`, `${text}00`]) expect(x.getByHex(bad)).toBe(-1);
  });

  it('rows whose words were written from id text (hexWords, either case) are placed, found, retagged and deleted exactly', () => {
    const rows = newRows(301);
    const x = new IdIndex(KEY, rows);
    const text = (n: number): string => (n % 3 === 0 ? hex(idOf(n)).toUpperCase() : hex(idOf(n)));
    for (let n = 0; n < 300; n++) {
      expect(hexWords(text(n), rows.ids.subarray(4 * n, 4 * n + 4))).toBe(true);
      expect(x.add(n, 7)).toBe(true); // grows on the way
    }
    expect(hexWords(hex(idOf(6)), rows.ids.subarray(1200, 1204))).toBe(true); // row 300: row 6's bytes, in the other case
    expect(x.add(300, 1)).toBe(false);
    for (let n = 0; n < 300; n++) {
      expect(x.get(packet(idOf(n)), 4)).toBe(n);
      expect(x.getByHex(hex(idOf(n)))).toBe(n);
      expect(x.getByHex(hex(idOf(n)).toUpperCase())).toBe(n);
    }
    expect(x.retag(10, 3)).toBe(true);
    expect(x.retag(300, 3)).toBe(false); // not indexed
    const tagged = Array.from({ length: x.capacity }, (_, i) => i).filter((i) => x.at(i) !== -1 && x.tagAt(i) === 3);
    expect(tagged.map((i) => x.at(i))).toEqual([10]);
    expect(x.delete(300)).toBe(false); // not that row
    expect(x.get(idOf(6), 0)).toBe(6);
    for (let n = 0; n < 150; n++) expect(x.delete(n)).toBe(true);
    for (let n = 0; n < 300; n++) expect(x.get(packet(idOf(n)), 4)).toBe(n < 150 ? -1 : n);
    expect(x.size).toBe(150);
  });

  it('at(slot): every indexed row once, each in exactly one slot; -1 for an empty slot and past the end', () => {
    fc.assert(
      fc.property(fc.uniqueArray(fc.integer({ min: 0, max: 5000 }), { maxLength: 80 }), fc.array(fc.nat(79), { maxLength: 40 }), (ns, dels) => {
        const { x } = indexOver(KEY, ns.map(idOf));
        const deleted = new Set<number>();
        for (const d of dels) {
          if (d < ns.length) expect(x.delete(d)).toBe(!deleted.has(d));
          deleted.add(d);
        }
        const live = ns.map((_, r) => r).filter((r) => !deleted.has(r));
        const inSlots = walk(x).map((s) => s.row);
        expect(inSlots).toHaveLength(live.length);
        expect(new Set(inSlots)).toEqual(new Set(live));
        expect(x.size).toBe(live.length);
        let empty = 0;
        for (let i = 0; i < x.capacity; i++) if (x.at(i) === -1) empty++;
        expect(empty).toBe(x.capacity - live.length);
        expect(x.at(x.capacity)).toBe(-1);
      }),
    );
  });

  it('refuses keys that are too short', () => {
    expect(() => new IdIndex(new Uint32Array(4), newRows())).toThrow(RangeError);
    expect(() => new IdIndex(new Uint32Array(ID_INDEX_KEY_WORDS - 1), newRows())).toThrow(RangeError);
    expect(() => new IdIndex(new Uint32Array(ID_INDEX_KEY_WORDS), newRows())).not.toThrow();
  });
});

describe('hexWords (the id words straight from the id text)', () => {
  it('writes the little-endian words of the bytes 32 hex characters spell (either case), and is false for any other text', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 16, maxLength: 16 }), (b) => {
        const out = new Int32Array(4);
        expect(hexWords(hex(b), out)).toBe(true);
        expect([...out]).toEqual(wordsOf(b));
        out.fill(0);
        expect(hexWords(hex(b).toUpperCase(), out)).toBe(true);
        expect([...out]).toEqual(wordsOf(b));
      }),
    );
    const text = hex(idOf(9));
    const out = new Int32Array(4);
    for (let i = 0; i < 32; i++) {
      for (const c of ['g', ':', '/', '@', '`', ' ', 'é']) expect(hexWords(text.slice(0, i) + c + text.slice(i + 1), out)).toBe(false);
    }
    for (const bad of ['', text.slice(1), `${text}0`]) expect(hexWords(bad, out)).toBe(false);
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
