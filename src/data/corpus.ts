// shardlab's training data: rows of the built-in grammar's text, tokenized by character.
//
// Row b of step s is generated from its own seed, hashed from (seed, s, b), and always starts at
// the start of a paragraph. So a row is a pure function of (seed, step, row): any rank can build its
// slice of a global batch alone, and the entropy of each character given the text before it in
// the row is known exactly. That entropy, averaged over a batch's targets, is the batch's loss
// floor: the cross-entropy of the grammar itself, which no model of the row can beat on average.

import { compileGrammar, expectedEntropies, nextTokenDistributions, sampleTokens } from "./automaton.ts";
import { corpusGrammar } from "./grammar.ts";
import { hashInteger, mix32 } from "./hash.ts";
import { charTokenizer } from "./tokenizer.ts";

const automaton = compileGrammar(corpusGrammar);

const MAX_SEQ = 1 << 20;
const MAX_BATCH = 1 << 16;
const MAX_SAMPLE_CHARS = 1 << 26;

export interface BatchOptions {
  seed: number;
  step: number;
  batch: number;
  seq: number;
}

export interface RowsOptions {
  seed: number;
  step: number;
  rowStart: number;
  rowCount: number;
  seq: number;
}

/** inputs and targets are row-major [rows, seq]; floor is the mean exact entropy of the targets in nats. */
export interface Batch {
  inputs: Int32Array;
  targets: Int32Array;
  floor: number;
}

function checkInteger(fn: string, name: string, value: number, min: number, max: number): void {
  if (typeof value !== "number") throw new TypeError(`${fn}: ${name} must be a number, got ${typeof value} ${String(value)}`);
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new RangeError(`${fn}: ${name} must be an integer in [${min}, ${max}], got ${String(value)}`);
  }
}

function checkSeedAndStep(fn: string, seed: number, step: number): void {
  checkInteger(fn, "seed", seed, Number.MIN_SAFE_INTEGER, Number.MAX_SAFE_INTEGER);
  checkInteger(fn, "step", step, 0, Number.MAX_SAFE_INTEGER);
}

function rowSeed(seed: number, step: number, row: number): number {
  return mix32(hashInteger(hashInteger(0x5eed, seed), step), row);
}

/** The rows rowStart .. rowStart + rowCount - 1 of step `step`'s global batch. */
function buildRows(seed: number, step: number, rowStart: number, rowCount: number, seq: number): Batch {
  const inputs = new Int32Array(rowCount * seq);
  const targets = new Int32Array(rowCount * seq);
  const tokens = new Int32Array(seq + 1);
  const entropies = new Float64Array(seq + 1);
  let entropySum = 0;
  for (let r = 0; r < rowCount; r++) {
    sampleTokens(automaton, rowSeed(seed, step, rowStart + r), tokens, entropies);
    inputs.set(tokens.subarray(0, seq), r * seq);
    targets.set(tokens.subarray(1), r * seq);
    for (let t = 1; t <= seq; t++) entropySum += entropies[t];
  }
  return { inputs, targets, floor: entropySum / (rowCount * seq) };
}

/** The global batch of a step: `batch` rows of `seq` inputs, and the same rows shifted by one as targets. */
export function globalBatch({ seed, step, batch, seq }: BatchOptions): Batch {
  checkSeedAndStep("globalBatch", seed, step);
  checkInteger("globalBatch", "batch", batch, 1, MAX_BATCH);
  checkInteger("globalBatch", "seq", seq, 1, MAX_SEQ);
  return buildRows(seed, step, 0, batch, seq);
}

/** Rows rowStart .. rowStart + rowCount - 1 of the global batch, identical to that slice of globalBatch. */
export function batchRows({ seed, step, rowStart, rowCount, seq }: RowsOptions): Batch {
  checkSeedAndStep("batchRows", seed, step);
  checkInteger("batchRows", "rowCount", rowCount, 1, MAX_BATCH);
  checkInteger("batchRows", "rowStart", rowStart, 0, MAX_BATCH - rowCount);
  checkInteger("batchRows", "seq", seq, 1, MAX_SEQ);
  return buildRows(seed, step, rowStart, rowCount, seq);
}

const floorCache = new Map<number, number>();

/**
 * The expected loss floor of rows of length seq: the mean over target positions 1..seq of the
 * expected entropy of the character there given the row before it. Computed exactly (no sampling)
 * by propagating the distribution over the grammar automaton's states, and cached per seq.
 */
export function corpusFloor(seq: number): number {
  checkInteger("corpusFloor", "seq", seq, 1, MAX_SEQ);
  let floor = floorCache.get(seq);
  if (floor === undefined) {
    const expected = expectedEntropies(automaton, seq + 1);
    let sum = 0;
    for (let t = 1; t <= seq; t++) sum += expected[t];
    floor = sum / seq;
    floorCache.set(seq, floor);
  }
  return floor;
}

/** `chars` characters of corpus text from the start of a paragraph, a function of seed only. */
export function sampleText(seed: number, chars: number): string {
  checkInteger("sampleText", "seed", seed, Number.MIN_SAFE_INTEGER, Number.MAX_SAFE_INTEGER);
  checkInteger("sampleText", "chars", chars, 0, MAX_SAMPLE_CHARS);
  const tokens = new Int32Array(chars);
  sampleTokens(automaton, hashInteger(0x7e47, seed), tokens, new Float64Array(chars));
  return charTokenizer.decode(tokens);
}

/**
 * The corpus's exact distribution of ids[t] given ids[0 .. t), for each t, over the 96 token ids,
 * for a row read from its start (a paragraph start). Throws at the first impossible id.
 */
export function corpusDistributions(ids: ArrayLike<number>): Float64Array[] {
  return nextTokenDistributions(automaton, ids);
}
