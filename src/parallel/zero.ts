// ZeRO stages 1 and 2 (DeepSpeed semantics) over a dp group, and the flat partition state every
// stage keeps on the device.
//
// Every rank holds the whole model, trains its share of the batch and runs backward as in DDP. The
// optimizer state is partitioned (zero_partition.ts): each rank keeps an fp32 master copy of its
// flat partition with AdamW's exp_avg and exp_avg_sq, 12 bytes per element of the partition
// instead of 12 per parameter. After backward, the flat gradient is reduce-scattered (avg, tag
// zero{stage}.reducescatter.grads): each rank receives its partition's averaged gradient. step()
// runs AdamW on the partition, then all-gathers the updated partitions (tag
// zero{stage}.allgather.params) into every parameter: Ψ + Ψ per step, DDP's volume (the ZeRO
// paper's point). The stages differ in gradient memory: stage 1 keeps every parameter's full .grad
// until zeroGrad() (DeepSpeed stage 1 does not partition gradients), stage 2 frees them as soon as
// they are reduced.
//
// The partition on the device (FlatPartition) is kept as one tensor per group and decay class, so
// that the fused AdamW kernel runs on a whole class at once: the pieces of parameters with two or
// more dimensions (decayed) in one tensor shaped [1, n], the pieces of one-dimensional parameters
// and the padding in another shaped [n]. src/optim/adamw.ts decays exactly the tensors with two or
// more dimensions, so stepping these tensors with it is, element for element, the update it gives
// the parameters themselves; padding has zero values and gradients and stays zero.
//
// Gradients and parameters move through the host: collectives read tensors back anyway, so each
// gradient is read once into the group's flat host array, and each updated parameter is uploaded
// once and copied into the parameter's own memory (the model keeps its tensors).

import type { Comm } from "../comm/collectives.ts";
import { AdamW, type AdamWOptions, type AdamWStepOptions } from "../optim/adamw.ts";
import { type WeightedRun, weightedSquareSum } from "../optim/clip.ts";
import { noGrad } from "../tensor/autograd.ts";
import type { Device } from "../tensor/device.ts";
import { ShapeError } from "../tensor/errors.ts";
import { concat } from "../tensor/ops/layout.ts";
import { keep, tidy } from "../tensor/scope.ts";
import { formatShape, sameShape } from "../tensor/shape.ts";
import type { Tensor } from "../tensor/tensor.ts";
import { groupPieces, partitionParameters, type ZeroFragment, type ZeroPartition, type ZeroPiece } from "./zero_partition.ts";

export type ZeroStage = 1 | 2 | 3;

/** Bytes held on this rank's device, by kind. */
export interface ZeroMemory {
  parameters: number;
  gradients: number;
  optimizer: number;
  /** The largest stage-3 working copy held at once (gathered parameters and their gradients); 0 for stages 1 and 2. */
  gathered: number;
}

const F32 = 4;

/** One decay class of one group's part: its pieces, in order, concatenated into `master`. */
interface Slab {
  group: number;
  pieces: ZeroPiece[];
  master: Tensor;
}

/**
 * This rank's flat partition on its device, as one master tensor per group and decay class, with
 * AdamW state for each and an optional gradient (the master's .grad). Shared by ZeroOptimizer and
 * Zero3Parameters (zero3.ts).
 */
export class FlatPartition {
  private readonly slabs: Slab[] = [];
  private readonly optimizer: AdamW;

  /**
   * `piece(fragment)` gives the values of a parameter's piece as a tensor of fragment.numel
   * elements; `decays(name)` says whether that parameter is weight-decayed.
   */
  constructor(
    readonly device: Device,
    readonly partition: ZeroPartition,
    piece: (fragment: ZeroFragment) => Tensor,
    decays: (name: string) => boolean,
    adamw: AdamWOptions = {},
  ) {
    const named: [string, Tensor][] = [];
    partition.groups.forEach((_, group) => {
      const pieces = groupPieces(partition, group);
      const decayed = pieces.filter(({ fragment }) => fragment && decays(fragment.name));
      const plain = pieces.filter((p) => !decayed.includes(p));
      for (const [kind, members] of [["decay", decayed], ["no_decay", plain]] as const) {
        if (members.length === 0) continue;
        const numel = members.reduce((sum, p) => sum + p.numel, 0);
        const master = keep(noGrad(() =>
          tidy(() => {
            const values = concat(members.map((p) => p.fragment ? piece(p.fragment) : device.zeros([p.numel])), 0);
            return values.reshape(kind === "decay" ? [1, numel] : [numel]);
          })
        ));
        this.slabs.push({ group, pieces: members, master });
        named.push([`group${group}.${kind}`, master]);
      }
    });
    this.optimizer = new AdamW(named, adamw);
  }

  /** Adds the gradient of group `group`'s part (a host array of its partNumel elements) to the partition's gradient. */
  private addGradient(group: number, part: Float32Array): void {
    for (const slab of this.slabsOf(group)) {
      const values = new Float32Array(slab.master.size);
      let at = 0;
      for (const piece of slab.pieces) {
        values.set(part.subarray(piece.at, piece.at + piece.numel), at);
        at += piece.numel;
      }
      slab.master.accumulateGrad(this.device.tensor(values, slab.master.shape));
    }
  }

