// The client simulator: opens N JV1 sessions (each on its own UDP socket, i.e. its own source port),
// sends DATA at an aggregate rate for a bounded duration, optionally moves every session to a new socket
// every S seconds (a "jump"), and reports sent/received/lost, jumps and round-trip percentiles. Every loop
// is bounded in count and time; it stops by itself. One session's socket handling is session.ts.
import { performance } from 'node:perf_hooks';
import { decodeReject } from '../codec/jv1.js';
import { PacketType, type Transport } from '../codec/types.js';
import { rejectLabel } from '../obs/stats.js';
import { ClientSession, DEFAULT_JUMP_GRACE_MS, type Received } from './session.js';
import { quantile, round3 } from './stats.js';

export { ClientSession, ClientRejectedError, DEFAULT_JUMP_GRACE_MS, type ClientSessionOptions, type Received } from './session.js';

export interface ClientOptions {
  readonly target: Transport;
  readonly sessions: number;
  /** Aggregate DATA packets per second over all sessions. */
  readonly rate: number;
  readonly durationS: number;
  /**
   * DATA app bytes (≥ 16: a sequence number and a send timestamp). With a session key the 16-byte MAC
   * follows them on the wire.
   */
  readonly size: number;
  /** How long to wait for a HELLO answer before retrying (ms). */
  readonly helloTimeoutMs?: number;
  readonly helloAttempts?: number;
  /** How long to wait for late echoes after the last send (ms). */
  readonly drainMs?: number;
  /** Send CLOSE for every session at the end (default true). */
  readonly close?: boolean;
  /**
   * Every this many seconds each session jumps to a new UDP socket (a new source port). Jumps are
   * staggered: over each period the sessions jump one after another, evenly spread. Off when absent or 0.
   */
  readonly jumpEveryS?: number;
  /** How long an old socket keeps receiving after a jump (ms, default 500). */
  readonly jumpGraceMs?: number;
}

export interface ClientReport {
  readonly target: string;
  readonly sessions: { readonly requested: number; readonly opened: number; readonly failed: number };
  readonly rejects: Record<string, number>;
  readonly sent: number;
  /** Echoes received, on the current socket or on an old one within its grace after a jump. */
  readonly received: number;
  readonly lost: number;
  readonly loss_pct: number;
  /** Jumps made (new sockets opened during the run). */
  readonly jumps: number;
  readonly duration_s: number;
  readonly pps_sent: number;
  readonly pps_received: number;
  readonly rtt_ms: { readonly p50: number; readonly p99: number; readonly max: number };
  /** The session ids that were opened (hex), for checkers. */
  readonly session_ids: string[];
}

interface Sess {
  readonly idx: number;
  readonly c: ClientSession;
  opened: boolean;
  rejected: string | null;
}

export const MIN_PAYLOAD = 16;

