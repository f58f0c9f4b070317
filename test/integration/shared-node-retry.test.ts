// A node state this director shares (a drain, an undrain) that the store does not take is written again
// until it is: written once, one refusal left the directors of a cluster disagreeing about the node for good.
// The director runs in process (createAnchor) on a MemoryStore that also keeps shared entries, refusing the
// first node-state writes.
import { afterEach, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createAnchor } from '../../src/anchor.js';
import { parseConfig } from '../../src/config/load.js';
import { MemoryStore } from '../../src/store/memory.js';
import type { SharedEvent, SharedKind } from '../../src/store/store.js';
import { systemClock } from '../../src/util/clock.js';
import { captureLogs, inProcessYaml } from '../helpers/in-process.js';
import { waitFor } from '../helpers/wait.js';

/** Shared entries kept and told in commit order; the first `refuse` node-state writes are refused. */
class SharedMemoryStore extends MemoryStore {
  refuse = 0;
  readonly nodeWrites: string[] = [];
  readonly entries = new Map<string, Record<string, unknown>>();
  readonly #subs = new Set<(ev: SharedEvent, revision: bigint) => void>();
  #revision = 1n;
  async putShared(kind: SharedKind, id: string, value: object): Promise<{ ok: true; revision: bigint } | { ok: false; reason: 'unavailable'; message: string }> {
    if (kind === 'nodes') {
      this.nodeWrites.push(String((value as { state?: unknown }).state));
      if (this.refuse > 0) {
        this.refuse--;
        return { ok: false, reason: 'unavailable', message: 'refused (test)' };
      }
    }
    const revision = ++this.#revision;
    this.entries.set(`${kind}/${id}`, value as Record<string, unknown>);
    queueMicrotask(() => {
      for (const s of this.#subs) s({ kind, id, value: value as Record<string, unknown> }, revision);
    });
    return { ok: true, revision };
  }
  watchShared(l: (ev: SharedEvent, revision: bigint) => void): () => void {
    this.#subs.add(l);
    return () => this.#subs.delete(l);
  }
}

const cleanup: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const fn of cleanup.splice(0).reverse()) await fn();
});

/** A director in process over a fresh SharedMemoryStore (closed after the test): the store, its logs and its admin URL. */
async function director(): Promise<{ store: SharedMemoryStore; logs: ReturnType<typeof captureLogs>; admin: string }> {
  const dir = mkdtempSync(join(tmpdir(), 'anchor-shared-retry-'));
  cleanup.push(() => rmSync(dir, { recursive: true, force: true }));
  const store = new SharedMemoryStore();
  const logs = captureLogs();
  const anchor = await createAnchor(parseConfig(inProcessYaml(join(dir, 'audit.jsonl'))), { clock: systemClock, logger: logs.logger, store });
  cleanup.push(() => anchor.close());
  return { store, logs, admin: `http://127.0.0.1:${anchor.adminAddress.port}` };
}

