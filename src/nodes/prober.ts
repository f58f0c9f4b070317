// Active health probes of nodes (the shell around the pure HealthTracker): sends PROXY v2 LOCAL probes over
// one UDP socket per address family, matches echoes, feeds results to the tracker and reports changes.
// It never changes membership itself (the caller's onChange does) and never throws out of a socket callback.
import dgram from 'node:dgram';
import { once } from 'node:events';
import { randomBytes } from 'node:crypto';
import { decodePpv2 } from '../codec/ppv2.js';
import { bytesToIp, ipToBytes } from '../codec/ip.js';
import type { Transport } from '../codec/types.js';
import { HealthTracker } from './health.js';
import type { NodeHealth } from './membership.js';

/*
 * Probe datagram. encodePpv2 only writes PROXY headers with Anchor's five TLVs, so the LOCAL header is
 * written by hand here:
 *   0   12  signature \r\n\r\n\0\r\nQUIT\n
 *   12  1   0x20  version 2, command LOCAL
 *   13  1   0x00  family UNSPEC, transport UNSPEC (no address block)
 *   14  2   11    length: one TLV
 *   16  1   0xEE  TLV type: probe nonce (PP2 custom range 0xE0–0xEF; Anchor's TLVs use 0xE0–0xE4)
 *   17  2   8     TLV length
 *   19  8   nonce (random per probe, so a stray or spoofed datagram cannot pass for the answer)
 * The reference node (and any node following the contract) answers a LOCAL header by echoing it.
 */
export const PP2_TLV_PROBE_NONCE = 0xee;
const NONCE_LEN = 8;
/** Turns of the event loop a verdict waits at most while the sockets still have answers to read (#judge). */
const JUDGE_TURNS_MAX = 64;
const PROBE_HEAD = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a, 0x20, 0x00, 0x00, 3 + NONCE_LEN, PP2_TLV_PROBE_NONCE, 0x00, NONCE_LEN]);
export const PROBE_LEN = PROBE_HEAD.length + NONCE_LEN; // 27

/** A probe datagram carrying `nonce` (8 bytes). */
export function encodeProbe(nonce: Uint8Array): Buffer {
  if (nonce.length !== NONCE_LEN) throw new RangeError(`probe nonce must be ${NONCE_LEN} bytes`);
  const out = Buffer.allocUnsafe(PROBE_LEN);
  PROBE_HEAD.copy(out, 0);
  out.set(nonce, PROBE_HEAD.length);
  return out;
}

/** The nonce of a LOCAL probe answer, undefined for anything else. Never throws. */
export function probeNonce(msg: Uint8Array): Uint8Array | undefined {
  const d = decodePpv2(msg);
  if (d.kind !== 'ok' || d.value.command !== 'LOCAL') return undefined;
  const t = d.value.tlvs.find((x) => x.type === PP2_TLV_PROBE_NONCE);
  return t !== undefined && t.value.length === NONCE_LEN ? t.value : undefined;
}

export interface HealthProberOptions {
  readonly nodes: readonly { readonly id: string; readonly address: Transport }[];
  /** Time between probe rounds (a node with a probe still in flight is skipped in that round). */
  readonly intervalMs: number;
  /**
   * A probe unanswered this long has failed; a later answer is ignored. "Unanswered" is judged after the
   * sockets were read once more past the deadline, so an answer waiting unread because the director was
   * busy still counts.
   */
  readonly timeoutMs: number;
  readonly rise: number;
  readonly fall: number;
  /** Monotonic milliseconds. */
  readonly clock: { now(): number };
  /** Called once per health change (never for a result that leaves the health as it was). */
  readonly onChange: (nodeId: string, health: NodeHealth, detail: { consecutive: number }) => void;
  /** Socket errors and exceptions thrown by onChange end up here (never thrown). Default: ignored. */
  readonly onError?: (err: unknown) => void;
}

interface ProbeNode {
  readonly id: string;
  readonly address: Transport;
  readonly key: string;
  inflight: InFlight | null;
}

interface InFlight {
  readonly nonce: Buffer;
  timer: NodeJS.Timeout | null;
  readonly done: Promise<void>;
  readonly resolve: () => void;
}

/** Canonical "address|port" (textual IPv6 variants and zone suffixes compare equal). */
function transportKey(address: string, port: number): string {
  const b = ipToBytes(address);
  return `${b === undefined ? address : bytesToIp(b)}|${port}`;
}

