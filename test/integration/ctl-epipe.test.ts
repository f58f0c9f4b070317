// `anchor ctl audit --follow | head -1`: when the reader of its output goes away the command ends (exit 0)
// instead of polling for ever. A scripted admin API that always has a newer audit line; the real CLI.
import { afterEach, describe, expect, it } from 'vitest';
import http from 'node:http';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { spawnAnchor } from '../helpers/director-proc.js';
import { waitFor } from '../helpers/wait.js';

const cleanup: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
});

describe('anchor ctl with a reader that goes away', () => {
  it('audit --follow ends with exit 0 once its stdout is closed', async () => {
    let seq = 0;
    const server = http.createServer((_req, res) => {
      seq++;
      const line = { time: new Date().toISOString(), seq, session: null, event: 'create', cause: 'hello', from_version: null, to_version: '1', from_owner: null, to_owner: 'node-a', actor: 'anchor-1', prev: '0'.repeat(64) };
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ items: [line], next_cursor: null }));
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    cleanup.push(() => new Promise<void>((r) => server.close(() => r())));
    const admin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const p = spawnAnchor(['ctl', 'audit', '--follow', '--admin', admin]);
    cleanup.push(() => p.kill());
    await waitFor('the first line', () => p.stdout.includes('#1') || undefined);
    p.child.stdout?.destroy(); // as `head -1` does after its line
    const exited = await Promise.race([p.exited, new Promise<null>((r) => setTimeout(() => r(null), 15_000).unref())]);
    expect(exited).toEqual({ code: 0, signal: null });
  });
});
