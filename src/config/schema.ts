// The one config schema: every key, its default beside it, and the error text for each bad value.
// Pure: no file or env access here (that is load.ts); never returns a config that was not validated.

import ipaddr from 'ipaddr.js';
import { z } from 'zod';
import { isLoopback, isUnspecified } from '../codec/ip.js';
import { MAX_DEADLINE_S } from '../drain/plan.js';
import { DEFAULT_PORT_QUARANTINE_MS } from '../net/port-quarantine.js';
import { MAX_TIMER_MS } from '../util/timer.js';
import { DEFAULT_AUDIT_BACKLOG_BYTES, DEFAULT_AUDIT_SYNC_MS } from '../obs/audit.js';

// ---------------------------------------------------------------------------------------------
// Error text. Every leaf says what it expects; the loader prefixes the key path.

type RawIssue = z.core.$ZodRawIssue;

/** How a bad value is shown after "got": strings quoted (and cut), collections by kind. */
export function showValue(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v.length > 64 ? `${v.slice(0, 61)}...` : v);
  if (v === null) return 'null';
  if (Array.isArray(v)) return v.length === 0 ? '[]' : 'a list';
  if (typeof v === 'object') return 'a mapping';
  return String(v);
}

/** Zod error option: `expected <what>, got <value>`, or `required` when the key is absent. */
function expecting(what: string | ((input: unknown) => string), show: (v: unknown) => string = showValue) {
  return {
    error: (iss: RawIssue): string | undefined => {
      if (iss.code === 'unrecognized_keys') return undefined; // expanded per key by the formatter
      if (iss.input === undefined) return 'required';
      const expected = typeof what === 'string' ? what : what(iss.input);
      return `expected ${expected}, got ${show(iss.input)}`;
    },
  };
}

// ---------------------------------------------------------------------------------------------
// HOST:PORT literals (no names: the director never resolves DNS).

export interface HostPort {
  readonly family: 4 | 6;
  /** Canonical text of the address, without brackets (IPv6 zone kept: `fe80::1%eth0`). */
  readonly address: string;
  readonly port: number;
}

const PORT_RE = /^(0|[1-9][0-9]{0,4})$/;

/**
 * Parse `1.2.3.4:5` or `[::1]:5` (port 0–65535). IPv4 must be four decimal parts; IPv6 must be
 * bracketed. Returns undefined for anything else, including host names.
 */
export function parseHostPortLiteral(s: string): HostPort | undefined {
  let host: string;
  let portText: string;
  if (s.startsWith('[')) {
    const close = s.indexOf(']');
    if (close < 0 || s[close + 1] !== ':') return undefined;
    host = s.slice(1, close);
    portText = s.slice(close + 2);
    if (!ipaddr.IPv6.isValid(host)) return undefined;
  } else {
    const colon = s.lastIndexOf(':');
    if (colon < 0) return undefined;
    host = s.slice(0, colon);
    portText = s.slice(colon + 1);
    if (!ipaddr.IPv4.isValidFourPartDecimal(host)) return undefined;
  }
  if (!PORT_RE.test(portText)) return undefined;
  const port = Number(portText);
  if (port > 65535) return undefined;
  return s.startsWith('[')
    ? { family: 6, address: ipaddr.IPv6.parse(host).toString(), port }
    : { family: 4, address: ipaddr.IPv4.parse(host).toString(), port };
}

const ENDPOINT_RE = /^https?:\/\/[^\s/]+(:\d{1,5})?\/?$/;

/** The largest UDP payload (IPv4: 65,535 − 8 − 20). */
const MAX_UDP_PAYLOAD = 65_507;


/** Whether an etcd endpoint parses as a URL whose port, when given, is 1–65535. */
function validEndpoint(u: string): boolean {
  if (!ENDPOINT_RE.test(u)) return true; // said by the pattern's own message
  const port = /:(\d{1,5})\/?$/.exec(u);
  if (port !== null && (Number(port[1]) < 1 || Number(port[1]) > 65535)) return false;
  try {
    new URL(u);
    return true;
  } catch {
    return false;
  }
}

/**
 * Why `hp` cannot be a node's address, or null: unspecified, broadcast or multicast (nothing to send to),
 * or IPv4-mapped IPv6 (the director's IPv6 sockets cannot reach it, and the node's replies come from the
 * IPv4 address: write that instead).
 */
