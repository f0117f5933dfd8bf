// The grammar of shardlab's built-in corpus: short English-like sentences about animals and things,
// such as "the big fox chases a red ball near the river." Sentences are statements (optionally
// with a relative clause, an adverb, a place and a joined second clause), questions ("did tom see
// an egg?") and "there is / there are" sentences. Articles agree with the next word ("a" /
// "an"), determiners and verbs agree in number with their noun.
//
// Every state is one decision. Its options are prefix-free: words end with the character that
// follows them (a space, ".", "!", ",", "?"), so "fox " and "foxes " never clash. Paragraphs are
// separated by "\n" and a text always starts at the start of a paragraph.

import type { Grammar, GrammarOption } from "./automaton.ts";

type Count = "sg" | "pl";

const ANIMALS: Record<Count, string>[] = [
  ["fox", "foxes"],
  ["cat", "cats"],
  ["dog", "dogs"],
  ["owl", "owls"],
  ["hen", "hens"],
  ["bee", "bees"],
  ["ant", "ants"],
  ["pig", "pigs"],
  ["cow", "cows"],
  ["rat", "rats"],
  ["frog", "frogs"],
  ["duck", "ducks"],
  ["wolf", "wolves"],
  ["mouse", "mice"],
  ["goose", "geese"],
  ["bat", "bats"],
  ["elk", "elks"],
  ["yak", "yaks"],
].map(([sg, pl]) => ({ sg, pl }));

const THINGS: Record<Count, string>[] = [
  ["ball", "balls"],
  ["box", "boxes"],
  ["egg", "eggs"],
  ["nut", "nuts"],
  ["hat", "hats"],
  ["cup", "cups"],
  ["key", "keys"],
  ["bag", "bags"],
  ["map", "maps"],
  ["leaf", "leaves"],
  ["cake", "cakes"],
  ["bell", "bells"],
  ["pen", "pens"],
  ["jar", "jars"],
  ["toy", "toys"],
  ["mug", "mugs"],
].map(([sg, pl]) => ({ sg, pl }));

const NAMES = ["tom", "ann", "max", "sam", "kim", "ben", "eva", "leo", "zoe", "ida"];

const PLACES = ["river", "lake", "hill", "barn", "road", "park", "farm", "pond", "wood", "yard", "shed", "den"];

const ADJECTIVES = ["red", "big", "old", "wet", "hot", "sad", "shy", "tiny", "tall", "fat", "odd", "pink", "blue", "grey"];

/** Verbs as [third person singular, base form, past tense]. */
type Verb = Record<Count | "past", string>;

const TRANSITIVE_VERBS: Verb[] = [
  ["sees", "see", "saw"],
  ["gets", "get", "got"],
  ["eats", "eat", "ate"],
  ["digs", "dig", "dug"],
  ["hugs", "hug", "hugged"],
  ["finds", "find", "found"],
  ["likes", "like", "liked"],
  ["wants", "want", "wanted"],
  ["takes", "take", "took"],
  ["bites", "bite", "bit"],
  ["holds", "hold", "held"],
  ["chases", "chase", "chased"],
].map(([sg, pl, past]) => ({ sg, pl, past }));

const INTRANSITIVE_VERBS: Verb[] = [
  ["runs", "run", "ran"],
  ["sleeps", "sleep", "slept"],
  ["sings", "sing", "sang"],
  ["jumps", "jump", "jumped"],
  ["sits", "sit", "sat"],
  ["swims", "swim", "swam"],
  ["hides", "hide", "hid"],
  ["naps", "nap", "napped"],
].map(([sg, pl, past]) => ({ sg, pl, past }));

const ADVERBS = ["fast", "slowly", "again", "today", "tonight", "a lot"];

const PREPOSITIONS = ["near ", "in ", "under ", "by ", "on ", "behind ", "at "];

const CONJUNCTIONS = [" and ", " but ", " so ", " then "];

interface Determiner {
  text: string;
  weight: number;
  counts: Count[];
  /** "a" and "an" restrict the initial letter of the next word. */
  initial?: "vowel" | "consonant";
}

const DETERMINERS: Determiner[] = [
  { text: "the ", weight: 3, counts: ["sg", "pl"] },
  { text: "a ", weight: 2, counts: ["sg"], initial: "consonant" },
  { text: "an ", weight: 0.8, counts: ["sg"], initial: "vowel" },
  { text: "my ", weight: 1, counts: ["sg", "pl"] },
  { text: "his ", weight: 1, counts: ["sg", "pl"] },
  { text: "her ", weight: 1, counts: ["sg", "pl"] },
  { text: "our ", weight: 0.7, counts: ["sg", "pl"] },
  { text: "one ", weight: 0.6, counts: ["sg"] },
  { text: "two ", weight: 0.8, counts: ["pl"] },
  { text: "three ", weight: 0.5, counts: ["pl"] },
  { text: "some ", weight: 1, counts: ["pl"] },
  { text: "many ", weight: 0.5, counts: ["pl"] },
];

