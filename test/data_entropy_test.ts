// The exact entropies behind the loss floor, checked independently: the chain rule over every
// decision of the grammar against the Shannon entropy of its options, the position-by-position
// expectation against brute-force enumeration of a small grammar, and the reported floor against
// the surprisal of sampled text under the corpus's own next-character distributions.

import assert from "node:assert/strict";
import { type CharAutomaton, compileGrammar, expectedEntropies, type Grammar } from "../src/data/automaton.ts";
import { corpusGrammar } from "../src/data/grammar.ts";
import { batchRows, corpusDistributions, corpusFloor, globalBatch } from "../src/data/corpus.ts";
import { charTokenizer } from "../src/data/tokenizer.ts";

function assertClose(actual: number, expected: number, tolerance: number, what: string): void {
  assert.ok(Math.abs(actual - expected) <= tolerance, `${what}: ${actual} vs ${expected}`);
}

/** Follows one token from node; returns its probability, the node's entropy and the next node. */
function step(automaton: CharAutomaton, node: number, token: number) {
  for (let edge = automaton.edgeStart[node]; edge < automaton.edgeStart[node + 1]; edge++) {
    if (automaton.edgeToken[edge] === token) {
      return { probability: automaton.edgeProbability[edge], entropy: automaton.entropy[node], next: automaton.edgeTarget[edge] };
    }
  }
  throw new Error(`token ${token} impossible at node ${node}`);
}

/** Checks every decision of a grammar: chain rule per option, and expected entropy per decision. */
function checkDecisions(grammar: Grammar): number {
  const automaton = compileGrammar(grammar);
  let checked = 0;
  for (const [state, options] of Object.entries(grammar.states)) {
    const total = options.reduce((sum, o) => sum + o.weight, 0);
    let shannon = 0;
    let expectedCharEntropy = 0;
    for (const option of options) {
      const p = option.weight / total;
      shannon -= p * Math.log(p);
      let node = automaton.stateRoot.get(state)!;
      let surprisal = 0;
      let entropySum = 0;
      for (const token of charTokenizer.encode(option.text)) {
        const taken = step(automaton, node, token);
        surprisal -= Math.log(taken.probability);
        entropySum += taken.entropy;
        node = taken.next;
      }
      assertClose(surprisal, -Math.log(p), 1e-9, `${state} ${JSON.stringify(option.text)}: sum of -log p(char)`);
      assert.equal(node, automaton.stateRoot.get(option.next), `${state} ${JSON.stringify(option.text)} leads to ${option.next}`);
      expectedCharEntropy += p * entropySum;
    }
    assertClose(expectedCharEntropy, shannon, 1e-9, `${state}: per-character entropies vs the options' Shannon entropy`);
    checked++;
  }
  return checked;
}

Deno.test("a single decision: per-character entropies sum to the options' Shannon entropy", () => {
  // "ab" and "ac" share their first character: H(first) = ln 2, then H(second | "a") = ln 2.
  const grammar: Grammar = {
    start: "x",
    states: {
      x: [{ text: "ab", weight: 1, next: "x" }, { text: "ac", weight: 1, next: "x" }, { text: "b", weight: 2, next: "x" }],
    },
  };
  const automaton = compileGrammar(grammar);
  assertClose(automaton.entropy[automaton.start], Math.log(2), 1e-15, "H(first character)");
  const afterA = step(automaton, automaton.start, charTokenizer.encode("a")[0]).next;
  assertClose(automaton.entropy[afterA], Math.log(2), 1e-15, "H(second character | a)");
  assertClose(
    0.5 * (Math.log(2) + Math.log(2)) + 0.5 * Math.log(2),
    -(0.25 * Math.log(0.25) * 2 + 0.5 * Math.log(0.5)),
    1e-15,
    "by hand",
  );
  assert.equal(checkDecisions(grammar), 1);
});

Deno.test("every decision of the corpus grammar obeys the chain rule", () => {
  assert.equal(checkDecisions(corpusGrammar), Object.keys(corpusGrammar.states).length);
});

Deno.test("grammars that are not prefix-free or use unknown characters are rejected by name", () => {
  const state = (...texts: string[]) => ({ start: "s", states: { s: texts.map((text) => ({ text, weight: 1, next: "s" })) } });
  assert.throws(
    () => compileGrammar(state("ab", "abc")),
    /state "s", option "abc": not prefix-free, option "ab" is a prefix of it/,
  );
  assert.throws(() => compileGrammar(state("abc", "ab")), /option "ab": not prefix-free, it is a prefix of option "abc"/);
  assert.throws(() => compileGrammar(state("ab", "ab")), /option "ab": not prefix-free/);
  assert.throws(() => compileGrammar(state("a\tb")), /option "a\\tb": .*unknown character "\\t"/);
  assert.throws(() => compileGrammar(state("")), /the text must be a non-empty string/);
  assert.throws(
    () => compileGrammar({ start: "s", states: { s: [{ text: "a", weight: 0, next: "s" }] } }),
    /weight must be positive, got 0/,
  );
  assert.throws(
    () => compileGrammar({ start: "s", states: { s: [{ text: "a", weight: 1, next: "t" }] } }),
    /next state "t" does not exist/,
  );
  assert.throws(() => compileGrammar({ start: "u", states: { s: [{ text: "a", weight: 1, next: "s" }] } }), /start state "u"/);
});

/**
 * E[H(char t | chars before t)] for t < length by enumerating every option sequence, the text it
 * spells cut to `length` characters, and the exact joint distribution of those texts.
 */
