// The layout a run goes on with after ranks are lost: the best one the survivors can hold. It keeps
// tensor and sequence parallelism where they still fit and shrinks the data-parallel replicas first
// (the rule DeepSpeed's elastic training and Universal Checkpointing's resilience runs follow: tp
// and sp are tied to the model's shape, dp only to the batch); when tp × sp no longer fits, it takes
// the layout that uses the most survivors. The global batch stays as it was, so dp must divide it:
// survivors that no layout can use are left idle, and the reason is said.

import { ShardlabError } from "../tensor/errors.ts";
import { dataParallelSize, type ParallelLayout, worldSize } from "../parallel/layout.ts";
import { checkTrainConfig, type TrainConfig, trainLayout } from "./config.ts";

/** No layout fits the ranks that survive. */
export class ElasticError extends ShardlabError {}

export interface SurvivingLayout {
  /** The run's config on the new layout (its resume point is set by the caller). */
  config: TrainConfig;
  layout: ParallelLayout;
  /** What changed beyond dp, tp and sp, and why survivors are left idle, in words; empty when nothing did. */
  notes: string[];
}

/** The config of `config`'s run on the best layout for `survivors` ranks; throws ElasticError when none fits, naming why. */
export function survivingLayout(config: TrainConfig, survivors: number): SurvivingLayout {
  const old = trainLayout(config);
  if (survivors < 1) {
    throw new ElasticError(
      `elastic: no rank survives to go on (the layout had ${worldSize(old)} rank${worldSize(old) > 1 ? "s" : ""})`,
    );
  }
  const fits: { config: TrainConfig; layout: ParallelLayout; notes: string[] }[] = [];
  const refusals: string[] = [];
  for (let tp = old.tp; tp >= 1; tp--) {
    for (let sp = old.sp; sp >= 1; sp--) {
      for (let dp = Math.floor(survivors / (tp * sp)); dp >= 1; dp--) {
        const candidate = onLayout(config, old, { dp, tp, sp });
        try {
          checkTrainConfig(candidate.config);
          fits.push({ ...candidate, layout: trainLayout(candidate.config) });
          break;
        } catch (error) {
          refusals.push(`dp ${dp} × tp ${tp} × sp ${sp}: ${(error as Error).message.replace(/^train: /, "")}`);
        }
      }
    }
  }
  const kept = fits.find(({ layout }) => layout.tp === old.tp && layout.sp === old.sp);
  const best = kept ??
    fits.sort((a, b) => worldSize(b.layout) - worldSize(a.layout) || b.layout.tp - a.layout.tp || b.layout.sp - a.layout.sp)[0];
  if (!best) throw new ElasticError(`elastic: no layout fits ${survivors} ranks (${refusals.join("; ")})`);
  const idle = survivors - worldSize(best.layout);
  if (idle > 0) {
    const larger = refusals.find((refusal) => refusal.startsWith(`dp ${best.layout.dp + 1} `));
    best.notes.push(`${idle} surviving rank${idle > 1 ? "s" : ""} left idle${larger ? ` (${larger})` : ""}`);
  }
  return best;
}

/**
 * `config` moved to dp × tp × sp: the nodes become the most that divide the new world and are no
 * more than before; ZeRO needs two data-parallel ranks (on one it is plain training, and ZeRO++
 * goes with it); hpZ's partition follows the ranks per node.
 */
function onLayout(
  config: TrainConfig,
  old: ParallelLayout,
  axes: { dp: number; tp: number; sp: number },
): { config: TrainConfig; notes: string[] } {
  const world = axes.dp * axes.tp * axes.sp;
  let nodes = Math.min(old.nodes, world);
  while (world % nodes !== 0) nodes--;
  const notes: string[] = [];
  // The attempts of an elastic run are plain runs: the loop around them (elastic.ts) is what goes on.
  const next: TrainConfig = { ...config, ...axes, nodes, elastic: undefined };
  if (nodes !== old.nodes) {
    const why = world < old.nodes ? `only ${world} ranks` : `${world} ranks do not split evenly over ${old.nodes}`;
    notes.push(`nodes ${old.nodes} → ${nodes} (${why})`);
  }
  const zeroKept = dataParallelSize({ ...old, ...axes, nodes }) > 1;
  if (old.zero > 0 && !zeroKept) {
    next.zero = 0;
    notes.push(`zero ${old.zero} → 0 (one data-parallel rank has nothing to partition)`);
    const zeropp = ["zeropp", "zeroQuantizedWeights", "zeroQuantizedGradients", "zeroHpzPartitionSize", "quantBits"] as const;
    for (const key of [...zeropp, "quantBlock", "commDtype"] as const) delete next[key];
  } else if ((config.zeroHpzPartitionSize ?? 1) > 1) {
    next.zeroHpzPartitionSize = world / nodes;
  }
  return { config: next, notes };
}
