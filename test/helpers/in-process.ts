import { Writable } from 'node:stream';
import { pino, type Logger } from 'pino';

// The config of a director run inside the test process (createAnchor): loopback listeners and admin API
// on free ports, one node at the discard port (it never answers: nothing here needs a node's reply), the
// audit log at `auditPath`, health probes off. `listen` and `extra` (top-level YAML sections) add to it.
export function inProcessYaml(auditPath: string, opts: { listen?: string; extra?: string } = {}): string {
  return `
listen:
  udp: ["127.0.0.1:0"]
${opts.listen ?? ''}
admin:
  listen: "127.0.0.1:0"
nodes:
  - id: node-a
    address: "127.0.0.1:9"
audit:
  path: ${JSON.stringify(auditPath)}
health:
  enabled: false
${opts.extra ?? ''}
`;
}

/** A logger whose JSON lines the test can read. */
export function captureLogs(): { logger: Logger; lines: () => Record<string, unknown>[] } {
  const out: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      out.push(chunk.toString('utf8'));
      cb();
    },
  });
  const logger = pino({ level: 'info' }, sink);
  return { logger, lines: () => out.join('').split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as Record<string, unknown>) };
}
