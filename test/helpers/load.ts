// Test helper: continuous JV1 traffic through one or more directors. Many sessions, each sending DATA
// from its current socket at a modest rate in a bounded loop, counting echoes per session and per
// director; a session can jump to another director (the same session id and key from a new socket aimed
// at that director's address). It never asserts: tests wait (bounded) on its counters. Everything it
// opens is closed by stop().
import { performance } from 'node:perf_hooks';
import { ClientSession, ClientRejectedError, type Received } from '../../src/client/client.js';
import { decodeReject } from '../../src/codec/jv1.js';
import { PacketType, RejectReason, type Transport } from '../../src/codec/types.js';
import { waitFor } from './wait.js';

/** A director as the load sees it: a name and the UDP address clients send to. */
export interface LoadTarget {
  readonly name: string;
  readonly udp: Transport;
}

export interface LoadSession {
  readonly index: number;
  readonly id: Buffer;
  readonly hex: string;
  readonly key: Buffer;
  /** The director the current socket sends to. */
  via: string;
  current: ClientSession;
  /** Jumps made (sockets opened after the first). */
  jumps: number;
  sent: number;
  /** DATA echoes received, on any of the session's sockets. */
  echoes: number;
  /** performance.now() of the last DATA echo received on the current socket (0: none yet). */
  lastEchoOnCurrent: number;
  /** REJECT reasons received (reason → count), on any socket. */
  readonly rejects: Map<number, number>;
  /** Stops sending (the session is left alone) without closing its sockets. */
  paused: boolean;
}

export interface LoadOptions {
  readonly targets: readonly LoadTarget[];
  /** Sessions opened through each target. */
  readonly perTarget: number;
  /** Each session sends one DATA every this many ms (default 125). */
  readonly intervalMs?: number;
  /** The send loop stops by itself after this long (default 120 s): bounded even if stop() is never called. */
  readonly maxDurationMs?: number;
  /** How long an old socket keeps receiving after a jump (default 1000 ms). */
  readonly graceMs?: number;
}

/** An admission attempt's outcome: the HELLO answer, a REJECT reason, or no answer within the bound. */
export type AdmitOutcome = { ok: true; at: number } | { ok: false; reason: number | 'no_answer'; at: number };

/** One HELLO of a new session through `target` (one attempt, bounded); the socket is closed after. */
export async function tryAdmit(target: Transport, timeoutMs = 1000): Promise<AdmitOutcome> {
  const s = await ClientSession.open(target);
  try {
    await s.hello({ timeoutMs, attempts: 1 });
    return { ok: true, at: performance.now() };
  } catch (err) {
    if (err instanceof ClientRejectedError) return { ok: false, reason: err.reason ?? -1, at: performance.now() };
    return { ok: false, reason: 'no_answer', at: performance.now() };
  } finally {
    await s.close();
  }
}

export class SessionLoad {
  readonly sessions: LoadSession[] = [];
  /** HELLOs refused with STORE_UNAVAILABLE while opening (retried with a fresh id). */
  refusedOpens = 0;
  readonly #targets = new Map<string, LoadTarget>();
  readonly #intervalMs: number;
  readonly #graceMs: number;
  /** Echoes received per director (by the target the receiving socket sends to), and the last one's time. */
  readonly #echoesVia = new Map<string, number>();
  readonly #lastEchoVia = new Map<string, number>();
  /** Every socket ever opened (closed by stop()). */
  readonly #all = new Set<ClientSession>();
  #timer: NodeJS.Timeout | null = null;
  #stopped = false;
  readonly #started = performance.now();
  readonly #until: number;
  readonly #nextAt: number[] = [];
  #seq = 0;

  private constructor(opts: LoadOptions) {
    for (const t of opts.targets) this.#targets.set(t.name, t);
    this.#intervalMs = opts.intervalMs ?? 125;
    this.#graceMs = opts.graceMs ?? 1000;
    this.#until = this.#started + (opts.maxDurationMs ?? 120_000);
  }

  /** Opens `perTarget` sessions through every target (HELLO answered by their owner), then starts sending. */
  static async start(opts: LoadOptions): Promise<SessionLoad> {
    const load = new SessionLoad(opts);
    try {
      for (let i = 0; i < opts.perTarget; i++) {
        for (const t of opts.targets) await load.#open(t);
      }
    } catch (err) {
      await load.stop();
      throw err;
    }
    load.#timer = setInterval(() => load.#tick(), 10);
    return load;
  }

