// HeaderCacheSlots: at most `capacity` records hold an entry, the recently used ones keep theirs
// (second chance), released and dropped entries free their slots, and nothing else is ever touched.
// Entries belong to slots: made once per slot, handed from record to record, never held by two.
// SessionHeaders: the headers written into the slab read back as createPpv2Template builds them.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { DestState, HEADER_SLOT_BYTES, HeaderCacheSlots, SessionHeaders, type SlotEntry } from '../../src/director/header-cache.js';
import { destOf } from '../../src/net/native/addr.js';
import { createPpv2Prefix, createPpv2Template, ppv2OwnerBytes } from '../../src/codec/ppv2.js';
import type { Transport } from '../../src/codec/types.js';

interface Entry extends SlotEntry {
  owner: number;
}
interface Rec {
  readonly n: number;
  shellCache: unknown;
}

/** A cache of `cap` slots, and the entries it made (by slot). */
function cache(cap: number): { slots: HeaderCacheSlots<Entry>; made: Entry[] } {
  const made: Entry[] = [];
  const slots = new HeaderCacheSlots<Entry>(cap, (slot) => {
    const e: Entry = { slot: -1, used: false, owner: -1 };
    made[slot] = e;
    return e;
  });
  return { slots, made };
}

/** Claims an entry for `r` and writes `owner` into it (as the director writes a header). */
function give(slots: HeaderCacheSlots<Entry>, r: Rec, owner: number): Entry {
  const e = slots.claim(r);
  e.owner = owner;
  return e;
}
const holding = (recs: readonly Rec[]): Rec[] => recs.filter((r) => r.shellCache !== undefined);

