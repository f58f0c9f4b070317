// One client session over TCP, for tests and the bench: its id, the key learned from the node's HELLO
// answer, and its current connection (a reattach opens a new one). It owns its connections and closes
// them; after hello()/reattach() the stream is the caller's (`socket`, or the write/read helpers), which
// read exactly what they are asked for and leave the rest in the socket.
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import { decodeBind, decodeReject, encodeJv1, JV1_HEADER_LEN, sessionIdHex, type Jv1Bind } from '../codec/jv1.js';
import { PacketType, type Transport } from '../codec/types.js';
import { sealPacket, SESSION_KEY_LEN } from '../refnode/keys.js';
import { ClientRejectedError } from './session.js';

export { ClientRejectedError } from './session.js';

export interface TcpClientSessionOptions {
  /** 16 bytes; default random. */
  readonly id?: Uint8Array;
  /** A key known in advance (to reattach without a HELLO on this object, or to forge with a wrong one). */
  readonly key?: Uint8Array | null;
  /** Local address to connect from; default the loopback address of the target's family. */
  readonly bindAddress?: string;
}

export interface TcpReattach {
  /** The BIND that preceded the echo, when one reached the client (a director may keep it to itself). */
  readonly bind: Jv1Bind | undefined;
}

/** The default probe a reattach writes after its preamble; a probe must not start with "J" (0x4a). */
export const DEFAULT_REATTACH_PROBE: Buffer = Buffer.from('?');

