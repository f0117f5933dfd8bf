// ZeRO partitions: where each rank's share of the parameters lies, as DeepSpeed lays out its flat
// parameter groups.
//
// The parameters are grouped (ZeRO-1/2: one group of every parameter in model order; ZeRO-3: one
// group per layer). Each group is flattened in order, padded with zeros to a multiple of dp and cut
// into dp equal parts; dp rank p holds part p of every group, and its flat partition is those parts
// one after another. Every rank's partition has the same number of elements.
//
//   group 0:  [ a a a a a b b b b c c | pad ]   dp = 3, parts of 4 elements
//              └ rank 0 ┘└ rank 1 ┘└ rank 2 ┘
//
// The fragments say, for every parameter with a piece on this rank, where the piece starts in the
// rank's flat partition and which element of the parameter it begins at. They are plain JSON: the
// fragment map a checkpoint stores next to the partition.

export interface ZeroFragment {
  name: string;
  group: number;
  /** Where the piece begins in this rank's flat partition. */
  start: number;
  numel: number;
  /** The parameter's element (flat, row-major) the piece begins at. */
  paramOffset: number;
}

export interface ZeroGroup {
  names: string[];
  sizes: number[];
  /** Elements of the group's parameters together. */
  numel: number;
  /** numel rounded up to a multiple of dp. */
  paddedNumel: number;
  /** Where this group's part begins in the rank's flat partition. */
  partStart: number;
  /** paddedNumel / dp. */
  partNumel: number;
}

export interface ZeroPartition {
  dp: number;
  dpRank: number;
  groups: ZeroGroup[];
  /** Elements of this rank's flat partition (the same on every rank). */
  numel: number;
  /** For every parameter with a piece on this rank: where it lies. Plain JSON (a checkpoint fragment map). */
  fragments: ZeroFragment[];
}

/** A stretch of one group's part, in order: a parameter's piece, or padding (fragment null). */
export interface ZeroPiece {
  /** Where the stretch begins within the group's part. */
  at: number;
  numel: number;
  fragment: ZeroFragment | null;
}

/**
 * The flat partition of dp rank `dpRank` for the parameters `params` ([name, numel] in model order)
 * grouped as `groups` (every parameter in exactly one group; a group's order is its flattening order).
 */
export function partitionParameters(
  params: readonly (readonly [string, number])[],
  groups: readonly string[][],
  dp: number,
  dpRank: number,
): ZeroPartition {
  if (!Number.isInteger(dp) || dp < 1) throw new RangeError(`zero: dp must be an integer ≥ 1, got ${dp}`);
  if (!Number.isInteger(dpRank) || dpRank < 0 || dpRank >= dp) {
    throw new RangeError(`zero: dpRank must be an integer in 0..${dp - 1}, got ${dpRank}`);
  }
  const sizes = checkParams(params);
  checkGroups(sizes, groups);

  const partition: ZeroPartition = { dp, dpRank, groups: [], numel: 0, fragments: [] };
  groups.forEach((names, group) => {
    const groupSizes = names.map((name) => sizes.get(name)!);
    const numel = groupSizes.reduce((a, b) => a + b, 0);
    const paddedNumel = Math.ceil(numel / dp) * dp;
    const partNumel = paddedNumel / dp;
    const partStart = partition.numel;
    partition.groups.push({ names: [...names], sizes: groupSizes, numel, paddedNumel, partStart, partNumel });
    partition.numel += partNumel;

    // This rank's part covers [lo, hi) of the group's flat elements.
    const lo = dpRank * partNumel;
    const hi = lo + partNumel;
    let offset = 0;
    names.forEach((name, i) => {
      const begin = Math.max(offset, lo);
      const end = Math.min(offset + groupSizes[i], hi);
      if (end > begin) {
        partition.fragments.push({ name, group, start: partStart + begin - lo, numel: end - begin, paramOffset: begin - offset });
      }
      offset += groupSizes[i];
    });
  });
  return partition;
}

/** Group `group`'s part on this rank as consecutive stretches: parameter pieces, then any padding. */
export function groupPieces(partition: ZeroPartition, group: number): ZeroPiece[] {
  const { partStart, partNumel } = partition.groups[group];
  const pieces: ZeroPiece[] = partition.fragments
    .filter((fragment) => fragment.group === group)
    .map((fragment) => ({ at: fragment.start - partStart, numel: fragment.numel, fragment }));
  const filled = pieces.length > 0 ? pieces.at(-1)!.at + pieces.at(-1)!.numel : 0;
  if (filled < partNumel) pieces.push({ at: filled, numel: partNumel - filled, fragment: null });
  return pieces;
}

function checkParams(params: readonly (readonly [string, number])[]): Map<string, number> {
  if (params.length === 0) throw new RangeError("zero: got an empty parameter list");
  const sizes = new Map<string, number>();
  for (const [name, numel] of params) {
    if (sizes.has(name)) throw new RangeError(`zero: parameter name "${name}" appears more than once`);
    if (!Number.isInteger(numel) || numel < 0) {
      throw new RangeError(`zero: parameter "${name}" has ${numel} elements; expected an integer ≥ 0`);
    }
    sizes.set(name, numel);
  }
  return sizes;
}

/** Every group non-empty, every name a known parameter, every parameter in exactly one group. */
function checkGroups(sizes: Map<string, number>, groups: readonly string[][]): void {
  if (!Array.isArray(groups) || groups.length === 0) {
    throw new RangeError("zero: groups must list at least one group of parameter names");
  }
  const groupOf = new Map<string, number>();
  groups.forEach((names, group) => {
    if (!Array.isArray(names) || names.length === 0) {
      throw new RangeError(`zero: group ${group} is empty; every group needs at least one parameter`);
    }
    for (const name of names) {
      if (!sizes.has(name)) {
        const known = [...sizes.keys()];
        const shown = known.length > 8 ? `${known.slice(0, 8).join(", ")}, … (${known.length} in all)` : known.join(", ");
        throw new RangeError(`zero: group ${group} names "${name}", which is not a parameter (parameters: ${shown})`);
      }
      const earlier = groupOf.get(name);
      if (earlier !== undefined) {
        throw new RangeError(
          `zero: parameter "${name}" appears more than once in the groups (group ${earlier} and group ${group})`,
        );
      }
      groupOf.set(name, group);
    }
  });
  const missing = [...sizes.keys()].filter((name) => !groupOf.has(name));
  if (missing.length > 0) {
    throw new RangeError(
      `zero: the groups miss parameter${missing.length > 1 ? "s" : ""} ${missing.map((n) => `"${n}"`).join(", ")}`,
    );
  }
}