export class HealthProber {
  readonly #opts: HealthProberOptions;
  readonly #tracker: HealthTracker;
  readonly #nodes = new Map<string, ProbeNode>();
  /** Per family: transport key → nodes at that transport (normally one). */
  readonly #byTransport = new Map<4 | 6, Map<string, ProbeNode[]>>();
  readonly #sockets = new Map<4 | 6, dgram.Socket | null>();
  #interval: NodeJS.Timeout | null = null;
  #starting: Promise<void> | null = null;
  #closed = false;
  /** Datagrams read on the probe sockets so far: whether a turn read any (#judge). */
  #read = 0;

  /** Throws RangeError on bad intervals or thresholds, or a duplicate node id (misuse). */
  constructor(opts: HealthProberOptions) {
    for (const [k, v] of [['intervalMs', opts.intervalMs], ['timeoutMs', opts.timeoutMs]] as const) {
      if (!Number.isFinite(v) || v <= 0) throw new RangeError(`${k} must be > 0, got ${v}`);
    }
    this.#opts = opts;
    this.#tracker = new HealthTracker({ rise: opts.rise, fall: opts.fall });
    const now = opts.clock.now();
    for (const n of opts.nodes) {
      if (this.#nodes.has(n.id)) throw new RangeError(`duplicate node id: ${n.id}`);
      const node: ProbeNode = { id: n.id, address: n.address, key: transportKey(n.address.address, n.address.port), inflight: null };
      this.#nodes.set(n.id, node);
      this.#tracker.add(n.id, now);
      let fam = this.#byTransport.get(n.address.family);
      if (fam === undefined) this.#byTransport.set(n.address.family, (fam = new Map()));
      const at = fam.get(node.key);
      if (at === undefined) fam.set(node.key, [node]);
      else at.push(node);
    }
  }

  /**
   * Binds one socket per family in use (on the wildcard address, ephemeral port), sends the first round
   * and starts the interval. A family whose socket cannot be bound (e.g. no IPv6) is not fatal: its
   * nodes' probes fail and they become unhealthy. Idempotent.
   */
  start(): Promise<void> {
    this.#starting ??= this.#start();
    return this.#starting;
  }

  async #start(): Promise<void> {
    await Promise.all([...this.#byTransport.keys()].map((f) => this.#bind(f)));
    if (this.#closed) return;
    this.#interval = setInterval(() => void this.#round(), this.#opts.intervalMs);
    this.#interval.unref();
    // The first round is awaited (bounded by timeoutMs): a director starts serving with the nodes that
    // answered already healthy, the others not yet taking sessions.
    await this.#round();
  }

  async #bind(family: 4 | 6): Promise<void> {
    const s = dgram.createSocket({ type: family === 6 ? 'udp6' : 'udp4', ipv6Only: family === 6 });
    try {
      s.bind(0, family === 6 ? '::' : '0.0.0.0');
      await Promise.race([once(s, 'listening'), once(s, 'error').then(([err]) => Promise.reject(err as Error))]);
    } catch (err) {
      this.#report(err);
      try {
        s.close();
      } catch {
        // already closed
      }
      this.#sockets.set(family, null);
      return;
    }
    s.on('message', (msg, rinfo) => this.#onMessage(family, msg, rinfo));
    s.on('error', (err) => this.#onSocketError(family, err));
    s.unref(); // the prober alone never keeps the process alive
    if (this.#closed) {
      s.close();
      return;
    }
    this.#sockets.set(family, s);
  }

  /** Stops probing and closes the sockets. Probes in flight are abandoned (not counted). Idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#interval !== null) clearInterval(this.#interval);
    this.#interval = null;
    await this.#starting?.catch(() => {});
    for (const n of this.#nodes.values()) {
      const p = n.inflight;
      if (p === null) continue;
      n.inflight = null;
      if (p.timer !== null) clearTimeout(p.timer);
      p.resolve();
    }
    const closing: Promise<void>[] = [];
    for (const s of this.#sockets.values()) if (s !== null) closing.push(new Promise<void>((r) => s.close(() => r())));
    this.#sockets.clear();
    await Promise.all(closing);
  }

  /** The node's health; undefined for an id that is not probed. */
  health(nodeId: string): NodeHealth | undefined {
    return this.#tracker.get(nodeId)?.health;
  }

  /** Milliseconds since the node became unhealthy (0 when it is not), by the injected clock. */
  unhealthyFor(nodeId: string): number {
    return this.#tracker.unhealthyFor(nodeId, this.#opts.clock.now());
  }

  /**
   * One round now: probes every node without a probe in flight, and resolves when every node's probe
   * (new or already in flight) has been answered, timed out or failed. Rejects before start().
   */
  async probeNow(): Promise<void> {
    if (this.#starting === null) throw new Error('HealthProber.probeNow() before start()');
    await this.#starting;
    await this.#round();
  }

  #round(): Promise<void> {
    if (this.#closed) return Promise.resolve();
    const waits: Promise<void>[] = [];
    for (const n of this.#nodes.values()) waits.push(n.inflight?.done ?? this.#probe(n));
    return Promise.all(waits).then(() => {});
  }

  #probe(n: ProbeNode): Promise<void> {
    let resolve!: () => void;
    const done = new Promise<void>((r) => (resolve = r));
    const nonce = randomBytes(NONCE_LEN);
    const p: InFlight = { nonce, timer: null, done, resolve };
    n.inflight = p;
    // Ref'd on purpose: bounded by timeoutMs, it keeps an awaited probeNow() from being cut short.
    // The verdict waits (#judge): timers run before the sockets are read, so an answer that came in time but
    // sat unread while the director's event loop was busy (a drain, a burst of admissions) is read first
    // and counts. A busy director must not take its own lag for a dead node.
    p.timer = setTimeout(() => {
      p.timer = null;
      this.#judge(n, p, 0);
    }, this.#opts.timeoutMs);
    const s = this.#sockets.get(n.address.family);
    if (s === undefined || s === null) {
      this.#complete(n, p, false);
      return done;
    }
    try {
      s.send(encodeProbe(nonce), n.address.port, n.address.address, (err) => {
        if (err !== null) {
          this.#report(err);
          this.#complete(n, p, false);
        }
      });
    } catch (err) {
      this.#report(err);
      this.#complete(n, p, false);
    }
    return done;
  }

  /**
   * The verdict on probe `p`, past its deadline, in a later turn of the event loop — and, while the sockets
   * still gave answers to read in the turn before (libuv reads a few dozen datagrams a turn: after a stall,
   * the answers of a few hundred nodes wait in the socket for several turns), in the turn after that, up to
   * JUDGE_TURNS_MAX turns. One turn only, a stall past the timeout failed most probes of 200 nodes that had
   * answered in time.
   */
  #judge(n: ProbeNode, p: InFlight, turns: number): void {
    const read = this.#read;
    setImmediate(() => {
      if (n.inflight !== p) return; // answered meanwhile
      if (this.#read !== read && turns < JUDGE_TURNS_MAX) this.#judge(n, p, turns + 1);
      else this.#complete(n, p, false);
    });
  }

  /** Records the result of probe `p` of node `n` unless that probe has already ended. */
  #complete(n: ProbeNode, p: InFlight, ok: boolean): void {
    if (n.inflight !== p) return; // already answered, timed out or abandoned
    n.inflight = null;
    if (p.timer !== null) clearTimeout(p.timer);
    p.timer = null;
    try {
      if (this.#closed) return;
      // An answer read before the verdict counts, however late it is read: by then the timeout has run
      // and the sockets have been read once more, so it was waiting when the deadline passed (or came
      // in just after it).
      const r = this.#tracker.onProbeResult(n.id, ok, this.#opts.clock.now());
      if (r.changed) this.#opts.onChange(n.id, r.health, { consecutive: r.consecutive });
    } catch (err) {
      this.#report(err);
    } finally {
      p.resolve();
    }
  }

  #onMessage(family: 4 | 6, msg: Buffer, rinfo: dgram.RemoteInfo): void {
    this.#read++;
    try {
      const nonce = probeNonce(msg);
      if (nonce === undefined) return;
      const at = this.#byTransport.get(family)?.get(transportKey(rinfo.address, rinfo.port));
      if (at === undefined) return;
      for (const n of at) {
        const p = n.inflight;
        if (p !== null && p.nonce.equals(nonce)) {
          this.#complete(n, p, true);
          return;
        }
      }
    } catch (err) {
      this.#report(err);
    }
  }

  /** A socket-level error (e.g. an ICMP error surfaced by the OS): every probe in flight on it fails. */
  #onSocketError(family: 4 | 6, err: Error): void {
    this.#report(err);
    for (const n of this.#nodes.values()) {
      if (n.address.family === family && n.inflight !== null) this.#complete(n, n.inflight, false);
    }
  }

  #report(err: unknown): void {
    try {
      this.#opts.onError?.(err);
    } catch {
      // a failing error reporter must not break probing
    }
  }
}
