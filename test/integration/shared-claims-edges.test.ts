// Edges of the cluster's shared state, with the director in process (createAnchor) over a MemoryStore that
// also keeps shared entries and claims, and can refuse or lose their writes:
// - an automatic failover's claim whose release the store refused is released later (held, it would keep
//   every other director from failing the node over for as long as this one runs);
// - a drain whose draining write was lost, after an undrain of this director the shared store holds, is
//   cancelled and said so (the node takes sessions again: the drain could never be settled).
import { afterEach, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createAnchor } from '../../src/anchor.js';
import { ClientSession } from '../../src/client/client.js';
import { transportKey } from '../../src/codec/ip.js';
import { parseConfig } from '../../src/config/load.js';
import { ReferenceNode } from '../../src/refnode/node.js';
import { MemoryStore } from '../../src/store/memory.js';
import type { SharedEvent, SharedKind } from '../../src/store/store.js';
import { systemClock } from '../../src/util/clock.js';
import { captureLogs, inProcessYaml } from '../helpers/in-process.js';
import { waitFor } from '../helpers/wait.js';

/** Shared entries and claims in memory; its watch delivers `lagMs` after a write (as a real one does). */
class SharedStore extends MemoryStore {
  /** Node-state writes to answer "lost" (not committed), and claim releases to refuse. */
  loseNodeWrites = 0;
  refuseReleases = 0;
  releaseTries = 0;
  readonly nodeWrites: string[] = [];
  readonly entries = new Map<string, string>();
  readonly #subs = new Set<(ev: SharedEvent, revision: bigint) => void>();
  #revision = 1n;
  constructor(readonly lagMs: number) {
    super();
  }
  async putShared(kind: SharedKind, id: string, value: object): Promise<{ ok: true; revision: bigint } | { ok: false; reason: 'unavailable'; message: string; maybeApplied?: true }> {
    if (kind === 'nodes') {
      this.nodeWrites.push(String((value as { state?: unknown }).state));
      if (this.loseNodeWrites > 0) {
        this.loseNodeWrites--;
        return { ok: false, reason: 'unavailable', message: 'answer lost (test; not committed)', maybeApplied: true };
      }
    }
    const revision = ++this.#revision;
    this.entries.set(`${kind}/${id}`, JSON.stringify(value));
    setTimeout(() => {
      for (const s of this.#subs) s({ kind, id, value: value as Record<string, unknown> }, revision);
    }, this.lagMs);
    return { ok: true, revision };
  }
  watchShared(l: (ev: SharedEvent, revision: bigint) => void): () => void {
    this.#subs.add(l);
    return () => this.#subs.delete(l);
  }
  /** The director's lease now (a lapse: another id, its claims deleted by the test), and claims to fail. */
  lease = 'lease-1';
  failClaims = 0;
  failedClaimsSent = false;
  claimTries = 0;
  /** The lease each claim is held with, null for none (a claim set by a test without one here: 'lease-other'). */
  readonly claimLeases = new Map<string, string | null>();
  async claimShared(kind: SharedKind, id: string, value: object): Promise<{ ok: true; claimed: true; lease: string } | { ok: true; claimed: false; holder: Record<string, unknown> | null; lease: string | null } | { ok: false; reason: 'unavailable'; message: string; maybeApplied?: true }> {
    this.claimTries++;
    if (this.failClaims > 0) {
      this.failClaims--;
      return this.failedClaimsSent ? { ok: false, reason: 'unavailable', message: 'deadline exceeded (test; not committed)', maybeApplied: true } : { ok: false, reason: 'unavailable', message: 'circuit open (test; not sent)' };
    }
    const key = `${kind}/${id}`;
    const held = this.entries.get(key);
    if (held !== undefined) return { ok: true, claimed: false, holder: JSON.parse(held) as Record<string, unknown>, lease: this.claimLeases.has(key) ? (this.claimLeases.get(key) as string | null) : 'lease-other' };
    this.entries.set(key, JSON.stringify(value));
    this.claimLeases.set(key, this.lease);
    return { ok: true, claimed: true, lease: this.lease };
  }
  leaseHeld(lease: string): boolean {
    return lease === this.lease;
  }
  async releaseShared(kind: SharedKind, id: string, value: object): Promise<{ ok: true; released: boolean } | { ok: false; reason: 'unavailable'; message: string }> {
    this.releaseTries++;
    if (this.refuseReleases > 0) {
      this.refuseReleases--;
      return { ok: false, reason: 'unavailable', message: 'deadline exceeded (test)' };
    }
    if (this.entries.get(`${kind}/${id}`) !== JSON.stringify(value)) return { ok: true, released: false };
    this.entries.delete(`${kind}/${id}`);
    return { ok: true, released: true };
  }
}

const cleanup: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const fn of cleanup.splice(0).reverse()) await fn();
});

