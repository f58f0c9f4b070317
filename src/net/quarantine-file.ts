// Keeps the port quarantine of transparent forwarding across restarts (backend.port_quarantine_path): the
// shell around port-quarantine.ts's file format. A starting director holds what the file says; a running
// one writes it every few seconds (so that a crash leaves the ports in use then), and a stopping one once
// more after its sessions' sockets closed. Each write goes to a temporary file of its own, synced, then
// renamed over the file (write-file-atomic): a crash or a power loss during one leaves the previous file
// whole. A failure is logged at warn and the director runs on.
import { readFileSync, statSync } from 'node:fs';
import writeFileAtomic from 'write-file-atomic';
import type { Logger } from '../obs/logger.js';
import { type HeldPort, parseQuarantineFile, quarantineFileText } from './port-quarantine.js';

export interface QuarantineSource {
  quarantineEntries(): HeldPort[];
  restoreQuarantine(entries: readonly HeldPort[]): void;
}

/** How often a running director writes the file. */
export const QUARANTINE_WRITE_EVERY_MS = 10_000;
/** How long a stop waits for a periodic write still in flight (a hung disk must not hold the stop up). */
const CLOSE_WAIT_MS = 2_000;
/** A larger file is not one a director wrote (at most 65,536 ports per node, ~30 bytes each). */
const MAX_FILE_BYTES = 64 * 1024 * 1024;

export class QuarantineFile {
  readonly #path: string;
  readonly #src: QuarantineSource;
  readonly #wall: () => number;
  readonly #director: string;
  readonly #logger: Logger;
  #timer: NodeJS.Timeout | null = null;
  #writing: Promise<void> | null = null;
  #failing = false;

  constructor(path: string, src: QuarantineSource, opts: { wall: () => number; director: string; logger: Logger }) {
    this.#path = path;
    this.#src = src;
    this.#wall = opts.wall;
    this.#director = opts.director;
    this.#logger = opts.logger;
  }

  /** Holds what the file says (no file: a first start), then writes it every `everyMs`. */
  start(nodes: ReadonlySet<string>, everyMs = QUARANTINE_WRITE_EVERY_MS): void {
    this.#restore(nodes);
    this.#timer = setInterval(() => {
      this.#writing ??= this.#writeAsync().finally(() => (this.#writing = null));
    }, everyMs);
    this.#timer.unref();
  }

  /** The last write, once the sessions' sockets have closed (every session's port is held then). Never rejects. */
  async close(): Promise<void> {
    if (this.#timer !== null) clearInterval(this.#timer);
    this.#timer = null;
    if (this.#writing !== null) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([this.#writing, new Promise<void>((r) => (timer = setTimeout(r, CLOSE_WAIT_MS)))]);
      clearTimeout(timer);
    }
    try {
      const entries = this.#src.quarantineEntries();
      writeFileAtomic.sync(this.#path, quarantineFileText(entries, this.#wall(), this.#director));
      this.#logger.info({ path: this.#path, ports: entries.length }, 'held ports written for the next run');
    } catch (err) {
      this.#logger.warn({ err, path: this.#path }, 'port quarantine file not written: the next run will not hold the ports this one used');
    }
  }

  #restore(nodes: ReadonlySet<string>): void {
    let text: string;
    try {
      const st = statSync(this.#path);
      if (!st.isFile()) throw new Error(`${this.#path} is not a regular file`);
      if (st.size > MAX_FILE_BYTES) throw new Error(`${this.#path} is ${st.size} bytes, more than a director writes (${MAX_FILE_BYTES})`);
      text = readFileSync(this.#path, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') this.#logger.warn({ err, path: this.#path }, 'port quarantine file not read: ports the previous run used are not held');
      return;
    }
    try {
      this.#src.restoreQuarantine(parseQuarantineFile(text, this.#wall(), nodes, this.#director));
      this.#logger.info({ path: this.#path, ports: this.#src.quarantineEntries().length }, 'ports the previous run gave up are held (backend.port_quarantine_s)');
    } catch (err) {
      this.#logger.warn({ path: this.#path, reason: (err as Error).message }, 'port quarantine file not understood: ports the previous run used are not held');
    }
  }

  async #writeAsync(): Promise<void> {
    try {
      await writeFileAtomic(this.#path, quarantineFileText(this.#src.quarantineEntries(), this.#wall(), this.#director));
      this.#failing = false;
    } catch (err) {
      // Said once per run of failures, not every few seconds.
      if (!this.#failing) this.#logger.warn({ err, path: this.#path }, 'port quarantine file not written: after a crash, the next run would not hold the ports in use now');
      this.#failing = true;
    }
  }
}