  /**
   * The master values of group `group`, all-gathered over `dp` (tag `tag`): the whole padded flat
   * group, written into `out` when given.
   */
  async allGatherGroup(dp: Comm, group: number, tag: string, out?: Float32Array): Promise<Float32Array> {
    const part = new Float32Array(this.partition.groups[group].partNumel);
    const slabs = this.slabsOf(group);
    const values = await Promise.all(slabs.map((slab) => slab.master.read()));
    slabs.forEach((slab, i) => {
      let at = 0;
      for (const piece of slab.pieces) {
        part.set(values[i].subarray(at, at + piece.numel), piece.at);
        at += piece.numel;
      }
    });
    return await dp.allGather(part, { tag, counts: this.counts(dp, group), out });
  }

  /**
   * Reduce-scatters (avg over `dp`, tag `tag`) the gradients of group `group`'s parameters, given
   * in the group's order (a missing gradient counts as zeros), through the host array `flat` of the
   * padded group, and adds this rank's part to the partition's gradient.
   */
  async reduceScatterGradients(
    dp: Comm,
    group: number,
    params: readonly { size: number; grad: Tensor | null }[],
    tag: string,
    flat: Float32Array,
  ): Promise<void> {
    const grads = await Promise.all(params.map(({ grad }) => grad?.read() ?? null));
    let offset = 0;
    params.forEach(({ size }, i) => {
      if (grads[i]) flat.set(grads[i] as Float32Array, offset);
      else flat.fill(0, offset, offset + size);
      offset += size;
    });
    flat.fill(0, offset);
    this.addGradient(group, await dp.reduceScatter(flat, { op: "avg", tag, counts: this.counts(dp, group) }));
  }

  /**
   * Σ g² over the partition's gradient (0 where there is none), each element weighted as
   * `weight` says of its parameter; summed on the device and read back once.
   */
  async gradSquares(weight: GradientWeight = () => 1): Promise<number> {
    const parts = this.slabs.flatMap((
      slab,
    ) => (slab.master.grad ? [{ grad: slab.master.grad, runs: weightedRuns(slab.pieces, weight) }] : []));
    return await weightedSquareSum(parts);
  }

  /** AdamW on every class of the partition that has a gradient. */
  step(options: AdamWStepOptions): void {
    this.optimizer.step(options);
  }

  zeroGrad(): void {
    this.optimizer.zeroGrad();
  }

  /** Bytes of the master values, of the gradient, and of exp_avg with exp_avg_sq. */
  bytes(): { values: number; gradients: number; moments: number } {
    const values = this.slabs.reduce((sum, slab) => sum + F32 * slab.master.size, 0);
    const gradients = this.slabs.reduce((sum, slab) => sum + F32 * (slab.master.grad?.size ?? 0), 0);
    return { values, gradients, moments: 2 * values };
  }

  dispose(): void {
    this.optimizer.zeroGrad();
    this.optimizer.dispose();
    for (const slab of this.slabs) slab.master.dispose();
  }

  /** Equal parts: every rank holds partNumel elements of each group. */
  private counts(dp: Comm, group: number): number[] {
    return new Array<number>(dp.size).fill(this.partition.groups[group].partNumel);
  }

  private slabsOf(group: number): Slab[] {
    return this.slabs.filter((slab) => slab.group === group);
  }
}

/**
 * How much each element of a parameter's gradient counts in a weighted Σ g²: one weight for the
 * whole parameter, or weights for consecutive ranges of its flattened elements (covering it).
 */
export type GradientWeight = (name: string) => number | WeightedRun[];

/** A slab's pieces cut into runs of equal weight (padding, whose gradient is zero, joins the run before it). */
function weightedRuns(pieces: readonly ZeroPiece[], weight: GradientWeight): WeightedRun[] {
  const runs: WeightedRun[] = [];
  const push = (at: number, numel: number, w: number, name: string) => {
    if (!(Number.isFinite(w) && w >= 0)) {
      throw new RangeError(`zero: the gradient weight of "${name}" must be a finite number ≥ 0, got ${w}`);
    }
    const last = runs.at(-1);
    if (last && last.weight === w) last.numel += numel;
    else runs.push({ start: at, numel, weight: w });
  };
  let at = 0;
  for (const piece of pieces) {
    const fragment = piece.fragment;
    const w = fragment ? weight(fragment.name) : runs.at(-1)?.weight ?? 1;
    if (typeof w === "number") {
      push(at, piece.numel, w, fragment?.name ?? "padding");
    } else {
      // The piece holds elements [paramOffset, paramOffset + numel) of its parameter: take each range's overlap.
      const [lo, hi] = [fragment!.paramOffset, fragment!.paramOffset + piece.numel];
      for (const range of w) {
        const [from, to] = [Math.max(lo, range.start), Math.min(hi, range.start + range.numel)];
        if (from < to) push(at + from - lo, to - from, range.weight, fragment!.name);
      }
    }
    at += piece.numel;
  }
  return runs;
}

