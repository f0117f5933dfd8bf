// Comm: the collectives of one rank over a group of ranks.
//
//   const world = openWorld(memory, rank);                      // src/comm/world.ts
//   const comm = new Comm(world, { timeoutMs?, links? });       // the world communicator of this rank
//   comm.group([0, 2]), comm.nodeGroup(), comm.crossNodeGroup() // communicators over subsets (global ranks)
//   comm.ledger.toJSON()                                         // this rank's traffic (ledger.ts)
//   comm.alloc(n, "f32"), comm.free(array)                       // arrays in this rank's heap (heap.ts)
//
// Every collective takes a Tensor (f32, f16, i32 or u8, on any device) or a Float32Array |
// Int32Array | Uint8Array | Uint16Array (f16 bits) and returns a new value of the same kind: a
// Tensor is read to the host, moved through the shared channels and uploaded to its own device with
// its dtype; a typed array is never modified. f16 reduces as NCCL's half does, rounding to f16 at
// every combination.
// Collectives whose output is not x's shape (reduce-scatter, all-gather, all-to-all, gather, scatter)
// cut and join Tensors along dimension 0, so their counts (in elements) must be whole rows; default
// splits are equal, the first (rows mod n) ranks taking one row more.
//
// Each call first exchanges descriptors with the other members (descriptor.ts), then moves its data:
// messages up to inlineLimit() bytes travel inside the descriptor envelopes (direct.ts: one round,
// reductions in group order 0..n-1); larger all-reduces, reduce-scatters and all-gather blocks use
// the ring, larger broadcasts and reduces the chain (ring.ts, reductions in ring order). Arrays that
// lie in the world's memory (comm.alloc()) travel by place instead: peers read them where they are
// (direct.ts), so each byte is copied once rather than into a channel slot and out again; an
// all-reduce then reduce-scatters by place and all-gathers its chunks by place. The calls of one
// rank run one after another, in the order they were made.

import { Tensor } from "../tensor/tensor.ts";
import { Ports } from "./channel.ts";
import { resolveLinks } from "./cost_model.ts";
import type { Descriptor, Kind, WireDType } from "./descriptor.ts";
import {
  allGatherDirect,
  bytesOf,
  type Call,
  directAllReduce,
  directBroadcast,
  directReduce,
  directReduceScatter,
  exchangeBlocks,
  exchangeOnly,
  fitsInline,
  largeAllReduce,
  peerReduceScatter,
  recvFrom,
  sendTo,
} from "./direct.ts";
import { Heap, type HeapArray, type HeapDType } from "./heap.ts";
import {
  ARRAYS,
  block,
  checkAllGatherOut,
  checkAllToAllOut,
  checkCounts,
  checkOp,
  checkOut,
  checkReduceScatterOut,
  checkTag,
  type CommData,
  type CommDType,
  dtypeOf,
  isCommData,
  isViewAt,
  newLike,
  sameLengthOutput,
  splitCounts,
  toHost,
  total,
  wrapLike,
} from "./host.ts";
import { type CallInfo, Ledger } from "./ledger.ts";
import type { CommArray, ReduceOp } from "./reduce_kernels.ts";
import { chainBroadcast, chainReduce, chunkLayout, ringAllGather, ringReduceScatter } from "./ring.ts";
import type { CommOptions, OutOptions, ReduceOptions, RootOptions, TagOptions } from "./options.ts";
import type { WaitContext, World } from "./world.ts";

export type { CommArray, CommData, CommDType, CommOptions, OutOptions, ReduceOp, ReduceOptions, RootOptions, TagOptions };

const DEFAULT_TIMEOUT_MS = 60_000;

/** What one rank's communicators share: channels, ledger, the queue that orders calls, the groups. */
interface RankState {
  world: World;
  ports: Ports;
  heap: Heap;
  timeoutMs: number;
  queue: Promise<unknown>;
  groups: Map<string, Comm>;
  sendSeq: number[];
  recvSeq: number[];
}

export class Comm {
  /** Global ranks of this group, in group order. */
  readonly ranks: readonly number[];
  /** This rank's index in the group (-1 when it is not a member). */
  readonly rank: number;
  readonly size: number;
  /** This rank's index in the world. */
  readonly globalRank: number;
  readonly worldSize: number;
  readonly ranksPerNode: number;
  /** The node of this rank: globalRank / ranksPerNode. */
  readonly node: number;
  readonly ledger: Ledger;
  private readonly state: RankState;
  /** The group's ranks joined by commas: the prefix of its calls' ledger ids. */
  private readonly key: string;
  private seq = 0;

