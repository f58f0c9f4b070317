// The bench's native helpers (bench/native/*.c): compiled with the system's gcc into bench/.build/
// (gitignored) when the binary is missing or older than its source. Bench code only.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT } from './lib.js';

export const NATIVE_SRC = join(ROOT, 'bench/native');
export const NATIVE_BUILD = join(ROOT, 'bench/.build');
/** Libraries each helper links: the node computes HMAC-SHA256 with libcrypto (headers: libssl-dev). */
export const NATIVE_LIBS: Readonly<Record<'loadgen' | 'backend' | 'node', readonly string[]>> = { loadgen: [], backend: [], node: ['-lcrypto'] };

/** Path of the compiled `name` (loadgen | backend | node), compiling it first if needed (throws if gcc fails). */
export function nativeBinary(name: 'loadgen' | 'backend' | 'node'): string {
  const src = join(NATIVE_SRC, `${name}.c`);
  const bin = join(NATIVE_BUILD, name);
  // Rebuilt when the source or the header the helpers share is newer than the binary.
  const newest = Math.max(statSync(src).mtimeMs, statSync(join(NATIVE_SRC, 'loopback.h')).mtimeMs);
  if (!existsSync(bin) || statSync(bin).mtimeMs < newest) {
    mkdirSync(NATIVE_BUILD, { recursive: true });
    const args = ['-O2', '-Wall', '-Wextra', '-o', bin, src, ...NATIVE_LIBS[name]];
    console.log(`compiling ${name}: gcc ${args.join(' ')}`);
    try {
      execFileSync('gcc', args, { stdio: ['ignore', 'inherit', 'inherit'] });
    } catch (err) {
      const need = NATIVE_LIBS[name].includes('-lcrypto') ? ' and libssl-dev' : '';
      throw new Error(`could not compile ${src} with gcc (are gcc${need} installed?): ${String(err)}`);
    }
  }
  return bin;
}