/** Checks `grad` against its parameter's shape, naming both. */
export function checkGradient(where: string, name: string, shape: readonly number[], grad: Tensor): void {
  if (!sameShape(grad.shape, shape)) {
    throw new ShapeError(
      `${where}: the gradient of "${name}" has shape ${formatShape(grad.shape)}, the parameter ${formatShape(shape)}`,
    );
  }
}

/** ZeRO-1 or ZeRO-2 AdamW for one rank of the dp group `dp`, over the rank's full parameters. */
export class ZeroOptimizer {
  readonly partition: ZeroPartition;
  readonly stage: 1 | 2;
  private readonly flat: FlatPartition;
  private readonly params: Map<string, Tensor>;
  /** Per group: a reused host array of its padded flat values (gradients, then parameters). */
  private readonly buffers: Float32Array[];

  constructor(
    private readonly dp: Comm,
    named: [string, Tensor][],
    options: { stage: ZeroStage; groups: string[][]; adamw?: AdamWOptions },
  ) {
    if (options.stage !== 1 && options.stage !== 2) {
      throw new RangeError(
        `ZeroOptimizer: stage must be 1 or 2 (stage 3 partitions the parameters themselves: Zero3Parameters), got ${options.stage}`,
      );
    }
    this.stage = options.stage;
    this.partition = partitionParameters(named.map(([name, t]) => [name, t.size]), options.groups, dp.size, dp.rank);
    this.params = new Map(named);
    const device = named[0][1].device;
    for (const [name, t] of named) {
      if (t.device !== device) {
        throw new RangeError(`ZeroOptimizer: parameter "${name}" lives on another device than "${named[0][0]}"`);
      }
    }
    const piece = (f: ZeroFragment) => this.params.get(f.name)!.reshape([-1]).slice([f.paramOffset], [f.numel]);
    this.flat = new FlatPartition(
      device,
      this.partition,
      piece,
      (name) => this.params.get(name)!.shape.length >= 2,
      options.adamw,
    );
    this.buffers = this.partition.groups.map((group) => new Float32Array(group.paddedNumel));
  }

  /**
   * After backward, with every parameter's .grad holding this rank's gradient (of its mean loss):
   * reduce-scatters the average over dp into this rank's partition. Stage 1 leaves the full .grads
   * in place (its gradient memory is not partitioned), stage 2 frees them. A parameter without a
   * gradient counts as zeros.
   */
  async reduceGradients(): Promise<void> {
    const where = `zero${this.stage}.reduceGradients`;
    for (const [name, param] of this.params) if (param.grad) checkGradient(where, name, param.shape, param.grad);
    for (const [g, group] of this.partition.groups.entries()) {
      const params = group.names.map((name) => this.params.get(name)!);
      await this.flat.reduceScatterGradients(this.dp, g, params, `zero${this.stage}.reducescatter.grads`, this.buffers[g]);
      if (this.stage === 2) {
        for (const param of params) {
          param.grad?.dispose();
          param.grad = null;
        }
      }
    }
  }

  /**
   * Σ g² over this rank's partition of the averaged gradient (all-reduce it over dp for the global
   * norm); `weight`, if given, scales each parameter's elements (e.g. 1/replicas for a piece that
   * several tensor-parallel ranks hold alike).
   */
  async partitionGradSquares(weight?: GradientWeight): Promise<number> {
    return await this.flat.gradSquares(weight);
  }

  /** AdamW on the partition, then every parameter takes the all-gathered updated values. */
  async step(options: AdamWStepOptions): Promise<void> {
    this.flat.step(options);
    for (const [g, group] of this.partition.groups.entries()) {
      const flat = await this.flat.allGatherGroup(this.dp, g, `zero${this.stage}.allgather.params`, this.buffers[g]);
      let offset = 0;
      for (const name of group.names) {
        const param = this.params.get(name)!;
        overwrite(param, flat.subarray(offset, offset + param.size));
        offset += param.size;
      }
    }
  }

  /** Frees the parameters' gradients and the partition's. */
  zeroGrad(): void {
    for (const param of this.params.values()) {
      param.grad?.dispose();
      param.grad = null;
    }
    this.flat.zeroGrad();
  }

  memory(): ZeroMemory {
    const { values, gradients, moments } = this.flat.bytes();
    let parameters = 0;
    let full = 0;
    for (const param of this.params.values()) {
      parameters += F32 * param.size;
      full += F32 * (param.grad?.size ?? 0);
    }
    return { parameters, gradients: full + gradients, optimizer: values + moments, gathered: 0 };
  }

  /** Frees the partition and its optimizer state; the parameters and their gradients are left alone. */
  dispose(): void {
    this.flat.dispose();
  }
}

/** Writes `values` into the parameter's own memory, so every holder of the tensor sees them. */
function overwrite(param: Tensor, values: Float32Array): void {
  const source = param.device.tensor(values, param.shape);
  const copy = { shape: [param.size], srcOffset: 0, srcStrides: [1], dstOffset: 0, dstStrides: [1] };
  param.device.backend.copyStrided(source.storageFor("zero.step"), param.storageFor("zero.step"), copy, "f32");
  source.dispose();
}