  /**
   * The world communicator of `world.rank`, or — with `group` — a communicator over `group.ranks`
   * sharing `group.parent`'s channels and ledger (comm.group() is the usual way to make one).
   */
  constructor(world: World, options: CommOptions = {}, group?: { parent: Comm; ranks: readonly number[] }) {
    if (world.rank < 0) throw new RangeError("Comm: open the world as a rank first (openWorld(buffer, rank))");
    if (group) {
      this.state = group.parent.state;
      this.ledger = group.parent.ledger;
    } else {
      const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
      if (!(timeoutMs > 0)) throw new RangeError(`Comm: timeoutMs must be a positive number, got ${timeoutMs}`);
      this.ledger = new Ledger(world.rank, world.layout.ranksPerNode, resolveLinks(options.links));
      const zeros = () => new Array<number>(world.layout.ranks).fill(0);
      this.state = {
        world,
        ports: new Ports(world, this.ledger),
        heap: new Heap(world),
        timeoutMs,
        queue: Promise.resolve(),
        groups: new Map(),
        sendSeq: zeros(),
        recvSeq: zeros(),
      };
    }
    this.worldSize = world.layout.ranks;
    this.ranksPerNode = world.layout.ranksPerNode;
    this.ranks = group ? [...group.ranks] : Array.from({ length: this.worldSize }, (_, r) => r);
    this.size = this.ranks.length;
    this.key = this.ranks.join(",");
    this.globalRank = world.rank;
    this.rank = this.ranks.indexOf(world.rank);
    this.node = world.nodeOf(world.rank);
  }

  // ---- groups ----

  /** A communicator over the given global ranks (group rank = index in the list); the same list gives the same communicator. */
  group(ranks: readonly number[]): Comm {
    const valid = Array.isArray(ranks) && ranks.length > 0 && new Set(ranks).size === ranks.length &&
      ranks.every((r) => Number.isInteger(r) && r >= 0 && r < this.worldSize);
    if (!valid) {
      throw new RangeError(`group: ranks must be distinct integers in 0..${this.worldSize - 1}, got ${JSON.stringify(ranks)}`);
    }
    const key = ranks.join(",");
    let comm = this.state.groups.get(key);
    if (!comm) {
      comm = new Comm(this.state.world, {}, { parent: this, ranks });
      this.state.groups.set(key, comm);
    }
    return comm;
  }

  /** The ranks of this rank's node. */
  nodeGroup(): Comm {
    const first = this.node * this.ranksPerNode;
    return this.group(Array.from({ length: this.ranksPerNode }, (_, i) => first + i));
  }

  /** The ranks with this rank's local index, one per node. */
  crossNodeGroup(): Comm {
    const local = this.globalRank % this.ranksPerNode;
    return this.group(Array.from({ length: this.worldSize / this.ranksPerNode }, (_, node) => node * this.ranksPerNode + local));
  }

  // ---- the heap ----

  /**
   * A zero-filled array in this rank's heap of the world's memory (launch({ heapBytes })): collectives
   * on arrays that lie there move each byte once, their peers reading them in place.
   */
  alloc<D extends HeapDType = "f32">(length: number, dtype?: D): HeapArray<D> {
    return this.state.heap.alloc(length, dtype ?? "f32") as HeapArray<D>;
  }

  /** Returns an array from alloc() to the heap; a collective still reading it must have returned. */
  free(array: CommArray): void {
    this.state.heap.free(array);
  }

  // ---- collectives ----

  /** The element-wise reduction of x over the group, on every rank. */
  async allReduce<T extends CommData>(x: T, options: ReduceOptions & OutOptions = {}): Promise<T> {
    const op = checkOp("allReduce", options.op, x);
    checkOut("allReduce", x, options.out, (x as CommArray).length, true);
    return await this.collective("allReduce", options, x, () => ({ op }), (call, input) => {
      const output = sameLengthOutput(x, input, options.out);
      if (call.members.length === 1) output.set(input);
      else if (fitsInline(call.ports, input.byteLength)) this.use("direct", () => directAllReduce(call, op, input, output));
      else this.ledger.setAlgorithm(largeAllReduce(call, op, input, output));
      return wrapLike(x, output, "allReduce", true) as T;
    });
  }