describe('shared state edges (in process)', () => {
  /**
   * One director in process (auto failover) over `store`, in front of two reference nodes, with 20 sessions
   * admitted (some on node-a); `drain` overrides its drain settings.
   */
  async function failoverRig(store: SharedStore, drain: Record<string, unknown> = {}) {
    const dir = mkdtempSync(join(tmpdir(), 'anchor-claims-'));
    cleanup.push(() => rmSync(dir, { recursive: true, force: true }));
    const nodes: ReferenceNode[] = [];
    for (const id of ['node-a', 'node-b']) {
      const n = new ReferenceNode({ id, listen: { family: 4, address: '127.0.0.1', port: 0 }, recordPath: join(dir, `${id}.jsonl`) });
      await n.start();
      nodes.push(n);
    }
    cleanup.push(async () => {
      await Promise.allSettled(nodes.map((n) => n.close()));
    });
    const config = {
      director: { id: 'dir-a' },
      listen: { udp: ['127.0.0.1:0'] },
      admin: { listen: '127.0.0.1:0' },
      nodes: nodes.map((n, i) => ({ id: ['node-a', 'node-b'][i], address: transportKey(n.address) })),
      admission: { per_source_rate: 100_000, per_source_burst: 100_000 },
      health: { interval_ms: 100, timeout_ms: 150, rise: 1, fall: 2 },
      failover: { mode: 'auto', grace_s: 0.3 },
      revoke: { timeout_ms: 100, retries: 1 },
      audit: { path: join(dir, 'audit.jsonl') },
      drain,
    };
    const logs = captureLogs();
    const anchor = await createAnchor(parseConfig(JSON.stringify(config)), { clock: systemClock, logger: logs.logger, store });
    cleanup.push(() => anchor.close());
    const admin = `http://127.0.0.1:${anchor.adminAddress.port}`;
    const onA = async (): Promise<number> => ((await (await fetch(`${admin}/v1/nodes`)).json()) as { items: { id: string; sessions: number }[] }).items.find((n) => n.id === 'node-a')!.sessions;
    const sessions: ClientSession[] = [];
    cleanup.push(async () => {
      await Promise.allSettled(sessions.map((s) => s.close()));
    });
    await waitFor('every node healthy', async () => ((await (await fetch(`${admin}/v1/nodes`)).json()) as { items: { health: string }[] }).items.every((n) => n.health === 'healthy') || undefined);
    for (let i = 0; i < 20; i++) {
      const s = await ClientSession.open(anchor.udpAddresses[0]!);
      sessions.push(s);
      await s.hello();
    }
    expect(await onA()).toBeGreaterThan(0);
    type Drain = { id: string; node: string; cause: string; state: string; moved: number };
    const failovers = async (): Promise<Drain[]> => ((await (await fetch(`${admin}/v1/drains`)).json()) as { items: Drain[] }).items.filter((d) => d.node === 'node-a' && d.cause === 'failover');
    return { nodes, logs, onA, failovers, admin };
  }

  it('an automatic failover\'s claim whose release the store refused is released when it answers again', async () => {
    const store = new SharedStore(1);
    const { nodes, logs, onA } = await failoverRig(store);
    store.refuseReleases = 2;
    await nodes[0]!.close(); // node-a dies: failed over under this director's claim
    await waitFor('the claim taken', () => store.entries.has('failovers/node-a') || undefined);
    await waitFor('node-a emptied', async () => ((await onA()) === 0) || undefined, { timeoutMs: 10_000 });
    // Refused twice, then released: the node can be failed over by another director again.
    await waitFor('the claim released', () => !store.entries.has('failovers/node-a') || undefined, { timeoutMs: 10_000 });
    expect(store.releaseTries).toBeGreaterThanOrEqual(3);
    expect(logs.lines().some((l) => l['msg'] === 'failover claim not released yet: tried again')).toBe(true);
  }, 30_000);

  it('a claim that went with a lapsed lease stops this director\'s automatic failover: the node is left to the director that claimed it since', async () => {
    const store = new SharedStore(1);
    const { nodes, logs, onA, failovers } = await failoverRig(store, { rate: 2 }); // slow: it is still running when the lease lapses
    const before = await onA();
    expect(before).toBeGreaterThan(1);
    await nodes[0]!.close();
    const running = await waitFor('the failover running', async () => (await failovers()).find((d) => d.state === 'running'));
    // The lease lapses: etcd deletes the claim, and another director claims the node.
    store.lease = 'lease-2';
    store.entries.set('failovers/node-a', JSON.stringify({ director: 'dir-x', claim: 'other' }));
    await waitFor('the failover stopped', async () => (await failovers()).find((d) => d.id === running.id && d.state === 'cancelled'), { timeoutMs: 10_000 });
    expect(logs.lines().some((l) => String(l['msg']).startsWith('failover claim lost with this director\'s lease'))).toBe(true);
    await waitFor('the node left to dir-x', () => logs.lines().some((l) => l['msg'] === 'automatic failover of the node left to the director that claimed it') || undefined);
    // None runs here while dir-x holds the claim (the sessions left on node-a are dir-x's to move).
    const left = await onA();
    expect(left).toBeGreaterThan(0);
    const tries = store.claimTries;
    await waitFor('two more claim attempts', () => store.claimTries >= tries + 2 || undefined, { timeoutMs: 10_000 });
    expect((await failovers()).filter((d) => d.state === 'running')).toEqual([]);
    expect(await onA()).toBe(left);
    expect(JSON.parse(store.entries.get('failovers/node-a')!)).toEqual({ director: 'dir-x', claim: 'other' });
  }, 30_000);

  it('a failover an operator joined (a drain asked for while it ran) goes on when the claim goes with a lapsed lease: it is the operator\'s drain now', async () => {
    const store = new SharedStore(1);
    const { nodes, logs, onA, failovers, admin } = await failoverRig(store, { rate: 2 });
    expect(await onA()).toBeGreaterThan(1);
    await nodes[0]!.close();
    const running = await waitFor('the failover running', async () => (await failovers()).find((d) => d.state === 'running'));
    const r = await fetch(`${admin}/v1/nodes/node-a/drain`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"mode":"migrate"}' });
    expect(((await r.json()) as { id: string }).id).toBe(running.id); // joined
    store.lease = 'lease-2';
    store.entries.set('failovers/node-a', JSON.stringify({ director: 'dir-x', claim: 'other' }));
    await waitFor('the lapse seen', () => logs.lines().some((l) => String(l['msg']).startsWith('failover claim lost with this director\'s lease: the failover an operator joined goes on')) || undefined, { timeoutMs: 10_000 });
    expect((await failovers()).find((d) => d.id === running.id)?.state).toBe('running');
    await waitFor('node-a emptied by the drain', async () => ((await onA()) === 0) || undefined, { timeoutMs: 20_000 });
    expect((await failovers()).find((d) => d.id === running.id)?.state).not.toBe('cancelled');
  }, 40_000);

  it('a claim held under this director\'s id by another lease (a predecessor before a restart) is not taken as its own: the failover waits until that lease has taken it', async () => {
    const store = new SharedStore(1);
    const { nodes, logs, onA, failovers } = await failoverRig(store);
    store.entries.set('failovers/node-a', JSON.stringify({ director: 'dir-a', claim: 'before-restart' }));
    store.claimLeases.set('failovers/node-a', 'lease-0');
    await nodes[0]!.close();
    await waitFor('the node left to the holder', () => logs.lines().some((l) => l['msg'] === 'automatic failover of the node left to the director that claimed it') || undefined, { timeoutMs: 10_000 });
    expect(await failovers()).toEqual([]);
    // The predecessor's lease ends: its claim goes, and this director claims the node and fails it over.
    store.entries.delete('failovers/node-a');
    await waitFor('node-a emptied', async () => ((await onA()) === 0) || undefined, { timeoutMs: 10_000 });
    expect((await failovers()).length).toBe(1);
  }, 30_000);

  it('a claim of this director\'s id held by no lease (it would never go by itself) is taken as its own: the failover runs and the claim is released', async () => {
    const store = new SharedStore(1);
    const { nodes, onA } = await failoverRig(store);
    store.entries.set('failovers/node-a', JSON.stringify({ director: 'dir-a', claim: 'no-lease' }));
    store.claimLeases.set('failovers/node-a', null);
    await nodes[0]!.close();
    await waitFor('node-a emptied', async () => ((await onA()) === 0) || undefined, { timeoutMs: 10_000 });
    await waitFor('the claim released', () => !store.entries.has('failovers/node-a') || undefined, { timeoutMs: 10_000 });
  }, 30_000);

  it('claims that were never sent (the circuit open) are not taken back', async () => {
    const store = new SharedStore(1);
    const { nodes, onA } = await failoverRig(store);
    // Not sent (the circuit open): nothing to take back.
    store.failClaims = 3;
    await nodes[0]!.close();
    await waitFor('three refused claims', () => store.claimTries >= 4 || undefined, { timeoutMs: 10_000 });
    await waitFor('node-a emptied', async () => ((await onA()) === 0) || undefined, { timeoutMs: 10_000 });
    await waitFor('the claim released', () => !store.entries.has('failovers/node-a') || undefined, { timeoutMs: 10_000 });
    expect(store.releaseTries).toBe(1); // only the claim that was taken, once its failover ended
  }, 30_000);

  it('a claim whose answer was lost is taken back before the node is claimed again: one at a time, however long the store refuses', async () => {
    const store = new SharedStore(1);
    const { nodes, onA } = await failoverRig(store);
    store.failClaims = 1;
    store.failedClaimsSent = true; // sent, answer lost
    store.refuseReleases = 1_000;
    await nodes[0]!.close();
    await waitFor('the release tried again and again', () => store.releaseTries >= 8 || undefined, { timeoutMs: 10_000 });
    expect(store.claimTries).toBe(1); // no new claim while the first may be held
    store.refuseReleases = 0;
    await waitFor('node-a emptied', async () => ((await onA()) === 0) || undefined, { timeoutMs: 10_000 });
    expect(store.claimTries).toBe(2);
  }, 30_000);

  it('undrain, then drain before the undrain came back through the watch, the draining write lost: the drain is cancelled, not left running forever', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'anchor-claims-'));
    cleanup.push(() => rmSync(dir, { recursive: true, force: true }));
    const store = new SharedStore(150); // the watch's lag: the undrain's echo comes while the drain's write is out
    const logs = captureLogs();
    const anchor = await createAnchor(parseConfig(inProcessYaml(join(dir, 'audit.jsonl'), { extra: 'store:\n  etcd:\n    call_timeout_ms: 200\n' })), { clock: systemClock, logger: logs.logger, store });
    cleanup.push(() => anchor.close());
    const admin = `http://127.0.0.1:${anchor.adminAddress.port}`;
    const post = (path: string, body?: string): Promise<Response> => fetch(`${admin}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, ...(body === undefined ? {} : { body }) });
    const state = async (id: string): Promise<string> => ((await (await fetch(`${admin}/v1/drains/${id}`)).json()) as { state: string }).state;
    const first = ((await (await post('/v1/nodes/node-a/drain', '{"mode":"migrate"}')).json()) as { id: string }).id;
    await waitFor('the first drain completed', async () => ((await state(first)) === 'completed') || undefined);
    expect((await post('/v1/nodes/node-a/undrain')).status).toBe(200);
    store.loseNodeWrites = 1;
    const second = ((await (await post('/v1/nodes/node-a/drain', '{"mode":"migrate"}')).json()) as { id: string }).id;
    // Its write given up on (5 × call_timeout_ms), the shared store holds the node active: cancelled.
    await waitFor('the drain cancelled', async () => ((await state(second)) === 'cancelled') || undefined, { timeoutMs: 10_000 });
    expect(JSON.parse(store.entries.get('nodes/node-a') as string)).toMatchObject({ state: 'active' });
    expect(logs.lines().some((l) => String(l['msg']).startsWith('drain cancelled: its draining state did not reach the shared store'))).toBe(true);
  }, 20_000);
});
