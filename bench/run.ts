// `npm run bench`: every bench in turn (or the ones named: `npm run bench -- peers memory`).
import { benchRing } from './ring.js';
import { benchUdpE2e } from './udp-e2e.js';
import { benchDrain } from './drain.js';
import { benchDrainCore } from './drain-core.js';
import { benchTcp } from './tcp.js';
import { benchAdmissions } from './admissions.js';
import { benchPeers } from './peers.js';
import { benchMemory } from './memory.js';

const ALL: Record<string, () => Promise<unknown>> = {
  peers: benchPeers,
  memory: benchMemory,
  ring: benchRing,
  'udp-e2e': benchUdpE2e,
  drain: benchDrain,
  'drain-core': benchDrainCore,
  tcp: benchTcp,
  admissions: benchAdmissions,
};
const names = process.argv.slice(2);
for (const n of names) if (!(n in ALL)) throw new Error(`unknown bench "${n}"; known: ${Object.keys(ALL).join(', ')}`);
const t0 = Date.now();
const failed: string[] = [];
for (const n of names.length > 0 ? names : Object.keys(ALL)) {
  const t = Date.now();
  console.log(`\n=== bench ${n}`);
  try {
    await (ALL[n] as () => Promise<unknown>)();
  } catch (err) {
    // One bench failing does not stop the others; the exit status says so at the end.
    failed.push(n);
    console.error(`=== bench ${n} FAILED:`, err);
  }
  console.log(`=== bench ${n}: ${((Date.now() - t) / 1000).toFixed(0)} s`);
}
console.log(`\nbenches done in ${((Date.now() - t0) / 1000).toFixed(0)} s${failed.length > 0 ? `; FAILED: ${failed.join(', ')}` : ''}`);
if (failed.length > 0) process.exitCode = 1;