  /**
   * This rank's chunk of the element-wise reduction; chunk sizes are `counts` (elements per group
   * rank). `out` may be this rank's own chunk of x (in place).
   */
  async reduceScatter<T extends CommData>(x: T, options: ReduceOptions & OutOptions & { counts?: number[] } = {}): Promise<T> {
    const op = checkOp("reduceScatter", options.op, x);
    checkReduceScatterOut(this.size, this.rank, x, options.out, options.counts);
    return await this.collective(
      "reduceScatter",
      options,
      x,
      (input) => ({ op, counts: splitCounts(this.size, "reduceScatter", x, input!, options.counts, "counts") }),
      (call, input) => {
        const layout = chunkLayout(call.descriptor.counts);
        const output = options.out ?? newLike(input, layout.sizes[call.me]);
        if (call.members.length === 1) output.set(input);
        else if (fitsInline(call.ports, input.byteLength)) {
          this.use(
            "direct",
            () => directReduceScatter(call, op, input, output, layout),
          );
        } else if (peerReduceScatter(call, op, input, output, layout)) this.ledger.setAlgorithm("peer");
        else this.use("ring", () => ringReduceScatter(call, op, input, output, layout.sizes));
        return wrapLike(x, output, "reduceScatter", false) as T;
      },
    );
  }

  /**
   * Every rank's x concatenated in group order; sizes may differ (`counts`, if given, must match them).
   * With `out`, x may be this rank's own block of out (in place).
   */
  async allGather<T extends CommData>(x: T, options: TagOptions & OutOptions & { counts?: number[] } = {}): Promise<T> {
    if (options.counts) checkCounts(this.size, "allGather", options.counts, "counts");
    checkAllGatherOut(this.rank, x, options.out, options.counts);
    return await this.collective(
      "allGather",
      options,
      x,
      () => ({ counts: options.counts ? [...options.counts] : [] }),
      (call, input) => {
        const { output, ringLayout, placed } = allGatherDirect(call, input, options.out);
        const ringed = call.members.length > 1 && ringLayout.sizes.some((size) => size > 0);
        this.ledger.setAlgorithm(call.members.length === 1 ? "local" : ringed ? "ring" : placed ? "peer" : "direct");
        if (ringed) ringAllGather(call, output, ringLayout);
        return wrapLike(x, output, "allGather", false) as T;
      },
    );
  }

  /**
   * Block r of x (by `sendCounts`) goes to group rank r; returns the blocks received, in group
   * order. `out` may be x itself (in place) when every block received is as long as the one sent
   * to the same rank (recvCounts equal to sendCounts); when every member works in place on heap
   * arrays, each pair swaps its two blocks where they lie.
   */
  async allToAll<T extends CommData>(
    x: T,
    options: TagOptions & OutOptions & { sendCounts?: number[]; recvCounts?: number[] } = {},
  ): Promise<T> {
    const { out, recvCounts } = options;
    if (recvCounts) checkCounts(this.size, "allToAll", recvCounts, "recvCounts");
    const inPlace = checkAllToAllOut(this.size, x, out, options.sendCounts, recvCounts);
    const fields = (input: CommArray | null) => ({
      counts: splitCounts(this.size, "allToAll", x, input!, options.sendCounts, "sendCounts"),
      recvCounts: recvCounts ? [...recvCounts] : [],
    });
    return await this.collective("allToAll", options, x, fields, (call, input) => {
      const sent = chunkLayout(call.descriptor.counts);
      let output = input;
      const swapped = exchangeBlocks(call, (r) => r === call.me ? null : bytesOf(block(input, sent, r)), (descriptors) => {
        const received = chunkLayout(descriptors.map((d) => d.counts[call.me]));
        // In place without the swap, peers may still be reading the blocks sent from x: receive apart.
        output = inPlace ? newLike(input, input.length) : out ?? newLike(input, total(received));
        output.set(block(input, sent, call.me), received.offsets[call.me]);
        return descriptors.map((_, r) => r === call.me ? null : bytesOf(block(output, received, r)));
      }, inPlace);
      this.ledger.setAlgorithm(call.members.length === 1 ? "local" : swapped ? "peer" : "direct");
      if (!inPlace) return wrapLike(x, output, "allToAll", false) as T;
      if (!swapped) out!.set(output);
      return out as T;
    });
  }

  /** The root's x on every rank (the others' x give size and type only). */
  async broadcast<T extends CommData>(x: T, options: RootOptions & OutOptions): Promise<T> {
    const root = this.checkRoot("broadcast", options);
    checkOut("broadcast", x, options.out, (x as CommArray).length, true);
    return await this.collective("broadcast", options, x, () => ({ root }), (call, input) => {
      const data = sameLengthOutput(x, input, options.out);
      const algorithm = call.members.length > 1 ? directBroadcast(call, root, input, data) : "local";
      this.ledger.setAlgorithm(algorithm ?? "chain");
      if ((algorithm === "local" || algorithm === null) && call.me === root && !isViewAt(data, input, 0)) data.set(input);
      if (algorithm === null) chainBroadcast(call, root, data);
      return wrapLike(x, data, "broadcast", true) as T;
    });
  }