function bruteForceEntropies(grammar: Grammar, length: number): number[] {
  const texts = new Map<string, number>();
  const expand = (state: string, text: string, probability: number) => {
    if (text.length >= length) {
      const cut = text.slice(0, length);
      texts.set(cut, (texts.get(cut) ?? 0) + probability);
      return;
    }
    const options = grammar.states[state];
    const total = options.reduce((sum, o) => sum + o.weight, 0);
    for (const o of options) expand(o.next, text + o.text, probability * o.weight / total);
  };
  expand(grammar.start, "", 1);
  const result: number[] = [];
  for (let t = 0; t < length; t++) {
    // P(prefix) and P(prefix + c) from the joint; H(t) = sum over prefixes of P(prefix) H(c | prefix).
    const prefixMass = new Map<string, number>();
    const extendedMass = new Map<string, number>();
    for (const [text, p] of texts) {
      prefixMass.set(text.slice(0, t), (prefixMass.get(text.slice(0, t)) ?? 0) + p);
      extendedMass.set(text.slice(0, t + 1), (extendedMass.get(text.slice(0, t + 1)) ?? 0) + p);
    }
    let entropy = 0;
    for (const [extended, p] of extendedMass) entropy -= p * Math.log(p / prefixMass.get(extended.slice(0, t))!);
    result.push(entropy);
  }
  return result;
}

Deno.test("expected entropies by position match brute-force enumeration of a small grammar", () => {
  const grammar: Grammar = {
    start: "subject",
    states: {
      subject: [
        { text: "a ", weight: 2, next: "sg" },
        { text: "two ", weight: 1, next: "pl" },
        { text: "the ", weight: 1, next: "any" },
      ],
      sg: [{ text: "cat ", weight: 1, next: "verb sg" }, { text: "dog ", weight: 2, next: "verb sg" }],
      pl: [{ text: "cats ", weight: 1, next: "verb pl" }, { text: "dogs ", weight: 1, next: "verb pl" }],
      any: [
        { text: "cat ", weight: 1, next: "verb sg" },
        { text: "cats ", weight: 1, next: "verb pl" },
        { text: "dog ", weight: 3, next: "verb sg" },
      ],
      "verb sg": [{ text: "runs", weight: 1, next: "end" }, { text: "sits", weight: 1, next: "end" }],
      "verb pl": [{ text: "run", weight: 3, next: "end" }, { text: "sat", weight: 1, next: "end" }],
      end: [{ text: ". ", weight: 3, next: "subject" }, { text: ".\n", weight: 1, next: "subject" }, {
        text: "!\n",
        weight: 1,
        next: "subject",
      }],
    },
  };
  const length = 26;
  const exact = expectedEntropies(compileGrammar(grammar), length);
  const brute = bruteForceEntropies(grammar, length);
  for (let t = 0; t < length; t++) assertClose(exact[t], brute[t], 1e-12, `position ${t}`);
  assert.ok(Math.max(...brute) - Math.min(...brute) > 0.5, "the expected entropy varies with the position");
});

Deno.test("the floor matches the surprisal of sampled rows under the corpus distributions", () => {
  const seq = 128;
  const rows = 320;
  const surprisals: number[] = [];
  const differences: number[] = [];
  for (let r = 0; r < rows; r++) {
    const row = batchRows({ seed: 4, step: 9, rowStart: r, rowCount: 1, seq });
    const text = new Int32Array(seq + 1);
    text[0] = row.inputs[0];
    text.set(row.targets, 1);
    const distributions = corpusDistributions(text);
    let surprisal = 0;
    let entropy = 0;
    for (let t = 1; t <= seq; t++) {
      const distribution = distributions[t];
      let sum = 0;
      for (const p of distribution) {
        sum += p;
        if (p > 0) entropy -= p * Math.log(p);
      }
      assertClose(sum, 1, 1e-12, `row ${r}, position ${t}: distribution sums to 1`);
      assert.ok(distribution[text[t]] > 0, `row ${r}, position ${t}: the sampled character has probability 0`);
      surprisal -= Math.log(distribution[text[t]]);
    }
    // The distributions' entropy is exactly the per-position entropy the floor averages.
    assertClose(entropy / seq, row.floor, 1e-12, `row ${r}: entropy of the distributions vs the row's floor`);
    surprisals.push(surprisal / seq);
    differences.push(surprisal / seq - row.floor);
  }
  const meanAndError = (values: number[]) => {
    const mean = values.reduce((a, b) => a + b, 0) / values.length;
    const variance = values.reduce((sum, v) => sum + (v - mean) ** 2, 0) / (values.length - 1);
    return [mean, Math.sqrt(variance / values.length)];
  };
  const [difference, differenceError] = meanAndError(differences);
  assert.ok(Math.abs(difference) < 4 * differenceError, `surprisal - floor: ${difference} ± ${differenceError}`);
  const [surprisal, surprisalError] = meanAndError(surprisals);
  const floor = corpusFloor(seq);
  assert.ok(
    Math.abs(surprisal - floor) < 4 * surprisalError,
    `surprisal ${surprisal} ± ${surprisalError} vs corpusFloor ${floor}`,
  );
  const batch = globalBatch({ seed: 4, step: 9, batch: rows, seq });
  assertClose(
    batch.floor,
    differences.reduce((sum, d, r) => sum + surprisals[r] - d, 0) / rows,
    1e-12,
    "global floor = mean of row floors",
  );
});

Deno.test("corpusDistributions rejects text the grammar cannot produce, naming the position", () => {
  assert.throws(
    () => corpusDistributions(charTokenizer.encode("the fox runs.  ")),
    /token 1 \(" "\) at position 14 is impossible/,
  );
  assert.throws(() => corpusDistributions(charTokenizer.encode("a owl")), /at position 2 is impossible/);
  for (const text of ["an owl sings.\n", "the big fox chases a red ball near the river. did tom see two odd eggs?"]) {
    assert.equal(corpusDistributions(charTokenizer.encode(text)).length, text.length);
  }
});
