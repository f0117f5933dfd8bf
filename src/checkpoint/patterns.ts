// The Universal Checkpointing pattern language, applied: every parameter gets the one rule of the
// model's pattern table (src/nn/checkpoint_patterns.ts) that matches its name, in strict mode, and
// the rule is checked against the meaning the ranks recorded for the parameter's pieces, so that a
// table and a checkpoint that disagree stop the conversion instead of scrambling a parameter.

import type { CheckpointPatterns } from "../nn/checkpoint_patterns.ts";
import type { Phi3Config } from "../nn/config.ts";
import { CheckpointError } from "./errors.ts";
import type { Meaning } from "./metadata.ts";

export type Rule =
  | { kind: "replicated" | "average" | "column" | "row" | "vocabulary" }
  | { kind: "sub-parameters"; rows: [string, number][] };

/** The rule of every parameter of `names`; a name no pattern matches, two rules for one name, or a pattern that matches nothing is an error naming it. */
export function matchPatterns(patterns: CheckpointPatterns, config: Phi3Config, names: readonly string[]): Map<string, Rule> {
  const entries: [RegExp, Rule][] = [
    ...patterns.replicated.map((p): [RegExp, Rule] => [p, { kind: "replicated" }]),
    ...patterns.average.map((p): [RegExp, Rule] => [p, { kind: "average" }]),
    ...patterns.columnParallel.map((p): [RegExp, Rule] => [p, { kind: "column" }]),
    ...patterns.rowParallel.map((p): [RegExp, Rule] => [p, { kind: "row" }]),
    ...patterns.vocabulary.map((p): [RegExp, Rule] => [p, { kind: "vocabulary" }]),
    ...patterns.twoSubParameters.map((p): [RegExp, Rule] => [p, { kind: "sub-parameters", rows: [] }]),
    ...patterns.subParametersWithShapes.map((
      { pattern, rows },
    ): [RegExp, Rule] => [pattern, { kind: "sub-parameters", rows: rows(config) }]),
  ];
  const rules = new Map<string, Rule>();
  for (const name of names) {
    const matching = entries.filter(([pattern]) => pattern.test(name));
    if (matching.length === 0) throw new CheckpointError(`patterns: no pattern matches parameter "${name}"`);
    if (matching.length > 1) {
      throw new CheckpointError(`patterns: parameter "${name}" matches ${matching.map(([p]) => p).join(" and ")}`);
    }
    rules.set(name, matching[0][1]);
  }
  for (const [pattern] of entries) {
    if (!names.some((name) => pattern.test(name))) {
      throw new CheckpointError(`patterns: the pattern ${pattern} matches no parameter`);
    }
  }
  return rules;
}

/** Refuses a rule that contradicts the recorded meaning of parameter `name` (a whole parameter fits every rule). */
export function checkRule(name: string, rule: Rule, meaning: Meaning, config: Phi3Config): void {
  if (meaning.kind === "full") return;
  const fits = (() => {
    switch (rule.kind) {
      case "replicated":
      case "average":
        return meaning.kind === "replicated";
      case "column":
      case "row":
        return meaning.kind === rule.kind;
      case "vocabulary":
        return meaning.kind === "vocabulary" && meaning.size === config.vocabSize;
      case "sub-parameters": {
        if (meaning.kind !== "sub-parameters") return false;
        const recorded = meaning.subParams.map(({ name, rows }) => [name, rows]);
        if (rule.rows.length > 0) return JSON.stringify(recorded) === JSON.stringify(rule.rows);
        return recorded.length === 2 && recorded[0][1] === recorded[1][1];
      }
    }
  })();
  if (!fits) {
    throw new CheckpointError(
      `patterns: "${name}" is ${rule.kind} by the pattern table, but its pieces were recorded as ${JSON.stringify(meaning)}`,
    );
  }
}