/** What may follow a word: [suffix, probability, next state]; the probabilities sum to 1. */
type Ending = [string, number, string];

const ADJECTIVE_PROBABILITY = 0.5;

/** The probability of a second adjective after the first ("the big red fox"). */
const SECOND_ADJECTIVE_PROBABILITY = 0.3;

function fitsInitial(word: string, initial: Determiner["initial"]): boolean {
  return initial === undefined || "aeiou".includes(word[0]) === (initial === "vowel");
}

function uniformOptions(texts: string[], total: number, next: string): GrammarOption[] {
  return texts.map((text) => ({ text, weight: total / texts.length, next }));
}

/** Each word followed by each of its endings, the words sharing `total` probability equally. */
function wordOptions(words: { word: string; endings: Ending[] }[], total: number): GrammarOption[] {
  return words.flatMap(({ word, endings }) =>
    endings.map(([suffix, probability, next]) => ({ text: word + suffix, weight: probability * total / words.length, next }))
  );
}

function nouns(lexicon: Record<Count, string>[], counts: Count[], endings: (count: Count) => Ending[]) {
  return counts.flatMap((count) => lexicon.map((noun) => ({ word: noun[count], endings: endings(count) })));
}

function verbs(lexicon: Verb[], forms: (keyof Verb)[], endings: Ending[]) {
  return forms.flatMap((form) => lexicon.map((verb) => ({ word: verb[form], endings })));
}

interface NounPhrase {
  lexicon: Record<Count, string>[];
  determiners: Determiner[];
  endings: (count: Count) => Ending[];
  /** The probability of a name ("tom") instead of a determiner and noun. */
  nameProbability: number;
}

/**
 * A noun phrase: state `name` chooses a name or a determiner, then an optional adjective, then a
 * noun and its ending. The states after the determiner are keyed by the counts and initial it allows.
 */
function addNounPhrase(states: Grammar["states"], name: string, phrase: NounPhrase): void {
  const { lexicon, determiners, endings, nameProbability } = phrase;
  const determinerTotal = determiners.reduce((sum, d) => sum + d.weight, 0);
  states[name] = nameProbability > 0 ? wordOptions(NAMES.map((word) => ({ word, endings: endings("sg") })), nameProbability) : [];
  for (const { text, weight, counts, initial } of determiners) {
    const afterDeterminer = `${name}/${counts.join("+")}${initial ? "/" + initial : ""}`;
    const afterAdjective = `${name}/${counts.join("+")}/adjective`;
    const afterTwoAdjectives = `${name}/${counts.join("+")}/adjectives`;
    states[name].push({ text, weight: (1 - nameProbability) * weight / determinerTotal, next: afterDeterminer });
    const adjectives = ADJECTIVES.filter((word) => fitsInitial(word, initial)).map((word) => word + " ");
    const fitting = nouns(lexicon, counts, endings).filter(({ word }) => fitsInitial(word, initial));
    states[afterDeterminer] = [
      ...uniformOptions(adjectives, ADJECTIVE_PROBABILITY, afterAdjective),
      ...wordOptions(fitting, 1 - ADJECTIVE_PROBABILITY),
    ];
    states[afterAdjective] = [
      ...uniformOptions(ADJECTIVES.map((word) => word + " "), SECOND_ADJECTIVE_PROBABILITY, afterTwoAdjectives),
      ...wordOptions(nouns(lexicon, counts, endings), 1 - SECOND_ADJECTIVE_PROBABILITY),
    ];
    states[afterTwoAdjectives] = wordOptions(nouns(lexicon, counts, endings), 1);
  }
}

