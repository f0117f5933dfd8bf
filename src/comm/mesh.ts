// The device mesh: every process group of a parallel layout derived from one grid.
//
// The ranks of a communicator are laid out as a [pp, dp, sp, tp] grid with tp varying fastest:
//   rank = ((pp_i · dp + dp_i) · sp + sp_i) · tp + tp_i
// so tensor-parallel peers are neighbours (on one node when tp ≤ ranksPerNode), as in Megatron.
// The group of an axis holds the ranks that differ from this rank only along that axis; a group
// spanning several axes (dp × sp, the ranks that see other tokens with the same weights under
// sequence parallelism) holds those that differ only along them.

import type { Comm } from "./collectives.ts";

export const MESH_AXES = ["pp", "dp", "sp", "tp"] as const;
export type MeshAxis = typeof MESH_AXES[number];

export type MeshSizes = Record<MeshAxis, number>;

export interface Mesh {
  /** The communicator over each axis' group of this rank. */
  dp: Comm;
  tp: Comm;
  sp: Comm;
  pp: Comm;
  /** This rank's coordinates in the grid. */
  coords: MeshSizes;
  sizes: MeshSizes;
  /** The communicator over the ranks that differ from this rank only along `axes`, in rank order. */
  spanning(axes: readonly MeshAxis[]): Comm;
}

/** Derives the dp, tp, sp and pp groups of `comm`'s rank; axes not given have size 1. */
export function mesh(comm: Comm, sizes: Partial<MeshSizes>): Mesh {
  const full = {} as MeshSizes;
  for (const axis of MESH_AXES) {
    const size = sizes[axis] ?? 1;
    if (!Number.isInteger(size) || size < 1) throw new RangeError(`mesh: ${axis} must be an integer >= 1, got ${size}`);
    full[axis] = size;
  }
  const product = MESH_AXES.reduce((p, axis) => p * full[axis], 1);
  if (product !== comm.size) {
    const factors = MESH_AXES.map((axis) => `${axis} ${full[axis]}`).join(" × ");
    throw new RangeError(`mesh: ${factors} = ${product} ranks, but the communicator has ${comm.size}`);
  }
  if (comm.rank < 0) throw new RangeError(`mesh: rank ${comm.globalRank} is not in the communicator [${comm.ranks.join(", ")}]`);

  const coords = meshCoords(comm.rank, full);
  const spanning = (axes: readonly MeshAxis[]) =>
    comm.group(comm.ranks.filter((_, r) => {
      const other = meshCoords(r, full);
      return MESH_AXES.every((axis) => axes.includes(axis) || other[axis] === coords[axis]);
    }));
  return {
    dp: spanning(["dp"]),
    tp: spanning(["tp"]),
    sp: spanning(["sp"]),
    pp: spanning(["pp"]),
    coords,
    sizes: full,
    spanning,
  };
}

/** The coordinates of `rank` in the [pp, dp, sp, tp] grid of `sizes`, tp varying fastest. */
export function meshCoords(rank: number, sizes: MeshSizes): MeshSizes {
  const coords = {} as MeshSizes;
  let rest = rank;
  for (const axis of [...MESH_AXES].reverse()) {
    coords[axis] = rest % sizes[axis];
    rest = Math.floor(rest / sizes[axis]);
  }
  return coords;
}
