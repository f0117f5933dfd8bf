// ZeRO stage 3 (DeepSpeed semantics): the parameters themselves live only as partitions.
//
// Each rank keeps its flat partition of every group (one group per layer: embed_tokens, each
// decoder layer, then model.norm with lm_head) on its device; that partition is both the parameter
// storage and AdamW's fp32 master weight, so a rank holds 4 bytes of values, 4 of gradient and 8 of
// exp_avg and exp_avg_sq per element of its partition, about 16·M/dp in all. A layer's full
// parameters exist only while it runs:
//
//   await zero.gather(g, "fwd", label)   all-gather group g (tag zero3.allgather.fwd.<label>); its
//                                        Parameter slots hold full tensors (requiresGrad leaves)
//   … forward …; zero.release(g)         the slots go back to null
//   await zero.gather(g, "bwd", label)   again before the group's backward
//   … backward …
//   await zero.reduceScatterGradients(g, label)   the group's gradients, averaged over dp, added into
//                                        this rank's partition gradient (tag zero3.reducescatter.grads.<label>)
//   zero.release(g)
//   zero.step({ lr, gradScale })         AdamW on the partition in place; the next forward gathers
//
// The slots come from a model built with a factory that allocates each parameter's full initial
// value once (src/nn/parameter.ts seededParameters): the constructor takes this rank's pieces of
// them on the device and frees the full values.

import type { Comm } from "../comm/collectives.ts";
import type { Parameter } from "../nn/parameter.ts";
import type { AdamWOptions, AdamWStepOptions } from "../optim/adamw.ts";
import { keep } from "../tensor/scope.ts";
import { checkGradient, FlatPartition, type GradientWeight, type ZeroMemory } from "./zero.ts";
import { partitionParameters, type ZeroFragment, type ZeroPartition } from "./zero_partition.ts";

const F32 = 4;

export class Zero3Parameters {
  readonly partition: ZeroPartition;
  private readonly flat: FlatPartition;
  /** The Parameter slots of each group, in its flattening order. */
  private readonly slots: Parameter[][];
  private largestGathered = 0;

  /** `parameters`' slots must hold their full values (f32, on one device); they are freed and set to null. */
  constructor(private readonly dp: Comm, parameters: Parameter[], groups: string[][], adamw?: AdamWOptions) {
    this.partition = partitionParameters(parameters.map((slot) => [slot.name, slot.size]), groups, dp.size, dp.rank);
    const byName = new Map(parameters.map((slot) => [slot.name, slot]));
    for (const slot of parameters) {
      if (!slot.value) {
        throw new RangeError(
          `Zero3Parameters: parameter "${slot.name}" holds no value; build the model with a factory that allocates each full value once`,
        );
      }
    }
    const device = parameters[0].value!.device;
    const piece = (f: ZeroFragment) => byName.get(f.name)!.value!.reshape([-1]).slice([f.paramOffset], [f.numel]);
    this.flat = new FlatPartition(device, this.partition, piece, (name) => byName.get(name)!.shape.length >= 2, adamw);
    for (const slot of parameters) {
      slot.value!.dispose();
      slot.value = null;
    }
    this.slots = this.partition.groups.map((group) => group.names.map((name) => byName.get(name)!));
  }

  /** All-gathers group `group` and sets each of its slots' value to a full tensor (a requiresGrad leaf). */
  async gather(group: number, pass: "fwd" | "bwd", label: string): Promise<void> {
    const slots = this.slotsOf(group, "gather");
    if (pass !== "fwd" && pass !== "bwd") {
      throw new RangeError(`Zero3Parameters.gather: pass must be "fwd" or "bwd", got ${JSON.stringify(pass)}`);
    }
    const gathered = slots.filter((slot) => slot.value);
    if (gathered.length > 0) {
      throw new RangeError(
        `Zero3Parameters.gather: group ${group} is already gathered ("${gathered[0].name}" holds a value); release it first`,
      );
    }
    const full = await this.flat.allGatherGroup(this.dp, group, `zero3.allgather.${pass}.${label}`);
    let offset = 0;
    for (const slot of slots) {
      slot.value = keep(this.flat.device.tensor(full.subarray(offset, offset + slot.size), slot.shape, { requiresGrad: true }));
      offset += slot.size;
    }
    this.noteGathered();
  }