function notNodeAddress(hp: HostPort): string | null {
  const ip = ipaddr.parse(hp.address.split('%')[0] as string);
  if (ip.kind() === 'ipv6' && (ip as ipaddr.IPv6).isIPv4MappedAddress()) return `an IPv4-mapped address: write it as ${(ip as ipaddr.IPv6).toIPv4Address().toString()}:${hp.port}`;
  const range = ip.range();
  return range === 'unspecified' ? 'the unspecified address' : range === 'broadcast' ? 'the broadcast address' : range === 'multicast' ? 'a multicast address' : null;
}

/** Identity of a HOST:PORT for duplicate checks (`[::1]:5` and `[0::1]:5` are the same). */
function hostPortKey(s: unknown): string | undefined {
  if (typeof s !== 'string') return undefined;
  const hp = parseHostPortLiteral(s);
  return hp === undefined ? undefined : `${hp.family}|${hp.address}|${hp.port}`;
}

function hostPortExpected(input: unknown): string {
  // An unbracketed IPv6 address is the usual mistake; say how to write it.
  const bareV6 = typeof input === 'string' && !input.startsWith('[') && input.split(':').length > 2;
  return bareV6 ? 'HOST:PORT (IPv6 in brackets)' : 'HOST:PORT';
}

/**
 * A HOST:PORT string. `allowPortZero` for listen addresses (0 = ephemeral, for tests); `unicast` for
 * a node's address (notNodeAddress).
 */
function hostPort(opts: { allowPortZero: boolean; unicast?: boolean }) {
  return z.string(expecting(hostPortExpected)).superRefine((s, ctx) => {
    const hp = parseHostPortLiteral(s);
    if (hp === undefined) {
      ctx.addIssue({ code: 'custom', input: s, message: `expected ${hostPortExpected(s)}, got ${showValue(s)}` });
    } else if (hp.port === 0 && !opts.allowPortZero) {
      ctx.addIssue({ code: 'custom', input: s, message: `expected a port 1–65535, got ${showValue(s)}` });
    } else if (opts.unicast === true) {
      const why = notNodeAddress(hp);
      if (why !== null) ctx.addIssue({ code: 'custom', input: s, message: `expected a unicast address, got ${showValue(s)} (${why})` });
    }
  });
}

// ---------------------------------------------------------------------------------------------
// Listeners: `HOST:PORT` (codec jv1) or `{ address, codec, offset, length }`.

export const CODECS = ['jv1', 'openvpn', 'offset'] as const;
export type CodecName = (typeof CODECS)[number];

export interface ListenerConfig {
  readonly address: string;
  readonly codec: CodecName;
  readonly offset: number | null;
  readonly length: number | null;
}

const LISTENER_KEYS = ['address', 'codec', 'offset', 'length'] as const;

/**
 * One listener. A plain string keeps its errors at the listener's own path (`listen.udp[0]: …`); a
 * mapping reports each field at its path (`listen.udp[1].offset: …`). The result is always a mapping.
 */
