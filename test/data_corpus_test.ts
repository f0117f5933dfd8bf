// The corpus batches: determinism in (seed, step, row), slices that equal the global batch,
// targets shifted by one, the loss floor against sampled batches, readable text, and argument errors.

import assert from "node:assert/strict";
import { batchRows, corpusFloor, globalBatch, sampleText } from "../src/data/corpus.ts";
import { charTokenizer } from "../src/data/tokenizer.ts";

function rowsOf(data: Int32Array, seq: number, start: number, count: number): Int32Array {
  return data.subarray(start * seq, (start + count) * seq);
}

Deno.test("the same (seed, step) gives the same batch; another step or seed gives another", () => {
  const options = { seed: 7, step: 3, batch: 4, seq: 32 };
  const a = globalBatch(options);
  const b = globalBatch({ ...options });
  assert.deepEqual(a.inputs, b.inputs);
  assert.deepEqual(a.targets, b.targets);
  assert.equal(a.floor, b.floor);
  for (
    const other of [{ ...options, step: 4 }, { ...options, seed: 8 }, { ...options, seed: -7 }, { ...options, seed: 7 + 2 ** 32 }]
  ) {
    const c = globalBatch(other);
    assert.notDeepEqual(c.inputs, a.inputs, `${JSON.stringify(other)} repeats the batch`);
  }
  // Rows within a batch differ from each other.
  const rows = new Set(Array.from({ length: 4 }, (_, r) => charTokenizer.decode(rowsOf(a.inputs, 32, r, 1))));
  assert.equal(rows.size, 4);
});

Deno.test("batchRows slices equal the global batch's rows for every split", () => {
  const seq = 24;
  const global = globalBatch({ seed: 11, step: 5, batch: 8, seq });
  for (const ranks of [1, 2, 4, 8]) {
    const rowCount = 8 / ranks;
    let floorSum = 0;
    for (let rank = 0; rank < ranks; rank++) {
      const part = batchRows({ seed: 11, step: 5, rowStart: rank * rowCount, rowCount, seq });
      assert.deepEqual(part.inputs, rowsOf(global.inputs, seq, rank * rowCount, rowCount), `${ranks} ranks, rank ${rank}`);
      assert.deepEqual(part.targets, rowsOf(global.targets, seq, rank * rowCount, rowCount), `${ranks} ranks, rank ${rank}`);
      floorSum += part.floor;
    }
    assert.ok(
      Math.abs(floorSum / ranks - global.floor) < 1e-12,
      `${ranks} ranks: mean of slice floors ${floorSum / ranks} vs ${global.floor}`,
    );
  }
  // A row does not depend on the batch size around it.
  const smaller = globalBatch({ seed: 11, step: 5, batch: 3, seq });
  assert.deepEqual(smaller.inputs, rowsOf(global.inputs, seq, 0, 3));
});

Deno.test("targets are the inputs shifted by one within each row", () => {
  const seq = 40;
  const { inputs, targets } = globalBatch({ seed: 2, step: 0, batch: 6, seq });
  assert.equal(inputs.length, 6 * seq);
  assert.equal(targets.length, 6 * seq);
  for (let r = 0; r < 6; r++) {
    for (let t = 0; t + 1 < seq; t++) assert.equal(targets[r * seq + t], inputs[r * seq + t + 1], `row ${r}, position ${t}`);
  }
  // seq 1 still has one target: the character after the first.
  const one = globalBatch({ seed: 2, step: 0, batch: 6, seq: 1 });
  for (let r = 0; r < 6; r++) {
    assert.equal(one.inputs[r], inputs[r * seq]);
    assert.equal(one.targets[r], inputs[r * seq + 1]);
  }
});

Deno.test("corpusFloor agrees with the mean floor of many sampled batches", () => {
  for (const seq of [16, 64]) {
    const floors = Array.from({ length: 300 }, (_, step) => globalBatch({ seed: 123, step, batch: 4, seq }).floor);
    const mean = floors.reduce((a, b) => a + b, 0) / floors.length;
    const variance = floors.reduce((sum, f) => sum + (f - mean) ** 2, 0) / (floors.length - 1);
    const standardError = Math.sqrt(variance / floors.length);
    const exact = corpusFloor(seq);
    assert.ok(exact > 0 && exact < Math.log(96), `corpusFloor(${seq}) = ${exact}`);
    assert.ok(
      Math.abs(mean - exact) < 4 * standardError,
      `seq ${seq}: sampled ${mean} ± ${standardError} vs corpusFloor ${exact}`,
    );
    assert.equal(corpusFloor(seq), exact);
  }
});

