// How the in-process store of a single director holds its records in that director's session table
// (issue 7: memory per session). The director keeps every session as a row of its table (session/rows.ts);
// a store with columns of its own (columns.ts) keeps the same session again, ~50 bytes more per session.
// Here a record that says what its row says is not kept twice: the store reads it from the row, and
// keeps of its own only what the row has no column for — the expiry (8 bytes per row) — and the director
// name most records carry (one name for all). A record that differs from its row is kept apart, as the
// frozen record it is: one whose write committed before the director's table caught up (a step's write,
// settled after), a row changed before its write (the table ahead of the store), a record another director
// name wrote, or one whose fields the row cannot hold. A row the table frees takes its record apart first
// (into columns of the old kind), where it stays until the store deletes it.
//
// What the store says never depends on what the table does: every change of a field the store reads (owner,
// version, life, state, transport, listener) and every release of a row it reads is told to this holder
// first (SessionRows' RowStoreHooks), which then keeps the record as it was; after the change, a record
// that says what the row says again goes back to being read from the row. Its differential test against
// the columns holder is test/unit/table-records.test.ts.
//
// Before `bind` (and for a record whose id or row the table cannot hold), records are kept apart only:
// the holder behaves as the columns holder does. Every session the director ends is kept apart between the
// table's end and the store's delete (the director deletes after, at most 4,096 at a time): a stop ending
// every session at once fills the columns kept apart with them. They are made for `reserve` records up front
// (the director reserves APART_RESERVE at most), so the usual ends never grow them.
import type { SessionRows, RowStoreHooks } from '../session/rows.js';
import type { SessionTable } from '../session/table.js';
import { storedTransport } from '../director/stored-transport.js';
import { TCP_LISTENER } from '../director/outcomes.js';
import { parseV4Transport } from './transport-text.js';
import { SessionColumns } from './columns.js';
import type { StoreRecords } from './memory.js';
import type { StoredSession } from './store.js';
import { hexIdKey } from './hex-id-slots.js';

/** What a director reserves for the records kept apart (at most its session.max): 65,536 × ~50 bytes of address space. */
export const APART_RESERVE = 65_536;

/** The handle of a record kept apart in `#apart`'s slot s (row handles are ≥ 0, none is -1). */
const apartHandle = (slot: number): number => -2 - slot;

export class TableRecords implements StoreRecords, RowStoreHooks {
  #rows: SessionRows | null = null;
  #rowOf: (id: string) => number = () => -1;
  /** The director name the records read from rows carry (the one `bind` names). */
  #director = '';
  /** Records with no row to read them from (and every record before `bind`). */
  readonly #apart: SessionColumns;
  /** Records of rows that say something else than the record (see the header), by row. */
  readonly #differs = new Map<number, StoredSession>();
  /** The expiry of each row's record (the table has no column for the store's wall-clock expiry). */
  #expiry = new Float64Array(0);
  /** Records read from rows (with or without an entry in #differs). */
  #inRows = 0;
  /** Where #transportIs parses an IPv4 address. */
  readonly #v4 = new Uint32Array(1);

  /** `reserve`: records kept apart to make room for up front (resident only once written; columns.ts). */
  constructor(opts: { idKey?: Uint32Array; reserve?: number } = {}) {
    this.#apart = new SessionColumns(opts.idKey ?? hexIdKey(), opts.reserve ?? 0);
  }

