// SharedNodeStates: which shared node-state events a director applies, so that directors changing one node
// at once all end with the state the store committed last, an echo of an older own write never undoes a
// newer local change, and a write whose echo a watch gap left out does not hold the node for good.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { SharedNodeStates, type SharedNodeValue } from '../../src/nodes/shared-states.js';
import { NodeState } from '../../src/nodes/membership.js';

const { ACTIVE, DRAINING } = NodeState;
const st = (c: { state: NodeState } | null): NodeState | null => (c === null ? null : c.state);

describe('SharedNodeStates', () => {
  it('a drain on A and an undrain on B at once: both end with the write the store committed last (either order)', () => {
    for (const lastFirst of [false, true]) {
      const a = new SharedNodeStates('a', 'x');
      const b = new SharedNodeStates('b', 'y');
      let onA: NodeState = DRAINING; // applied locally when made
      let onB: NodeState = ACTIVE;
      const wa = a.wrote('n', DRAINING);
      const wb = b.wrote('n', ACTIVE);
      const log: SharedNodeValue[] = lastFirst ? [wb, wa] : [wa, wb];
      log.forEach((v, i) => {
        onA = st(a.event('n', { ...v }, BigInt(i + 1))) ?? onA;
        onB = st(b.event('n', { ...v }, BigInt(i + 1))) ?? onB;
      });
      const last = (log[1] as SharedNodeValue).state;
      expect([onA, onB]).toEqual([last, last]);
    }
  });

  it('the echo of an older own write does not undo a newer local change (drain, undrain, drain)', () => {
    const a = new SharedNodeStates('a', 'x');
    const w1 = a.wrote('n', DRAINING);
    const w2 = a.wrote('n', ACTIVE);
    const w3 = a.wrote('n', DRAINING);
    expect(a.event('n', { ...w1 }, 1n)).toBeNull();
    expect(a.event('n', { ...w2 }, 2n)).toBeNull();
    expect(a.inFlight('n')).toBe(true);
    expect(a.event('n', { ...w3 }, 3n)).toEqual({ state: DRAINING, director: 'a' });
    expect(a.inFlight('n')).toBe(false);
  });

  it('another director’s write committed before ours is passed over; one committed after it is applied, naming its director', () => {
    const a = new SharedNodeStates('a', 'x');
    const mine = a.wrote('n', DRAINING);
    expect(a.event('n', { state: ACTIVE, director: 'b', write: 'y-1' }, 1n)).toBeNull();
    expect(a.event('n', { ...mine }, 2n)).toEqual({ state: DRAINING, director: 'a' });
    expect(a.event('n', { state: ACTIVE, director: 'b', write: 'y-2' }, 3n)).toEqual({ state: ACTIVE, director: 'b' });
  });

  it('a write whose echo a watch gap left out (the store delivers only the entry as it is) is settled by its answer\'s revision: the later write is applied', () => {
    // The answer first, then the listing after the gap (another director wrote after us).
    const a = new SharedNodeStates('a', 'x');
    const mine = a.wrote('n', DRAINING);
    expect(a.answered('n', mine, 5n)).toBeNull();
    expect(a.event('n', { state: ACTIVE, director: 'b', write: 'y-1' }, 9n)).toEqual({ state: ACTIVE, director: 'b' });
    expect(a.inFlight('n')).toBe(false);
    // The listing first, then the answer (the listing was delivered before the put's answer came back).
    const c = new SharedNodeStates('c', 'z');
    const w = c.wrote('n', DRAINING);
    expect(c.event('n', { state: ACTIVE, director: 'b', write: 'y-1' }, 9n)).toBeNull(); // in flight: its revision unknown yet
    expect(c.answered('n', w, 5n)).toEqual({ state: ACTIVE, director: 'b' });
    expect(c.inFlight('n')).toBe(false);
    // An answer after its echo settles nothing more.
    const d = new SharedNodeStates('d', 'w');
    const wd = d.wrote('n', ACTIVE);
    expect(d.event('n', { ...wd }, 4n)).toEqual({ state: ACTIVE, director: 'd' });
    expect(d.answered('n', wd, 4n)).toBeNull();
    // An answer whose echo is still to come waits for it.
    const e = new SharedNodeStates('e', 'v');
    const we = e.wrote('n', ACTIVE);
    expect(e.answered('n', we, 7n)).toBeNull();
    expect(e.event('n', { state: DRAINING, director: 'b', write: 'y-3' }, 6n)).toBeNull();
    expect(e.event('n', { ...we }, 7n)).toEqual({ state: ACTIVE, director: 'e' });
  });

  it('a write reported failed is no longer waited for; if the store committed it after all, its echo is applied in order', () => {
    const a = new SharedNodeStates('a', 'x');
    const w = a.wrote('n', DRAINING);
    expect(a.failed('n', w)).toBeNull(); // nothing delivered since it was made: the director keeps its state
    expect(a.inFlight('n')).toBe(false);
    expect(st(a.event('n', { state: ACTIVE, director: 'b', write: 'y-1' }, 1n))).toBe(ACTIVE);
    expect(st(a.event('n', { ...w }, 2n))).toBe(DRAINING);
  });

  it('a write refused while another director\'s write was delivered: that write (the store holds it) is applied; one delivered before ours was made is not', () => {
    const a = new SharedNodeStates('a', 'x');
    expect(st(a.event('n', { state: DRAINING, director: 'b', write: 'y-1' }, 1n))).toBe(DRAINING);
    const w = a.wrote('n', ACTIVE);
    expect(a.failed('n', w)).toBeNull(); // y-1 came before: the director's own undrain stays (warned)
    const w2 = a.wrote('n', ACTIVE);
    expect(a.event('n', { state: DRAINING, director: 'b', write: 'y-2' }, 2n)).toBeNull(); // passed over: w2 may come later
    expect(a.failed('n', w2)).toEqual({ state: DRAINING, director: 'b' });
    // With another own write still in flight, that one decides.
    const w3 = a.wrote('n', ACTIVE);
    const w4 = a.wrote('n', ACTIVE);
    expect(a.event('n', { state: DRAINING, director: 'b', write: 'y-3' }, 3n)).toBeNull();
    expect(a.failed('n', w3)).toBeNull();
    expect(a.event('n', { ...w4 }, 4n)).toEqual({ state: ACTIVE, director: 'a' });
  });

  it('a write whose answer was lost stays in flight: another director\'s older write delivered meanwhile is passed over, its late echo decides (the drain is not cancelled)', () => {
    // A drains n; its put times out on A's side but etcd commits it at 6, after B's undrain at 5. A's
    // watch delivers 5 after the timeout: applied at once, B's ACTIVE would cancel A's drain.
    const a = new SharedNodeStates('a', 'x');
    const w = a.wrote('n', DRAINING);
    // (the shell does not call failed on a lost answer: it waits for the echo, up to a bound)
    expect(a.event('n', { state: ACTIVE, director: 'b', write: 'y-1' }, 5n)).toBeNull();
    expect(a.event('n', { ...w }, 6n)).toEqual({ state: DRAINING, director: 'a' });
    expect(a.failed('n', w)).toBeNull(); // the bound passes after the echo: nothing more
    // Never committed: the bound passes, and B's write (the store's) is applied then.
    const w2 = a.wrote('n', DRAINING);
    expect(a.event('n', { state: ACTIVE, director: 'b', write: 'y-2' }, 7n)).toBeNull();
    expect(a.failed('n', w2)).toEqual({ state: ACTIVE, director: 'b' });
    expect(a.inFlight('n')).toBe(false);
  });

  it('entries a predecessor with the same director id wrote (no write of this process in flight) are applied; other nodes are independent', () => {
    const a = new SharedNodeStates('a', 'new');
    expect(st(a.event('n', { state: DRAINING, director: 'a', write: 'old-7' }, 1n))).toBe(DRAINING);
    expect(st(a.event('n', { state: DRAINING, director: 'a' }, 2n))).toBe(DRAINING); // written before writes were named
    a.wrote('m', ACTIVE);
    expect(st(a.event('n', { state: ACTIVE, director: 'b', write: 'y-1' }, 3n))).toBe(ACTIVE);
  });

  it('values that are not a node state are not applied, and do not settle anything', () => {
    const a = new SharedNodeStates('a', 'x');
    const w = a.wrote('n', DRAINING);
    expect(a.event('n', { state: 'gone', director: 'b' }, 1n)).toBeNull();
    expect(a.event('n', { director: 'a', write: 'x-99', state: DRAINING }, 2n)).toBeNull(); // not ours in flight: n still waits for w
    expect(a.inFlight('n')).toBe(true);
    expect(st(a.event('n', { ...w }, 3n))).toBe(DRAINING);
  });

  // The store as a serial log (revision = position + 1): directors change the node locally and write;
  // writes commit (or fail, some committed anyway) in any order and are answered (with their revision)
  // whenever; each director is delivered the log in order at its own pace, or jumps over a gap to the
  // last entry (a resync: the entry as it is, at the log's revision). Once everything is committed,
  // answered and delivered, every director holds the state committed last — and no director applies an
  // event while one of its writes is in flight.
  it('placeGuard: nothing beyond the feed while the director holds what the store delivered; while its own write is on its way, the revision before the latest delivered state, or the write\'s own once answered; after a refused write, until they agree again', () => {
    const a = new SharedNodeStates('a', 'x');
    expect(a.placeGuard('n')).toBeUndefined();
    expect(a.event('n', { state: DRAINING, director: 'b', write: 'y-1' }, 5n)).toEqual({ state: DRAINING, director: 'b' });
    expect(a.placeGuard('n')).toBeUndefined();
    const undrain = a.wrote('n', ACTIVE); // on its way: the store still holds draining (revision 5)
    expect(a.placeGuard('n')).toBe(4n);
    expect(a.answered('n', undrain, 7n)).toBeNull(); // in the store at 7, its echo not here yet
    expect(a.placeGuard('n')).toBe(7n);
    expect(a.event('n', { ...undrain }, 7n)).toEqual({ state: ACTIVE, director: 'a' });
    expect(a.placeGuard('n')).toBeUndefined();
    const ownDrain = a.wrote('n', DRAINING);
    expect(a.answered('n', ownDrain, 8n)).toBeNull(); // a drain answered: only an undrain's revision guards
    expect(a.placeGuard('n')).toBe(6n);
    expect(a.event('n', { ...ownDrain }, 8n)).toEqual({ state: DRAINING, director: 'a' });
    expect(a.event('n', { state: ACTIVE, director: 'b', write: 'y-3' }, 9n)).toEqual({ state: ACTIVE, director: 'b' });
    const refused = a.wrote('n', DRAINING);
    expect(a.failed('n', refused)).toBeNull(); // the director keeps draining; the store holds active (9)
    expect(a.placeGuard('n')).toBe(8n);
    expect(a.event('n', { state: DRAINING, director: 'b', write: 'y-2' }, 10n)).toEqual({ state: DRAINING, director: 'b' });
    expect(a.placeGuard('n')).toBeUndefined();
    // An older write answered, the newest (the state held) refused while the older is still on its way:
    // the answered revision is the older write's state, not the one held.
    const b = new SharedNodeStates('a', 'x');
    const drain = b.wrote('n', DRAINING);
    expect(b.answered('n', drain, 3n)).toBeNull();
    const undrain2 = b.wrote('n', ACTIVE);
    expect(b.placeGuard('n')).toBe(0n);
    expect(b.failed('n', undrain2)).toBeNull();
    expect(b.inFlight('n')).toBe(true);
    expect(b.placeGuard('n')).toBe(0n);
  });

  it('placementsUnproven: the director holds the node active while the store may hold another state — its undrain unanswered, or refused with draining in the store', () => {
    const a = new SharedNodeStates('a', 'x');
    expect(a.placementsUnproven('n')).toBe(false); // never written: active everywhere
    const drain = a.wrote('n', DRAINING);
    expect(a.placementsUnproven('n')).toBe(false); // a drain places nothing anyway
    expect(a.answered('n', drain, 3n)).toBeNull();
    expect(a.event('n', { ...drain }, 3n)).toEqual({ state: DRAINING, director: 'a' });
    const undrain = a.wrote('n', ACTIVE);
    expect(a.placementsUnproven('n')).toBe(true); // on its way
    expect(a.answered('n', undrain, 4n)).toBeNull();
    expect(a.placementsUnproven('n')).toBe(false); // in the store at 4: placed on, guarded by 4
    expect(a.event('n', { ...undrain }, 4n)).toEqual({ state: ACTIVE, director: 'a' });
    expect(a.placementsUnproven('n')).toBe(false);
    // Drained by b, then an undrain here that the store refuses: held out until a write makes them agree.
    expect(a.event('n', { state: DRAINING, director: 'b', write: 'y-1' }, 5n)).toEqual({ state: DRAINING, director: 'b' });
    const refused = a.wrote('n', ACTIVE);
    expect(a.failed('n', refused)).toBeNull(); // keeps active here; the store holds draining (5)
    expect(a.placementsUnproven('n')).toBe(true);
    const again = a.wrote('n', ACTIVE); // the retry
    expect(a.placementsUnproven('n')).toBe(true);
    expect(a.answered('n', again, 6n)).toBeNull();
    expect(a.placementsUnproven('n')).toBe(false);
    // An undrain refused while the store never held a state for the node: nothing to disagree with.
    const b = new SharedNodeStates('a', 'x');
    const lone = b.wrote('n', ACTIVE);
    expect(b.placementsUnproven('n')).toBe(true);
    expect(b.failed('n', lone)).toBeNull();
    expect(b.placementsUnproven('n')).toBe(false);
    // Another director's undrain applied here: the store holds it.
    const c = new SharedNodeStates('a', 'x');
    expect(c.event('n', { state: DRAINING, director: 'b', write: 'y-1' }, 2n)).toEqual({ state: DRAINING, director: 'b' });
    expect(c.event('n', { state: ACTIVE, director: 'b', write: 'y-2' }, 3n)).toEqual({ state: ACTIVE, director: 'b' });
    expect(c.placementsUnproven('n')).toBe(false);
  });

  it('property: any interleaving of local changes, commits, answers, failures, deliveries and gaps converges on the last committed state', () => {
    type Op =
      | { op: 'set'; d: number; state: NodeState }
      | { op: 'commit'; i: number }
      | { op: 'answer'; i: number }
      | { op: 'refuse'; i: number }
      | { op: 'lose'; i: number; committed: boolean }
      | { op: 'giveUp'; i: number }
      | { op: 'deliver'; d: number }
      | { op: 'gap'; d: number }
      | { op: 'other' };
    const op: fc.Arbitrary<Op> = fc.oneof(
      fc.record({ op: fc.constant('set' as const), d: fc.nat(2), state: fc.constantFrom(ACTIVE, DRAINING) }),
      fc.record({ op: fc.constant('commit' as const), i: fc.nat(5) }),
      fc.record({ op: fc.constant('answer' as const), i: fc.nat(5) }),
      fc.record({ op: fc.constant('refuse' as const), i: fc.nat(5) }),
      fc.record({ op: fc.constant('lose' as const), i: fc.nat(5), committed: fc.boolean() }),
      fc.record({ op: fc.constant('giveUp' as const), i: fc.nat(5) }),
      fc.record({ op: fc.constant('deliver' as const), d: fc.nat(2) }),
      fc.record({ op: fc.constant('gap' as const), d: fc.nat(2) }),
      fc.record({ op: fc.constant('other' as const) }),
    );
    fc.assert(
      fc.property(fc.array(op, { maxLength: 80 }), fc.array(fc.nat(5), { maxLength: 20 }), (ops, finalOrder) => {
        const dirs = [0, 1, 2].map((d) => ({ sns: new SharedNodeStates(`d${d}`, `i${d}`), local: ACTIVE as NodeState, delivered: 0, refusedSince: false }));
        const inFlight: { d: number; v: SharedNodeValue }[] = [];
        const unanswered: { d: number; v: SharedNodeValue; revision: bigint }[] = [];
        // The node's writes in commit order, each at its store revision; writes to other keys (sessions, other
        // nodes) take revisions too ('other'), so a feed's revision is not the node key's.
        const log: SharedNodeValue[] = [];
        const revs: bigint[] = [];
        let rev = 0n;
        /** Per director, the revision its feed has delivered: everything up to it, other keys included. */
        const feed = [0n, 0n, 0n];
        const lost: { d: number; v: SharedNodeValue; committed: boolean }[] = [];
        const giveUp = (i: number): void => {
          const w = lost.splice(i % lost.length, 1)[0]!;
          const wasInFlight = dirs[w.d]!.sns.inFlight('n');
          if (!w.committed) dirs[w.d]!.refusedSince = true; // like a refusal, found out late
          const change = dirs[w.d]!.sns.failed('n', w.v);
          if (!wasInFlight) expect(change).toBeNull();
          apply(w.d, change);
        };
        const apply = (d: number, change: { state: NodeState } | null): void => {
          if (change === null) return;
          dirs[d]!.local = change.state;
          dirs[d]!.refusedSince = false;
        };
        const deliverAt = (d: number, index: number, revision: bigint): void => {
          const dir = dirs[d]!;
          const waiting = dir.sns.inFlight('n');
          const change = dir.sns.event('n', { ...log[index]! }, revision);
          if (waiting && dir.sns.inFlight('n')) expect(change).toBeNull();
          apply(d, change);
        };
        const deliver = (d: number): void => {
          const dir = dirs[d]!;
          deliverAt(d, dir.delivered, revs[dir.delivered]!);
          dir.delivered++;
          // With it, the other keys' writes up to the node's next write (or all of them).
          feed[d] = dir.delivered < revs.length ? revs[dir.delivered]! - 1n : rev;
        };
        const write = (v: SharedNodeValue): bigint => {
          log.push(v);
          revs.push(++rev);
          return rev;
        };
        const commit = (w: { d: number; v: SharedNodeValue }): void => {
          unanswered.push({ ...w, revision: write(w.v) });
        };
        const answer = (i: number): void => {
          const a = unanswered.splice(i % unanswered.length, 1)[0]!;
          apply(a.d, dirs[a.d]!.sns.answered('n', a.v, a.revision));
        };
        // The store's guard of a write placing a session on the node (EtcdStore): the node's state not
        // written after placeGuard's revision, or after what the director's feed delivered. Whenever a
        // director would place a session there (it holds the node active) and the guard lets the write
        // through, the store holds the node active (a node never written is active).
        const placeIsSafe = (): void => {
          for (const [d, dir] of dirs.entries()) {
            if (dir.local !== ACTIVE) continue;
            const asOf = dir.sns.placeGuard('n') ?? feed[d]!;
            const passes = (revs.at(-1) ?? 0n) <= asOf;
            if (passes) expect(log.length === 0 ? ACTIVE : log[log.length - 1]!.state).toBe(ACTIVE);
          }
          // A node is held out of placements only while the director holds it active and the guard restricts it.
          for (const dir of dirs) if (dir.sns.placementsUnproven('n')) expect(dir.local === ACTIVE && dir.sns.placeGuard('n') !== undefined).toBe(true);
        };
        for (const o of ops) {
          if (o.op === 'set') {
            dirs[o.d]!.local = o.state;
            dirs[o.d]!.refusedSince = false;
            inFlight.push({ d: o.d, v: dirs[o.d]!.sns.wrote('n', o.state) });
          } else if (o.op === 'commit' && inFlight.length > 0) {
            commit(inFlight.splice(o.i % inFlight.length, 1)[0]!);
          } else if (o.op === 'answer' && unanswered.length > 0) {
            answer(o.i);
          } else if (o.op === 'refuse' && inFlight.length > 0) {
            const w = inFlight.splice(o.i % inFlight.length, 1)[0]!;
            // Refused outright: only that director holds the state (warned) until it applies a later write.
            dirs[w.d]!.refusedSince = true;
            apply(w.d, dirs[w.d]!.sns.failed('n', w.v));
          } else if (o.op === 'lose' && inFlight.length > 0) {
            // Sent, answer lost: committed now or never (the shell's bound outlasts any late commit).
            const w = inFlight.splice(o.i % inFlight.length, 1)[0]!;
            if (o.committed) write(w.v);
            lost.push({ ...w, committed: o.committed });
          } else if (o.op === 'giveUp' && lost.length > 0) {
            giveUp(o.i);
          } else if (o.op === 'deliver' && dirs[o.d]!.delivered < log.length) {
            deliver(o.d);
          } else if (o.op === 'gap' && dirs[o.d]!.delivered < log.length) {
            // A listing after a gap: the entry as it is, at its last write's revision; the feed at the listing's.
            deliverAt(o.d, log.length - 1, revs.at(-1)!);
            dirs[o.d]!.delivered = log.length;
            feed[o.d] = rev;
          } else if (o.op === 'other') {
            rev++;
            for (const [d, dir] of dirs.entries()) if (dir.delivered === log.length && feed[d] === rev - 1n) feed[d] = rev; // caught up: delivered at once
          }
          placeIsSafe();
        }
        for (const i of finalOrder) if (inFlight.length > 0) commit(inFlight.splice(i % inFlight.length, 1)[0]!);
        while (inFlight.length > 0) commit(inFlight.shift()!);
        for (const i of finalOrder) if (unanswered.length > 0) answer(i);
        for (const i of finalOrder) if (lost.length > 0 && i % 2 === 0) giveUp(i);
        for (let d = 0; d < dirs.length; d++) while (dirs[d]!.delivered < log.length) deliver(d);
        while (unanswered.length > 0) answer(0);
        while (lost.length > 0) giveUp(0);
        if (log.length === 0) return;
        const last = log[log.length - 1]!.state;
        for (const dir of dirs) if (!dir.refusedSince) expect(dir.local).toBe(last);
        for (const dir of dirs) expect(dir.sns.inFlight('n')).toBe(false);
        // Settled and agreeing with the store: nothing beyond the feed guards a placement.
        for (const dir of dirs) if (!dir.refusedSince) expect(dir.sns.placeGuard('n')).toBeUndefined();
      }),
      { numRuns: 10_000 },
    );
  });
});
