// How much room a structure makes up front for what its owner reserves (issue 7: columns made once for
// session.max, resident only as they are written). Pure.

/**
 * The most entries reserved up front by one structure (the session table's rows, the in-process store's
 * slots): a larger session.max grows past it as sessions come. At 73 bytes a row, 612 MB of address space.
 */
export const MAX_RESERVED = 8_388_608;

/**
 * The capacity to make for a reservation of `reserve` entries: at least `min`, at most `max`; a reservation
 * that is not a positive number is none (`min`).
 */
export function reservedCapacity(reserve: number, min: number, max = MAX_RESERVED): number {
  const n = Number.isFinite(reserve) && reserve > 0 ? Math.floor(reserve) : 0;
  return Math.max(min, Math.min(max, n));
}
