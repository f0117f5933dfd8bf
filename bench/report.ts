// Results of the kernel benchmark: their shape (also the --json layout), the stdout table and the
// per-target summary that names every missed target; and what every suite shares: aligned tables and
// the --json file.

import { dirname } from "node:path";
import { type TargetKind, TARGETS } from "./kernel_cases.ts";

export interface AdapterReport {
  vendor: string;
  architecture: string;
  device: string;
  description: string;
  /** shardlab's own name for the adapter (BackendInfo.adapter). */
  shardlabInfo: string;
  limits: Record<string, number>;
  features: string[];
}

export interface CopyBound {
  /** Bytes read + written by one copy. */
  bytes: number;
  ms: number;
  gbPerS: number;
  reps: number;
  batchMs: number[];
}

/** shardlab's result against TF.js's; maxRel is maxAbs over TF.js's largest magnitude. */
export interface Difference {
  maxAbs: number;
  maxRel: number;
  wrong: boolean;
}

export interface LibraryFigures {
  /** Median time per rep. */
  ms: number;
  /** GFLOP/s or GB/s, as the case's unit says. */
  rate: number;
  reps: number;
  batchMs: number[];
}

export interface CaseResult {
  name: string;
  unit: "GFLOP/s" | "GB/s";
  /** FLOPs or bytes per rep. */
  work: number;
  shardlab: LibraryFigures | null;
  tfjs: LibraryFigures | null;
  /** TF.js time / shardlab time. */
  speedup: number | null;
  /** Bandwidth cases: shardlab's GB/s over the copy bandwidth. */
  fractionOfCopy: number | null;
  tfjsFractionOfCopy: number | null;
  difference: Difference | null;
  /** measured is the speedup (matmul, attention) or fractionOfCopy (elementwise); a WRONG result never meets it. */
  target: { kind: TargetKind; rule: string; threshold: number; measured: number | null; met: boolean };
  error?: string;
}

export interface TargetSummary {
  rule: string;
  threshold: number;
  cases: { name: string; measured: number | null; met: boolean }[];
  /** Every case of the group met the target. */
  met: boolean;
}

export function summarizeTargets(cases: CaseResult[]): Record<TargetKind, TargetSummary> {
  const summary = {} as Record<TargetKind, TargetSummary>;
  for (const [kind, { rule, threshold }] of Object.entries(TARGETS) as [TargetKind, { rule: string; threshold: number }][]) {
    const members = cases.filter((c) => c.target.kind === kind).map((c) => ({
      name: c.name,
      measured: c.target.measured,
      met: c.target.met,
    }));
    summary[kind] = { rule, threshold, cases: members, met: members.length > 0 && members.every((c) => c.met) };
  }
  return summary;
}

const HEADER = [
  "case",
  "shardlab ms",
  "TF.js ms",
  "shardlab rate",
  "TF.js rate",
  "speedup",
  "% of copy",
  "max rel diff",
  "target",
  "met",
];

export function printTable(
  adapter: AdapterReport,
  copy: CopyBound,
  cases: CaseResult[],
  targets: Record<TargetKind, TargetSummary>,
): void {
  const rows: string[][] = [[
    `copy ${copy.bytes / 2 / 2 ** 20} MiB (bound)`,
    formatMs(copy.ms),
    "",
    `${copy.gbPerS.toFixed(1)} GB/s`,
    "",
    "",
    "100%",
    "",
    "",
    "",
  ]];
  for (const c of cases) rows.push(caseRow(c));

  console.log(`kernels — shardlab WebGPU vs TF.js WebGPU on ${adapter.description}`);
  for (const line of alignedTable(HEADER, rows)) console.log(line);

  for (const c of cases.filter((c) => c.error)) console.log(`ERROR ${c.name}: ${c.error}`);
  for (const c of cases.filter((c) => c.difference?.wrong)) {
    console.log(`WRONG ${c.name}: shardlab differs from TF.js by ${c.difference!.maxAbs} (relative ${c.difference!.maxRel})`);
  }
  console.log("");
  for (const [kind, summary] of Object.entries(targets)) {
    console.log(`target ${kind} (${summary.rule}): ${summary.met ? "met" : "MISSED"}`);
  }
  const missed = cases.filter((c) => !c.target.met);
  if (missed.length) {
    console.log(`MISSED TARGETS (${missed.length} of ${cases.length} cases):`);
    for (const c of missed) console.log(`  ${c.name}: ${formatMeasured(c)} (needs ${c.target.rule})`);
  }
}

/** The header, a rule and the rows, columns padded to their widest cell: the first left-aligned, the rest right-aligned. */
export function alignedTable(header: string[], rows: string[][]): string[] {
  const widths = header.map((title, column) => Math.max(title.length, ...rows.map((row) => row[column].length)));
  const line = (cells: string[]) =>
    cells.map((cell, column) => (column === 0 ? cell.padEnd(widths[column]) : cell.padStart(widths[column]))).join("  ");
  return [line(header), widths.map((width) => "-".repeat(width)).join("  "), ...rows.map(line)];
}

function caseRow(c: CaseResult): string[] {
  const rate = (figures: LibraryFigures | null) => (figures ? `${figures.rate.toFixed(1)} ${c.unit}` : "—");
  return [
    c.name,
    c.shardlab ? formatMs(c.shardlab.ms) : "—",
    c.tfjs ? formatMs(c.tfjs.ms) : "—",
    rate(c.shardlab),
    rate(c.tfjs),
    c.speedup === null ? "—" : `${c.speedup.toFixed(2)}×`,
    c.fractionOfCopy === null ? "" : `${(c.fractionOfCopy * 100).toFixed(1)}%`,
    c.error ? "ERROR" : c.difference ? `${c.difference.maxRel.toExponential(1)}${c.difference.wrong ? " WRONG" : ""}` : "—",
    c.target.rule.replace("shardlab ", ""),
    c.target.met ? "yes" : "MISSED",
  ];
}

function formatMeasured(c: CaseResult): string {
  if (c.error) return "did not run";
  if (c.difference?.wrong) return "WRONG result";
  const { kind, measured } = c.target;
  if (measured === null) return "not measured";
  return kind === "elementwise" || kind === "quantization"
    ? `${(measured * 100).toFixed(1)}% of copy bandwidth`
    : `${measured.toFixed(2)}× TF.js`;
}

export function formatMs(ms: number): string {
  return ms >= 100 ? ms.toFixed(0) : ms >= 10 ? ms.toFixed(1) : ms.toFixed(2);
}

/** Writes a suite's --json file: the suite's name, the date and the runtime, then its own fields. */
export async function writeJsonReport(path: string, suite: string, fields: Record<string, unknown>): Promise<void> {
  const report = { suite, date: new Date().toISOString(), runtime: `deno ${Deno.version.deno}`, ...fields };
  await Deno.mkdir(dirname(path), { recursive: true });
  await Deno.writeTextFile(path, JSON.stringify(report, null, 2) + "\n");
}