function listener() {
  const addr = hostPort({ allowPortZero: true });
  return z.unknown().transform((v, ctx): ListenerConfig => {
    const fail = (path: PropertyKey[], input: unknown, message: string): typeof z.NEVER => {
      ctx.addIssue({ code: 'custom', path, input, message });
      return z.NEVER;
    };
    if (typeof v === 'string') {
      const r = addr.safeParse(v);
      if (!r.success) return fail([], v, r.error.issues[0]?.message ?? `expected HOST:PORT, got ${showValue(v)}`);
      return { address: v, codec: 'jv1', offset: null, length: null };
    }
    if (typeof v !== 'object' || v === null || Array.isArray(v)) {
      return fail([], v, `expected HOST:PORT or a mapping {address, codec, offset, length}, got ${showValue(v)}`);
    }
    const o = v as Record<string, unknown>;
    let bad = false;
    for (const k of Object.keys(o)) {
      if (!(LISTENER_KEYS as readonly string[]).includes(k)) {
        ctx.addIssue({ code: 'unrecognized_keys', keys: [k], input: o, path: [] } as never);
        bad = true;
      }
    }
    const a = addr.safeParse(o.address);
    if (!a.success) {
      fail(['address'], o.address, o.address === undefined ? 'required' : (a.error.issues[0]?.message ?? 'expected HOST:PORT'));
      bad = true;
    }
    const codec = o.codec ?? 'jv1';
    if (typeof codec !== 'string' || !(CODECS as readonly string[]).includes(codec)) {
      fail(['codec'], codec, `expected one of ${CODECS.join(', ')}, got ${showValue(codec)}`);
      return z.NEVER;
    }
    const int = (k: 'offset' | 'length', min: number, max: number): number | null => {
      const x = o[k];
      if (x === undefined || x === null) {
        if (codec === 'offset') {
          fail([k], x, 'required with codec offset');
          bad = true;
        }
        return null;
      }
      if (codec !== 'offset') {
        fail([k], x, `only for codec offset (this listener's codec is ${codec})`);
        bad = true;
        return null;
      }
      if (typeof x !== 'number' || !Number.isInteger(x) || x < min || x > max) {
        fail([k], x, `expected an integer from ${min} to ${max}, got ${showValue(x)}`);
        bad = true;
        return null;
      }
      return x;
    };
    const offset = int('offset', 0, 65_535);
    const length = int('length', 1, 13);
    if (bad) return z.NEVER;
    return { address: o.address as string, codec: codec as CodecName, offset, length };
  });
}

// ---------------------------------------------------------------------------------------------
// Leaf types.

const NODE_ID_RE = /^[A-Za-z0-9._-]{1,64}$/;

/**
 * A node id: 1–64 characters of [A-Za-z0-9._-] (DESIGN §6), but not `.` or `..` (a URL path segment
 * that names no node: the admin API's /v1/nodes/{id}/… could not reach it).
 */
const nodeId = () => {
  const err = expecting('an id of 1–64 characters [A-Za-z0-9._-], not "." or ".."');
  return z
    .string(err)
    .regex(NODE_ID_RE, err)
    .refine((v) => v !== '.' && v !== '..', err);
};

const numberAbove = (min: number) => {
  const err = expecting(`a number > ${min}`);
  return z.number(err).gt(min, err);
};

const integerAtLeast = (min: number) => {
  const err = expecting(`an integer ≥ ${min}`);
  return z.int(err).gte(min, err);
};

const MAX_TIMER_S = Math.floor(MAX_TIMER_MS / 1000);
/** Socket buffer sizes are C ints. */
const MAX_BUFFER_BYTES = 2_147_483_647;
/** Sessions whose PROXY v2 header is kept ready: beyond 2^24 the slots alone would take gigabytes. */
const MAX_HEADER_CACHE = 16_777_216;

const integerBetween = (min: number, max: number, why = '') => {
  const err = expecting(`an integer from ${min} to ${max}${why}`);
  return z.int(err).gte(min, err).lte(max, err);
};

/** A number of seconds > 0 (`above`) or ≥ 0, at most `max`. */
const secondsUpTo = (max: number, opts: { above?: boolean } = {}) => {
  const err = expecting(`a number of seconds ${opts.above === true ? '> 0' : '≥ 0'} and ≤ ${max}${max === MAX_TIMER_S ? ' (the longest a timer waits)' : ''}`);
  const n = z.number(err);
  return (opts.above === true ? n.gt(0, err) : n.gte(0, err)).lte(max, err);
};

/** Milliseconds that become a timer: from `min` to MAX_TIMER_MS. */
const timerMs = (min: number) => integerBetween(min, MAX_TIMER_MS, ' (ms; the longest a timer waits)');

const oneOf = <const T extends readonly [string, ...string[]]>(values: T) =>
  z.enum(values, expecting(`one of ${values.join(', ')}`));

const bool = () => z.boolean(expecting('true or false'));

/** A config section: a mapping with unknown keys rejected; absent means all defaults. */
const section = <S extends z.core.$ZodLooseShape>(shape: S) => {
  const obj = z.strictObject(shape, expecting('a mapping'));
  // Every key of a section has a default, so an absent section parses as {} (TS cannot see that here).
  return obj.prefault({} as z.input<typeof obj>);
};

