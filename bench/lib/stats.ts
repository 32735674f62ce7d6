/** The value at quantile q (0..1) of an ascending array, by nearest rank; NaN for none. */
export function quantile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[rank] as number;
}

/** The median (mean of the middle two for an even count); NaN for none. */
export function median(values: readonly number[]): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? (sorted[middle] as number) : ((sorted[middle - 1] as number) + (sorted[middle] as number)) / 2;
}

export interface Summary {
  count: number;
  min: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
  mean: number;
}

/** Count, extremes, mean and percentiles of a sample. */
export function summarize(values: readonly number[]): Summary {
  const sorted = [...values].sort((a, b) => a - b);
  const sum = sorted.reduce((total, value) => total + value, 0);
  return {
    count: sorted.length,
    min: sorted[0] ?? Number.NaN,
    p50: quantile(sorted, 0.5),
    p90: quantile(sorted, 0.9),
    p99: quantile(sorted, 0.99),
    max: sorted[sorted.length - 1] ?? Number.NaN,
    mean: sorted.length ? sum / sorted.length : Number.NaN,
  };
}

/** Least-squares slope of y over x; NaN with fewer than two points. */
export function slope(points: ReadonlyArray<{ x: number; y: number }>): number {
  const n = points.length;
  if (n < 2) return Number.NaN;
  const meanX = points.reduce((total, point) => total + point.x, 0) / n;
  const meanY = points.reduce((total, point) => total + point.y, 0) / n;
  let numerator = 0;
  let denominator = 0;
  for (const { x, y } of points) {
    numerator += (x - meanX) * (y - meanY);
    denominator += (x - meanX) ** 2;
  }
  return denominator === 0 ? Number.NaN : numerator / denominator;
}

/** A number is usable as a measurement: finite (and, where asked, above zero). */
export function isMeasured(value: number | undefined, positive = false): value is number {
  return typeof value === 'number' && Number.isFinite(value) && (!positive || value > 0);
}

/**
 * A distribution-free confidence interval for the median of a sample (from its order statistics:
 * the number of values below the median is Binomial(n, ½)), at a coverage of at least `coverage`.
 * The widest interval is the sample's range; with fewer than 2 values there is none.
 */
export function medianInterval(values: readonly number[], coverage = 0.9): { low: number; high: number; coverage: number } | undefined {
  const n = values.length;
  if (n < 2) return undefined;
  const sorted = [...values].sort((a, b) => a - b);
  // P(X ≤ j) for X ~ Binomial(n, ½), j = 0 … n.
  const cumulative: number[] = [];
  let term = 0.5 ** n;
  let total = 0;
  for (let j = 0; j <= n; j++) {
    total += term;
    cumulative.push(total);
    term = (term * (n - j)) / (j + 1);
  }
  // The largest k with P(X ≤ k − 1) ≤ (1 − coverage) / 2 gives [x(k), x(n − k + 1)] (1-indexed).
  let k = 1;
  while (k + 1 <= n - k && (cumulative[k] as number) <= (1 - coverage) / 2) k++;
  return { low: sorted[k - 1] as number, high: sorted[n - k] as number, coverage: 1 - 2 * (cumulative[k - 1] as number) };
}
