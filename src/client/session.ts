// One client session over UDP, for the client simulator and for tests: its id, the key it learned from
// the node's HELLO reply, the socket it sends from (its transport) and the jumps to new sockets. It owns
// its sockets and closes them; it never decides pacing or retries for many sessions (client.ts does).
import dgram from 'node:dgram';
import { once } from 'node:events';
import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { decodeJv1, decodeReject, encodeJv1, sessionIdHex } from '../codec/jv1.js';
import { PacketType, type RejectReason, type Transport } from '../codec/types.js';
import { sealPacket, SESSION_KEY_LEN } from '../refnode/keys.js';

/** A datagram a session's socket received. */
export interface Received {
  readonly msg: Buffer;
  /** The local transport (socket) it arrived on: after a jump, the old or the new one. */
  readonly local: Transport;
  /** The JV1 type, when the datagram is JV1. */
  readonly type: number | undefined;
  /** The JV1 payload (a view into `msg`), when the datagram is JV1. */
  readonly payload: Buffer | undefined;
  /** performance.now() at arrival. */
  readonly at: number;
}

export interface ClientSessionOptions {
  /** 16 bytes; default random. */
  readonly id?: Uint8Array;
  /** A key known in advance (to race a second transport of a session, or to forge one with a wrong key). */
  readonly key?: Uint8Array | null;
  /** Local address to bind; default the loopback address of the target's family. */
  readonly bindAddress?: string;
  /** Keep received datagrams in `inbox` for next() (default true; the simulator turns it off). */
  readonly keepInbox?: boolean;
  /** Called for every datagram received on any of the session's sockets. */
  readonly onDatagram?: (r: Received) => void;
  /** How long an old socket keeps receiving after a jump (ms, default 500). */
  readonly graceMs?: number;
}

/** The session's HELLO was answered with a REJECT. */
export class ClientRejectedError extends Error {
  readonly code = 'ANCHOR_CLIENT_REJECTED';
  override readonly name = 'ClientRejectedError';
  constructor(
    readonly reason: RejectReason | undefined,
    readonly text: string,
  ) {
    super(`HELLO rejected (reason ${reason ?? 'unparsable'}${text === '' ? '' : `: ${text}`})`);
  }
}

export const DEFAULT_JUMP_GRACE_MS = 500;

interface Sock {
  readonly socket: dgram.Socket;
  readonly local: Transport;
  timer: NodeJS.Timeout | null;
}

/**
 * A JV1 session seen from the client. Keys: a HELLO reply whose payload has at least 16 bytes carries the
 * session key (its first 16 bytes; the reference node's stand-in for a VPN handshake); from then on every
 * DATA is `app ‖ mac16` (keys.ts). A reply without a key (an older node that echoes the HELLO payload,
 * here 5 bytes) leaves `key` null and DATA goes out without a MAC — such a session cannot jump, since its
 * owner cannot validate the new transport.
 */
export class ClientSession {
  readonly id: Buffer;
  readonly target: Transport;
  /** The session key (learned from the HELLO reply, or given); null: DATA is sent without a MAC. */
  key: Buffer | null;
  readonly inbox: Received[] = [];
  /** Jumps made (new sockets opened after the first). */
  jumps = 0;
  readonly #opts: ClientSessionOptions;
  #current: Sock;
  readonly #retiring = new Set<Sock>();
  #waiters: (() => void)[] = [];
  #jumping: Promise<Transport> | null = null;
  #closed = false;

  private constructor(target: Transport, opts: ClientSessionOptions, first: Sock) {
    this.target = target;
    this.#opts = opts;
    this.id = Buffer.from(opts.id ?? randomBytes(16));
    if (this.id.length !== 16) throw new RangeError('a session id has 16 bytes');
    this.key = opts.key === undefined || opts.key === null ? null : Buffer.from(opts.key);
    this.#current = first;
    this.#listen(first);
  }

  /** Opens a session's first socket (connected to `target`); nothing is sent yet. */
  static async open(target: Transport, opts: ClientSessionOptions = {}): Promise<ClientSession> {
    return new ClientSession(target, opts, await openSocket(target, opts.bindAddress));
  }

  /** The session id as 32 hex characters. */
  get hex(): string {
    return sessionIdHex(this.id);
  }

  /** The current local transport (source address and port of what the session sends now). */
  get transport(): Transport {
    return this.#current.local;
  }

  /** Sockets open now: the current one plus old ones still within their grace after a jump. */
  get openSockets(): number {
    return this.#closed ? 0 : 1 + this.#retiring.size;
  }

  get jumping(): boolean {
    return this.#jumping !== null;
  }