  /** The element-wise reduction of x over the group on the root; null elsewhere. */
  async reduce<T extends CommData>(x: T, options: RootOptions & { op?: ReduceOp }): Promise<T | null> {
    const root = this.checkRoot("reduce", options);
    const op = checkOp("reduce", options.op, x);
    return await this.collective("reduce", options, x, () => ({ root, op }), (call, input) => {
      const output = call.me === root ? newLike(input, input.length) : input;
      if (call.members.length === 1) output.set(input);
      else if (fitsInline(call.ports, input.byteLength)) this.use("direct", () => directReduce(call, root, op, input, output));
      else this.use("chain", () => (exchangeOnly(call), chainReduce(call, root, op, input, output)));
      return call.me === root ? wrapLike(x, output, "reduce", true) as T : null;
    });
  }

  /** Every rank's x concatenated in group order on the root (sizes may differ); null elsewhere. */
  async gather<T extends CommData>(x: T, options: RootOptions): Promise<T | null> {
    const root = this.checkRoot("gather", options);
    return await this.collective("gather", options, x, () => ({ root }), (call, input) => {
      let output: CommArray | null = null;
      this.ledger.setAlgorithm(call.members.length === 1 ? "local" : "direct");
      exchangeBlocks(call, (r) => r === root && call.me !== root ? bytesOf(input) : null, (descriptors) => {
        if (call.me !== root) return descriptors.map(() => null);
        const layout = chunkLayout(descriptors.map((d) => d.count));
        const gathered = output = newLike(input, total(layout));
        gathered.set(input, layout.offsets[root]);
        return descriptors.map((_, r) => r === root ? null : bytesOf(block(gathered, layout, r)));
      });
      return output ? wrapLike(x, output, "gather", false) as T : null;
    });
  }

  /**
   * Block r of the root's x (by `counts`) goes to group rank r. Other ranks pass null, or a Tensor or
   * typed array whose kind (and device) the result takes.
   */
  async scatter<T extends CommData>(x: T | null, options: RootOptions & { counts?: number[] }): Promise<T> {
    const root = this.checkRoot("scatter", options);
    const isRoot = this.rank === root;
    if (isRoot && x === null) {
      throw new TypeError(`scatter: the root (rank ${this.globalRank}) must pass the values to scatter, got null`);
    }
    if (!isRoot && options.counts) checkCounts(this.size, "scatter", options.counts, "counts");
    const fields = (input: CommArray | null) => ({
      root,
      count: isRoot ? input!.length : -1,
      counts: isRoot
        ? splitCounts(this.size, "scatter", x!, input!, options.counts, "counts")
        : options.counts
        ? [...options.counts]
        : [],
    });
    return await this.collective("scatter", options, x, fields, (call, input) => {
      const layout = isRoot ? chunkLayout(call.descriptor.counts) : null;
      let output: CommArray = new Uint8Array(0);
      this.ledger.setAlgorithm(call.members.length === 1 ? "local" : "direct");
      exchangeBlocks(call, (r) => isRoot && r !== root ? bytesOf(block(input, layout!, r)) : null, (descriptors) => {
        const sender = descriptors[root];
        output = new ARRAYS[sender.dtype as keyof typeof ARRAYS](sender.counts[call.me]);
        if (isRoot) output.set(block(input, layout!, root));
        return descriptors.map((_, r) => !isRoot && r === root ? bytesOf(output) : null);
      });
      return (x === null ? output : wrapLike(x, output, "scatter", false)) as T;
    });
  }

  /** Sends x to group rank `dst`, which must call recv() with the same size, dtype and tag. */
  async send(x: CommData, options: TagOptions & { dst: number }): Promise<void> {
    const dst = this.checkPeer("send", options?.dst, "dst");
    const tag = checkTag("send", options.tag);
    const dtype = dtypeOf("send", x);
    await this.enqueue(async () => {
      const input = await toHost(x);
      const seq = this.state.sendSeq[dst]++;
      const descriptor = this.descriptor("send", seq, tag, dtype, input.length, [this.globalRank, dst]);
      const info = {
        id: `${this.globalRank}>${dst}#${seq}`,
        kind: "send",
        tag,
        group: [this.globalRank, dst],
        dtype,
        elements: input.length,
      };
      this.execute(
        info,
        (context) => this.use("direct", () => sendTo(this.state.ports, dst, descriptor, bytesOf(input), context)),
      );
    });
  }