Deno.test("the text is lowercase sentences with agreeing articles, in short paragraphs", () => {
  const text = sampleText(99, 20000);
  assert.equal(text.length, 20000);
  assert.equal(sampleText(99, 20000), text);
  assert.notEqual(sampleText(100, 200), text.slice(0, 200));
  assert.match(text, /^[a-z .,!?\n]+$/);
  const paragraphs = text.split("\n").slice(0, -1);
  assert.ok(paragraphs.length > 50, `${paragraphs.length} paragraphs`);
  for (const paragraph of paragraphs) {
    assert.match(paragraph, /^([a-z]+(,? [a-z]+)*[.!?] )*[a-z]+(,? [a-z]+)*[.!?]$/, paragraph);
  }
  const articles = [...text.matchAll(/(?:^|[ \n])(an?) ([a-z])/g)];
  assert.ok(articles.length > 100);
  for (const [, article, initial] of articles) assert.equal(article === "an", "aeiou".includes(initial), `${article} ${initial}`);
  const pluralVerbAfterSingular = /(?<!(does|did) )\b(a|one) [a-z]+ (run|sleep|sing|jump|sit|swim|hide|nap|see|get|eat)\b/;
  assert.doesNotMatch(text, pluralVerbAfterSingular);
  assert.match(text, /(a|one) [a-z]+ (runs|sleeps|sings|jumps|sits|swims|hides|naps|sees|gets|eats)\b/);
  assert.ok(/the (red|big) /.test(text) && /\? /.test(text) && /there are /.test(text));
});

Deno.test("arguments out of range throw naming the value", () => {
  const good = { seed: 1, step: 0, batch: 2, seq: 8 };
  const cases: [() => unknown, RegExp][] = [
    [() => globalBatch({ ...good, batch: 0 }), /globalBatch: batch must be an integer in \[1, \d+\], got 0/],
    [() => globalBatch({ ...good, seq: 0 }), /seq must be an integer .*got 0/],
    [() => globalBatch({ ...good, seq: 2.5 }), /seq .*got 2\.5/],
    [() => globalBatch({ ...good, step: -1 }), /step must be an integer .*got -1/],
    [() => globalBatch({ ...good, seed: 0.5 }), /seed must be an integer .*got 0\.5/],
    [() => globalBatch({ ...good, seed: NaN }), /seed .*got NaN/],
    [() => globalBatch({ ...good, seed: 2 ** 60 }), /seed .*got 1152921504606847000/],
    [() => batchRows({ seed: 1, step: 0, rowStart: -1, rowCount: 2, seq: 8 }), /batchRows: rowStart .*got -1/],
    [() => batchRows({ seed: 1, step: 0, rowStart: 0, rowCount: 0, seq: 8 }), /batchRows: rowCount .*got 0/],
    [() => corpusFloor(0), /corpusFloor: seq .*got 0/],
    [() => sampleText(1, -5), /sampleText: chars .*got -5/],
  ];
  for (const [fn, pattern] of cases) {
    assert.throws(fn, (error: Error) => error instanceof RangeError && pattern.test(error.message));
  }
  assert.throws(
    () => globalBatch({ ...good, seq: "8" as unknown as number }),
    /TypeError: globalBatch: seq must be a number, got string 8/,
  );
});

Deno.test("a batch of 16 rows of 129 characters takes well under a millisecond", () => {
  globalBatch({ seed: 0, step: 0, batch: 16, seq: 128 });
  const steps = 200;
  const start = performance.now();
  for (let step = 0; step < steps; step++) globalBatch({ seed: 0, step, batch: 16, seq: 128 });
  const perBatch = (performance.now() - start) / steps;
  assert.ok(perBatch < 1, `${perBatch.toFixed(3)} ms per batch`);
});
