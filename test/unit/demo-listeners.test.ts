// `anchor demo` leaves out a listener whose address the host lacks (demo-listeners.ts): the pure decision.
import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load.js';
import { dropMissingAddresses } from '../../src/cli/demo-listeners.js';

const config = parseConfig(
  [
    'listen:',
    '  udp: ["127.0.0.1:4500", "[::1]:4500"]',
    '  tcp: ["127.0.0.1:4500", "[::1]:4500"]',
    'nodes:',
    '  - { id: a, address: "127.0.0.1:5001" }',
  ].join('\n'),
);

describe('dropMissingAddresses', () => {
  it('leaves out the listeners whose address the host lacks, naming each', () => {
    const r = dropMissingAddresses(config, (a) => (a.startsWith('[') ? 'EADDRNOTAVAIL' : null));
    expect(r.config.listen.udp.map((l) => l.address)).toEqual(['127.0.0.1:4500']);
    expect(r.config.listen.tcp.map((l) => l.address)).toEqual(['127.0.0.1:4500']);
    expect(r.skipped).toEqual([
      { key: 'listen.udp[1]', address: '[::1]:4500', code: 'EADDRNOTAVAIL' },
      { key: 'listen.tcp[1]', address: '[::1]:4500', code: 'EADDRNOTAVAIL' },
    ]);
    // Nothing else changes.
    expect(r.config.nodes).toBe(config.nodes);
    expect(config.listen.udp).toHaveLength(2);
  });

  it('keeps the config as it is when every address can be bound', () => {
    const r = dropMissingAddresses(config, () => null);
    expect(r.config).toBe(config);
    expect(r.skipped).toEqual([]);
  });

  it('keeps a listener whose bind fails for another reason (in use, not permitted): that is an error to show', () => {
    for (const code of ['EADDRINUSE', 'EACCES']) {
      const r = dropMissingAddresses(config, (a) => (a.startsWith('[') ? code : null));
      expect(r.skipped).toEqual([]);
      expect(r.config.listen.udp).toHaveLength(2);
    }
  });

  it("keeps a protocol's listeners when all of them are missing (the director fails naming the address)", () => {
    const r = dropMissingAddresses(config, () => 'EAFNOSUPPORT');
    expect(r.skipped).toEqual([]);
    expect(r.config.listen.udp).toHaveLength(2);
    expect(r.config.listen.tcp).toHaveLength(2);
  });
});
