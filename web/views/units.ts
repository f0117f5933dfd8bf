// Numbers as the lab page's views print them: bytes in binary units (B, KiB, MiB, GiB), times in
// milliseconds or microseconds, element counts with thousands separators, and round axis ticks.

const BYTE_UNITS = ["B", "KiB", "MiB", "GiB", "TiB"];

/** Bytes in the largest binary unit that keeps the value ≥ 1, three significant digits: "0 B", "512 B", "1.50 KiB", "216 KiB". */
export function formatBytes(bytes: number): string {
  let value = bytes;
  let unit = 0;
  while (Math.abs(value) >= 1024 && unit < BYTE_UNITS.length - 1) {
    value /= 1024;
    unit++;
  }
  if (unit === 0) return `${value} B`;
  return `${significant(value)} ${BYTE_UNITS[unit]}`;
}

/** Milliseconds: "12.3 ms", "0.45 ms", microseconds below 0.01 ms ("5.5 µs"), seconds from 1000 ms ("1.23 s"). */
export function formatMs(ms: number): string {
  if (ms === 0) return "0 ms";
  if (Math.abs(ms) < 0.01) return `${significant(ms * 1000)} µs`;
  if (Math.abs(ms) >= 1000) return `${significant(ms / 1000)} s`;
  return `${significant(ms)} ms`;
}

/** Three significant digits without trailing zeros; whole numbers from 100 up (123, 1023). */
function significant(value: number): string {
  if (Math.abs(value) >= 100) return String(Math.round(value));
  return value.toPrecision(3).replace(/\.?0+$/, "");
}

/** An integer with thousands separators (12,288). */
export function formatCount(count: number): string {
  return count.toLocaleString("en-US");
}

/**
 * Round tick values from 0 to at least `max` (about `count` of them): steps of 1, 2 or 5 × 10^k,
 * or of 1, 2, 4, 8 … × 1024^k when `binary` (for bytes, so that ticks read 64 KiB, 128 KiB).
 */
export function niceTicks(max: number, count = 5, binary = false): number[] {
  if (!(max > 0)) return [0, 1];
  const raw = max / count;
  let step: number;
  if (binary) {
    step = 2 ** Math.ceil(Math.log2(raw));
  } else {
    const magnitude = 10 ** Math.floor(Math.log10(raw));
    step = [1, 2, 5, 10].map((m) => m * magnitude).find((s) => s >= raw)!;
  }
  return Array.from({ length: Math.ceil(max / step) + 1 }, (_, i) => i * step);
}