describe('HeaderCacheSlots', () => {
  it('refuses a capacity that is not a positive integer', () => {
    for (const bad of [0, -1, 1.5, Number.NaN]) expect(() => new HeaderCacheSlots(bad, () => ({ slot: -1, used: false }))).toThrow(/header cache capacity must be an integer ≥ 1/);
  });

  it('gives entries until full, then takes back the one not used since the hand passed', () => {
    const { slots } = cache(3);
    const recs: Rec[] = [0, 1, 2, 3].map((n) => ({ n, shellCache: undefined }));
    for (const r of recs.slice(0, 3)) give(slots, r, r.n);
    expect(slots.size).toBe(3);
    expect(holding(recs).map((r) => r.n)).toEqual([0, 1, 2]);
    // Every entry was just used: the hand clears all three, then takes the first it meets again (rec 0).
    give(slots, recs[3] as Rec, 3);
    expect(holding(recs).map((r) => r.n)).toEqual([1, 2, 3]);
    expect(slots.evicted).toBe(1);
    // Rec 2 is used again; 1 is not: the next new entry takes rec 1's slot and leaves 2's.
    (recs[2]?.shellCache as Entry).used = true;
    const r4: Rec = { n: 4, shellCache: undefined };
    give(slots, r4, 4);
    expect(holding([...recs, r4]).map((r) => r.n)).toEqual([2, 3, 4]);
    expect(slots.evicted).toBe(2);
    expect(slots.size).toBe(3);
  });

  it('a record given a second entry keeps its slot; a released one frees it without an eviction', () => {
    const { slots } = cache(2);
    const a: Rec = { n: 0, shellCache: undefined };
    const b: Rec = { n: 1, shellCache: undefined };
    give(slots, a, 0);
    const first = (a.shellCache as Entry).slot;
    give(slots, a, 10);
    expect((a.shellCache as Entry).slot).toBe(first);
    expect((a.shellCache as Entry).owner).toBe(10);
    expect(slots.size).toBe(1);
    give(slots, b, 1);
    slots.release(a);
    expect(a.shellCache).toBeUndefined();
    expect(slots.size).toBe(1);
    const c: Rec = { n: 2, shellCache: undefined };
    give(slots, c, 2);
    expect(b.shellCache).toBeDefined();
    expect(slots.evicted).toBe(0);
    // Releasing a record that holds nothing of ours changes nothing.
    const stranger: Rec = { n: 3, shellCache: { slot: 0, used: true } };
    slots.release(stranger);
    expect(stranger.shellCache).toBeDefined();
    expect(slots.size).toBe(2);
  });

  it('a slot whose record dropped its entry is reused without taking another record’s', () => {
    const { slots } = cache(2);
    const a: Rec = { n: 0, shellCache: undefined };
    const b: Rec = { n: 1, shellCache: undefined };
    give(slots, a, 0);
    give(slots, b, 1);
    a.shellCache = undefined; // as the core does when the session's transport changes
    const c: Rec = { n: 2, shellCache: undefined };
    give(slots, c, 2);
    expect(b.shellCache).toBeDefined();
    expect(c.shellCache).toBeDefined();
    expect(slots.evicted).toBe(0);
  });

  it('property: under any sequence, at most capacity records hold entries, each in the slot it names, and a used entry survives the next give', () => {
    const op = fc.oneof(
      fc.record({ k: fc.constant('give' as const), r: fc.nat(15) }),
      fc.record({ k: fc.constant('use' as const), r: fc.nat(15) }),
      fc.record({ k: fc.constant('release' as const), r: fc.nat(15) }),
      fc.record({ k: fc.constant('drop' as const), r: fc.nat(15) }),
    );
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 6 }), fc.array(op, { maxLength: 200 }), (cap, ops) => {
        const { slots, made } = cache(cap);
        const recs: Rec[] = Array.from({ length: 16 }, (_, n) => ({ n, shellCache: undefined }));
        let evicted = 0;
        for (const o of ops) {
          const r = recs[o.r] as Rec;
          if (o.k === 'give') {
            const before = holding(recs);
            // Entries used since the hand last passed them survive this give unless every holder was used.
            const usedOthers = before.filter((x) => x !== r && (x.shellCache as Entry).used);
            give(slots, r, r.n);
            expect((r.shellCache as Entry).owner).toBe(r.n);
            const lost = before.filter((x) => x.shellCache === undefined);
            expect(lost.length).toBeLessThanOrEqual(1);
            evicted += lost.length;
            if (usedOthers.length < before.length - (before.includes(r) ? 1 : 0)) for (const x of usedOthers) expect(x.shellCache).toBeDefined();
          } else if (o.k === 'use') {
            if (r.shellCache !== undefined) (r.shellCache as Entry).used = true;
          } else if (o.k === 'release') slots.release(r);
          else r.shellCache = undefined;
          const held = holding(recs);
          expect(held.length).toBeLessThanOrEqual(cap);
          expect(new Set(held.map((x) => (x.shellCache as Entry).slot)).size).toBe(held.length);
          for (const x of held) expect((x.shellCache as Entry).slot).toBeLessThan(cap);
          // Entries are the slots' own, made once per slot: no two records hold the same one.
          expect(new Set(held.map((x) => x.shellCache)).size).toBe(held.length);
          for (const x of held) expect(x.shellCache).toBe(made[(x.shellCache as Entry).slot]);
          expect(made.filter((e) => e !== undefined).length).toBeLessThanOrEqual(cap);
          expect(slots.evicted).toBe(evicted);
        }
      }),
    );
  });
});

