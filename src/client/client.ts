// The client simulator: opens N JV1 sessions (each on its own UDP socket, i.e. its own source port),
// sends DATA at an aggregate rate for a bounded duration and reports sent/received/lost and round-trip
// percentiles. Every loop is bounded in count and time; it stops by itself.
import dgram from 'node:dgram';
import { once } from 'node:events';
import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { decodeJv1, decodeReject, encodeJv1, sessionIdHex } from '../codec/jv1.js';
import { PacketType, type Transport } from '../codec/types.js';
import { rejectLabel } from '../obs/stats.js';
import { quantile, round3 } from './stats.js';

export interface ClientOptions {
  readonly target: Transport;
  readonly sessions: number;
  /** Aggregate DATA packets per second over all sessions. */
  readonly rate: number;
  readonly durationS: number;
  /** DATA payload bytes (≥ 16: a sequence number and a send timestamp). */
  readonly size: number;
  /** How long to wait for a HELLO answer before retrying (ms). */
  readonly helloTimeoutMs?: number;
  readonly helloAttempts?: number;
  /** How long to wait for late echoes after the last send (ms). */
  readonly drainMs?: number;
  /** Send CLOSE for every session at the end (default true). */
  readonly close?: boolean;
}

export interface ClientReport {
  readonly target: string;
  readonly sessions: { readonly requested: number; readonly opened: number; readonly failed: number };
  readonly rejects: Record<string, number>;
  readonly sent: number;
  readonly received: number;
  readonly lost: number;
  readonly loss_pct: number;
  readonly duration_s: number;
  readonly pps_sent: number;
  readonly pps_received: number;
  readonly rtt_ms: { readonly p50: number; readonly p99: number; readonly max: number };
  /** The session ids that were opened (hex), for checkers. */
  readonly session_ids: string[];
}

interface Sess {
  readonly idx: number;
  readonly id: Buffer;
  readonly socket: dgram.Socket;
  opened: boolean;
  rejected: string | null;
}

export const MIN_PAYLOAD = 16;

export async function runClient(opts: ClientOptions): Promise<ClientReport> {
  if (opts.size < MIN_PAYLOAD) throw new RangeError(`size must be at least ${MIN_PAYLOAD} bytes`);
  const type = opts.target.family === 6 ? 'udp6' : 'udp4';
  const helloTimeout = opts.helloTimeoutMs ?? 500;
  const helloAttempts = opts.helloAttempts ?? 5;
  const maxSamples = Math.min(Math.ceil(opts.rate * opts.durationS) + 16, 5_000_000);
  const rtts = new Float64Array(maxSamples);
  let nRtt = 0;
  let sent = 0;
  let received = 0;
  const rejects: Record<string, number> = {};
  const sessions: Sess[] = [];
  const pendingHello = new Set<Sess>();
  let helloWake: (() => void) | null = null;

  const onMessage = (s: Sess, msg: Buffer): void => {
    const d = decodeJv1(msg);
    if (d.kind !== 'ok') return;
    const p = d.value;
    if (p.type === PacketType.HELLO) {
      if (!s.opened) {
        s.opened = true;
        pendingHello.delete(s);
        if (pendingHello.size === 0) helloWake?.();
      }
    } else if (p.type === PacketType.DATA && p.payload.length >= MIN_PAYLOAD) {
      received++;
      const t0 = Buffer.from(p.payload.buffer, p.payload.byteOffset, p.payload.length).readDoubleBE(8);
      if (nRtt < maxSamples) rtts[nRtt++] = performance.now() - t0;
    } else if (p.type === PacketType.REJECT) {
      const r = decodeReject(p.payload);
      const name = r === undefined ? 'unparsable' : rejectLabel(r.reason);
      rejects[name] = (rejects[name] ?? 0) + 1;
      s.rejected = name;
    }
  };

  try {
    for (let i = 0; i < opts.sessions; i++) {
      const socket = dgram.createSocket(type);
      const s: Sess = { idx: i, id: randomBytes(16), socket, opened: false, rejected: null };
      socket.on('message', (msg) => onMessage(s, msg));
      socket.on('error', () => {});
      socket.bind(0, opts.target.family === 6 ? '::1' : '127.0.0.1');
      await once(socket, 'listening');
      socket.connect(opts.target.port, opts.target.address);
      await once(socket, 'connect');
      sessions.push(s);
    }

    // Phase 1: HELLO, paced at the data rate, retried for sessions that got no answer.
    const hello = (s: Sess): void => s.socket.send(encodeJv1(PacketType.HELLO, s.id, Buffer.from('hello')));
    for (let attempt = 0; attempt < helloAttempts; attempt++) {
      const todo = sessions.filter((s) => !s.opened);
      if (todo.length === 0) break;
      for (const s of todo) pendingHello.add(s);
      await paced(todo, opts.rate, hello);
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

    // Phase 2: DATA at the aggregate rate, round robin over opened sessions.
    const open = sessions.filter((s) => s.opened);
    const payload = Buffer.alloc(opts.size, 0x61);
    const t0 = performance.now();
    const end = t0 + opts.durationS * 1000;
    if (open.length > 0) {
      let next = 0;
      await new Promise<void>((resolve) => {
        const tick = (): void => {
          const now = performance.now();
          const due = Math.min(Math.floor(((Math.min(now, end) - t0) / 1000) * opts.rate), maxSamples);
          while (sent < due) {
            const s = open[next % open.length] as Sess;
            next++;
            payload.writeUInt32BE(s.idx, 0);
            payload.writeUInt32BE(sent >>> 0, 4);
            payload.writeDoubleBE(performance.now(), 8);
            s.socket.send(encodeJv1(PacketType.DATA, s.id, payload));
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
    const drainUntil = sendEnd + (opts.drainMs ?? 1000);
    while (received < sent && performance.now() < drainUntil) await new Promise((r) => setTimeout(r, 10));
    const elapsed = (sendEnd - t0) / 1000;

    if (opts.close !== false) {
      // Paced like the data, and each send completed before its socket closes.
      const sends: Promise<void>[] = [];
      await paced(open, Math.max(opts.rate, 1000), (s) => {
        sends.push(new Promise<void>((resolve) => s.socket.send(encodeJv1(PacketType.CLOSE, s.id), () => resolve())));
      });
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
      duration_s: round3(elapsed),
      pps_sent: elapsed > 0 ? Math.round(sent / elapsed) : 0,
      pps_received: elapsed > 0 ? Math.round(received / elapsed) : 0,
      rtt_ms: { p50: round3(quantile(sorted, 0.5)), p99: round3(quantile(sorted, 0.99)), max: round3(sorted[sorted.length - 1] ?? Number.NaN) },
      session_ids: open.map((s) => sessionIdHex(s.id)),
    };
  } finally {
    for (const s of sessions) s.socket.close();
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
    `rtt p50/p99   ${r.rtt_ms.p50} / ${r.rtt_ms.p99} ms (max ${r.rtt_ms.max} ms)`,
  ].join('\n');
}