/** Never echo a secret into an error message or a log line. */
const showSecret = (v: unknown): string =>
  typeof v === 'string' ? `a string of ${v.length} characters` : v === null ? 'null' : `a ${typeof v}`;

const ADMIN_TOKEN_MIN = 16;
const adminToken = () => {
  const err = expecting(`a string of at least ${ADMIN_TOKEN_MIN} printable characters without spaces, or null`, showSecret);
  return z
    .string(err)
    .min(ADMIN_TOKEN_MIN, err)
    .regex(/^[\x21-\x7e]+$/, err)
    .nullable();
};

// ---------------------------------------------------------------------------------------------
// Cross-key checks. Refinements also run when some items are invalid, so they check types first.

/** Report each repeat of a value at its own path, naming the first occurrence. */
function duplicates<T>(
  items: readonly T[],
  key: (item: T) => string | undefined,
  shown: (item: T) => unknown,
  where: { first: (i: number) => string; path: (i: number) => PropertyKey[] },
  ctx: z.core.$RefinementCtx<T[]>,
): void {
  const seen = new Map<string, number>();
  items.forEach((item, i) => {
    const k = key(item);
    if (k === undefined) return;
    const first = seen.get(k);
    if (first === undefined) {
      seen.set(k, i);
      return;
    }
    ctx.addIssue({
      code: 'custom',
      path: where.path(i),
      input: shown(item),
      message: `duplicate of ${where.first(first)} (${showValue(shown(item))})`,
    });
  });
}

const asString = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);

// ---------------------------------------------------------------------------------------------
// The schema.

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export const ENCAPSULATIONS = ['ppv2', 'none'] as const;
export type Encapsulation = (typeof ENCAPSULATIONS)[number];

export const FAILOVER_MODES = ['manual', 'auto'] as const;

/** A native data path (socket.native: batched UDP I/O; tcp.native: the TCP splice pump): used when it was built (auto), always (on: refuse to start without it), never (off). */
export const NATIVE_MODES = ['auto', 'on', 'off'] as const;
export type NativeMode = (typeof NATIVE_MODES)[number];
export type FailoverMode = (typeof FAILOVER_MODES)[number];

export const STORE_KINDS = ['memory', 'etcd'] as const;
export const PARTITION_POLICIES = ['deny', 'terminate'] as const;
export type StoreKind = (typeof STORE_KINDS)[number];

const node = z.strictObject(
  {
    id: nodeId(), // required
    address: hostPort({ allowPortZero: false, unicast: true }), // required; where the node receives datagrams
    // At least a millionth: near the smallest numbers a double holds, the ring's scores lose the precision
    // that tells nodes apart, and shares stop following the weights.
    weight: (() => {
      const err = expecting('a number from 0.000001 to 1000000');
      return z.number(err).gte(0.000001, err).lte(1_000_000, err);
    })().default(1),
  },
  expecting('a mapping'),
);