  /** Sends raw bytes from the current socket. */
  send(bytes: Uint8Array, cb?: () => void): void {
    if (this.#closed) throw new Error('session closed');
    this.#current.socket.send(bytes, cb === undefined ? undefined : () => cb());
  }

  sendHello(payload: Uint8Array = Buffer.from('hello')): void {
    this.send(encodeJv1(PacketType.HELLO, this.id, payload));
  }

  /** A DATA packet for `app`: header ‖ app ‖ mac16 with a key, header ‖ app without. */
  dataPacket(app: Uint8Array): Buffer {
    const p = encodeJv1(PacketType.DATA, this.id, app);
    return this.key === null ? p : sealPacket(this.key, p);
  }

  sendData(app: Uint8Array): void {
    this.send(this.dataPacket(app));
  }

  /** Sends CLOSE from the current socket; resolves once it is handed to the kernel. */
  sendClose(): Promise<void> {
    return new Promise<void>((resolve) => this.send(encodeJv1(PacketType.CLOSE, this.id), resolve));
  }

  /**
   * Sends HELLO (retrying `attempts` times, waiting `timeoutMs` longer each time) until the HELLO reply
   * arrives; resolves with the key it carried (null when it carried none). A REJECT throws
   * ClientRejectedError; no answer at all throws an Error. Needs the inbox (keepInbox, the default).
   */
  async hello(opts: { timeoutMs?: number; attempts?: number; payload?: Uint8Array } = {}): Promise<Buffer | null> {
    const timeout = opts.timeoutMs ?? 500;
    const attempts = opts.attempts ?? 5;
    for (let i = 0; i < attempts; i++) {
      this.sendHello(opts.payload);
      const r = await this.next((m) => m.type === PacketType.HELLO || m.type === PacketType.REJECT, timeout * (i + 1)).catch(() => undefined);
      if (r === undefined) continue;
      if (r.type === PacketType.REJECT) {
        const rej = decodeReject(r.payload ?? Buffer.alloc(0));
        throw new ClientRejectedError(rej?.reason, rej?.text ?? '');
      }
      return this.key;
    }
    throw new Error(`no HELLO answer for session ${this.hex} after ${attempts} attempts`);
  }

  /**
   * Moves the session to a new socket (a new source port): later sends use it. The old socket keeps
   * receiving for `graceMs` (replies sent before the director rebinds still arrive there), then closes.
   * Calls made while a jump is under way wait for it and then jump again.
   */
  jump(graceMs: number = this.#opts.graceMs ?? DEFAULT_JUMP_GRACE_MS): Promise<Transport> {
    const prev = this.#jumping ?? Promise.resolve(this.transport);
    const p = prev.then(async () => {
      if (this.#closed) throw new Error('session closed');
      const next = await openSocket(this.target, this.#opts.bindAddress);
      if (this.#closed) {
        next.socket.close();
        throw new Error('session closed');
      }
      const old = this.#current;
      this.#current = next;
      this.#listen(next);
      this.jumps++;
      this.#retire(old, graceMs);
      return next.local;
    });
    const tracked = p.finally(() => {
      if (this.#jumping === tracked) this.#jumping = null;
    });
    this.#jumping = tracked;
    return tracked;
  }

  /** Removes and returns the first received datagram matching `pred`, waiting up to `timeoutMs`. */
  async next(pred: (r: Received) => boolean = () => true, timeoutMs = 3000): Promise<Received> {
    const until = performance.now() + timeoutMs;
    for (;;) {
      const i = this.inbox.findIndex(pred);
      if (i >= 0) return this.inbox.splice(i, 1)[0] as Received;
      const left = until - performance.now();
      if (left <= 0) throw new Error(`session ${this.hex}: no matching datagram within ${timeoutMs} ms (inbox: ${this.inbox.length})`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.#waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  /** Closes every socket at once (sends nothing; see sendClose). Idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    const all = [this.#current, ...this.#retiring];
    this.#retiring.clear();
    await Promise.all(all.map((s) => closeSock(s)));
  }

  #listen(s: Sock): void {
    s.socket.on('message', (msg) => this.#onMessage(msg, s.local));
  }

  #retire(s: Sock, graceMs: number): void {
    this.#retiring.add(s);
    s.timer = setTimeout(() => {
      this.#retiring.delete(s);
      void closeSock(s);
    }, graceMs);
    s.timer.unref();
  }

  #onMessage(msg: Buffer, local: Transport): void {
    const d = decodeJv1(msg);
    const ok = d.kind === 'ok';
    const type = ok ? d.value.type : undefined;
    const payload = ok ? Buffer.from(d.value.payload.buffer, d.value.payload.byteOffset, d.value.payload.length) : undefined;
    if (type === PacketType.HELLO && payload !== undefined && payload.length >= SESSION_KEY_LEN) {
      this.key = Buffer.from(payload.subarray(0, SESSION_KEY_LEN));
    }
    const r: Received = { msg, local, type, payload, at: performance.now() };
    this.#opts.onDatagram?.(r);
    if (this.#opts.keepInbox === false) return;
    this.inbox.push(r);
    for (const w of this.#waiters.splice(0)) w();
  }
}

async function openSocket(target: Transport, bindAddress?: string): Promise<Sock> {
  const socket = dgram.createSocket(target.family === 6 ? 'udp6' : 'udp4');
  socket.on('error', () => {});
  socket.bind(0, bindAddress ?? (target.family === 6 ? '::1' : '127.0.0.1'));
  await once(socket, 'listening');
  socket.connect(target.port, target.address);
  await once(socket, 'connect');
  const a = socket.address();
  return { socket, local: { family: a.family === 'IPv6' ? 6 : 4, address: a.address, port: a.port }, timer: null };
}

function closeSock(s: Sock): Promise<void> {
  if (s.timer !== null) clearTimeout(s.timer);
  return new Promise<void>((resolve) => {
    try {
      s.socket.close(() => resolve());
    } catch {
      resolve(); // already closed
    }
  });
}
