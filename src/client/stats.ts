// Pure helpers for the client simulator's report: percentiles over round-trip samples.

/** The q-quantile (0..1) of `sorted` (ascending) by nearest rank; NaN when empty. */
export function quantile(sorted: ArrayLike<number>, q: number): number {
  const n = sorted.length;
  if (n === 0) return Number.NaN;
  const rank = Math.min(n - 1, Math.max(0, Math.ceil(q * n) - 1));
  return sorted[rank] as number;
}

/** Rounds to 3 decimals (microsecond resolution for milliseconds). */
export function round3(x: number): number {
  return Number.isFinite(x) ? Math.round(x * 1000) / 1000 : x;
}
