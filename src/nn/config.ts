// The shape of a Phi-3-style decoder: sizes, presets, validation and the parameter count.

export interface Phi3Config {
  vocabSize: number;
  hiddenSize: number;
  numLayers: number;
  /** Query heads; headDim = hiddenSize / numHeads. */
  numHeads: number;
  /** Key/value heads (grouped-query attention when fewer than numHeads). */
  numKvHeads: number;
  /** Width of the SwiGLU MLP. */
  intermediateSize: number;
  /** Longest sequence the model accepts. */
  maxSeqLen: number;
  ropeTheta: number;
  rmsNormEps: number;
}

export type PresetName = "tiny" | "small" | "phi3-mini";

export const PRESETS: Readonly<Record<PresetName, Readonly<Phi3Config>>> = {
  tiny: {
    vocabSize: 96,
    hiddenSize: 64,
    numLayers: 2,
    numHeads: 4,
    numKvHeads: 2,
    intermediateSize: 192,
    maxSeqLen: 256,
    ropeTheta: 10000,
    rmsNormEps: 1e-5,
  },
  small: {
    vocabSize: 96,
    hiddenSize: 128,
    numLayers: 4,
    numHeads: 4,
    numKvHeads: 2,
    intermediateSize: 384,
    maxSeqLen: 512,
    ropeTheta: 10000,
    rmsNormEps: 1e-5,
  },
  // The published Phi-3-mini (4k context) shape.
  "phi3-mini": {
    vocabSize: 32064,
    hiddenSize: 3072,
    numLayers: 32,
    numHeads: 32,
    numKvHeads: 32,
    intermediateSize: 8192,
    maxSeqLen: 4096,
    ropeTheta: 10000,
    rmsNormEps: 1e-5,
  },
};

/** A copy of a preset; throws naming the unknown name and the valid ones. */
export function presetConfig(name: string): Phi3Config {
  if (!Object.hasOwn(PRESETS, name)) {
    throw new RangeError(`presetConfig: unknown preset "${name}" (valid: ${Object.keys(PRESETS).join(", ")})`);
  }
  return { ...PRESETS[name as PresetName] };
}

/** Throws a RangeError naming the first size that cannot describe a working model. */
export function validateConfig(config: Phi3Config): void {
  const counts = ["vocabSize", "hiddenSize", "numLayers", "numHeads", "numKvHeads", "intermediateSize", "maxSeqLen"] as const;
  for (const key of counts) {
    const value = config[key];
    if (!Number.isSafeInteger(value) || value <= 0) {
      throw new RangeError(`Phi3Config: ${key} must be a positive integer, got ${value}`);
    }
  }
  for (const key of ["ropeTheta", "rmsNormEps"] as const) {
    const value = config[key];
    if (!Number.isFinite(value) || value <= 0) throw new RangeError(`Phi3Config: ${key} must be a positive number, got ${value}`);
  }
  const { hiddenSize, numHeads, numKvHeads } = config;
  if (hiddenSize % numHeads !== 0) {
    throw new RangeError(`Phi3Config: hiddenSize ${hiddenSize} is not divisible by numHeads ${numHeads}`);
  }
  if (numHeads % numKvHeads !== 0) {
    throw new RangeError(`Phi3Config: numHeads ${numHeads} is not divisible by numKvHeads ${numKvHeads}`);
  }
  if ((hiddenSize / numHeads) % 2 !== 0) {
    throw new RangeError(
      `Phi3Config: head dim ${
        hiddenSize / numHeads
      } (hiddenSize ${hiddenSize} / numHeads ${numHeads}) must be even for rotary embeddings`,
    );
  }
}

export function headDim(config: Phi3Config): number {
  return config.hiddenSize / config.numHeads;
}

/** Number of scalars in the model: embeddings, layers, final norm and the untied lm_head. */
export function paramCount(config: Phi3Config): number {
  validateConfig(config);
  const { vocabSize: V, hiddenSize: C, numLayers: L, numHeads: H, numKvHeads: Hkv, intermediateSize: I } = config;
  const D = headDim(config);
  const attention = (H + 2 * Hkv) * D * C + C * H * D;
  const mlp = 2 * I * C + C * I;
  const norms = 2 * C;
  return V * C + L * (attention + mlp + norms) + C + V * C;
}
