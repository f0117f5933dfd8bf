// A probabilistic grammar compiled to a character automaton with known entropies.
//
// A grammar is a set of states; each state is one decision among weighted strings that are
// prefix-free within it, and each option names the state that follows it. Reading text therefore
// tells, character by character, which decision is open and which of its options are still
// possible, so the generator's state is a function of the text so far. The decision's options
// form a trie; a trie node's outgoing characters carry the weight of the options below them, which
// gives the exact distribution of the next character given everything before it. Finishing an
// option moves to the root of its next state's trie.

import { charTokenizer } from "./tokenizer.ts";
import { uniform } from "./hash.ts";

export interface GrammarOption {
  text: string;
  weight: number;
  next: string;
}

export interface Grammar {
  start: string;
  states: Record<string, GrammarOption[]>;
}

/** The compiled automaton in flat arrays: node n's edges are edgeStart[n] .. edgeStart[n + 1] - 1. */
export interface CharAutomaton {
  start: number;
  /** The node where each state's decision begins. */
  stateRoot: Map<string, number>;
  nodeCount: number;
  edgeStart: Int32Array;
  edgeToken: Int32Array;
  edgeProbability: Float64Array;
  edgeCumulative: Float64Array;
  edgeTarget: Int32Array;
  /** Entropy in nats of each node's next-token distribution. */
  entropy: Float64Array;
}

interface TrieNode {
  weight: number;
  /** The first option inserted through this node, to name in errors. */
  text: string;
  children: Map<number, TrieNode | Completion>;
}

interface Completion {
  weight: number;
  next: string;
  text: string;
}

function isCompletion(child: TrieNode | Completion): child is Completion {
  return "next" in child;
}

function buildTrie(state: string, options: GrammarOption[], states: Grammar["states"]): TrieNode {
  if (!Array.isArray(options) || options.length === 0) {
    throw new RangeError(`grammar state ${JSON.stringify(state)} has no options`);
  }
  const root: TrieNode = { weight: 0, text: "", children: new Map() };
  for (const { text, weight, next } of options) {
    const where = `grammar state ${JSON.stringify(state)}, option ${JSON.stringify(text)}`;
    if (typeof text !== "string" || text.length === 0) throw new RangeError(`${where}: the text must be a non-empty string`);
    if (!(weight > 0 && Number.isFinite(weight))) throw new RangeError(`${where}: weight must be positive, got ${weight}`);
    if (!(next in states)) throw new RangeError(`${where}: next state ${JSON.stringify(next)} does not exist`);
    let ids: Int32Array;
    try {
      ids = charTokenizer.encode(text);
    } catch (error) {
      throw new RangeError(`${where}: ${(error as Error).message}`);
    }
    let node = root;
    node.weight += weight;
    for (let i = 0; i < ids.length; i++) {
      const child = node.children.get(ids[i]);
      if (i === ids.length - 1) {
        if (child) throw new RangeError(`${where}: not prefix-free, it is a prefix of option ${JSON.stringify(child.text)}`);
        node.children.set(ids[i], { weight, next, text });
      } else if (!child) {
        const inner: TrieNode = { weight, text, children: new Map() };
        node.children.set(ids[i], inner);
        node = inner;
      } else if (isCompletion(child)) {
        throw new RangeError(`${where}: not prefix-free, option ${JSON.stringify(child.text)} is a prefix of it`);
      } else {
        child.weight += weight;
        node = child;
      }
    }
  }
  return root;
}

