// `npm run bench`: every bench in turn (or the ones named: `npm run bench -- ring udp-e2e`).
import { benchRing } from './ring.js';
import { benchUdpE2e } from './udp-e2e.js';
import { benchDrain } from './drain.js';
import { benchTcp } from './tcp.js';
import { benchAdmissions } from './admissions.js';

const ALL: Record<string, () => Promise<unknown>> = { ring: benchRing, 'udp-e2e': benchUdpE2e, drain: benchDrain, tcp: benchTcp, admissions: benchAdmissions };
const names = process.argv.slice(2);
for (const n of names) if (!(n in ALL)) throw new Error(`unknown bench "${n}"; known: ${Object.keys(ALL).join(', ')}`);
for (const n of names.length > 0 ? names : Object.keys(ALL)) await (ALL[n] as () => Promise<unknown>)();
