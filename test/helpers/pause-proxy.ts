// Test helper: a TCP proxy on loopback in front of one server (an etcd member) whose answers can be held
// back: pauseAnswers() stops reading what the server sends (the kernel buffers it; requests still go
// through), resumeAnswers() lets it all through, late. That is a network that loses no byte but delays
// the answers: a write the server applied whose answer the client never got in time. Closes what it opened.
import { createServer, connect, type Server, type Socket } from 'node:net';
import { once } from 'node:events';

export interface PauseProxy {
  /** `http://127.0.0.1:PORT`: give this to the client instead of the server's URL. */
  readonly url: string;
  pauseAnswers(): void;
  resumeAnswers(): void;
  close(): Promise<void>;
}

export async function startPauseProxy(target: { host: string; port: number }): Promise<PauseProxy> {
  const pairs = new Set<{ client: Socket; upstream: Socket }>();
  let paused = false;
  const server: Server = createServer((client) => {
    const upstream = connect(target.port, target.host);
    const pair = { client, upstream };
    pairs.add(pair);
    client.pipe(upstream);
    upstream.on('data', (d) => client.write(d));
    if (paused) upstream.pause();
    const end = (): void => {
      pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    client.on('error', end).on('close', end);
    upstream.on('error', end).on('close', end);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const addr = server.address();
  if (addr === null || typeof addr === 'string') throw new Error('no port');
  return {
    url: `http://127.0.0.1:${addr.port}`,
    pauseAnswers() {
      paused = true;
      for (const p of pairs) p.upstream.pause();
    },
    resumeAnswers() {
      paused = false;
      for (const p of pairs) p.upstream.resume();
    },
    async close() {
      for (const p of pairs) {
        p.client.destroy();
        p.upstream.destroy();
      }
      pairs.clear();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}
