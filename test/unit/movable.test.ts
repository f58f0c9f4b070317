// Which sessions a drain or a migrate may move (anchor.ts sessionsMovable): JV1 under PROXY v2 only, and a
// session whose listener is a guess — a TCP session (no listener index), a datagram session read from the
// store and not served here since — only when every listener of its kind speaks JV1.
import { describe, expect, it } from 'vitest';
import { sessionsMovable } from '../../src/anchor.js';
import { parseConfig } from '../../src/config/load.js';
import { TCP_LISTENER } from '../../src/director/outcomes.js';

const NODES = 'nodes:\n  - {id: a, address: "127.0.0.1:9"}\n';
const movable = (yaml: string) => sessionsMovable(parseConfig(`${NODES}${yaml}`));

describe('sessionsMovable', () => {
  it('every listener JV1 under PROXY v2: datagram and TCP sessions move, served here or read from the store', () => {
    const m = movable('listen:\n  udp: ["127.0.0.1:0", "[::1]:0"]\n  tcp: ["127.0.0.1:0"]\n');
    for (const listener of [0, 1, TCP_LISTENER, 7 /* a host address met on a wildcard listener */]) {
      for (const servedHere of [true, false]) expect(m({ listener, servedHere }), `listener ${listener}, served ${servedHere}`).toBe(true);
    }
  });

  it('transparent forwarding (encapsulation none): nothing moves', () => {
    const m = movable('listen:\n  udp: ["127.0.0.1:0"]\n  tcp: ["127.0.0.1:0"]\nbackend:\n  encapsulation: none\n');
    for (const listener of [0, TCP_LISTENER]) expect(m({ listener, servedHere: true })).toBe(false);
  });

  it('UDP listeners of two codecs: a JV1 listener\'s session moves once served here (its listener seen), not while its listener is the store\'s guess; an OpenVPN one never', () => {
    const m = movable('listen:\n  udp: ["127.0.0.1:0", {address: "127.0.0.1:1194", codec: openvpn}]\n');
    expect(m({ listener: 0, servedHere: true })).toBe(true);
    expect(m({ listener: 0, servedHere: false })).toBe(false);
    expect(m({ listener: 1, servedHere: true })).toBe(false);
  });

  it('a TCP listener of another codec: no TCP session moves (which listener took it is not kept); datagram sessions as before', () => {
    const m = movable('listen:\n  udp: ["127.0.0.1:0"]\n  tcp: ["127.0.0.1:0", {address: "127.0.0.1:7000", codec: offset, offset: 4, length: 8}]\n');
    expect(m({ listener: TCP_LISTENER, servedHere: true })).toBe(false);
    expect(m({ listener: 0, servedHere: false })).toBe(true);
  });
});