describe('SessionHeaders', () => {
  const id = Uint8Array.from({ length: 16 }, (_, i) => 0xa0 + i);
  const v4: Transport = { family: 4, address: '198.51.100.7', port: 40000 };
  const v6: Transport = { family: 6, address: '2001:db8::42', port: 443 };
  const dst4: Transport = { family: 4, address: '127.0.0.1', port: 4500 };
  const dst6: Transport = { family: 6, address: '::1', port: 4500 };
  const rec = (): { shellCache: unknown } => ({ shellCache: undefined });
  const expected = (t: Transport, owner: string, version: bigint): Buffer => createPpv2Template(createPpv2Prefix('DGRAM', t, t.family === 6 ? dst6 : dst4), id, version, ppv2OwnerBytes(owner));
  const cacheFor = (h: SessionHeaders<string>, r: { shellCache: unknown }, t: Transport, owner: string, version: bigint) =>
    h.cache(r, t, 0, createPpv2Prefix('DGRAM', t, t.family === 6 ? dst6 : dst4), id, owner, `up:${owner}`, version, ppv2OwnerBytes(owner));

  it('writes each header as createPpv2Template builds it, IPv4 and IPv6; a retarget rewrites the TLVs and keeps the address block', () => {
    const h = new SessionHeaders<string>(4);
    const a = rec();
    const b = rec();
    const ea = cacheFor(h, a, v4, 'node-0', 1n);
    const eb = cacheFor(h, b, v6, 'node-1', 7n);
    expect(a.shellCache).toBe(ea);
    expect(Buffer.compare(ea.template, expected(v4, 'node-0', 1n))).toBe(0);
    expect(Buffer.compare(eb.template, expected(v6, 'node-1', 7n))).toBe(0);
    expect([ea.node, ea.up, ea.version, eb.node, eb.up, eb.version]).toEqual(['node-0', 'up:node-0', 1n, 'node-1', 'up:node-1', 7n]);
    h.retarget(ea, id, 'node-22', 'up:node-22', 2n, ppv2OwnerBytes('node-22'));
    expect(Buffer.compare(ea.template, expected(v4, 'node-22', 2n))).toBe(0);
    expect([ea.node, ea.up, ea.version]).toEqual(['node-22', 'up:node-22', 2n]);
    // The neighbour's header is untouched by the rewrite.
    expect(Buffer.compare(eb.template, expected(v6, 'node-1', 7n))).toBe(0);
  });

  it('a header longer than a slot gets a buffer of its own, and goes back into the slab when it fits again', () => {
    const h = new SessionHeaders<string>(2);
    const long = 'n'.repeat(64); // the longest owner id a header carries
    const a = rec();
    const b = rec();
    const eb = cacheFor(h, b, v4, 'node-b', 3n);
    const ea = cacheFor(h, a, v6, long, 1n);
    expect(ea.template.length).toBeGreaterThan(HEADER_SLOT_BYTES);
    expect(Buffer.compare(ea.template, expected(v6, long, 1n))).toBe(0);
    expect(ea.template.buffer).not.toBe(eb.template.buffer);
    h.retarget(ea, id, 'node-a', 'up:node-a', 2n, ppv2OwnerBytes('node-a'));
    expect(Buffer.compare(ea.template, expected(v6, 'node-a', 2n))).toBe(0);
    expect(ea.template.buffer).toBe(eb.template.buffer);
    h.retarget(ea, id, long, `up:${long}`, 3n, ppv2OwnerBytes(long));
    expect(Buffer.compare(ea.template, expected(v6, long, 3n))).toBe(0);
    expect(Buffer.compare(eb.template, expected(v4, 'node-b', 3n))).toBe(0);
  });

  it('a slot taken back is rewritten for its new session: the old one holds nothing, the new one its own header, its destination cleared', () => {
    const h = new SessionHeaders<string>(1);
    const a = rec();
    const b = rec();
    const ea = cacheFor(h, a, v6, 'node-0', 1n);
    expect(h.destOf(ea)).toBe(true);
    expect([...h.dests.subarray(ea.destAt, ea.destAt + 6)]).toEqual([...(destOf(v6) as Int32Array)]);
    ea.used = false; // not used since the hand passed: the next claim takes it back
    const eb = cacheFor(h, b, v4, 'node-1', 5n);
    expect(eb).toBe(ea); // the slot's entry, rewritten
    expect(a.shellCache).toBeUndefined();
    expect(b.shellCache).toBe(eb);
    expect(eb.dest).toBe(DestState.UNKNOWN);
    expect(eb.transport).toBe(v4);
    // Its destination is written again for the new transport at the first reply (an IPv4 one: the IPv6
    // words before it zeroed).
    expect(h.destOf(eb)).toBe(true);
    expect([...h.dests.subarray(eb.destAt, eb.destAt + 6)]).toEqual([...(destOf(v4) as Int32Array)]);
    expect(Buffer.compare(eb.template, expected(v4, 'node-1', 5n))).toBe(0);
    expect([h.size, h.evicted]).toEqual([1, 1]);
    h.release(b);
    expect(b.shellCache).toBeUndefined();
    expect(h.size).toBe(0);
  });

  it('each slot keeps its own reply destination in the shared array; an address that is not an IP literal has none', () => {
    const h = new SessionHeaders<string>(3);
    const [a, b, c] = [rec(), rec(), rec()];
    const ea = cacheFor(h, a, v6, 'node-0', 1n);
    const eb = cacheFor(h, b, v4, 'node-1', 1n);
    expect(ea.destAt).not.toBe(eb.destAt);
    expect([h.destOf(eb), h.destOf(ea)]).toEqual([true, true]);
    expect([...h.dests.subarray(ea.destAt, ea.destAt + 6)]).toEqual([...(destOf(v6) as Int32Array)]);
    expect([...h.dests.subarray(eb.destAt, eb.destAt + 6)]).toEqual([...(destOf(v4) as Int32Array)]);
    // Asked again: kept, not written again (a change of the ints behind its back stays visible).
    h.dests[eb.destAt + 1] = 7;
    expect(h.destOf(eb)).toBe(true);
    expect(h.dests[eb.destAt + 1]).toBe(7);
    const named: Transport = { family: 4, address: 'example.com', port: 1 };
    const ec = h.cache(c, named, 0, createPpv2Prefix('DGRAM', v4, v4), new Uint8Array(16), 'node-2', 'up:node-2', 1n, ppv2OwnerBytes('node-2'));
    expect([h.destOf(ec), ec.dest]).toEqual([false, DestState.NONE]);
    expect([...h.dests.subarray(ec.destAt, ec.destAt + 6)]).toEqual([0, 0, 0, 0, 0, 0]);
  });

  it('a header that cannot be written (a version past 64 bits: a programming error) throws and leaves the session holding nothing', () => {
    const h = new SessionHeaders<string>(1);
    const a = rec();
    const b = rec();
    cacheFor(h, a, v4, 'node-0', 1n);
    (a.shellCache as { used: boolean }).used = false;
    expect(() => cacheFor(h, b, v4, 'node-1', 2n ** 64n)).toThrow(RangeError);
    expect([a.shellCache, b.shellCache, h.size]).toEqual([undefined, undefined, 0]);
    // The slot is free for the next session, whose header is whole.
    const eb = cacheFor(h, b, v4, 'node-1', 3n);
    expect(Buffer.compare(eb.template, expected(v4, 'node-1', 3n))).toBe(0);
  });

  it('property: every holder reads back the header last cached or retargeted for it', () => {
    const op = fc.oneof(
      fc.record({ k: fc.constant('cache' as const), r: fc.nat(7), v6: fc.boolean(), owner: fc.constantFrom('a', 'node-1', 'n'.repeat(40), 'n'.repeat(64)), version: fc.bigInt({ min: 1n, max: 2n ** 63n }) }),
      fc.record({ k: fc.constant('retarget' as const), r: fc.nat(7), owner: fc.constantFrom('b', 'node-2', 'n'.repeat(64)), version: fc.bigInt({ min: 1n, max: 2n ** 63n }) }),
      fc.record({ k: fc.constant('release' as const), r: fc.nat(7) }),
    );
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 4 }), fc.array(op, { maxLength: 80 }), (cap, ops) => {
        const h = new SessionHeaders<string>(cap);
        const recs = Array.from({ length: 8 }, rec);
        const want = new Map<number, { t: Transport; owner: string; version: bigint }>();
        for (const o of ops) {
          const r = recs[o.r] as { shellCache: unknown };
          if (o.k === 'cache') {
            const t = o.v6 ? v6 : v4;
            cacheFor(h, r, t, o.owner, o.version);
            want.set(o.r, { t, owner: o.owner, version: o.version });
          } else if (o.k === 'retarget') {
            const w = want.get(o.r);
            if (r.shellCache === undefined || w === undefined) continue;
            h.retarget(r.shellCache as never, id, o.owner, `up:${o.owner}`, o.version, ppv2OwnerBytes(o.owner));
            want.set(o.r, { t: w.t, owner: o.owner, version: o.version });
          } else h.release(r);
          recs.forEach((x, i) => {
            if (x.shellCache === undefined) return;
            const w = want.get(i)!;
            const e = x.shellCache as { template: Buffer; transport: Transport };
            expect(e.transport).toBe(w.t);
            expect(Buffer.compare(e.template, expected(w.t, w.owner, w.version))).toBe(0);
          });
        }
      }),
    );
  });
});