/** Compiles a grammar; throws naming the state and option that break prefix-freeness or the vocabulary. */
export function compileGrammar(grammar: Grammar): CharAutomaton {
  if (!(grammar.start in grammar.states)) {
    throw new RangeError(`grammar: start state ${JSON.stringify(grammar.start)} does not exist`);
  }
  const names = Object.keys(grammar.states);
  const roots = names.map((name) => buildTrie(name, grammar.states[name], grammar.states));

  // Number the nodes: every state's root first (so a state's root id is its index), then the rest.
  const ids = new Map<TrieNode, number>(roots.map((root, i) => [root, i]));
  const order = [...roots];
  for (let i = 0; i < order.length; i++) {
    for (const child of order[i].children.values()) {
      if (!isCompletion(child)) {
        ids.set(child, order.length);
        order.push(child);
      }
    }
  }
  const rootOf = new Map(names.map((name, i) => [name, i]));

  const edgeCount = order.reduce((sum, node) => sum + node.children.size, 0);
  const automaton: CharAutomaton = {
    start: rootOf.get(grammar.start)!,
    stateRoot: rootOf,
    nodeCount: order.length,
    edgeStart: new Int32Array(order.length + 1),
    edgeToken: new Int32Array(edgeCount),
    edgeProbability: new Float64Array(edgeCount),
    edgeCumulative: new Float64Array(edgeCount),
    edgeTarget: new Int32Array(edgeCount),
    entropy: new Float64Array(order.length),
  };
  let edge = 0;
  order.forEach((node, n) => {
    automaton.edgeStart[n] = edge;
    let cumulative = 0;
    let entropy = 0;
    for (const [token, child] of [...node.children].sort((a, b) => a[0] - b[0])) {
      const probability = child.weight / node.weight;
      cumulative += probability;
      entropy -= probability * Math.log(probability);
      automaton.edgeToken[edge] = token;
      automaton.edgeProbability[edge] = probability;
      automaton.edgeCumulative[edge] = cumulative;
      automaton.edgeTarget[edge] = isCompletion(child) ? rootOf.get(child.next)! : ids.get(child)!;
      edge++;
    }
    automaton.entropy[n] = entropy;
  });
  automaton.edgeStart[order.length] = edge;
  return automaton;
}

/**
 * Samples tokens.length tokens from the start state, one uniform per position from (seed, position).
 * entropies[t] receives the entropy of the distribution tokens[t] was drawn from.
 */
export function sampleTokens(automaton: CharAutomaton, seed: number, tokens: Int32Array, entropies: Float64Array): void {
  const { edgeStart, edgeCumulative, edgeToken, edgeTarget, entropy } = automaton;
  let node = automaton.start;
  for (let t = 0; t < tokens.length; t++) {
    const u = uniform(seed, t);
    const last = edgeStart[node + 1] - 1;
    let edge = edgeStart[node];
    while (edge < last && edgeCumulative[edge] <= u) edge++;
    tokens[t] = edgeToken[edge];
    entropies[t] = entropy[node];
    node = edgeTarget[edge];
  }
}

/**
 * The distribution of tokens[t] given tokens[0 .. t) for every t, read from the start state: an
 * array of tokens.length distributions over the vocabulary. Throws at the first impossible token.
 */
export function nextTokenDistributions(automaton: CharAutomaton, tokens: ArrayLike<number>): Float64Array[] {
  const { edgeStart, edgeToken, edgeProbability, edgeTarget } = automaton;
  const distributions: Float64Array[] = [];
  let node = automaton.start;
  for (let t = 0; t < tokens.length; t++) {
    const distribution = new Float64Array(charTokenizer.vocabSize);
    let next = -1;
    for (let edge = edgeStart[node]; edge < edgeStart[node + 1]; edge++) {
      distribution[edgeToken[edge]] = edgeProbability[edge];
      if (edgeToken[edge] === tokens[t]) next = edgeTarget[edge];
    }
    if (next < 0) {
      throw new RangeError(
        `nextTokenDistributions: token ${tokens[t]} (${JSON.stringify(charTokenizer.characters[tokens[t]] ?? "?")}) ` +
          `at position ${t} is impossible after the text before it`,
      );
    }
    distributions.push(distribution);
    node = next;
  }
  return distributions;
}

/**
 * Exact expected entropies by position: out[t] = E[H(token t | tokens before t)] for a text of
 * `length` tokens from the start state, by propagating the distribution over automaton nodes.
 */
export function expectedEntropies(automaton: CharAutomaton, length: number): Float64Array {
  const { edgeStart, edgeProbability, edgeTarget, entropy, nodeCount } = automaton;
  let occupancy = new Float64Array(nodeCount);
  let following = new Float64Array(nodeCount);
  occupancy[automaton.start] = 1;
  const out = new Float64Array(length);
  for (let t = 0; t < length; t++) {
    following.fill(0);
    let expected = 0;
    for (let n = 0; n < nodeCount; n++) {
      const mass = occupancy[n];
      if (mass === 0) continue;
      expected += mass * entropy[n];
      for (let edge = edgeStart[n]; edge < edgeStart[n + 1]; edge++) {
        following[edgeTarget[edge]] += mass * edgeProbability[edge];
      }
    }
    out[t] = expected;
    [occupancy, following] = [following, occupancy];
  }
  return out;
}