  /** Receives what group rank `src` sends; the result takes the kind, shape and dtype of `like`. */
  async recv<T extends CommData>(
    like: T | { length: number; dtype: "f32" | "f16" | "i32" | "u8" },
    options: TagOptions & { src: number },
  ): Promise<T> {
    const src = this.checkPeer("recv", options?.src, "src");
    const tag = checkTag("recv", options.tag);
    const template = isCommData(like) ? like : null;
    const shapeOnly = like as { length: number; dtype: "f32" | "f16" | "i32" | "u8" };
    const dtype = template ? dtypeOf("recv", template) : shapeOnly.dtype;
    const length = template ? (template instanceof Tensor ? template.size : template.length) : shapeOnly.length;
    if (!(dtype in ARRAYS) || !Number.isInteger(length) || length < 0) {
      throw new TypeError(
        `recv: like must be a Tensor, a typed array or { length, dtype: "f32" | "f16" | "i32" | "u8" }, got length ${length}, dtype ${dtype}`,
      );
    }
    return await this.enqueue(() => {
      const seq = this.state.recvSeq[src]++;
      const expected = this.descriptor("send", seq, tag, dtype, length, [src, this.globalRank]);
      const output = new ARRAYS[dtype](length);
      const info = {
        id: `${src}>${this.globalRank}#${seq}`,
        kind: "recv",
        tag,
        group: [src, this.globalRank],
        dtype,
        elements: length,
      };
      this.execute(
        info,
        (context) => this.use("direct", () => recvFrom(this.state.ports, src, expected, bytesOf(output), context)),
      );
      return (template ? wrapLike(template, output, "recv", true) : output) as T;
    });
  }

  /** Returns once every member has called barrier(). */
  async barrier(options: TagOptions = {}): Promise<void> {
    await this.collective("barrier", options, null, () => ({}), (call) => {
      if (call.members.length > 1) this.use("direct", () => exchangeOnly(call));
    });
  }

  // ---- plumbing ----

  private collective<R>(
    kind: Kind,
    options: TagOptions,
    x: CommData | null,
    fields: (input: CommArray | null) => Partial<Descriptor>,
    body: (call: Call, input: CommArray) => R,
  ): Promise<R> {
    const tag = checkTag(kind, options.tag);
    if (this.rank < 0) throw new RangeError(`${kind}: rank ${this.globalRank} is not in the group [${this.ranks.join(", ")}]`);
    const dtype = x === null ? "none" : dtypeOf(kind, x);
    return this.enqueue(async () => {
      const input = x === null ? null : await toHost(x);
      const seq = this.seq++;
      const descriptor = { ...this.descriptor(kind, seq, tag, dtype, input?.length ?? -1, this.ranks), ...fields(input) };
      const info = { id: `${this.key}#${seq}`, kind, tag, group: this.ranks, dtype, elements: input?.length ?? 0 };
      return this.execute(
        info,
        (context) => body({ ports: this.state.ports, members: this.ranks, me: this.rank, context, descriptor }, input!),
      );
    });
  }

  private descriptor(
    kind: Kind,
    seq: number,
    tag: string,
    dtype: WireDType,
    count: number,
    group: readonly number[],
  ): Descriptor {
    return { kind, seq, tag, dtype, op: "none", root: -1, count, group, counts: [], recvCounts: [] };
  }

  /** Runs one call inside its ledger record; waits use this communicator's timeout. */
  private execute<R>(info: CallInfo, run: (context: WaitContext) => R): R {
    this.ledger.begin(info);
    try {
      const result = run({ kind: info.kind, tag: info.tag || undefined, timeoutMs: this.state.timeoutMs });
      this.ledger.end();
      return result;
    } catch (error) {
      this.ledger.abandon();
      throw error;
    }
  }

  private use(algorithm: string, run: () => void): void {
    this.ledger.setAlgorithm(algorithm);
    run();
  }

  private enqueue<R>(run: () => R | Promise<R>): Promise<R> {
    const result = this.state.queue.then(run);
    this.state.queue = result.catch(() => {});
    return result;
  }

  private checkRoot(kind: string, options: RootOptions): number {
    return this.checkPeer(kind, options?.root, "root", true);
  }

  /** A group rank named by option `name`, as a group rank (root) or as the peer's global rank (dst, src). */
  private checkPeer(kind: string, value: number, name: string, groupRank = false): number {
    if (!Number.isInteger(value) || value < 0 || value >= this.size) {
      throw new RangeError(`${kind}: ${name} must be a group rank in 0..${this.size - 1}, got ${value}`);
    }
    if (groupRank) return value;
    if (value === this.rank) throw new RangeError(`${kind}: ${name} ${value} is this rank itself`);
    return this.ranks[value];
  }
}
