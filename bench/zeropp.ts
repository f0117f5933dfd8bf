// `bench parallel`, part 3: ZeRO++ against ZeRO-3. The tiny preset trains on g = 2 ranks per node
// over 2, 4 and 8 simulated nodes (dp 4, 8, 16) with ZeRO-3 (f32, and f16 on the wire: the paper's
// baseline) and ZeRO++ (INT8 weights, hpZ, INT4 gradients); on 2 nodes each technique alone too.
// The first step is warm-up. Per row: tokens/s of the wall clock here, the bytes all ranks sent per
// step by link class, and the cost model's communication time per step, the slowest rank's, with
// NVLink-class links inside a node and a slow inter-node link (DEFAULT_LINKS: 12.5 GB/s). The
// simulated speedup of ZeRO++ over ZeRO-3 at each node count is that time's ratio; the cost model
// does not overlap communication with compute, so it is the speedup of the communication alone.

import { DEFAULT_LINKS } from "../src/comm/cost_model.ts";
import { DEFAULT_TRAIN_CONFIG, type TrainConfig } from "../src/train/config.ts";
import { train } from "../src/train/trainer.ts";
import type { RankMemory } from "../src/parallel/strategy.ts";
import { alignedTable, formatMs } from "./report.ts";
import { median } from "./timing.ts";

const RANKS_PER_NODE = 2;
const NODE_COUNTS = [2, 4, 8];
/** 16 rows: one per rank at 8 nodes. */
const SHAPE = { preset: "tiny", batch: 16, seq: 64 };

interface Variant {
  name: string;
  options: Partial<TrainConfig>;
  /** Run at every node count (else at 2 nodes only). */
  everywhere?: boolean;
}

const VARIANTS: Variant[] = [
  { name: "ZeRO-3", options: {}, everywhere: true },
  { name: "ZeRO-3 f16", options: { commDtype: "f16" }, everywhere: true },
  { name: "qwZ", options: { zeroQuantizedWeights: true } },
  { name: "hpZ", options: { zeroHpzPartitionSize: RANKS_PER_NODE } },
  { name: "qgZ", options: { zeroQuantizedGradients: true } },
  { name: "ZeRO++", options: { zeropp: true }, everywhere: true },
];

export interface ZeroppRow {
  variant: string;
  nodes: number;
  ranks: number;
  tokensPerSec: number;
  stepMs: number;
  /** Bytes all ranks sent in the last step, by link class. */
  commBytes: { total: number; intra: number; inter: number };
  /** The cost model's communication time of the last step, the slowest rank's, ms. */
  simulatedMs: number;
  memory: RankMemory[];
  losses: number[];
  error?: string;
}

export interface ZeroppSpeedup {
  nodes: number;
  /** ZeRO-3's simulated communication time per step over ZeRO++'s, with f32 and with f16 on ZeRO-3's wire. */
  overF32: number;
  overF16: number;
  /** The same for the inter-node bytes. */
  interBytesOverF32: number;
  interBytesOverF16: number;
}

export async function runZeropp(
  backend: "cpu" | "webgpu",
  steps: number,
  progress: (message: string) => void,
): Promise<{ rows: ZeroppRow[]; speedups: ZeroppSpeedup[] }> {
  const rows: ZeroppRow[] = [];
  for (const nodes of NODE_COUNTS) {
    for (const variant of VARIANTS.filter((v) => v.everywhere || nodes === NODE_COUNTS[0])) {
      progress(`ZeRO++: ${variant.name} on ${nodes} nodes of ${RANKS_PER_NODE}, ${steps} steps (${backend})`);
      rows.push(await runVariant(variant, nodes, backend, steps));
    }
  }
  const speedups = NODE_COUNTS.map((nodes) => {
    const at = (name: string) => rows.find((row) => row.variant === name && row.nodes === nodes)!;
    const [f32, f16, plusPlus] = [at("ZeRO-3"), at("ZeRO-3 f16"), at("ZeRO++")];
    return {
      nodes,
      overF32: f32.simulatedMs / plusPlus.simulatedMs,
      overF16: f16.simulatedMs / plusPlus.simulatedMs,
      interBytesOverF32: f32.commBytes.inter / plusPlus.commBytes.inter,
      interBytesOverF16: f16.commBytes.inter / plusPlus.commBytes.inter,
    };
  });
  return { rows, speedups };
}

