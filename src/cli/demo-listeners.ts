// `anchor demo` on a host that lacks one of the config's listener addresses (the bundled config listens on
// 127.0.0.1 and [::1]; a host or container without IPv6 has no ::1): the demo leaves such a listener out
// and says so, rather than exiting on the bind error. `anchor run` never does: an operator's listener that
// cannot be bound is an error there.
//
// The decision is pure (`dropMissingAddresses`); `probeAddress` is the one socket it needs.
import { createSocket } from 'node:dgram';
import type { AnchorConfig } from '../config/load.js';
import { parseHostPortLiteral } from '../config/load.js';

/** Bind errors that mean "this host has no such address", as opposed to one in use or not permitted. */
const MISSING_ADDRESS = new Set(['EADDRNOTAVAIL', 'EAFNOSUPPORT']);

export interface SkippedListener {
  /** The config key, e.g. `listen.udp[1]`. */
  readonly key: string;
  readonly address: string;
  /** The bind error's code. */
  readonly code: string;
}

/**
 * The config without the listeners whose address this host lacks (`missing(address)` gives the bind
 * error's code, or null when the address can be bound), and which ones were left out. A protocol whose
 * every listener is missing keeps them all: the director then fails on the bind error, which names it.
 */
export function dropMissingAddresses(config: AnchorConfig, missing: (address: string) => string | null): { config: AnchorConfig; skipped: SkippedListener[] } {
  const skipped: SkippedListener[] = [];
  const keep = (proto: 'udp' | 'tcp'): AnchorConfig['listen'][typeof proto] => {
    const list = config.listen[proto];
    const gone = list.map((l, i) => {
      const code = missing(l.address);
      return code !== null && MISSING_ADDRESS.has(code) ? { key: `listen.${proto}[${i}]`, address: l.address, code } : null;
    });
    if (gone.every((g) => g !== null)) return list;
    for (const g of gone) if (g !== null) skipped.push(g);
    return list.filter((_, i) => gone[i] === null);
  };
  const udp = keep('udp');
  const tcp = keep('tcp');
  if (skipped.length === 0) return { config, skipped };
  return { config: { ...config, listen: { ...config.listen, udp, tcp } }, skipped };
}

/**
 * Whether this host has the address of HOST:PORT: binds a UDP socket of its family to it on port 0 and
 * closes it. The bind error's code, or null when it bound (or the text is not a literal address).
 */
export async function probeAddress(hostPort: string): Promise<string | null> {
  const hp = parseHostPortLiteral(hostPort);
  if (hp === undefined) return null;
  return new Promise((resolve) => {
    let sock: ReturnType<typeof createSocket>;
    try {
      sock = createSocket(hp.family === 6 ? 'udp6' : 'udp4');
    } catch (err) {
      resolve((err as NodeJS.ErrnoException).code ?? 'EAFNOSUPPORT');
      return;
    }
    sock.once('error', (err: NodeJS.ErrnoException) => {
      sock.close();
      resolve(err.code ?? 'EADDRNOTAVAIL');
    });
    sock.bind({ address: hp.address, port: 0, exclusive: true }, () => {
      sock.close();
      resolve(null);
    });
  });
}

/** `dropMissingAddresses` with every listener address probed on this host. */
export async function demoListeners(config: AnchorConfig): Promise<{ config: AnchorConfig; skipped: SkippedListener[] }> {
  const codes = new Map<string, string | null>();
  for (const l of [...config.listen.udp, ...config.listen.tcp]) {
    if (!codes.has(l.address)) codes.set(l.address, await probeAddress(l.address));
  }
  return dropMissingAddresses(config, (a) => codes.get(a) ?? null);
}