export const AnchorConfigSchema = z
  .strictObject(
    {
      director: section({
        id: nodeId().default('anchor-1'),
      }),
      listen: section({
        udp: z
          .array(listener(), expecting('a list of HOST:PORT'))
          .min(1, expecting('a list of at least 1 HOST:PORT'))
          .superRefine((list, ctx) =>
            duplicates(list, (l) => hostPortKey(l.address), (l) => l.address, { first: (i) => `listen.udp[${i}]`, path: (i) => [i] }, ctx),
          )
          .prefault(() => ['127.0.0.1:4500']),
        tcp: z
          .array(listener(), expecting('a list of HOST:PORT'))
          .superRefine((list, ctx) =>
            duplicates(list, (l) => hostPortKey(l.address), (l) => l.address, { first: (i) => `listen.tcp[${i}]`, path: (i) => [i] }, ctx),
          )
          .prefault(() => []),
      }),
      tcp: section({
        preamble_timeout_ms: timerMs(1).default(5000),
        preamble_max_bytes: integerAtLeast(20).default(4096),
        idle_timeout_s: secondsUpTo(MAX_TIMER_S, { above: true }).default(300),
        connect_timeout_ms: timerMs(1).default(3000),
        bind_timeout_ms: timerMs(1).default(3000),
        max_connections: integerAtLeast(1).default(100_000),
        native: oneOf(NATIVE_MODES).default('auto'),
      }),
      socket: section({
        recv_buffer_bytes: integerBetween(0, MAX_BUFFER_BYTES).default(4 * 1024 * 1024),
        send_buffer_bytes: integerBetween(0, MAX_BUFFER_BYTES).default(1024 * 1024),
        native: oneOf(NATIVE_MODES).default('auto'),
        gso: bool().default(true),
      }),
      admin: section({
        listen: hostPort({ allowPortZero: true }).default('127.0.0.1:9180'),
        token: adminToken().default(null), // ANCHOR_ADMIN_TOKEN overrides (load.ts)
      }),
      nodes: z
        .array(node, expecting('a list of nodes'))
        .min(1, expecting('a list of at least 1 node'))
        .superRefine((list, ctx) => {
          duplicates(list, (n) => asString(n?.id), (n) => n.id, { first: (i) => `nodes[${i}].id`, path: (i) => [i, 'id'] }, ctx);
          duplicates(
            list,
            (n) => hostPortKey(n?.address),
            (n) => n.address,
            { first: (i) => `nodes[${i}].address`, path: (i) => [i, 'address'] },
            ctx,
          );
        }), // required
      session: section({
        idle_ttl_s: secondsUpTo(MAX_TIMER_S, { above: true }).default(120),
        max: integerAtLeast(1).default(1_000_000),
        tombstone_s: secondsUpTo(MAX_TIMER_S).default(60),
        hold_max_packets: integerAtLeast(0).default(64),
        hold_max_bytes: integerAtLeast(0).default(262_144),
        header_cache: integerBetween(1, MAX_HEADER_CACHE).default(131_072),
      }),
      admission: section({
        per_source_rate: numberAbove(0).default(100),
        per_source_burst: integerAtLeast(1).default(200),
      }),
      reject: section({
        per_source_rate: numberAbove(0).default(10),
        per_source_burst: integerAtLeast(1).default(20),
      }),
      backend: section({
        encapsulation: oneOf(ENCAPSULATIONS).default('ppv2'),
        // Transparent forwarding: a local port a session gave up is not used toward the same node for this long.
        port_quarantine_s: secondsUpTo(MAX_TIMER_S).default(DEFAULT_PORT_QUARANTINE_MS / 1000),
        // Where the director keeps the ports it holds (every 10 s and at its stop), for the next run to go on holding them (null: nowhere).
        port_quarantine_path: z.string(expecting('a file path or null')).min(1, expecting('a file path or null')).nullable().default(null),
      }),
      store: section({
        kind: oneOf(STORE_KINDS).default('memory'),
        partition_policy: oneOf(PARTITION_POLICIES).default('deny'),
        etcd: section({
          endpoints: z
            .array(
              z
                .string(expecting('an http:// URL'))
                .regex(ENDPOINT_RE, expecting('an http:// URL like http://127.0.0.1:2379'))
                // The pattern lets any 5 digits through as a port.
                .refine(validEndpoint, expecting('an http:// URL with a port 1–65535, like http://127.0.0.1:2379')),
              expecting('a list of URLs'),
            )
            .default(() => []),
          prefix: z.string(expecting('a key prefix')).min(1, expecting('a non-empty key prefix')).default('/anchor/'),
          lease_ttl_s: integerBetween(3, MAX_TIMER_S, ' (at 2 s the fence would leave no time to admit between keepalives)').default(10),
          call_timeout_ms: timerMs(50).default(1000),
        }),
      }),
      audit: section({
        path: z
          .string(expecting('a file path or null'))
          .min(1, expecting('a file path or null'))
          .nullable()
          .default(null),
        backlog_bytes: integerAtLeast(0).default(DEFAULT_AUDIT_BACKLOG_BYTES),
        sync_interval_ms: timerMs(10).default(DEFAULT_AUDIT_SYNC_MS),
      }),
      log: section({
        level: oneOf(LOG_LEVELS).default('info'),
      }),
      health: section({
        enabled: bool().default(true),
        interval_ms: timerMs(1).default(1000),
        timeout_ms: timerMs(1).default(500),
        rise: integerAtLeast(1).default(2),
        fall: integerAtLeast(1).default(3),
      }),
      drain: section({
        deadline_s: secondsUpTo(MAX_TIMER_S).default(30),
        node_deadline_s: secondsUpTo(MAX_DEADLINE_S).default(300),
        rate: numberAbove(0).default(500),
        concurrency: integerAtLeast(1).default(32),
        quiesce_ms: timerMs(0).default(50),
        max_loop_lag_ms: timerMs(0).default(50),
      }),
      failover: section({
        mode: oneOf(FAILOVER_MODES).default('manual'),
        grace_s: secondsUpTo(MAX_TIMER_S).default(10),
      }),
      revoke: section({
        timeout_ms: timerMs(1).default(500),
        // Each resend waits twice as long as the one before: 20 already waits 2^20 timeouts for the last.
        retries: integerBetween(0, 20, ' (each resend waits twice as long as the one before)').default(3),
      }),
      metrics: section({
        enabled: bool().default(true),
      }),
    },
    expecting('a mapping'),
  )
  .superRefine((cfg, ctx) => {
    if (cfg.store?.kind === 'etcd' && Array.isArray(cfg.store.etcd?.endpoints) && cfg.store.etcd.endpoints.length === 0) {
      ctx.addIssue({ code: 'custom', path: ['store', 'etcd', 'endpoints'], input: [], message: 'required with store.kind etcd (at least one URL)' });
    }
    if (cfg.failover?.mode === 'auto' && cfg.health?.enabled === false) {
      ctx.addIssue({ code: 'custom', path: ['failover', 'mode'], input: 'auto', message: 'auto needs health.enabled: true (an automatic failover follows the health checks; without them it would never run)' });
    }
    // Without an audit file the audit trail is the log's info lines: a level that drops them would drop
    // the trail with no word (only the admin API's last 10,000 lines would keep it).
    const level = cfg.log?.level;
    if (cfg.audit?.path === null && (level === 'fatal' || level === 'error' || level === 'warn' || level === 'silent')) {
      ctx.addIssue({ code: 'custom', path: ['audit', 'path'], input: null, message: `null sends the audit trail to the log as info lines, which log.level ${level} drops: give audit.path a file, or set log.level to info, debug or trace` });
    }
    // An offset codec's id must lie where it can be read: within tcp.preamble_max_bytes on TCP, within
    // the largest UDP payload on UDP.
    const preambleMax = typeof cfg.tcp?.preamble_max_bytes === 'number' ? cfg.tcp.preamble_max_bytes : Infinity;
    for (const [proto, max, what] of [
      ['tcp', preambleMax, `tcp.preamble_max_bytes (${preambleMax}): no connection's id could be read; raise tcp.preamble_max_bytes`],
      ['udp', MAX_UDP_PAYLOAD, `${MAX_UDP_PAYLOAD}, the largest UDP payload: no datagram could carry the id`],
    ] as const) {
      (Array.isArray(cfg.listen?.[proto]) ? cfg.listen[proto] : []).forEach((l, i) => {
        if (l.codec === 'offset' && l.offset !== null && l.length !== null && l.offset + l.length > max) {
          ctx.addIssue({ code: 'custom', path: ['listen', proto, i, 'offset'], input: l.offset, message: `offset + length (${l.offset + l.length}) is over ${what}` });
        }
      });
    }
    // Two sockets of one protocol on the same port, one of them on the wildcard address, cannot both be
    // bound (nor admin.listen on a TCP listener's address): said here, naming both keys, rather than as a
    // bind error at start. (The same address twice in one list is a duplicate, said by the list's own check.)
    const sockets = (proto: 'udp' | 'tcp'): { path: (string | number)[]; addr: string; hp: HostPort }[] => {
      const out: { path: (string | number)[]; addr: string }[] = (Array.isArray(cfg.listen?.[proto]) ? cfg.listen[proto] : []).map((l, i) => ({ path: ['listen', proto, i], addr: l.address }));
      if (proto === 'tcp' && typeof cfg.admin?.listen === 'string') out.push({ path: ['admin', 'listen'], addr: cfg.admin.listen });
      return out.flatMap((x) => {
        const hp = parseHostPortLiteral(x.addr);
        return hp === undefined || hp.port === 0 ? [] : [{ ...x, hp }];
      });
    };
    const keyOf = (path: readonly (string | number)[]): string => (path[0] === 'admin' ? 'admin.listen' : `listen.${path[1]}[${path[2]}]`);
    const udpSockets = sockets('udp');
    for (const list of [udpSockets, sockets('tcp')]) {
      list.forEach((x, k) => {
        const admin = x.path[0] === 'admin';
        const other = list
          .slice(0, k)
          .find((o) => o.hp.family === x.hp.family && o.hp.port === x.hp.port && (o.hp.address === x.hp.address ? admin : isUnspecified(o.hp.address) || isUnspecified(x.hp.address)));
        if (other !== undefined) ctx.addIssue({ code: 'custom', path: x.path, input: x.addr, message: `overlaps ${keyOf(other.path)} (${showValue(other.addr)}): both cannot be bound on port ${x.hp.port}` });
      });
    }
    // A node at one of the director's own listen addresses would loop packets (UDP) or connections (TCP:
    // a node serves both at its address) back to it; at admin.listen, the director would send its
    // sessions' streams to its own admin API.
    const own = new Map<string, string>();
    for (const proto of ['udp', 'tcp'] as const) {
      (Array.isArray(cfg.listen?.[proto]) ? cfg.listen[proto] : []).forEach((l, i) => {
        const k = hostPortKey(l.address);
        if (k !== undefined && !own.has(k)) own.set(k, `listen.${proto}[${i}]`);
      });
    }
    const adminKey = typeof cfg.admin?.listen === 'string' ? hostPortKey(cfg.admin.listen) : undefined;
    if (adminKey !== undefined && !own.has(adminKey)) own.set(adminKey, 'admin.listen');
    const wildcard = [...udpSockets, ...sockets('tcp')].filter((x) => isUnspecified(x.hp.address));
    (Array.isArray(cfg.nodes) ? cfg.nodes : []).forEach((n, i) => {
      const same = own.get(hostPortKey(n?.address) ?? '');
      // A loopback node on the port of a wildcard listener is the director too.
      const hp = typeof n?.address === 'string' ? parseHostPortLiteral(n.address) : undefined;
      const wild = hp !== undefined && isLoopback(hp.address) ? wildcard.find((w) => w.hp.family === hp.family && w.hp.port === hp.port) : undefined;
      if (same === undefined && wild !== undefined) {
        ctx.addIssue({ code: 'custom', path: ['nodes', i, 'address'], input: n.address, message: `reaches ${keyOf(wild.path)} (${showValue(wild.addr)}): a node cannot be the director itself` });
      }
      if (same !== undefined) {
        ctx.addIssue({
          code: 'custom',
          path: ['nodes', i, 'address'],
          input: n.address,
          message: `same as ${same} (${showValue(n.address)}): a node cannot be the director itself`,
        });
      }
    });
  });