/** The connection ended or failed before the bytes asked for arrived. */
export class StreamClosedError extends Error {
  readonly code = 'ANCHOR_CLIENT_STREAM_CLOSED';
  override readonly name = 'StreamClosedError';
  constructor(
    message: string,
    /** What had arrived of the read (it is consumed). */
    readonly partial: Buffer,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/**
 * A JV1 session seen from a TCP client. A HELLO connection starts with the 20-byte HELLO header and is
 * answered with the HELLO header and the 16-byte key; a reattach connection starts with the DATA header
 * and its MAC (sealPacket over the header alone) and, once its owner validated it, is echoed like the first.
 */
export class TcpClientSession {
  readonly id: Buffer;
  readonly target: Transport;
  /** Learned from the HELLO answer, or given. */
  key: Buffer | null;
  /** The current connection. Replaced by reattach(); the old one is destroyed. */
  socket: net.Socket;
  /** Reattaches made. */
  reattaches = 0;
  readonly #opts: TcpClientSessionOptions;
  #closed = false;

  private constructor(target: Transport, opts: TcpClientSessionOptions, socket: net.Socket) {
    this.target = target;
    this.#opts = opts;
    this.id = Buffer.from(opts.id ?? randomBytes(16));
    if (this.id.length !== 16) throw new RangeError('a session id has 16 bytes');
    this.key = opts.key === undefined || opts.key === null ? null : Buffer.from(opts.key);
    this.socket = socket;
  }

  /** Opens the session's first connection to `target`; nothing is sent yet. */
  static async connect(target: Transport, opts: TcpClientSessionOptions = {}): Promise<TcpClientSession> {
    return new TcpClientSession(target, opts, await openConnection(target, opts.bindAddress));
  }

  /** The session id as 32 hex characters. */
  get hex(): string {
    return sessionIdHex(this.id);
  }

  /** The local transport of the current connection. */
  get transport(): Transport {
    const s = this.socket;
    return { family: s.localFamily === 'IPv6' ? 6 : 4, address: s.localAddress ?? '', port: s.localPort ?? 0 };
  }

  /**
   * Writes the HELLO header on the current connection and reads the answer: HELLO header ‖ 16-byte key.
   * Resolves with the key (also kept in `key`). A REJECT throws ClientRejectedError; anything else, or
   * the connection ending first, an Error.
   */
  async hello(timeoutMs = 3000): Promise<Buffer> {
    const until = Date.now() + timeoutMs;
    await this.write(encodeJv1(PacketType.HELLO, this.id));
    const head = await this.read(JV1_HEADER_LEN, until - Date.now());
    await this.#throwIfReject(head, until);
    if (!isJv1(head, PacketType.HELLO) || !head.subarray(4, JV1_HEADER_LEN).equals(this.id)) {
      throw new Error(`session ${this.hex}: the answer to HELLO is not a HELLO of this session`);
    }
    this.key = await this.read(SESSION_KEY_LEN, until - Date.now());
    return this.key;
  }

  /**
   * Reattaches on a new connection (the current one is destroyed): writes the DATA header, its MAC and
   * `probe`, then reads until the probe's echo is back (consuming it, and a BIND before it if one comes).
   * A REJECT throws ClientRejectedError (after the connection ends, so its text is whole); the connection
   * ending first throws StreamClosedError. Needs `key`.
   */
  async reattach(timeoutMs = 3000, probe: Uint8Array = DEFAULT_REATTACH_PROBE): Promise<TcpReattach> {
    if (this.key === null) throw new Error('reattach needs the session key');
    if (probe.length === 0 || probe[0] === 0x4a) throw new RangeError('a probe is non-empty and does not start with 0x4a');
    if (this.#closed) throw new Error('session closed');
    const until = Date.now() + timeoutMs;
    this.socket.destroy();
    this.socket = await openConnection(this.target, this.#opts.bindAddress);
    this.reattaches++;
    const preamble = sealPacket(this.key, encodeJv1(PacketType.DATA, this.id));
    await this.write(Buffer.concat([preamble, probe]));
    let bind: Jv1Bind | undefined;
    let first = await this.read(1, until - Date.now());
    if (first[0] === 0x4a) {
      // A JV1 packet from the node or the director before the echo.
      const head = Buffer.concat([first, await this.read(JV1_HEADER_LEN - 1, until - Date.now())]);
      await this.#throwIfReject(head, until);
      if (!isJv1(head, PacketType.BIND)) throw new Error(`session ${this.hex}: unexpected JV1 type ${head[3]} before the echo`);
      const fixed = await this.read(9, until - Date.now()); // u64 version, u8 family
      const rest = await this.read((fixed[8] === 6 ? 16 : 4) + 2, until - Date.now());
      bind = decodeBind(Buffer.concat([fixed, rest]));
      if (bind === undefined) throw new Error(`session ${this.hex}: malformed BIND`);
      first = await this.read(1, until - Date.now());
    }
    const echo = probe.length > 1 ? Buffer.concat([first, await this.read(probe.length - 1, until - Date.now())]) : first;
    if (!echo.equals(probe)) throw new Error(`session ${this.hex}: the probe's echo differs`);
    return { bind };
  }

  /** Writes on the current connection; resolves once the bytes are handed to the kernel. */
  write(bytes: Uint8Array): Promise<void> {
    const s = this.socket;
    return new Promise<void>((resolve, reject) => s.write(bytes, (err) => (err ? reject(err) : resolve())));
  }

  /**
   * Reads exactly `n` bytes from the current connection (bytes beyond them stay in the socket), within
   * `timeoutMs`. The connection ending first throws StreamClosedError (with what had arrived); the
   * timeout an Error.
   */
  async read(n: number, timeoutMs = 3000): Promise<Buffer> {
    const s = this.socket;
    const until = Date.now() + timeoutMs;
    const parts: Buffer[] = [];
    let got = 0;
    while (got < n) {
      const avail = s.readableLength;
      if (avail > 0) {
        const c = s.read(Math.min(avail, n - got)) as Buffer | null;
        if (c !== null) {
          parts.push(c);
          got += c.length;
          continue;
        }
      }
      if (s.readableEnded || s.destroyed) {
        throw new StreamClosedError(`session ${this.hex}: the connection ended after ${got} of ${n} bytes`, Buffer.concat(parts));
      }
      s.read(0); // at the end of the stream with nothing buffered, this makes 'end' come
      const left = until - Date.now();
      if (left <= 0) throw new Error(`session ${this.hex}: ${got} of ${n} bytes within ${timeoutMs} ms`);
      await readableOrEnd(s, left);
    }
    return parts.length === 1 ? (parts[0] as Buffer) : Buffer.concat(parts);
  }

  /** Everything until the other side ends its half (within `timeoutMs`). */
  async readToEnd(timeoutMs = 3000): Promise<Buffer> {
    const s = this.socket;
    const until = Date.now() + timeoutMs;
    const parts: Buffer[] = [];
    for (;;) {
      const c = s.read() as Buffer | null;
      if (c !== null) {
        parts.push(c);
        continue;
      }
      if (s.readableEnded || s.destroyed) return Buffer.concat(parts);
      const left = until - Date.now();
      if (left <= 0) throw new Error(`session ${this.hex}: the stream did not end within ${timeoutMs} ms`);
      await readableOrEnd(s, left);
    }
  }

  /** Ends our half of the current connection (the node finishes its echo, then ends its half). */
  end(): Promise<void> {
    const s = this.socket;
    return new Promise<void>((resolve) => s.end(() => resolve()));
  }

  /** Destroys the current connection. Idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    const s = this.socket;
    if (s.destroyed) return;
    await new Promise<void>((resolve) => {
      s.once('close', () => resolve());
      s.destroy();
    });
  }

  /** If `head` is a REJECT header: reads its reason and text (to the end of the stream) and throws. */
  async #throwIfReject(head: Buffer, until: number): Promise<void> {
    if (!isJv1(head, PacketType.REJECT)) return;
    let payload: Buffer;
    try {
      payload = Buffer.concat([await this.read(1, until - Date.now()), await this.readToEnd(Math.max(0, until - Date.now()))]);
    } catch (err) {
      payload = err instanceof StreamClosedError ? err.partial : Buffer.alloc(0);
    }
    const rej = decodeReject(payload);
    throw new ClientRejectedError(rej?.reason, rej?.text ?? '');
  }
}

function isJv1(head: Buffer, type: PacketType): boolean {
  return head.length >= 4 && head[0] === 0x4a && head[1] === 0x56 && head[2] === 1 && head[3] === type;
}

async function openConnection(target: Transport, bindAddress?: string): Promise<net.Socket> {
  const s = net.connect({
    host: target.address,
    port: target.port,
    localAddress: bindAddress ?? (target.family === 6 ? '::1' : '127.0.0.1'),
    allowHalfOpen: true,
    noDelay: true,
  });
  s.on('error', () => {}); // surfaces as 'close'; reads report it
  await new Promise<void>((resolve, reject) => {
    const onClose = (): void => reject(new Error(`cannot connect to ${target.address}:${target.port}`));
    s.once('close', onClose);
    s.once('connect', () => {
      s.removeListener('close', onClose);
      resolve();
    });
  });
  return s;
}

/** Resolves on 'readable', 'end', 'close' or after `ms`, whichever comes first. */
function readableOrEnd(s: net.Socket, ms: number): Promise<void> {
  return new Promise<void>((resolve) => {
    const done = (): void => {
      clearTimeout(t);
      s.removeListener('readable', done);
      s.removeListener('end', done);
      s.removeListener('close', done);
      resolve();
    };
    const t = setTimeout(done, ms);
    s.on('readable', done);
    s.on('end', done);
    s.on('close', done);
  });
}
