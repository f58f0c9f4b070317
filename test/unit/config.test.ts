import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { load as loadYaml } from 'js-yaml';
import { describe, expect, it } from 'vitest';
import { formatConfigError, loadConfig, parseConfig, parseHostPortLiteral } from '../../src/config/load.js';
import { configKeyPaths } from '../../src/config/schema.js';
import { AnchorError, ConfigError, ErrorCode, StoreUnavailableError, UsageError } from '../../src/errors.js';

const configFile = (name: string): string => fileURLToPath(new URL(`../../config/${name}`, import.meta.url));
const readConfigFile = (name: string): string => readFileSync(configFile(name), 'utf8');

const ONE_NODE = 'nodes:\n  - id: node-a\n    address: "127.0.0.1:5001"\n';

/** Run parseConfig and return its issue lines (`path: message`); fails the test if it does not throw. */
function issueLines(yaml: string, env?: Record<string, string | undefined>): string[] {
  try {
    parseConfig(yaml, env === undefined ? {} : { env });
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    return (e as ConfigError).issues.map((i) => `${i.path}: ${i.message}`);
  }
  throw new Error('expected a ConfigError');
}

/** A plain HOST:PORT listener as the validated config has it. */
const jv1 = (address: string) => ({ address, codec: 'jv1', offset: null, length: null });

const DEFAULTS = {
  director: { id: 'anchor-1' },
  listen: { udp: [jv1('127.0.0.1:4500')], tcp: [] },
  tcp: { preamble_timeout_ms: 5000, preamble_max_bytes: 4096, idle_timeout_s: 300, connect_timeout_ms: 3000, bind_timeout_ms: 3000, max_connections: 100000, native: 'auto' },
  socket: { recv_buffer_bytes: 4194304, send_buffer_bytes: 1048576, native: 'auto', gso: true },
  admin: { listen: '127.0.0.1:9180', token: null },
  session: { idle_ttl_s: 120, max: 1_000_000, tombstone_s: 60, hold_max_packets: 64, hold_max_bytes: 262_144, header_cache: 131_072 },
  admission: { per_source_rate: 100, per_source_burst: 200 },
  reject: { per_source_rate: 10, per_source_burst: 20 },
  backend: { encapsulation: 'ppv2', port_quarantine_s: 300, port_quarantine_path: null },
  store: { kind: 'memory', partition_policy: 'deny', etcd: { endpoints: [], prefix: '/anchor/', lease_ttl_s: 10, call_timeout_ms: 1000 } },
  audit: { path: null, backlog_bytes: 64 * 1024 * 1024, sync_interval_ms: 1000 },
  log: { level: 'info' },
  health: { enabled: true, interval_ms: 1000, timeout_ms: 500, rise: 2, fall: 3 },
  drain: { deadline_s: 30, node_deadline_s: 300, rate: 500, concurrency: 32, quiesce_ms: 50, max_loop_lag_ms: 50 },
  failover: { mode: 'manual', grace_s: 10 },
  revoke: { timeout_ms: 500, retries: 3 },
  metrics: { enabled: true },
} as const;