async function runVariant(variant: Variant, nodes: number, backend: "cpu" | "webgpu", steps: number): Promise<ZeroppRow> {
  const ranks = RANKS_PER_NODE * nodes;
  const config: TrainConfig = {
    ...DEFAULT_TRAIN_CONFIG,
    ...SHAPE,
    steps,
    backend,
    dp: ranks,
    zero: 3,
    nodes,
    ...variant.options,
  };
  const row: ZeroppRow = {
    variant: variant.name,
    nodes,
    ranks,
    tokensPerSec: NaN,
    stepMs: NaN,
    commBytes: { total: 0, intra: 0, inter: 0 },
    simulatedMs: NaN,
    memory: [],
    losses: [],
  };
  try {
    const history = await train(config);
    const timed = history.slice(1);
    const last = timed.at(-1)!;
    return {
      ...row,
      tokensPerSec: median(timed.map((m) => m.tokensPerSec)),
      stepMs: median(timed.map((m) => (1000 * SHAPE.batch * SHAPE.seq) / m.tokensPerSec)),
      commBytes: last.commBytes,
      simulatedMs: last.simTime,
      memory: last.memory,
      losses: history.map((m) => m.loss),
    };
  } catch (error) {
    return { ...row, error: (error as Error).message };
  }
}

const HEADER = [
  "variant",
  "nodes",
  "ranks",
  "tokens/s",
  "step ms",
  "intra B/step",
  "inter B/step",
  "sim ms/step",
  "hpZ MiB",
  "last loss",
];

export function printZeropp({ rows, speedups }: { rows: ZeroppRow[]; speedups: ZeroppSpeedup[] }): void {
  const { intra, inter } = DEFAULT_LINKS;
  console.log(
    `ZeRO++ vs ZeRO-3 — ${SHAPE.preset} [${SHAPE.batch}×${SHAPE.seq}], ${RANKS_PER_NODE} ranks per node; sim: the cost model's ` +
      `communication time per step, the slowest rank's (intra ${intra.bandwidthGBps} GB/s, inter ${inter.bandwidthGBps} GB/s + ` +
      `${inter.latencyUs} µs per message), without overlap with compute; hpZ MiB: the largest rank's secondary partitions`,
  );
  const lines = alignedTable(
    HEADER,
    rows.map((row) =>
      row.error ? [row.variant, String(row.nodes), String(row.ranks), "ERROR", ...new Array(HEADER.length - 4).fill("—")] : [
        row.variant,
        String(row.nodes),
        String(row.ranks),
        row.tokensPerSec.toFixed(0),
        formatMs(row.stepMs),
        row.commBytes.intra.toLocaleString("en-US"),
        row.commBytes.inter.toLocaleString("en-US"),
        row.simulatedMs.toFixed(3),
        (Math.max(...row.memory.map((m) => m.secondary)) / 2 ** 20).toFixed(3),
        row.losses.at(-1)!.toFixed(4),
      ]
    ),
  );
  for (const line of lines) console.log(line);
  for (const row of rows) if (row.error) console.log(`ERROR ${row.variant} on ${row.nodes} nodes: ${row.error}`);
  for (const s of speedups) {
    console.log(
      `${s.nodes} nodes: ZeRO++ over ZeRO-3, simulated communication ${s.overF32.toFixed(2)}× (f32 ZeRO-3), ` +
        `${s.overF16.toFixed(2)}× (f16); inter-node bytes ${s.interBytesOverF32.toFixed(2)}× fewer (f32), ${
          s.interBytesOverF16.toFixed(2)
        }× (f16)`,
    );
  }
  console.log("");
}
