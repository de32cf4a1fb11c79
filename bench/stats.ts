/** Percentiles and number formatting for the bench report. */

export interface Percentiles {
  n: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
  mean: number;
}

/**
 * Nearest-rank percentiles. Infinity stands for "never happened within the window" (an
 * undelivered message), so a percentile that lands on one is reported as Infinity, not hidden.
 */
export function percentiles(values: readonly number[]): Percentiles | null {
  if (values.length === 0) return null;
  const s = [...values].sort((a, b) => a - b);
  const at = (p: number) => s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]!;
  const finite = s.filter(Number.isFinite);
  const mean = finite.length > 0 ? finite.reduce((a, b) => a + b, 0) / finite.length : Infinity;
  return { n: s.length, p50: at(50), p90: at(90), p99: at(99), max: s[s.length - 1]!, mean };
}

export function fmtMs(v: number | undefined | null): string {
  if (v === undefined || v === null || Number.isNaN(v)) return 'n/a';
  if (!Number.isFinite(v)) return 'undelivered';
  if (v >= 1000) return `${(v / 1000).toFixed(2)} s`;
  if (v >= 100) return `${v.toFixed(0)} ms`;
  if (v >= 10) return `${v.toFixed(1)} ms`;
  return `${v.toFixed(2)} ms`;
}

export function fmtRate(v: number | undefined | null): string {
  if (v === undefined || v === null || !Number.isFinite(v)) return 'n/a';
  return v >= 100 ? v.toFixed(0) : v.toFixed(1);
}

export function fmtMiB(bytes: number | undefined | null): string {
  if (bytes === undefined || bytes === null || !Number.isFinite(bytes) || bytes <= 0) return 'n/a';
  return `${(bytes / (1024 * 1024)).toFixed(0)} MiB`;
}

export function fmtUs(v: number | undefined | null): string {
  if (v === undefined || v === null || !Number.isFinite(v)) return 'n/a';
  return `${v.toFixed(0)} µs`;
}

/** a / b with two decimals and an ×, or n/a. */
export function ratio(a: number | undefined | null, b: number | undefined | null): string {
  if (a === undefined || a === null || b === undefined || b === null) return 'n/a';
  if (!Number.isFinite(a) || !Number.isFinite(b) || b === 0) return 'n/a';
  return `${(a / b).toFixed(2)}×`;
}

/** A GitHub-flavoured markdown table with padded columns. */
export function mdTable(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i]!)).join(' | ')} |`;
  return [line(header), `| ${widths.map((w) => '-'.repeat(w)).join(' | ')} |`, ...rows.map(line)].join('\n');
}