describe('config files shipped in config/', () => {
  it('anchor.yaml parses to the demo setup', () => {
    const cfg = parseConfig(readConfigFile('anchor.yaml'));
    expect(cfg).toEqual({
      ...DEFAULTS,
      listen: { udp: [jv1('127.0.0.1:4500'), jv1('[::1]:4500')], tcp: [jv1('127.0.0.1:4500'), jv1('[::1]:4500')] },
      nodes: [
        { id: 'node-a', address: '127.0.0.1:5001', weight: 1 },
        { id: 'node-b', address: '127.0.0.1:5002', weight: 1 },
        { id: 'node-c', address: '127.0.0.1:5003', weight: 1 },
      ],
    });
  });

  it('anchor.example.yaml parses, and every value in it is the default', () => {
    const cfg = parseConfig(readConfigFile('anchor.example.yaml'));
    expect(cfg).toEqual(parseConfig(ONE_NODE));
    expect(cfg).toEqual({ ...DEFAULTS, nodes: [{ id: 'node-a', address: '127.0.0.1:5001', weight: 1 }] });
  });

  it('anchor.example.yaml sets every key of the schema, each under its own comment', () => {
    const text = readConfigFile('anchor.example.yaml');
    const raw = loadYaml(text) as Record<string, unknown>;
    const lines = text.split('\n');
    const paths = configKeyPaths();
    expect(paths).toEqual([
      'director.id',
      'listen.udp',
      'listen.tcp',
      'tcp.preamble_timeout_ms',
      'tcp.preamble_max_bytes',
      'tcp.idle_timeout_s',
      'tcp.connect_timeout_ms',
      'tcp.bind_timeout_ms',
      'tcp.max_connections',
      'tcp.native',
      'socket.recv_buffer_bytes',
      'socket.send_buffer_bytes',
      'socket.native',
      'socket.gso',
      'admin.listen',
      'admin.token',
      'nodes[].id',
      'nodes[].address',
      'nodes[].weight',
      'session.idle_ttl_s',
      'session.max',
      'session.tombstone_s',
      'session.hold_max_packets',
      'session.hold_max_bytes',
      'session.header_cache',
      'admission.per_source_rate',
      'admission.per_source_burst',
      'reject.per_source_rate',
      'reject.per_source_burst',
      'backend.encapsulation',
      'backend.port_quarantine_s',
      'backend.port_quarantine_path',
      'store.kind',
      'store.partition_policy',
      'store.etcd.endpoints',
      'store.etcd.prefix',
      'store.etcd.lease_ttl_s',
      'store.etcd.call_timeout_ms',
      'audit.path',
      'audit.backlog_bytes',
      'audit.sync_interval_ms',
      'log.level',
      'health.enabled',
      'health.interval_ms',
      'health.timeout_ms',
      'health.rise',
      'health.fall',
      'drain.deadline_s',
      'drain.node_deadline_s',
      'drain.rate',
      'drain.concurrency',
      'drain.quiesce_ms',
      'drain.max_loop_lag_ms',
      'failover.mode',
      'failover.grace_s',
      'revoke.timeout_ms',
      'revoke.retries',
      'metrics.enabled',
    ]);

    for (const path of paths) {
      // Present in the parsed document (for nodes[]: in the first node).
      let at: unknown = raw;
      for (const part of path.split('.')) {
        const key = part.endsWith('[]') ? part.slice(0, -2) : part;
        expect(at, path).toBeTypeOf('object');
        expect(Object.keys(at as object), path).toContain(key);
        at = (at as Record<string, unknown>)[key];
        if (part.endsWith('[]')) at = (at as unknown[])[0];
      }
      // The line setting the key follows a comment line.
      const leaf = path.split('.').pop() ?? '';
      const keyLine = new RegExp(`^\\s*(- )?${leaf.replace('[]', '')}:`);
      const idx = lines.findIndex((l, i) => keyLine.test(l) && (lines[i - 1] ?? '').trim().startsWith('#'));
      expect(idx, `${path} has no comment line directly above it`).toBeGreaterThan(0);
    }
  });
});