  /**
   * Opens one session through `t`. A REJECT STORE_UNAVAILABLE (a store call that failed or timed out on a
   * loaded box, e.g. just after a fault) is retried a few times with a fresh session id: the refused
   * create may still land later, and the id is then taken.
   */
  async #open(t: LoadTarget): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        await this.#openOnce(t);
        return;
      } catch (err) {
        if (!(err instanceof ClientRejectedError) || err.reason !== RejectReason.STORE_UNAVAILABLE || attempt >= 10) throw err;
        this.refusedOpens++;
        await new Promise((r) => setTimeout(r, 100 * attempt));
      }
    }
  }

  async #openOnce(t: LoadTarget): Promise<void> {
    const index = this.sessions.length;
    const holder: { s?: LoadSession; hello?: (r: Received) => void } = {};
    const c = await this.#socket(t, undefined, undefined, () => holder.s, (r) => holder.hello?.(r));
    this.#all.add(c);
    // HELLO, retried with a growing wait, until the owner's answer (which carries the session key).
    let answer: Received | undefined;
    for (let attempt = 1; attempt <= 6 && answer === undefined; attempt++) {
      answer = await new Promise<Received | undefined>((resolve) => {
        const timer = setTimeout(() => resolve(undefined), 500 * attempt);
        holder.hello = (r) => {
          clearTimeout(timer);
          resolve(r);
        };
        c.sendHello();
      });
    }
    holder.hello = undefined;
    if (answer === undefined || answer.type === PacketType.REJECT) {
      this.#all.delete(c);
      await c.close();
      if (answer === undefined) throw new Error(`session ${c.hex}: no HELLO answer through ${t.name}`);
      throw new ClientRejectedError(decodeReject(answer.payload ?? Buffer.alloc(0))?.reason, '');
    }
    const key = c.key;
    if (key === null) throw new Error(`session ${c.hex}: the HELLO reply carried no key (cannot jump)`);
    const s: LoadSession = {
      index,
      id: c.id,
      hex: c.hex,
      key,
      via: t.name,
      current: c,
      jumps: 0,
      sent: 0,
      echoes: 0,
      lastEchoOnCurrent: 0,
      rejects: new Map(),
      paused: false,
    };
    holder.s = s;
    this.sessions.push(s);
    // Spread the sends of the sessions evenly over one interval.
    this.#nextAt.push(performance.now() + ((index * 7) % 16) * (this.#intervalMs / 16));
  }

  #socket(
    t: LoadTarget,
    id: Buffer | undefined,
    key: Buffer | undefined,
    session: () => LoadSession | undefined,
    onHello?: (r: Received) => void,
  ): Promise<ClientSession> {
    let self: ClientSession | undefined;
    const onDatagram = (r: Received): void => {
      const s = session();
      if (s === undefined) {
        if (r.type === PacketType.HELLO || r.type === PacketType.REJECT) onHello?.(r);
        return;
      }
      if (r.type === PacketType.DATA) {
        this.#echoesVia.set(t.name, (this.#echoesVia.get(t.name) ?? 0) + 1);
        this.#lastEchoVia.set(t.name, r.at);
        s.echoes++;
        if (s.current === self) s.lastEchoOnCurrent = r.at;
      } else if (r.type === PacketType.REJECT) {
        const reason = decodeReject(r.payload ?? Buffer.alloc(0))?.reason ?? -1;
        s.rejects.set(reason, (s.rejects.get(reason) ?? 0) + 1);
      }
    };
    return ClientSession.open(t.udp, {
      ...(id === undefined ? {} : { id }),
      ...(key === undefined ? {} : { key }),
      keepInbox: false,
      onDatagram,
    }).then((c) => {
      self = c;
      return c;
    });
  }

  #tick(): void {
    const now = performance.now();
    if (this.#stopped) return;
    if (now > this.#until) {
      this.#halt();
      return;
    }
    for (const s of this.sessions) {
      const due = this.#nextAt[s.index] as number;
      if (now < due || s.paused) continue;
      // After a stall, carry on at the rate instead of sending a burst.
      this.#nextAt[s.index] = Math.max(due + this.#intervalMs, now);
      this.#send(s);
    }
  }

  #send(s: LoadSession): void {
    const app = Buffer.alloc(16);
    app.writeUInt32BE(s.index, 0);
    app.writeUInt32BE(this.#seq++ >>> 0, 4);
    app.writeDoubleBE(performance.now(), 8);
    try {
      s.current.sendData(app);
      s.sent++;
    } catch {
      // the socket was closed under us (stop()): nothing to send
    }
  }

  /**
   * Moves session `s` to director `to`: a new socket aimed at it, same id and key; sends at once. The old
   * socket keeps receiving for the grace period. Resolves when the first echo arrives on the new socket
   * (the jump was bound), or rejects after `timeoutMs`; with `wait: false` resolves at once.
   */
  async jump(s: LoadSession, to: string, opts: { timeoutMs?: number; wait?: boolean } = {}): Promise<number> {
    const t = this.#targets.get(to);
    if (t === undefined) throw new Error(`no target "${to}"`);
    const c = await this.#socket(t, s.id, s.key, () => s);
    this.#all.add(c);
    const old = s.current;
    s.current = c;
    s.via = to;
    s.jumps++;
    s.lastEchoOnCurrent = 0;
    const retire = setTimeout(() => void old.close(), this.#graceMs);
    retire.unref();
    this.#send(s);
    if (opts.wait === false) return performance.now();
    return waitFor(`session ${s.hex} to be bound through ${to} (an echo on its new socket)`, () => (s.current === c && s.lastEchoOnCurrent > 0 ? s.lastEchoOnCurrent : undefined), {
      timeoutMs: opts.timeoutMs ?? 10_000,
      intervalMs: 20,
    });
  }

  /**
   * A reattach attempt that must not succeed (e.g. while the store is down): `count` DATA packets of `s`
   * from a fresh socket aimed at `to`. The session itself keeps its current socket. Returns the socket
   * (its inbox keeps what came back) for the caller to inspect; stop() closes it.
   */
  async probeCandidate(s: LoadSession, to: string, count = 3): Promise<ClientSession> {
    const t = this.#targets.get(to);
    if (t === undefined) throw new Error(`no target "${to}"`);
    const c = await ClientSession.open(t.udp, { id: s.id, key: s.key });
    this.#all.add(c);
    for (let i = 0; i < count; i++) {
      const app = Buffer.alloc(16);
      app.write('candidate', 0);
      app.writeUInt32BE(i, 12);
      c.sendData(app);
    }
    return c;
  }

  /** Points target `t.name` at a new address (a restarted director); sockets already open keep theirs. */
  retarget(t: LoadTarget): void {
    this.#targets.set(t.name, t);
  }

  /** Sessions (not paused) currently sending through `name`. */
  via(name: string): LoadSession[] {
    return this.sessions.filter((s) => s.via === name && !s.paused);
  }

  echoesVia(name: string): number {
    return this.#echoesVia.get(name) ?? 0;
  }

  lastEchoVia(name: string): number {
    return this.#lastEchoVia.get(name) ?? 0;
  }

  /**
   * Waits (bounded) until every session in `which` (default: every session not paused) has had an echo on
   * its current socket after `since` (performance.now()). UDP may lose packets; each session sends many,
   * so this is progress, not a count. The error names the sessions still waiting.
   */
  async waitEchoes(since: number, opts: { which?: LoadSession[]; timeoutMs?: number; what?: string } = {}): Promise<void> {
    const which = opts.which ?? this.sessions.filter((s) => !s.paused);
    const timeoutMs = opts.timeoutMs ?? 10_000;
    const until = performance.now() + timeoutMs;
    for (;;) {
      const waiting = which.filter((s) => s.lastEchoOnCurrent <= since);
      if (waiting.length === 0) return;
      if (performance.now() > until) {
        throw new Error(
          `${opts.what ?? 'echoes'}: ${waiting.length}/${which.length} sessions had no echo within ${timeoutMs} ms: ` +
            waiting
              .slice(0, 8)
              .map((s) => `${s.hex} via ${s.via} (sent ${s.sent}, echoes ${s.echoes}, rejects ${JSON.stringify([...s.rejects])})`)
              .join('; '),
        );
      }
      await new Promise((r) => setTimeout(r, 25));
    }
  }

  #halt(): void {
    this.#stopped = true;
    if (this.#timer !== null) clearInterval(this.#timer);
    this.#timer = null;
  }

  /** Stops sending and closes every socket. Idempotent. */
  async stop(): Promise<void> {
    this.#halt();
    await Promise.allSettled([...this.#all].map((c) => c.close()));
  }
}
