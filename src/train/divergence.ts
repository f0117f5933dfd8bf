// A run that diverges stops at the first step whose loss or gradient norm is not a finite number,
// before the optimizer applies that step, as Megatron-LM's check for NaN in the loss and gradients
// and DeepSpeed's overflow check do. The parameters, AdamW's moments and every checkpoint then hold
// the state after the last good step, and the error names the step, what went non-finite, its
// value, the learning rate and the last checkpoint saved (the one to go back to with a lower rate).
//
// The single-device trainer throws TrainingDivergedError itself. On a layout of several ranks every
// rank sees the same global loss and gradient norm and throws it at the same step (under ZeRO++'s
// quantized gradients, the rank whose gradients hold NaN or ±Inf throws it in backward, where the
// quantizer refuses them); the launch then ends with a RankFailedError carrying the error's fields,
// from which trainingDivergence() gives the typed error back.

import { RankFailedError } from "../comm/errors.ts";
import { ShardlabError } from "../tensor/errors.ts";

/**
 * What became non-finite: the global batch's mean loss, the global gradient norm before clipping,
 * or the gradients themselves, when ZeRO++'s quantized gradients refuse a block of them before any
 * norm exists (qgZ cannot quantize NaN or ±Inf).
 */
export type DivergedQuantity = "loss" | "gradient norm" | "gradients";

export interface Divergence {
  /** 1-based: the step whose loss or gradient norm is non-finite; it was not applied. */
  step: number;
  what: DivergedQuantity;
  /** NaN, Infinity or -Infinity; NaN for the gradients, which hold NaN or ±Inf. */
  value: number;
  /** The run's peak learning rate. */
  lr: number;
  /** The last checkpoint of the run (saved before the step, or the one it resumed from); null when there is none. */
  checkpoint: string | null;
}

export class TrainingDivergedError extends ShardlabError {
  readonly step: number;
  readonly what: DivergedQuantity;
  readonly value: number;
  readonly lr: number;
  readonly checkpoint: string | null;

  constructor(divergence: Divergence) {
    const { step, what, value, lr, checkpoint } = divergence;
    super(
      `train: the ${what} became ${what === "gradients" ? "NaN or ±Inf" : value} at step ${step} ` +
        `(the learning rate ${formatRate(lr)} may be too high); ` +
        (checkpoint === null ? "no checkpoint was saved" : `the last good checkpoint is ${checkpoint}`),
    );
    this.name = "TrainingDivergedError";
    this.step = step;
    this.what = what;
    this.value = value;
    this.lr = lr;
    this.checkpoint = checkpoint;
  }
}

/**
 * The error for step `step` (1-based) when its loss or gradient norm is not finite (the loss is
 * named when both are), or null when both are finite.
 */
export function divergenceAt(
  step: number,
  figures: { loss: number; gradNorm: number },
  run: { lr: number; checkpoint: string | null },
): TrainingDivergedError | null {
  const [what, value]: [DivergedQuantity, number] = Number.isFinite(figures.loss)
    ? ["gradient norm", figures.gradNorm]
    : ["loss", figures.loss];
  if (Number.isFinite(value)) return null;
  return new TrainingDivergedError({ step, what, value, lr: run.lr, checkpoint: run.checkpoint });
}

/**
 * The TrainingDivergedError a launch of ranks ended with: `error` itself, or the one a rank threw
 * when `error` is the RankFailedError that reports it (rebuilt from the fields it carried). Null for
 * any other error.
 */
export function trainingDivergence(error: unknown): TrainingDivergedError | null {
  if (error instanceof TrainingDivergedError) return error;
  if (!(error instanceof RankFailedError) || error.thrown?.name !== "TrainingDivergedError") return null;
  return new TrainingDivergedError(error.thrown.fields as unknown as Divergence);
}

/** A learning rate as a person writes it: 0.01, 3e-4, 1e6. */
function formatRate(lr: number): string {
  return lr >= 1e4 || lr < 1e-3 ? lr.toExponential().replace("e+", "e") : String(lr);
}