  /**
   * Reads records from `table`'s rows from now on (records held before stay apart); `director`: the name
   * the director writes its records with (any other keeps its record apart).
   */
  bind(table: SessionTable, director: string): void {
    if (this.#rows !== null) throw new Error('TableRecords is bound to a table already');
    const b = table.bindStore(this);
    this.#rows = b.rows;
    this.#rowOf = b.rowOf;
    this.#director = director;
    this.#expiry = new Float64Array(b.rows.capacity);
  }

  get size(): number {
    return this.#inRows + this.#apart.size;
  }

  /** Records held apart from their rows, or with none (the usual case keeps none: anchor_store_records, tests, the memory bench). */
  get apart(): number {
    return this.#differs.size + this.#apart.size;
  }

  /** Records read from their rows (size - apart). */
  get inRows(): number {
    return this.#inRows - this.#differs.size;
  }

  has(id: string): boolean {
    return this.slotOf(id) !== -1;
  }

  get(id: string): StoredSession | undefined {
    const h = this.slotOf(id);
    return h === -1 ? undefined : this.recordAt(id, h);
  }

  slotOf(id: string): number {
    if (this.#apart.size > 0) {
      const s = this.#apart.slotOf(id);
      if (s !== -1) return apartHandle(s);
    }
    const rows = this.#rows;
    if (rows === null) return -1;
    const row = this.#rowOf(id);
    return row !== -1 && rows.inStore(row) ? row : -1;
  }

  versionIs(h: number, v: bigint): boolean {
    if (h < 0) return this.#apart.versionIs(apartHandle(h), v);
    const d = this.#differs.get(h);
    return d !== undefined ? d.version === v : this.#rows!.versionIs(h, v);
  }

  incarnationAt(h: number): number {
    if (h < 0) return this.#apart.incarnationAt(apartHandle(h));
    return this.#differs.get(h)?.incarnation ?? this.#rows!.incarnationOf(h);
  }

  recordAt(id: string, h: number): StoredSession {
    if (h < 0) return this.#apart.recordAt(id, apartHandle(h));
    return this.#differs.get(h) ?? this.#fromRow(h, id);
  }

  swapAt(h: number, r: StoredSession, version: bigint): StoredSession {
    if (h < 0) return this.#apart.swapAt(apartHandle(h), r, version);
    const d = this.#differs.get(h);
    if (d !== undefined) {
      this.#write(h, r);
      return d;
    }
    // The row's transport text, from r's when the row says that one (no string made, as the columns do).
    const same = this.#transportIs(h, r.transport);
    const prev = this.#fromRow(h, r.id, same ? (r.transport as string) : this.#transportText(h), version);
    this.#write(h, r, same);
    return prev;
  }

  set(r: StoredSession): void {
    if (this.#apart.size > 0 && this.#apart.has(r.id)) return this.#apart.set(r);
    const rows = this.#rows;
    const row = rows === null ? -1 : this.#rowOf(r.id);
    if (row === -1) return this.#apart.set(r);
    if (!rows!.inStore(row)) {
      // A row of the table holds this session (the director inserts it before the store creates it).
      rows!.setInStore(row, true);
      this.#inRows++;
    }
    this.#write(row, r);
  }

  delete(id: string): boolean {
    const h = this.slotOf(id);
    if (h === -1) return false;
    if (h < 0) return this.#apart.delete(id);
    this.#differs.delete(h);
    this.#rows!.setInStore(h, false);
    this.#inRows--;
    return true;
  }

  ownedBy(owner: string): StoredSession[] {
    const out = this.#apart.ownedBy(owner);
    const rows = this.#rows;
    if (rows === null) return out;
    const top = rows.top;
    for (let row = 0; row < top; row++) {
      if (!rows.inStore(row)) continue;
      const d = this.#differs.get(row);
      if (d !== undefined) {
        if (d.owner === owner) out.push(d);
      } else if (rows.ownerOf(row) === owner) out.push(this.#fromRow(row, rows.idText(row)));
    }
    return out;
  }

  // RowStoreHooks: the table is about to change (or free) a row this holder reads.

  before(row: number): void {
    if (!this.#differs.has(row)) this.#differs.set(row, this.#fromRow(row, this.#rows!.idText(row)));
  }

  after(row: number): void {
    const d = this.#differs.get(row);
    if (d !== undefined && this.#says(row, d)) {
      this.#setExpiry(row, d.expiresAt);
      this.#differs.delete(row);
    }
  }

  released(row: number): void {
    const rows = this.#rows!;
    const r = this.#differs.get(row) ?? this.#fromRow(row, rows.idText(row));
    this.#differs.delete(row);
    rows.setInStore(row, false);
    this.#inRows--;
    this.#apart.set(r);
  }

  /**
   * Holds `r` as the record of row `row` (marked in store): read from the row when the row says it.
   * `sameTransport`: whether the row says r's transport, when the caller knows.
   */
  #write(row: number, r: StoredSession, sameTransport?: boolean): void {
    if (this.#says(row, r, sameTransport)) {
      this.#setExpiry(row, r.expiresAt);
      this.#differs.delete(row);
    } else this.#differs.set(row, r);
  }

  /** Whether row `row` read as a record (#fromRow) is `r`, field by field. The cheap compares first. */
  #says(row: number, r: StoredSession, sameTransport?: boolean): boolean {
    const rows = this.#rows!;
    return (
      rows.versionIs(row, r.version) &&
      r.incarnation === rows.incarnationOf(row) &&
      r.state === rows.stateOf(row) &&
      r.director === this.#director &&
      typeof r.expiresAt === 'number' &&
      r.owner === rows.ownerOf(row) &&
      (sameTransport ?? this.#transportIs(row, r.transport))
    );
  }

  /** Row `row` as a frozen record; `text` and `version`, the row's, when the caller has them. */
  #fromRow(row: number, id: string, text = this.#transportText(row), version = this.#rows!.versionOf(row)): StoredSession {
    const rows = this.#rows!;
    return Object.freeze({
      id,
      owner: rows.ownerOf(row),
      version,
      state: rows.stateOf(row),
      transport: text,
      director: this.#director,
      expiresAt: this.#expiry[row]!,
      incarnation: rows.incarnationOf(row),
    });
  }

  /**
   * Whether `text` is row `row`'s stored transport text. A canonical IPv4 one of a datagram session is
   * compared by its numbers (parseV4Transport takes only the text those numbers format to): no string made.
   */
  #transportIs(row: number, text: string | null): boolean {
    if (text === null) return false;
    const rows = this.#rows!;
    if (rows.isV4(row) && rows.listenerOf(row) !== TCP_LISTENER) {
      const scratch = this.#v4;
      return parseV4Transport(text, scratch) === rows.tPort[row] && scratch[0] === rows.tAddr[row];
    }
    return text === this.#transportText(row);
  }

  #transportText(row: number): string {
    const rows = this.#rows!;
    return storedTransport(rows.transportKeyOf(row), rows.listenerOf(row));
  }

  #setExpiry(row: number, v: number): void {
    if (row >= this.#expiry.length) {
      // The table's rows grew past what they were made for: as they do, by their capacity.
      const e = new Float64Array(this.#rows!.capacity);
      e.set(this.#expiry);
      this.#expiry = e;
    }
    this.#expiry[row] = v;
  }
}
