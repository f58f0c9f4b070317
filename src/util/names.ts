// Interned strings with reference counts, numbered densely so that a typed column can hold them (the
// in-process store's owner and director names, the session table's owner names). Pure data.
import TinyQueue from 'tinyqueue';

/**
 * Interned strings with reference counts: a name is forgotten when nothing refers to it any more. A new
 * name takes the lowest number free, so that after a burst of many names the few left fit narrow columns
 * (u16) again rather than living in their overflow.
 */
export class Names {
  readonly #num = new Map<string, number>();
  readonly #str: (string | null)[] = [];
  readonly #refs: number[] = [];
  readonly #free = new TinyQueue<number>([], (a, b) => a - b);

  /** How many distinct names are held. */
  get size(): number {
    return this.#num.size;
  }

  /** The number of `s`, adding one reference to it. */
  ref(s: string): number {
    let n = this.#num.get(s);
    if (n === undefined) {
      n = this.#free.pop() ?? this.#str.length;
      this.#num.set(s, n);
      this.#str[n] = s;
      this.#refs[n] = 0;
    }
    this.#refs[n]!++;
    return n;
  }

  /** Drops one reference to name `n` (from `ref`). */
  unref(n: number): void {
    if (--this.#refs[n]! > 0) return;
    this.#num.delete(this.#str[n]!);
    this.#str[n] = null;
    this.#free.push(n);
  }

  /** The string of name `n`, which must be referenced. */
  str(n: number): string {
    return this.#str[n] as string;
  }

  /** The number of `s` if it is referenced (no reference added). */
  find(s: string): number | undefined {
    return this.#num.get(s);
  }
}