describe('parseConfig', () => {
  it('fills in every default', () => {
    expect(parseConfig(ONE_NODE)).toEqual({
      ...DEFAULTS,
      nodes: [{ id: 'node-a', address: '127.0.0.1:5001', weight: 1 }],
    });
  });

  it('keeps given values and fills in the rest of a section', () => {
    const cfg = parseConfig(
      `${ONE_NODE}session:\n  max: 10\nlisten:\n  udp: ["127.0.0.1:0", "[::1]:0"]\nadmin:\n  token: "0123456789abcdef"\n`,
    );
    expect(cfg.session).toEqual({ ...DEFAULTS.session, max: 10 });
    expect(cfg.listen.udp).toEqual([jv1('127.0.0.1:0'), jv1('[::1]:0')]);
    expect(cfg.admin).toEqual({ listen: '127.0.0.1:9180', token: '0123456789abcdef' });
  });

  it('accepts listener mappings with a codec', () => {
    const cfg = parseConfig(
      `${ONE_NODE}listen:\n  udp:\n    - "127.0.0.1:4500"\n    - { address: "127.0.0.1:1194", codec: openvpn }\n    - { address: "[::1]:9000", codec: offset, offset: 4, length: 8 }\n  tcp:\n    - { address: "127.0.0.1:1194", codec: openvpn }\n`,
    );
    expect(cfg.listen.udp).toEqual([
      jv1('127.0.0.1:4500'),
      { address: '127.0.0.1:1194', codec: 'openvpn', offset: null, length: null },
      { address: '[::1]:9000', codec: 'offset', offset: 4, length: 8 },
    ]);
    expect(cfg.listen.tcp).toEqual([{ address: '127.0.0.1:1194', codec: 'openvpn', offset: null, length: null }]);
  });

  it('openvpn.example.yaml parses', () => {
    const cfg = parseConfig(readConfigFile('openvpn.example.yaml'));
    expect(cfg.listen.udp[0]).toEqual({ address: '0.0.0.0:1194', codec: 'openvpn', offset: null, length: null });
    expect(cfg.backend.encapsulation).toBe('none');
  });

  it('returns a deep-frozen result', () => {
    const cfg = parseConfig(readConfigFile('anchor.yaml'));
    expect(Object.isFrozen(cfg)).toBe(true);
    expect(Object.isFrozen(cfg.session)).toBe(true);
    expect(Object.isFrozen(cfg.nodes)).toBe(true);
    expect(Object.isFrozen(cfg.nodes[0])).toBe(true);
    expect(Object.isFrozen(cfg.listen.udp)).toBe(true);
    expect(() => {
      (cfg.session as { max: number }).max = 1;
    }).toThrow(TypeError);
    expect(() => {
      (cfg.nodes as unknown as unknown[]).push({});
    }).toThrow(TypeError);
  });

  it('does not share default objects between results', () => {
    const a = parseConfig(ONE_NODE);
    const b = parseConfig(ONE_NODE);
    expect(a.listen.udp).not.toBe(b.listen.udp);
  });

  const bad: { name: string; yaml: string; lines: string[] }[] = [
    {
      name: 'node address without host',
      yaml: `nodes:\n  - {id: a, address: "127.0.0.1:5001"}\n  - {id: b, address: "127.0.0.1:5002"}\n  - {id: c, address: "5001"}\n`,
      lines: ['nodes[2].address: expected HOST:PORT, got "5001"'],
    },
    {
      name: 'unbracketed IPv6 listen address',
      yaml: `${ONE_NODE}listen:\n  udp: ["::1:80"]\n`,
      lines: ['listen.udp[0]: expected HOST:PORT (IPv6 in brackets), got "::1:80"'],
    },
    {
      name: 'listener mappings: codec offset needs offset and length; unknown codec; fields only for offset',
      yaml: `${ONE_NODE}listen:\n  udp:\n    - { address: "127.0.0.1:1194", codec: offset }\n    - { address: "127.0.0.1:1195", codec: wireguard }\n    - { address: "127.0.0.1:1196", codec: openvpn, length: 8 }\n    - { address: "1196", codec: openvpn }\n    - { address: "127.0.0.1:1197", codec: offset, offset: 4, length: 14, port: 3 }\n`,
      lines: [
        'listen.udp[0].offset: required with codec offset',
        'listen.udp[0].length: required with codec offset',
        'listen.udp[1].codec: expected one of jv1, openvpn, offset, got "wireguard"',
        "listen.udp[2].length: only for codec offset (this listener's codec is openvpn)",
        'listen.udp[3].address: expected HOST:PORT, got "1196"',
        'listen.udp[4].port: unknown key',
        'listen.udp[4].length: expected an integer from 1 to 13, got 14',
      ],
    },
    {
      name: 'session.max below 1',
      yaml: `${ONE_NODE}session:\n  max: 0\n`,
      lines: ['session.max: expected an integer ≥ 1, got 0'],
    },
    {
      name: 'session.max not an integer (one line, not one per failed check)',
      yaml: `${ONE_NODE}session:\n  max: -1.5\n`,
      lines: ['session.max: expected an integer ≥ 1, got -1.5'],
    },
    {
      name: 'drain.max_loop_lag_ms not an integer',
      yaml: `${ONE_NODE}drain:\n  max_loop_lag_ms: 1.5\n`,
      lines: ['drain.max_loop_lag_ms: expected an integer from 0 to 2147483647 (ms; the longest a timer waits), got 1.5'],
    },
    {
      name: 'drain.max_loop_busy (replaced): says what replaced it',
      yaml: `${ONE_NODE}drain:\n  max_loop_busy: 0.8\n`,
      lines: ['drain.max_loop_busy: no longer exists: use drain.max_loop_lag_ms (how late, in milliseconds, the event loop may run before a drain slows to a tenth of drain.rate; default 50)'],
    },
    {
      name: 'unknown top-level keys named like Object\'s own properties are unknown keys',
      yaml: `${ONE_NODE}constructor: 1\ntoString: x\nhasOwnProperty: 2\n`,
      lines: ['constructor: unknown key', 'toString: unknown key', 'hasOwnProperty: unknown key'],
    },
    {
      name: 'drain.max_loop_lag_ms negative',
      yaml: `${ONE_NODE}drain:\n  max_loop_lag_ms: -1\n`,
      lines: ['drain.max_loop_lag_ms: expected an integer from 0 to 2147483647 (ms; the longest a timer waits), got -1'],
    },
    {
      // Node fires a longer timer after 1 ms: the opposite of what was asked.
      name: 'timers longer than a timer can wait (2^31 − 1 ms), in ms and in seconds',
      yaml: `${ONE_NODE}tcp:\n  preamble_timeout_ms: 3000000000\n  idle_timeout_s: 2147484\nhealth:\n  interval_ms: 2147483648\ndrain:\n  quiesce_ms: 3000000000\n  deadline_s: 1e9\n  node_deadline_s: 31536001\nrevoke:\n  timeout_ms: 1e12\n`,
      lines: [
        'tcp.preamble_timeout_ms: expected an integer from 1 to 2147483647 (ms; the longest a timer waits), got 3000000000',
        'tcp.idle_timeout_s: expected a number of seconds > 0 and ≤ 2147483 (the longest a timer waits), got 2147484',
        'health.interval_ms: expected an integer from 1 to 2147483647 (ms; the longest a timer waits), got 2147483648',
        'drain.deadline_s: expected a number of seconds ≥ 0 and ≤ 2147483 (the longest a timer waits), got 1000000000',
        'drain.node_deadline_s: expected a number of seconds ≥ 0 and ≤ 31536000, got 31536001',
        'drain.quiesce_ms: expected an integer from 0 to 2147483647 (ms; the longest a timer waits), got 3000000000',
        'revoke.timeout_ms: expected an integer from 1 to 2147483647 (ms; the longest a timer waits), got 1000000000000',
      ],
    },
    {
      name: 'store.etcd.lease_ttl_s of 2: the fence would never let the director admit',
      yaml: `${ONE_NODE}store:\n  etcd:\n    lease_ttl_s: 2\n`,
      lines: ['store.etcd.lease_ttl_s: expected an integer from 3 to 2147483 (at 2 s the fence would leave no time to admit between keepalives), got 2'],
    },
    {
      name: 'sizes past what the director can allocate or the kernel takes: named, not a crash at start',
      yaml: `${ONE_NODE}socket:\n  recv_buffer_bytes: 99999999999\n  send_buffer_bytes: 2147483648\nsession:\n  header_cache: 10000000000\n`,
      lines: [
        'socket.recv_buffer_bytes: expected an integer from 0 to 2147483647, got 99999999999',
        'socket.send_buffer_bytes: expected an integer from 0 to 2147483647, got 2147483648',
        'session.header_cache: expected an integer from 1 to 16777216, got 10000000000',
      ],
    },
    {
      name: 'unknown key in a section',
      yaml: `${ONE_NODE}director:\n  bogus: 1\n`,
      lines: ['director.bogus: unknown key'],
    },
    { name: 'nodes missing', yaml: 'director:\n  id: x\n', lines: ['nodes: required'] },
    {
      name: 'log level not a pino level',
      yaml: `${ONE_NODE}log:\n  level: loud\n`,
      lines: ['log.level: expected one of fatal, error, warn, info, debug, trace, silent, got "loud"'],
    },
    {
      name: 'rate of the wrong type',
      yaml: `${ONE_NODE}admission:\n  per_source_rate: fast\n`,
      lines: ['admission.per_source_rate: expected a number > 0, got "fast"'],
    },
    {
      name: 'duplicate node ids',
      yaml: 'nodes:\n  - {id: a, address: "127.0.0.1:1"}\n  - {id: b, address: "127.0.0.1:2"}\n  - {id: a, address: "127.0.0.1:3"}\n',
      lines: ['nodes[2].id: duplicate of nodes[0].id ("a")'],
    },
    {
      name: 'duplicate node addresses, IPv6 compared by value',
      yaml: 'nodes:\n  - {id: a, address: "[::1]:7"}\n  - {id: b, address: "[0:0::1]:7"}\n',
      lines: ['nodes[1].address: duplicate of nodes[0].address ("[0:0::1]:7")'],
    },
    {
      name: 'duplicate listen addresses',
      yaml: `${ONE_NODE}listen:\n  udp: ["127.0.0.1:4500", "[::1]:4500", "127.0.0.1:4500"]\n`,
      lines: ['listen.udp[2]: duplicate of listen.udp[0] ("127.0.0.1:4500")'],
    },
    {
      name: 'unknown keys at the root, in a section and in a node, one line each',
      yaml: 'nodes:\n  - {id: a, address: "127.0.0.1:1", wieght: 2}\nsession:\n  idle_ttl: 5\n  maxx: 1\nfoo: 1\n"a b": 2\n',
      lines: ['nodes[0].wieght: unknown key', 'session.idle_ttl: unknown key', 'session.maxx: unknown key', 'foo: unknown key', '["a b"]: unknown key'],
    },
    {
      name: 'yaml syntax error, with its line and column',
      yaml: 'nodes:\n  - id: a\n address: x\n',
      lines: ['(yaml): bad indentation of a mapping entry at line 3, column 2'],
    },
    {
      name: 'yaml duplicate key',
      yaml: `${ONE_NODE}log:\n  level: info\n  level: debug\n`,
      lines: ['(yaml): duplicated mapping key at line 6, column 3'],
    },
    // An empty file is an empty config: what it lacks is named.
    { name: 'empty file', yaml: '', lines: ['nodes: required'] },
    { name: 'comments only', yaml: '# nothing here\n', lines: ['nodes: required'] },
    { name: 'a list at the root', yaml: '- a\n', lines: ['(root): expected a mapping, got a list'] },
    { name: 'a scalar at the root', yaml: 'hello\n', lines: ['(root): expected a mapping, got "hello"'] },
    { name: 'two documents', yaml: `${ONE_NODE}---\n${ONE_NODE}`, lines: ['(yaml): expected one document, found 2'] },
    { name: 'no nodes', yaml: 'nodes: []\n', lines: ['nodes: expected a list of at least 1 node, got []'] },
    { name: 'nodes not a list', yaml: 'nodes: node-a\n', lines: ['nodes: expected a list of nodes, got "node-a"'] },
    {
      name: 'node fields missing',
      yaml: 'nodes:\n  - weight: 2\n',
      lines: ['nodes[0].id: required', 'nodes[0].address: required'],
    },
    {
      name: 'bad node ids',
      yaml: `nodes:\n  - {id: "node a", address: "127.0.0.1:1"}\n  - {id: "", address: "127.0.0.1:2"}\n  - {id: ${'x'.repeat(65)}, address: "127.0.0.1:3"}\n  - {id: 7, address: "127.0.0.1:4"}\n  - {id: "..", address: "127.0.0.1:5"}\n  - {id: ".", address: "127.0.0.1:6"}\n`,
      lines: [
        'nodes[0].id: expected an id of 1–64 characters [A-Za-z0-9._-], not "." or "..", got "node a"',
        'nodes[1].id: expected an id of 1–64 characters [A-Za-z0-9._-], not "." or "..", got ""',
        `nodes[2].id: expected an id of 1–64 characters [A-Za-z0-9._-], not "." or "..", got "${'x'.repeat(61)}..."`,
        'nodes[3].id: expected an id of 1–64 characters [A-Za-z0-9._-], not "." or "..", got 7',
        'nodes[4].id: expected an id of 1–64 characters [A-Za-z0-9._-], not "." or "..", got ".."',
        'nodes[5].id: expected an id of 1–64 characters [A-Za-z0-9._-], not "." or "..", got "."',
      ],
    },
    {
      name: 'node addresses nothing can be sent to',
      yaml: 'nodes:\n  - {id: a, address: "0.0.0.0:1"}\n  - {id: b, address: "255.255.255.255:2"}\n  - {id: c, address: "[::]:3"}\n  - {id: d, address: "239.1.1.1:4"}\n',
      lines: [
        'nodes[0].address: expected a unicast address, got "0.0.0.0:1" (the unspecified address)',
        'nodes[1].address: expected a unicast address, got "255.255.255.255:2" (the broadcast address)',
        'nodes[2].address: expected a unicast address, got "[::]:3" (the unspecified address)',
        'nodes[3].address: expected a unicast address, got "239.1.1.1:4" (a multicast address)',
      ],
    },
    {
      name: 'an IPv4-mapped node address',
      yaml: 'nodes:\n  - {id: a, address: "127.0.0.1:5001"}\n  - {id: b, address: "[::ffff:127.0.0.1]:5002"}\n',
      lines: ['nodes[1].address: expected a unicast address, got "[::ffff:127.0.0.1]:5002" (an IPv4-mapped address: write it as 127.0.0.1:5002)'],
    },
    {
      name: 'failover auto without health checks',
      yaml: `${ONE_NODE}health:\n  enabled: false\nfailover:\n  mode: auto\n`,
      lines: ['failover.mode: auto needs health.enabled: true (an automatic failover follows the health checks; without them it would never run)'],
    },
    {
      name: 'revoke retries past doubling sense',
      yaml: `${ONE_NODE}revoke:\n  retries: 21\n`,
      lines: ['revoke.retries: expected an integer from 0 to 20 (each resend waits twice as long as the one before), got 21'],
    },
    {
      name: 'an offset codec whose id lies past the TCP preamble limit',
      yaml: `${ONE_NODE}listen:\n  tcp:\n    - {address: "127.0.0.1:0", codec: offset, offset: 5000, length: 8}\n`,
      lines: ['listen.tcp[0].offset: offset + length (5008) is over tcp.preamble_max_bytes (4096): no connection\'s id could be read; raise tcp.preamble_max_bytes'],
    },
    {
      name: 'no audit file, and a log level that drops the info lines the audit trail then is',
      yaml: `${ONE_NODE}log:\n  level: warn\n`,
      lines: ['audit.path: null sends the audit trail to the log as info lines, which log.level warn drops: give audit.path a file, or set log.level to info, debug or trace'],
    },
    {
      name: 'an offset codec whose id no datagram could carry',
      yaml: `${ONE_NODE}listen:\n  udp:\n    - {address: "127.0.0.1:0", codec: offset, offset: 65500, length: 8}\n`,
      lines: ['listen.udp[0].offset: offset + length (65508) is over 65507, the largest UDP payload: no datagram could carry the id'],
    },
    {
      name: 'weights out of range',
      yaml: 'nodes:\n  - {id: a, address: "127.0.0.1:1", weight: 0}\n  - {id: b, address: "127.0.0.1:2", weight: 1000001}\n  - {id: c, address: "127.0.0.1:3", weight: 5.0e-324}\n  - {id: d, address: "127.0.0.1:4", weight: 0.000001}\n',
      lines: [
        'nodes[0].weight: expected a number from 0.000001 to 1000000, got 0',
        'nodes[1].weight: expected a number from 0.000001 to 1000000, got 1000001',
        'nodes[2].weight: expected a number from 0.000001 to 1000000, got 5e-324',
      ],
    },
    {
      name: 'bad addresses',
      yaml:
        'nodes:\n' +
        '  - {id: a, address: "256.1.1.1:5"}\n' +
        '  - {id: b, address: "localhost:5"}\n' +
        '  - {id: c, address: "127.0.0.1:65536"}\n' +
        '  - {id: d, address: "127.0.0.1:0"}\n' +
        '  - {id: e, address: "[::1]"}\n' +
        '  - {id: f, address: 5001}\n',
      lines: [
        'nodes[0].address: expected HOST:PORT, got "256.1.1.1:5"',
        'nodes[1].address: expected HOST:PORT, got "localhost:5"',
        'nodes[2].address: expected HOST:PORT, got "127.0.0.1:65536"',
        'nodes[3].address: expected a port 1–65535, got "127.0.0.1:0"',
        'nodes[4].address: expected HOST:PORT, got "[::1]"',
        'nodes[5].address: expected HOST:PORT, got 5001',
      ],
    },
    {
      name: 'a node at the director’s own address',
      yaml: 'listen:\n  udp: ["127.0.0.1:4500"]\nnodes:\n  - {id: a, address: "127.0.0.1:4500"}\n',
      lines: ['nodes[0].address: same as listen.udp[0] ("127.0.0.1:4500"): a node cannot be the director itself'],
    },
    {
      name: 'a node at one of the director’s TCP listeners or its admin API',
      yaml: 'listen:\n  tcp: ["127.0.0.1:4600", "0.0.0.0:4700"]\nadmin:\n  listen: "127.0.0.1:9180"\nnodes:\n  - {id: a, address: "127.0.0.1:4600"}\n  - {id: b, address: "127.0.0.1:9180"}\n  - {id: c, address: "127.0.0.1:4700"}\n  - {id: d, address: "127.0.0.1:4601"}\n',
      lines: [
        'nodes[0].address: same as listen.tcp[0] ("127.0.0.1:4600"): a node cannot be the director itself',
        'nodes[1].address: same as admin.listen ("127.0.0.1:9180"): a node cannot be the director itself',
        'nodes[2].address: reaches listen.tcp[1] ("0.0.0.0:4700"): a node cannot be the director itself',
      ],
    },
    {
      name: 'a loopback node on the port of a wildcard listener',
      yaml: 'listen:\n  udp: ["0.0.0.0:4500"]\nnodes:\n  - {id: a, address: "127.0.0.1:4500"}\n  - {id: b, address: "10.0.0.9:4500"}\n',
      lines: ['nodes[0].address: reaches listen.udp[0] ("0.0.0.0:4500"): a node cannot be the director itself'],
    },
    {
      name: 'listeners that cannot all be bound',
      yaml: `${ONE_NODE}listen:\n  udp: ["0.0.0.0:24500", "127.0.0.1:24500", "127.0.0.1:24501", "[::]:24500"]\n  tcp: ["127.0.0.1:24600", "[::1]:24600"]\nadmin:\n  listen: "127.0.0.1:24600"\n`,
      lines: [
        'listen.udp[1]: overlaps listen.udp[0] ("0.0.0.0:24500"): both cannot be bound on port 24500',
        'admin.listen: overlaps listen.tcp[0] ("127.0.0.1:24600"): both cannot be bound on port 24600',
      ],
    },
    {
      name: 'empty listen list',
      yaml: `${ONE_NODE}listen:\n  udp: []\n`,
      lines: ['listen.udp: expected a list of at least 1 HOST:PORT, got []'],
    },
    {
      name: 'a section that is not a mapping',
      yaml: `${ONE_NODE}session:\nhealth: 5\n`,
      lines: ['session: expected a mapping, got null', 'health: expected a mapping, got 5'],
    },
    {
      name: 'short admin token, not echoed',
      yaml: `${ONE_NODE}admin:\n  token: hunter2\n`,
      lines: [
        'admin.token: expected a string of at least 16 printable characters without spaces, or null, got a string of 7 characters',
      ],
    },
    {
      name: 'enums, booleans, store kind',
      yaml: `${ONE_NODE}backend:\n  encapsulation: ppv1\nstore:\n  kind: consul\nmetrics:\n  enabled: "yes"\n`,
      lines: [
        'backend.encapsulation: expected one of ppv2, none, got "ppv1"',
        'store.kind: expected one of memory, etcd, got "consul"',
        'metrics.enabled: expected true or false, got "yes"',
      ],
    },
    {
      name: 'store.kind etcd needs endpoints; endpoints are URLs',
      yaml: `${ONE_NODE}store:\n  kind: etcd\n`,
      lines: ['store.etcd.endpoints: required with store.kind etcd (at least one URL)'],
    },
    {
      name: 'an etcd endpoint that is not a URL',
      yaml: `${ONE_NODE}store:\n  kind: etcd\n  etcd:\n    endpoints: ["127.0.0.1:2379"]\n`,
      lines: ['store.etcd.endpoints[0]: expected an http:// URL like http://127.0.0.1:2379, got "127.0.0.1:2379"'],
    },
    {
      name: 'etcd endpoints with a port that is none',
      yaml: `${ONE_NODE}store:\n  kind: etcd\n  etcd:\n    endpoints: ["http://127.0.0.1:99999", "http://127.0.0.1:0", "http://[::1]:2379", "https://etcd.example:443/"]\n`,
      lines: [
        'store.etcd.endpoints[0]: expected an http:// URL with a port 1–65535, like http://127.0.0.1:2379, got "http://127.0.0.1:99999"',
        'store.etcd.endpoints[1]: expected an http:// URL with a port 1–65535, like http://127.0.0.1:2379, got "http://127.0.0.1:0"',
      ],
    },
    {
      name: 'numbers at their bounds',
      yaml:
        `${ONE_NODE}session:\n  idle_ttl_s: 0\n  tombstone_s: -1\n  hold_max_packets: 1.5\n  header_cache: 0\n` +
        'health:\n  rise: 0\n  interval_ms: .inf\ndrain:\n  deadline_s: -0.5\nreject:\n  per_source_burst: 0\n',
      lines: [
        'session.idle_ttl_s: expected a number of seconds > 0 and ≤ 2147483 (the longest a timer waits), got 0',
        'session.tombstone_s: expected a number of seconds ≥ 0 and ≤ 2147483 (the longest a timer waits), got -1',
        'session.hold_max_packets: expected an integer ≥ 0, got 1.5',
        'session.header_cache: expected an integer from 1 to 16777216, got 0',
        'reject.per_source_burst: expected an integer ≥ 1, got 0',
        'health.interval_ms: expected an integer from 1 to 2147483647 (ms; the longest a timer waits), got Infinity',
        'health.rise: expected an integer ≥ 1, got 0',
        'drain.deadline_s: expected a number of seconds ≥ 0 and ≤ 2147483 (the longest a timer waits), got -0.5',
      ],
    },
    {
      name: 'every problem is reported, not just the first',
      yaml: 'director:\n  id: "bad id"\nnodes:\n  - {id: a, address: "x"}\n  - {id: a, address: "127.0.0.1:2"}\nlog:\n  level: loud\n  extra: 1\n',
      lines: [
        'director.id: expected an id of 1–64 characters [A-Za-z0-9._-], not "." or "..", got "bad id"',
        'nodes[0].address: expected HOST:PORT, got "x"',
        'nodes[1].id: duplicate of nodes[0].id ("a")',
        'log.level: expected one of fatal, error, warn, info, debug, trace, silent, got "loud"',
        'log.extra: unknown key',
      ],
    },
  ];

  it.each(bad)('rejects $name', ({ yaml, lines }) => {
    expect(issueLines(yaml)).toEqual(lines);
  });

  it('throws a ConfigError with a stable code, name and source', () => {
    let err: unknown;
    try {
      parseConfig('nodes: []\n', { source: 'x.yaml' });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    expect(err).toBeInstanceOf(AnchorError);
    const ce = err as ConfigError;
    expect(ce.code).toBe('ANCHOR_CONFIG_INVALID');
    expect(ce.name).toBe('ConfigError');
    expect(ce.source).toBe('x.yaml');
    expect(ce.message).toBe(formatConfigError(ce));
    expect(formatConfigError(ce)).toBe('config error in x.yaml:\n  nodes: expected a list of at least 1 node, got []');
  });

  it('keeps the YAML exception as the cause of a syntax error', () => {
    try {
      parseConfig('a: [1,\n');
      expect.unreachable();
    } catch (e) {
      expect((e as ConfigError).issues[0]?.path).toBe('(yaml)');
      expect((e as ConfigError).cause).toBeInstanceOf(Error);
    }
  });
});

describe('ANCHOR_ADMIN_TOKEN', () => {
  const TOKEN = 's3cret-token-0123456789';

  it('sets admin.token when the file has none', () => {
    const cfg = parseConfig(ONE_NODE, { env: { ANCHOR_ADMIN_TOKEN: TOKEN } });
    expect(cfg.admin).toEqual({ listen: '127.0.0.1:9180', token: TOKEN });
  });

  it('overrides the token in the file', () => {
    const yaml = `${ONE_NODE}admin:\n  listen: "[::1]:0"\n  token: from-the-file-0123456789\n`;
    expect(parseConfig(yaml, { env: { ANCHOR_ADMIN_TOKEN: TOKEN } }).admin).toEqual({ listen: '[::1]:0', token: TOKEN });
    expect(parseConfig(yaml, { env: {} }).admin.token).toBe('from-the-file-0123456789');
  });

  it('is ignored when absent; set but empty (a secret that did not expand) is refused, not taken for "no token"', () => {
    expect(parseConfig(ONE_NODE, { env: { ANCHOR_ADMIN_TOKEN: undefined } }).admin.token).toBeNull();
    expect(issueLines(ONE_NODE, { ANCHOR_ADMIN_TOKEN: '' })).toEqual(['admin.token: ANCHOR_ADMIN_TOKEN is set but empty: unset it (then admin.token from the file applies), or set a token of at least 16 characters']);
    expect(issueLines(`${ONE_NODE}admin:\n  token: from-the-file-0123456789\n`, { ANCHOR_ADMIN_TOKEN: '' })).toHaveLength(1);
  });

  it('is validated like the key, says where it came from, and is never echoed', () => {
    const lines = issueLines(ONE_NODE, { ANCHOR_ADMIN_TOKEN: 'short' });
    expect(lines).toEqual([
      'admin.token: expected a string of at least 16 printable characters without spaces, or null, got a string of 5 characters (from ANCHOR_ADMIN_TOKEN)',
    ]);
    expect(lines.join('\n')).not.toContain('short');
  });

  it('leaves a bad admin section for the schema to report', () => {
    expect(issueLines(`${ONE_NODE}admin: 5\n`, { ANCHOR_ADMIN_TOKEN: TOKEN })).toEqual(['admin: expected a mapping, got 5']);
  });
});

describe('loadConfig', () => {
  it('reads and validates a file', async () => {
    const cfg = await loadConfig(configFile('anchor.yaml'), {});
    expect(cfg.nodes.map((n) => n.id)).toEqual(['node-a', 'node-b', 'node-c']);
  });

  it('passes the environment through', async () => {
    const cfg = await loadConfig(configFile('anchor.yaml'), { ANCHOR_ADMIN_TOKEN: 'a-token-of-16-chars' });
    expect(cfg.admin.token).toBe('a-token-of-16-chars');
  });

  it('names a missing file', async () => {
    const path = configFile('does-not-exist.yaml');
    const err = await loadConfig(path, {}).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(ConfigError);
    expect(formatConfigError(err as ConfigError)).toBe(
      `config error in ${path}:\n  (file): cannot read ${JSON.stringify(path)}: no such file (ENOENT)`,
    );
    expect((err as ConfigError).cause).toMatchObject({ code: 'ENOENT' });
  });
});

describe('parseHostPortLiteral', () => {
  it.each([
    ['1.2.3.4:5', { family: 4, address: '1.2.3.4', port: 5 }],
    ['127.0.0.1:0', { family: 4, address: '127.0.0.1', port: 0 }],
    ['0.0.0.0:65535', { family: 4, address: '0.0.0.0', port: 65535 }],
    ['[::1]:5', { family: 6, address: '::1', port: 5 }],
    ['[0:0:0:0:0:0:0:1]:80', { family: 6, address: '::1', port: 80 }],
    ['[2001:db8::1]:4500', { family: 6, address: '2001:db8::1', port: 4500 }],
  ])('accepts %s', (s, expected) => {
    expect(parseHostPortLiteral(s)).toEqual(expected);
  });

  it.each([
    '',
    '5001',
    '1.2.3.4',
    '1.2.3.4:',
    '1.2.3.4:65536',
    '1.2.3.4:080',
    '1.2.3.4:+5',
    '1.2.3.4:5 ',
    ' 1.2.3.4:5',
    '01.2.3.4:5',
    '1.2.3:5',
    '::1:80',
    '[::1]',
    '[::1]5',
    '[1.2.3.4]:5',
    '[::g]:5',
    'localhost:80',
    '[::1]:80:80',
  ])('rejects %j', (s) => {
    expect(parseHostPortLiteral(s)).toBeUndefined();
  });
});

describe('errors', () => {
  it('gives each class a stable code and name and passes the cause', () => {
    const cause = new Error('boom');
    const usage = new UsageError('unknown flag --x', { cause });
    expect(usage).toMatchObject({ code: ErrorCode.USAGE, name: 'UsageError', exitCode: 2, cause });
    const store = new StoreUnavailableError('etcd down');
    expect(store).toMatchObject({ code: 'ANCHOR_STORE_UNAVAILABLE', name: 'StoreUnavailableError' });
    expect('cause' in store).toBe(false);
    const cfg = new ConfigError([{ path: 'a', message: 'b' }]);
    expect(cfg.issues).toEqual([{ path: 'a', message: 'b' }]);
    expect(Object.isFrozen(cfg.issues)).toBe(true);
  });
});
