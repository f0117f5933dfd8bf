// ZeRO partitions: where each rank's share of the parameters lies, as DeepSpeed lays out its flat
// parameter groups.
//
// The parameters are taken in flat groups (ZeRO-1/2: one flat group of every parameter in model
// order; ZeRO-3: one per model block). Each flat group is flattened in order, padded with zeros to
// a multiple of the data group's size and cut into equal parts; the rank of index p in the data
// group holds part p of every flat group, and its partition is those parts one after another.
// Every rank's partition has the same number of elements.
//
//   flat group 0:  [ a a a a a b b b b c c | pad ]   3 ranks, parts of 4 elements
//                   └ rank 0 ┘└ rank 1 ┘└ rank 2 ┘
//
// A fragment is a parameter's stretch of a partition: where it lies in the partition and which
// element of the parameter it begins at (the fragment map, fragment_map.ts, cuts them further where
// sub-parameters meet and adds their replicas).

/** Parameters flattened together and partitioned as one: ZeRO-1/2's whole model, or one of ZeRO-3's blocks. */
export interface FlatGroup {
  names: string[];
  sizes: number[];
  /** Elements of the flat group's parameters together. */
  numel: number;
  /** numel rounded up to a multiple of the data group's size. */
  paddedNumel: number;
  /** Where this rank's part of the flat group begins in its partition. */
  start: number;
  /** paddedNumel / data group size: the elements of every rank's part. */
  partNumel: number;
}

/** Where a fragment lies: a parameter's stretch of a rank's flat state. */
export interface FragmentPlace {
  name: string;
  /** Where the fragment begins in the flat state. */
  start: number;
  numel: number;
  /** The element of the parameter (the rank's shard of it; flat, row-major) the fragment begins at. */
  shardOffset: number;
}

export interface Partition {
  groups: FlatGroup[];
  /** Elements of the partition (the same on every rank). */
  numel: number;
  fragments: FragmentPlace[];
  /** Stretches of the partition that hold no parameter (zeros), as [start, numel]. */
  padding: [number, number][];
}

/**
 * The partition of the rank of index `dataRank` in a data group of `dataSize` ranks, for the
 * parameters `params` ([name, numel] in model order) taken in flat groups `groups` (every
 * parameter in exactly one; a flat group's order is its flattening order).
 */
export function partitionParameters(
  params: readonly (readonly [string, number])[],
  groups: readonly string[][],
  dataSize: number,
  dataRank: number,
): Partition {
  if (!Number.isInteger(dataSize) || dataSize < 1) {
    throw new RangeError(`zero: the data group size must be an integer ≥ 1, got ${dataSize}`);
  }
  if (!Number.isInteger(dataRank) || dataRank < 0 || dataRank >= dataSize) {
    throw new RangeError(`zero: the data rank must be an integer in 0..${dataSize - 1}, got ${dataRank}`);
  }
  const sizes = checkParams(params);
  checkGroups(sizes, groups);

  const partition: Partition = { groups: [], numel: 0, fragments: [], padding: [] };
  for (const names of groups) {
    const groupSizes = names.map((name) => sizes.get(name)!);
    const numel = groupSizes.reduce((a, b) => a + b, 0);
    const paddedNumel = Math.ceil(numel / dataSize) * dataSize;
    const partNumel = paddedNumel / dataSize;
    const start = partition.numel;
    partition.groups.push({ names: [...names], sizes: groupSizes, numel, paddedNumel, start, partNumel });
    partition.numel += partNumel;

    // This rank's part covers [lo, hi) of the flat group's elements; beyond numel lies padding.
    const lo = dataRank * partNumel;
    const hi = lo + partNumel;
    let offset = 0;
    names.forEach((name, i) => {
      const begin = Math.max(offset, lo);
      const end = Math.min(offset + groupSizes[i], hi);
      if (end > begin) {
        partition.fragments.push({ name, start: start + begin - lo, numel: end - begin, shardOffset: begin - offset });
      }
      offset += groupSizes[i];
    });
    const padFrom = Math.max(numel, lo);
    if (padFrom < hi) partition.padding.push([start + padFrom - lo, hi - padFrom]);
  }
  return partition;
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

/** Every flat group non-empty, every name a known parameter, every parameter in exactly one flat group. */
function checkGroups(sizes: Map<string, number>, groups: readonly string[][]): void {
  if (!Array.isArray(groups) || groups.length === 0) {
    throw new RangeError("zero: groups must list at least one flat group of parameter names");
  }
  const groupOf = new Map<string, number>();
  groups.forEach((names, group) => {
    if (!Array.isArray(names) || names.length === 0) {
      throw new RangeError(`zero: flat group ${group} is empty; every flat group needs at least one parameter`);
    }
    for (const name of names) {
      if (!sizes.has(name)) {
        const known = [...sizes.keys()];
        const shown = known.length > 8 ? `${known.slice(0, 8).join(", ")}, … (${known.length} in all)` : known.join(", ");
        throw new RangeError(`zero: flat group ${group} names "${name}", which is not a parameter (parameters: ${shown})`);
      }
      const earlier = groupOf.get(name);
      if (earlier !== undefined) {
        throw new RangeError(
          `zero: parameter "${name}" appears more than once in the flat groups (flat group ${earlier} and flat group ${group})`,
        );
      }
      groupOf.set(name, group);
    }
  });
  const missing = [...sizes.keys()].filter((name) => !groupOf.has(name));
  if (missing.length > 0) {
    throw new RangeError(
      `zero: the flat groups miss parameter${missing.length > 1 ? "s" : ""} ${missing.map((n) => `"${n}"`).join(", ")}`,
    );
  }
}