  /** Disposes the gathered tensors of group `group` and their gradients; the slots go back to null. */
  release(group: number): void {
    for (const slot of this.slotsOf(group, "release")) {
      slot.value?.grad?.dispose();
      slot.value?.dispose();
      slot.value = null;
    }
  }

  /**
   * After the group's backward: its gradients (zeros for a slot without one), averaged over dp by a
   * reduce-scatter, are added into this rank's partition gradient; the full gradients are freed.
   */
  async reduceScatterGradients(group: number, label: string): Promise<void> {
    const slots = this.slotsOf(group, "reduceScatterGradients");
    for (const slot of slots) {
      if (!slot.value) {
        throw new RangeError(
          `Zero3Parameters.reduceScatterGradients: group ${group} is not gathered ("${slot.name}" holds no value)`,
        );
      }
      if (slot.value.grad) checkGradient("Zero3Parameters.reduceScatterGradients", slot.name, slot.shape, slot.value.grad);
    }
    this.noteGathered();
    const flat = new Float32Array(this.partition.groups[group].paddedNumel);
    const params = slots.map((slot) => ({ size: slot.size, grad: slot.value!.grad }));
    await this.flat.reduceScatterGradients(this.dp, group, params, `zero3.reducescatter.grads.${label}`, flat);
    for (const slot of slots) {
      slot.value!.grad?.dispose();
      slot.value!.grad = null;
    }
  }

  /** Σ g² over this rank's partition gradient (all-reduce it over dp for the global norm), weighted as ZeroOptimizer's. */
  async partitionGradSquares(weight?: GradientWeight): Promise<number> {
    return await this.flat.gradSquares(weight);
  }

  /** AdamW on the partition, in place. No all-gather: the next forward gathers. */
  step(options: AdamWStepOptions): void {
    this.flat.step(options);
  }

  /** Frees the partition gradient. */
  zeroGrad(): void {
    this.flat.zeroGrad();
  }

  memory(): ZeroMemory {
    const { values, gradients, moments } = this.flat.bytes();
    return { parameters: values, gradients, optimizer: moments, gathered: this.largestGathered };
  }

  /** The full value of every parameter by name, all-gathered to the host (tag zero3.allgather.consolidate). */
  async consolidated(): Promise<Map<string, Float32Array>> {
    const values = new Map<string, Float32Array>();
    for (const [g, slots] of this.slots.entries()) {
      const full = await this.flat.allGatherGroup(this.dp, g, "zero3.allgather.consolidate");
      let offset = 0;
      for (const slot of slots) {
        values.set(slot.name, full.slice(offset, offset + slot.size));
        offset += slot.size;
      }
    }
    return values;
  }

  /** Frees the partition, its state and any gathered group. */
  dispose(): void {
    this.slots.forEach((_, g) => this.release(g));
    this.flat.dispose();
  }

  private slotsOf(group: number, method: string): Parameter[] {
    if (!Number.isInteger(group) || group < 0 || group >= this.slots.length) {
      throw new RangeError(`Zero3Parameters.${method}: group must be an integer in 0..${this.slots.length - 1}, got ${group}`);
    }
    return this.slots[group];
  }

  /** Tracks the largest working copy: every gathered value and gradient held right now. */
  private noteGathered(): void {
    let bytes = 0;
    for (const slot of this.slots.flat()) bytes += F32 * ((slot.value?.size ?? 0) + (slot.value?.grad?.size ?? 0));
    this.largestGathered = Math.max(this.largestGathered, bytes);
  }
}
