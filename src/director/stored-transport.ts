// How a session's bound transport is written to the ownership store and read back: its ip:port text
// (codec/ip.ts transportKey), with "tcp:" in front when the session is bound to a TCP connection. Another
// director mirroring the session, or this one loading it after a restart, must know which it is: a
// datagram from the same ip:port is not the session's transport when that transport is a TCP connection
// (it is a jump candidate, forwarded UNBOUND_SOURCE for the owner to validate). A text without the prefix
// is a datagram transport, the form every director wrote before. Pure: no I/O, never throws.
import { parseHostPortLiteral } from '../config/load.js';
import type { Transport } from '../codec/types.js';
import { TCP_LISTENER } from './outcomes.js';

export const TCP_TRANSPORT_PREFIX = 'tcp:';

/** A stored transport as the core takes it: the address, its text, and the listener it talks to. */
export interface ParsedTransport {
  readonly t: Transport;
  readonly key: string;
  readonly listener: number;
}

/** The store's text of a transport whose ip:port text is `key`, bound on `listener`. */
export function storedTransport(key: string, listener: number): string {
  return listener === TCP_LISTENER ? TCP_TRANSPORT_PREFIX + key : key;
}

/**
 * A stored transport text read back: a TCP one on TCP_LISTENER, a datagram one on the first of this
 * director's UDP listeners (`udp`) of its address family (the first listener when there is none of that
 * family: a packet from it then arrives on another listener and is a jump candidate). Null for a text
 * that is not an ip:port literal.
 */
export function parseStoredTransport(text: string, udp: readonly Pick<Transport, 'family'>[]): ParsedTransport | null {
  const tcp = text.startsWith(TCP_TRANSPORT_PREFIX);
  const key = tcp ? text.slice(TCP_TRANSPORT_PREFIX.length) : text;
  const t = parseHostPortLiteral(key);
  if (t === undefined) return null;
  if (tcp) return { t, key, listener: TCP_LISTENER };
  const i = udp.findIndex((a) => a.family === t.family);
  return { t, key, listener: i < 0 ? 0 : i };
}