// ---------------------------------------------------------------------------------------------
// The validated type.

type DeepReadonly<T> = T extends (infer U)[]
  ? readonly DeepReadonly<U>[]
  : T extends object
    ? { readonly [K in keyof T]: DeepReadonly<T[K]> }
    : T;

/** The validated, defaulted, deep-frozen config. Keys are exactly the YAML keys. */
export type AnchorConfig = DeepReadonly<z.output<typeof AnchorConfigSchema>>;
export type NodeConfig = AnchorConfig['nodes'][number];

/**
 * Every key path the schema knows, in schema order (`director.id`, `nodes[].weight`, ...).
 * For docs and for the test that checks the example file documents every key.
 */
export function configKeyPaths(): string[] {
  const out: string[] = [];
  const walk = (schema: z.core.$ZodType, path: string): void => {
    let s: z.core.$ZodType = schema;
    // Peel wrappers (default, prefault, nullable, refinements keep the same instance type).
    for (;;) {
      if (s instanceof z.ZodDefault || s instanceof z.ZodPrefault || s instanceof z.ZodNullable) s = s.unwrap();
      else break;
    }
    if (s instanceof z.ZodObject) {
      for (const [k, v] of Object.entries(s.shape as Record<string, z.core.$ZodType>)) {
        walk(v, path === '' ? k : `${path}.${k}`);
      }
    } else if (s instanceof z.ZodArray && s.element instanceof z.ZodObject) {
      walk(s.element, `${path}[]`);
    } else {
      out.push(path);
    }
  };
  walk(AnchorConfigSchema, '');
  return out;
}
