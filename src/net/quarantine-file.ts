// Keeps the port quarantine of transparent forwarding across restarts (backend.port_quarantine_path): the
// shell around port-quarantine.ts's file format. A starting director holds what the file says; a running
// one writes it every few seconds (so that a crash leaves the ports in use then), and a stopping one once
// more after its sessions' sockets closed. Writes go through a temporary file and a rename: a crash during
// one leaves the previous file whole. A failure is logged at warn and the director runs on.
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { rename, writeFile } from 'node:fs/promises';
import type { Logger } from '../obs/logger.js';
import { type HeldPort, parseQuarantineFile, quarantineFileText } from './port-quarantine.js';

export interface QuarantineSource {
  quarantineEntries(): HeldPort[];
  restoreQuarantine(entries: readonly HeldPort[]): void;
}

/** How often a running director writes the file. */
export const QUARANTINE_WRITE_EVERY_MS = 10_000;

export class QuarantineFile {
  readonly #path: string;
  readonly #tmp: string;
  readonly #src: QuarantineSource;
  readonly #wall: () => number;
  readonly #logger: Logger;
  #timer: NodeJS.Timeout | null = null;
  #writing: Promise<void> | null = null;
  #failing = false;

  constructor(path: string, src: QuarantineSource, wall: () => number, logger: Logger) {
    this.#path = path;
    this.#tmp = `${path}.tmp-${process.pid}`;
    this.#src = src;
    this.#wall = wall;
    this.#logger = logger;
  }

  /** Holds what the file says (no file: a first start), then writes it every `everyMs`. */
  start(nodes: ReadonlySet<string>, everyMs = QUARANTINE_WRITE_EVERY_MS): void {
    this.#restore(nodes);
    this.#timer = setInterval(() => {
      this.#writing ??= this.#writeAsync().finally(() => (this.#writing = null));
    }, everyMs);
    this.#timer.unref();
  }

  /** The last write, once the sessions' sockets have closed (every session's port is held then). */
  async close(): Promise<void> {
    if (this.#timer !== null) clearInterval(this.#timer);
    this.#timer = null;
    await this.#writing;
    const entries = this.#src.quarantineEntries();
    try {
      writeFileSync(this.#tmp, quarantineFileText(entries, this.#wall()));
      renameSync(this.#tmp, this.#path);
      this.#logger.info({ path: this.#path, ports: entries.length }, 'held ports written for the next run');
    } catch (err) {
      this.#logger.warn({ err, path: this.#path }, 'port quarantine file not written: the next run will not hold the ports this one used');
    }
  }

  #restore(nodes: ReadonlySet<string>): void {
    let text: string;
    try {
      text = readFileSync(this.#path, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') this.#logger.warn({ err, path: this.#path }, 'port quarantine file not read: ports the previous run used are not held');
      return;
    }
    try {
      this.#src.restoreQuarantine(parseQuarantineFile(text, this.#wall(), nodes));
      this.#logger.info({ path: this.#path, ports: this.#src.quarantineEntries().length }, 'ports the previous run gave up are held (backend.port_quarantine_s)');
    } catch (err) {
      this.#logger.warn({ path: this.#path, reason: (err as Error).message }, 'port quarantine file not understood: ports the previous run used are not held');
    }
  }

  async #writeAsync(): Promise<void> {
    try {
      await writeFile(this.#tmp, quarantineFileText(this.#src.quarantineEntries(), this.#wall()));
      await rename(this.#tmp, this.#path);
      this.#failing = false;
    } catch (err) {
      // Said once per run of failures, not every few seconds.
      if (!this.#failing) this.#logger.warn({ err, path: this.#path }, 'port quarantine file not written: after a crash, the next run would not hold the ports in use now');
      this.#failing = true;
    }
  }
}
