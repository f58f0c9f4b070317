// Shared result and wire-constant types for every codec. Pure: no I/O, no clock, never throws on wire bytes.

/** A decoder's verdict on bytes from the network. Each kind has its own counter in the shell. */
export type Decoded<T> =
  | { readonly kind: 'ok'; readonly value: T }
  | { readonly kind: 'not-mine' }
  | { readonly kind: 'malformed'; readonly reason: MalformedReason };

export const MalformedReason = {
  TRUNCATED: 'truncated',
  BAD_VERSION: 'bad_version',
  BAD_TYPE: 'bad_type',
  ZERO_SESSION_ID: 'zero_session_id',
  BAD_PAYLOAD: 'bad_payload',
  BAD_HEADER: 'bad_header',
  BAD_TLV: 'bad_tlv',
} as const;
export type MalformedReason = (typeof MalformedReason)[keyof typeof MalformedReason];

export const PacketType = {
  HELLO: 0x01,
  DATA: 0x02,
  CLOSE: 0x03,
  REVOKE: 0x04,
  REJECT: 0x10,
  BIND: 0x20,
} as const;
export type PacketType = (typeof PacketType)[keyof typeof PacketType];

export const RejectReason = {
  UNKNOWN_SESSION: 1,
  OWNERSHIP_CONFLICT: 2,
  STORE_UNAVAILABLE: 3,
  DIRECTOR_DRAINING: 4,
  SESSION_TERMINATED: 5,
  NO_CAPACITY: 6,
  NO_HEALTHY_NODE: 7,
  RATE_LIMITED: 8,
} as const;
export type RejectReason = (typeof RejectReason)[keyof typeof RejectReason];
export type RejectReasonName = keyof typeof RejectReason;

/** A client or node transport: an IP address (textual, as node:dgram reports it) and a port. */
export interface Transport {
  readonly family: 4 | 6;
  readonly address: string;
  readonly port: number;
}