export async function runClient(opts: ClientOptions): Promise<ClientReport> {
  if (opts.size < MIN_PAYLOAD) throw new RangeError(`size must be at least ${MIN_PAYLOAD} bytes`);
  const helloTimeout = opts.helloTimeoutMs ?? 500;
  const helloAttempts = opts.helloAttempts ?? 5;
  const jumpEveryMs = (opts.jumpEveryS ?? 0) * 1000;
  const maxSamples = Math.min(Math.ceil(opts.rate * opts.durationS) + 16, 5_000_000);
  const rtts = new Float64Array(maxSamples);
  let nRtt = 0;
  let sent = 0;
  let received = 0;
  let jumps = 0;
  const rejects: Record<string, number> = {};
  const sessions: Sess[] = [];
  const pendingHello = new Set<Sess>();
  const jumpsUnderWay = new Set<Promise<unknown>>();
  let helloWake: (() => void) | null = null;

  const onMessage = (s: Sess, r: Received): void => {
    const p = r.payload;
    if (p === undefined) return;
    if (r.type === PacketType.HELLO) {
      if (!s.opened) {
        s.opened = true;
        pendingHello.delete(s);
        if (pendingHello.size === 0) helloWake?.();
      }
    } else if (r.type === PacketType.DATA && p.length >= MIN_PAYLOAD) {
      received++;
      const t0 = p.readDoubleBE(8);
      if (nRtt < maxSamples) rtts[nRtt++] = r.at - t0;
    } else if (r.type === PacketType.REJECT) {
      const rej = decodeReject(p);
      const name = rej === undefined ? 'unparsable' : rejectLabel(rej.reason);
      rejects[name] = (rejects[name] ?? 0) + 1;
      s.rejected = name;
    }
  };

  try {
    for (let i = 0; i < opts.sessions; i++) {
      const holder: { s?: Sess } = {};
      const c = await ClientSession.open(opts.target, {
        keepInbox: false,
        graceMs: opts.jumpGraceMs ?? DEFAULT_JUMP_GRACE_MS,
        onDatagram: (r) => onMessage(holder.s as Sess, r),
      });
      holder.s = { idx: i, c, opened: false, rejected: null };
      sessions.push(holder.s);
    }

    // Phase 1: HELLO, paced at the data rate, retried for sessions that got no answer.
    for (let attempt = 0; attempt < helloAttempts; attempt++) {
      const todo = sessions.filter((s) => !s.opened);
      if (todo.length === 0) break;
      for (const s of todo) pendingHello.add(s);
      await paced(todo, opts.rate, (s) => s.c.sendHello());
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, helloTimeout * (attempt + 1));
        helloWake = () => {
          clearTimeout(t);
          resolve();
        };
        if (pendingHello.size === 0) helloWake();
      });
      helloWake = null;
      pendingHello.clear();
    }

    // Phase 2: DATA at the aggregate rate, round robin over opened sessions; jumps on their schedule.
    const open = sessions.filter((s) => s.opened);
    const payload = Buffer.alloc(opts.size, 0x61);
    const t0 = performance.now();
    const end = t0 + opts.durationS * 1000;
    // The j-th jump (j = 0, 1, …) is session j mod n's, at t0 + (j + 1) · period / n.
    let nextJump = 0;
    const jumpDue = (j: number): number => t0 + ((j + 1) * jumpEveryMs) / open.length;
    if (open.length > 0) {
      let next = 0;
      await new Promise<void>((resolve) => {
        const tick = (): void => {
          const now = performance.now();
          if (jumpEveryMs > 0) {
            for (; jumpDue(nextJump) <= Math.min(now, end); nextJump++) {
              const s = open[nextJump % open.length] as Sess;
              if (s.c.jumping) continue; // still opening its previous socket: skip this turn
              const p = s.c.jump().then(
                () => void jumps++,
                () => {},
              );
              jumpsUnderWay.add(p);
              void p.finally(() => jumpsUnderWay.delete(p));
            }
          }
          const due = Math.min(Math.floor(((Math.min(now, end) - t0) / 1000) * opts.rate), maxSamples);
          while (sent < due) {
            const s = open[next % open.length] as Sess;
            next++;
            payload.writeUInt32BE(s.idx, 0);
            payload.writeUInt32BE(sent >>> 0, 4);
            payload.writeDoubleBE(performance.now(), 8);
            s.c.sendData(payload);
            sent++;
          }
          if (now >= end || sent >= maxSamples) {
            clearInterval(timer);
            resolve();
          }
        };
        const timer = setInterval(tick, 2);
      });
    }
    const sendEnd = performance.now();
    await Promise.all(jumpsUnderWay);
    const drainUntil = sendEnd + (opts.drainMs ?? 1000);
    while (received < sent && performance.now() < drainUntil) await new Promise((r) => setTimeout(r, 10));
    const elapsed = (sendEnd - t0) / 1000;

    if (opts.close !== false) {
      // Paced like the data, and each send completed before its socket closes.
      const sends: Promise<void>[] = [];
      await paced(open, Math.max(opts.rate, 1000), (s) => void sends.push(s.c.sendClose()));
      await Promise.all(sends);
    }
    const sorted = rtts.subarray(0, nRtt).sort();
    const lost = Math.max(0, sent - received);
    return {
      target: opts.target.family === 6 ? `[${opts.target.address}]:${opts.target.port}` : `${opts.target.address}:${opts.target.port}`,
      sessions: { requested: opts.sessions, opened: open.length, failed: opts.sessions - open.length },
      rejects,
      sent,
      received,
      lost,
      loss_pct: sent === 0 ? 0 : round3((lost / sent) * 100),
      jumps,
      duration_s: round3(elapsed),
      pps_sent: elapsed > 0 ? Math.round(sent / elapsed) : 0,
      pps_received: elapsed > 0 ? Math.round(received / elapsed) : 0,
      rtt_ms: { p50: round3(quantile(sorted, 0.5)), p99: round3(quantile(sorted, 0.99)), max: round3(sorted[sorted.length - 1] ?? Number.NaN) },
      session_ids: open.map((s) => s.c.hex),
    };
  } finally {
    await Promise.allSettled(jumpsUnderWay);
    await Promise.allSettled(sessions.map((s) => s.c.close()));
  }
}

/** Calls `fn` for each item at `rate` items per second (bursting in 2 ms ticks). */
async function paced<T>(items: readonly T[], rate: number, fn: (t: T) => void): Promise<void> {
  const t0 = performance.now();
  let i = 0;
  while (i < items.length) {
    const due = Math.min(items.length, Math.max(1, Math.floor(((performance.now() - t0) / 1000) * rate)));
    while (i < due) fn(items[i++] as T);
    if (i < items.length) await new Promise((r) => setTimeout(r, 2));
  }
}

export function formatReport(r: ClientReport): string {
  const rej = Object.entries(r.rejects).map(([k, v]) => `${k}=${v}`).join(' ') || 'none';
  return [
    `target        ${r.target}`,
    `sessions      ${r.sessions.opened}/${r.sessions.requested} opened (${r.sessions.failed} failed)`,
    `rejects       ${rej}`,
    `sent          ${r.sent} (${r.pps_sent} pps over ${r.duration_s} s)`,
    `received      ${r.received} (${r.pps_received} pps)`,
    `lost          ${r.lost} (${r.loss_pct}%)`,
    `jumps         ${r.jumps}`,
    `rtt p50/p99   ${r.rtt_ms.p50} / ${r.rtt_ms.p99} ms (max ${r.rtt_ms.max} ms)`,
  ].join('\n');
}
