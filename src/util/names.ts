// Interned strings with reference counts, numbered densely so that a typed column can hold them (the
// in-process store's owner and director names, the session table's owner names). Pure data.

/** Interned strings with reference counts: a name is forgotten when nothing refers to it any more. */
export class Names {
  readonly #num = new Map<string, number>();
  readonly #str: (string | null)[] = [];
  readonly #refs: number[] = [];
  readonly #free: number[] = [];

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