function buildCorpusGrammar(): Grammar {
  const states: Grammar["states"] = {};
  const end = "sentence end";
  const animalsAndThings = [...ANIMALS, ...THINGS];
  /** A statement ends with "." or now and then "!". */
  const stop = (probability: number): Ending[] => [[".", probability * 0.8, end], ["!", probability * 0.2, end]];

  // Statements: subject, verb (present tense agreeing with the subject, or past tense; with an
  // optional relative clause "that sings"), then an object, an adverb, a place or "because" and
  // another clause, and either "." (or "!") or "," with a conjunction and another clause.
  addNounPhrase(states, "clause", {
    lexicon: ANIMALS,
    determiners: DETERMINERS,
    endings: (count) => [[" ", 1, `verb/${count}`]],
    nameProbability: 0.15,
  });
  for (const count of ["sg", "pl"] as Count[]) {
    const verbPhrase = wordOptions([
      ...verbs(TRANSITIVE_VERBS, [count, "past"], [[" ", 1, "object"]]),
      ...verbs(INTRANSITIVE_VERBS, [count, "past"], [...stop(0.3), [" ", 0.5, "modifier"], [",", 0.2, "conjunction"]]),
    ], 1);
    const relative = { text: "that ", weight: 0.1, next: `relative/${count}` };
    states[`verb/${count}`] = [...verbPhrase.map((o) => ({ ...o, weight: o.weight * 0.9 })), relative];
    states[`relative/${count}`] = wordOptions(verbs(INTRANSITIVE_VERBS, [count, "past"], [[" ", 1, `main verb/${count}`]]), 1);
    states[`main verb/${count}`] = verbPhrase;
  }
  addNounPhrase(states, "object", {
    lexicon: animalsAndThings,
    determiners: DETERMINERS,
    endings: () => [...stop(0.5), [" ", 0.35, "modifier"], [",", 0.15, "conjunction"]],
    nameProbability: 0.1,
  });
  states["modifier"] = [
    ...wordOptions(ADVERBS.map((word) => ({ word, endings: [...stop(0.7), [",", 0.3, "conjunction"]] })), 0.35),
    ...uniformOptions(PREPOSITIONS, 0.5, "place"),
    { text: "because ", weight: 0.15, next: "clause" },
  ];
  const placeDeterminers = DETERMINERS.filter((d) => d.counts.includes("sg") && d.text !== "one ").map((d) => ({
    ...d,
    counts: ["sg"] as Count[],
  }));
  const places = PLACES.map((place) => ({ sg: place, pl: place }));
  addNounPhrase(states, "place", {
    lexicon: places,
    determiners: placeDeterminers,
    endings: () => [...stop(0.7), [",", 0.3, "conjunction"]],
    nameProbability: 0,
  });
  states["conjunction"] = uniformOptions(CONJUNCTIONS, 1, "clause");

  // Questions: "does" takes a singular subject, "do" a plural one, "did" either; the verb is in
  // its base form.
  for (const counts of [["sg"], ["pl"], ["sg", "pl"]] as Count[][]) {
    addNounPhrase(states, `question subject/${counts.join("+")}`, {
      lexicon: ANIMALS,
      determiners: DETERMINERS.filter((d) => d.counts.some((c) => counts.includes(c)))
        .map((d) => ({ ...d, counts: d.counts.filter((c) => counts.includes(c)) })),
      endings: () => [[" ", 1, "question verb"]],
      nameProbability: counts.includes("sg") ? 0.15 : 0,
    });
  }
  states["question verb"] = wordOptions([
    ...verbs(TRANSITIVE_VERBS, ["pl"], [[" ", 1, "question object"]]),
    ...verbs(INTRANSITIVE_VERBS, ["pl"], [["?", 0.6, end], [" ", 0.4, "question place"]]),
  ], 1);
  addNounPhrase(states, "question object", {
    lexicon: animalsAndThings,
    determiners: DETERMINERS,
    endings: () => [["?", 0.7, end], [" ", 0.3, "question place"]],
    nameProbability: 0.1,
  });
  states["question place"] = uniformOptions(PREPOSITIONS, 1, "question place noun");
  addNounPhrase(states, "question place noun", {
    lexicon: places,
    determiners: placeDeterminers,
    endings: () => [["?", 1, end]],
    nameProbability: 0,
  });

  // "there is a fox near the barn." / "there are two eggs."
  for (const [opening, count] of [["there is", "sg"], ["there are", "pl"]] as [string, Count][]) {
    addNounPhrase(states, opening, {
      lexicon: animalsAndThings,
      determiners: DETERMINERS.filter((d) => d.counts.length === 1 && d.counts[0] === count),
      endings: () => [[" ", 0.8, "existential place"], ...stop(0.2)],
      nameProbability: 0,
    });
  }
  states["existential place"] = uniformOptions(PREPOSITIONS, 1, "place");

  // A sentence is a statement most of the time; after it, a space or a new paragraph.
  states["sentence"] = [
    ...states["clause"].map((option) => ({ ...option, weight: option.weight * 0.75 })),
    { text: "does ", weight: 0.05, next: "question subject/sg" },
    { text: "do ", weight: 0.04, next: "question subject/pl" },
    { text: "did ", weight: 0.04, next: "question subject/sg+pl" },
    { text: "there is ", weight: 0.07, next: "there is" },
    { text: "there are ", weight: 0.05, next: "there are" },
  ];
  states[end] = [{ text: " ", weight: 0.7, next: "sentence" }, { text: "\n", weight: 0.3, next: "sentence" }];
  return { start: "sentence", states };
}

export const corpusGrammar: Grammar = buildCorpusGrammar();
