// What the examples share: reading their flags, printing a plain table, and the --json line.
//
// Every example prints a table for people. With --json it also prints, as its last line, one JSON
// object with the same figures, for scripts (test/examples_test.ts reads it).

import { parseArgs } from "node:util";

/** The example's file name, for its messages: "allreduce_bytes.ts". */
function scriptName(): string {
  return new URL(Deno.mainModule).pathname.split("/").at(-1)!;
}

/** Stops the example with a message on stderr and exit code 2, as a bad flag does. */
export function usageError(message: string): never {
  console.error(`${scriptName()}: ${message}`);
  Deno.exit(2);
}

/**
 * The example's flags: `--name value` for every name in `defaults` (the value when the flag is not
 * given), and `--json`. An unknown flag or a missing value stops the example, naming it.
 */
export function readFlags<T extends Record<string, string>>(defaults: T): { flags: T; json: boolean } {
  const options: Record<string, { type: "string" | "boolean"; default?: string }> = { json: { type: "boolean" } };
  for (const [name, value] of Object.entries(defaults)) options[name] = { type: "string", default: value };
  try {
    const { values } = parseArgs({ args: Deno.args, options, strict: true, allowPositionals: false });
    const { json, ...flags } = values;
    return { flags: flags as T, json: json === true };
  } catch (error) {
    usageError(`${(error as Error).message} (flags: ${Object.keys(options).map((name) => `--${name}`).join(", ")})`);
  }
}

/** "2,3,4" → [2, 3, 4]; anything but integers ≥ min stops the example, naming the flag and the value. */
export function integers(flag: string, text: string, min: number): number[] {
  const values = text.split(",").map((part) => Number(part.trim()));
  if (text.trim() === "" || values.some((value) => !Number.isInteger(value) || value < min)) {
    usageError(`--${flag} must be a comma-separated list of integers ≥ ${min}, got "${text}"`);
  }
  return values;
}

/** One integer ≥ min, or the example stops naming the flag and the value. */
export function integer(flag: string, text: string, min: number): number {
  const values = integers(flag, text, min);
  if (values.length !== 1) usageError(`--${flag} takes one integer, got "${text}"`);
  return values[0];
}

/** 1234567 → "1,234,567". */
export function count(n: number): string {
  return n.toLocaleString("en-US", { maximumFractionDigits: 1 });
}

/** Bytes in KiB with one decimal: 443648 → "433.3". */
export function kib(bytes: number): string {
  return (bytes / 1024).toFixed(1);
}

/** A figure: 1,234.5, 1.5e-7, 3.72×, 25.0%, 0.627M, or "—" / "" for none. */
const FIGURE = /^([-+]?[\d.,]+(e[-+]?\d+)?[×%M]?|—|)$/;

/** Prints rows under a header, each column as wide as its widest cell; columns of figures align right. */
export function printTable(header: string[], rows: string[][]): void {
  const widths = header.map((title, column) => Math.max(title.length, ...rows.map((row) => row[column].length)));
  const numeric = header.map((_, column) => rows.every((row) => FIGURE.test(row[column])));
  const line = (cells: string[]) =>
    cells.map((cell, column) => numeric[column] ? cell.padStart(widths[column]) : cell.padEnd(widths[column])).join("  ")
      .trimEnd();
  console.log(line(header));
  console.log(widths.map((width) => "-".repeat(width)).join("  "));
  for (const row of rows) console.log(line(row));
}

/** With --json, the figures as one JSON object on the last line of the output. */
export function printJson(json: boolean, figures: unknown): void {
  if (json) console.log(JSON.stringify(figures));
}
