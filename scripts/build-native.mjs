// npm "install" script: builds the optional native addons (binding.gyp → build/Release/anchor_udp.node,
// build/Release/anchor_tcp.node) with node-gyp, and never fails the install: without them Anchor runs on
// node:dgram and the JS TCP stream path, so a failed build prints one warning line and exits 0. Owns nothing else; writes only under build/.
// npm puts its bundled node-gyp on PATH for lifecycle scripts (and passes npm_config_nodedir from
// .npmrc, so the build uses the installed Node headers offline). ANCHOR_SKIP_NATIVE=1 skips the build.
import { spawnSync } from 'node:child_process';

const warn = (why) => {
  console.warn(`anchor: WARNING: the optional native addons (batched UDP, TCP splice) were not built (${why}); Anchor works without them (node:dgram, JS streams).`);
  process.exit(0);
};

if (process.platform !== 'linux') warn(`${process.platform} is not Linux: it needs recvmmsg/sendmmsg`);
if (process.env.ANCHOR_SKIP_NATIVE === '1') warn('ANCHOR_SKIP_NATIVE=1');
const r = spawnSync('node-gyp', ['rebuild'], { stdio: 'inherit' });
if (r.error !== undefined) warn(`node-gyp could not be started: ${r.error.message}`);
if (r.status !== 0) warn(`node-gyp rebuild exited with ${r.status ?? r.signal}; its output is above`);