describe('a shared node state the store refused', () => {
  it('is written again (after 1 s, then 2 s) until the store takes it; a later undrain is shared as it is', async () => {
    const { store, admin } = await director();
    store.refuse = 2;
    const r = await fetch(`${admin}/v1/nodes/node-a/drain`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"mode":"wait"}' });
    expect(r.status).toBe(202);
    await waitFor('the node state in the store', () => store.entries.get('nodes/node-a'), { timeoutMs: 10_000 });
    expect(store.entries.get('nodes/node-a')).toMatchObject({ state: 'draining' });
    expect(store.nodeWrites).toEqual(['draining', 'draining', 'draining']);
    // Taken: nothing more is written. An undrain is written once, taken at once.
    expect((await fetch(`${admin}/v1/nodes/node-a/undrain`, { method: 'POST' })).status).toBe(200);
    await waitFor('the undrain in the store', () => (store.entries.get('nodes/node-a')?.['state'] === 'active' ? true : undefined));
    expect(store.nodeWrites).toEqual(['draining', 'draining', 'draining', 'active']);
  }, 20_000);

  it('a drain whose draining state the store refused does not complete (the other directors would admit on) until the state is in the store and came back', async () => {
    const { store, logs, admin } = await director();
    store.refuse = 1;
    const r = await fetch(`${admin}/v1/nodes/node-a/drain`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"mode":"migrate"}' });
    expect(r.status).toBe(202);
    const id = ((await r.json()) as { id: string }).id;
    const state = async (): Promise<string> => ((await (await fetch(`${admin}/v1/drains/${id}`)).json()) as { state: string }).state;
    // No session to move, but the node state was refused: the drain waits, and says why.
    await waitFor('the drain to say it waits for its node state', () => logs.lines().some((l) => String(l['msg']).includes("completes once the node's draining state is shared")) || undefined);
    expect(store.entries.get('nodes/node-a')).toBeUndefined();
    expect(await state()).toBe('running');
    // Written again (after 1 s) and delivered: completed.
    await waitFor('the drain completed', async () => ((await state()) === 'completed') || undefined, { timeoutMs: 10_000 });
    expect(store.entries.get('nodes/node-a')).toMatchObject({ state: 'draining' });
  }, 20_000);

  it('an undrain the store refused keeps the node out of new placements (not ready, anchor_node_up 0) until the store takes it', async () => {
    const { store, admin } = await director();
    const ready = async (): Promise<{ status: number; reason?: string }> => {
      const r = await fetch(`${admin}/readyz`);
      return { status: r.status, ...((await r.json()) as { reason?: string }) };
    };
    const nodeUp = async (): Promise<string | undefined> => /^anchor_node_up\{[^}]*node="node-a"[^}]*\} (\d)$/m.exec(await (await fetch(`${admin}/metrics`)).text())?.[1];
    expect((await fetch(`${admin}/v1/nodes/node-a/drain`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"mode":"wait"}' })).status).toBe(202);
    await waitFor('the drain in the store', () => (store.entries.get('nodes/node-a')?.['state'] === 'draining' ? true : undefined));
    store.refuse = 1;
    expect((await fetch(`${admin}/v1/nodes/node-a/undrain`, { method: 'POST' })).status).toBe(200);
    await waitFor('the refused undrain', () => (store.nodeWrites.length === 2 ? true : undefined));
    // Active here, draining in the store: the node takes no new session from this director.
    const held = await ready();
    expect(held.status).toBe(503);
    expect(held.reason).toContain('node-a active here, but not yet in the shared store');
    expect(await nodeUp()).toBe('0');
    const nodes = async (): Promise<unknown> => ((await (await fetch(`${admin}/v1/nodes`)).json()) as { items: unknown[] }).items[0];
    expect(await nodes()).toMatchObject({ id: 'node-a', state: 'active', takes_sessions: false });
    // Written again (after 1 s) and taken: the node takes sessions again.
    await waitFor('ready again', async () => ((await ready()).status === 200 ? true : undefined), { timeoutMs: 10_000 });
    expect(store.entries.get('nodes/node-a')).toMatchObject({ state: 'active' });
    expect(await nodeUp()).toBe('1');
    expect(await nodes()).toMatchObject({ id: 'node-a', state: 'active', takes_sessions: true });
  }, 20_000);

  it('is not written again once this director holds another state for the node (an undrain meanwhile)', async () => {
    const { store, logs, admin } = await director();
    store.refuse = 1;
    expect((await fetch(`${admin}/v1/nodes/node-a/drain`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"mode":"wait"}' })).status).toBe(202);
    await waitFor('the refused write', () => (store.nodeWrites.length === 1 ? true : undefined));
    expect((await fetch(`${admin}/v1/nodes/node-a/undrain`, { method: 'POST' })).status).toBe(200);
    await waitFor('the undrain in the store', () => (store.entries.get('nodes/node-a')?.['state'] === 'active' ? true : undefined));
    // The drain's retry (due 1 s after its refusal) finds the node active here: it writes nothing, and says so.
    await waitFor('the retry to stand down', () => logs.lines().find((l) => l['msg'] === 'node state not written again: this director holds another state for the node now'));
    expect(store.nodeWrites).toEqual(['draining', 'active']);
  }, 20_000);
});
