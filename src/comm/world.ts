// The world: one shared WebAssembly.Memory that every rank of a launched world maps. Its buffer is a
// SharedArrayBuffer for Atomics and typed arrays; being a WebAssembly memory as well, it lets the
// ranks' reductions run as WASM SIMD over data that lives in it (simd_reduce.ts).
//
// Layout (all offsets in bytes):
//   [0, controlBytes)   Int32 control words for Atomics:
//                         header: magic, ranks, ranksPerNode, slots, slotBytes, abort rank + 1, abort reason,
//                         heapBytes
//                         one 64-byte block per ordered pair (src → dst): head (slots written by src),
//                         tail (slots consumed by dst); the two counters of a pair never share a block
//                         with another pair
//   [controlBytes, …)   channels: one per ordered pair src ≠ dst, `slots` slots of `slotBytes` each
//   [heapStart, …)      heaps: `heapBytes` per rank, rank r's at heapStart + r·heapBytes, where the
//                       rank allocates the arrays its peers read directly (heap.ts)
// The whole is rounded up to WebAssembly pages (64 KiB).
//
// The launching side calls createWorld(); each rank calls openWorld(memory, rank). abort() only
// stores and notifies, so the launcher's main thread may call it; every wait on every rank then throws.

import { CollectiveAbortedError, CollectiveTimeoutError, type RankFailureKind } from "./errors.ts";

export interface WorldOptions {
  ranks: number;
  ranksPerNode?: number;
  /** Bytes of shared memory per ordered pair of ranks, split into SLOTS slots (default 8 MiB, less beyond 6 ranks). */
  channelBytes?: number;
  /** Bytes of each rank's heap, for arrays its peers read directly (a multiple of 64; default 0). */
  heapBytes?: number;
}

export interface WorldLayout {
  ranks: number;
  ranksPerNode: number;
  nodes: number;
  slots: number;
  slotBytes: number;
  channelBytes: number;
  controlBytes: number;
  heapBytes: number;
  /** Offset of rank 0's heap. */
  heapStart: number;
  /** Total size of the shared memory: a whole number of WebAssembly pages. */
  bytes: number;
}

/** Slots per channel: a sender may run SLOTS − 1 slots ahead of its receiver's current one. */
export const SLOTS = 4;
const MIN_SLOT_BYTES = 4096;
/** Large slots: every slot hand-off can cost a sleep and a wake-up, so fewer, larger ones pipeline better. */
const DEFAULT_CHANNEL_BYTES = 8 << 20;
/** The default shrinks channels so that all of them together stay within this budget. */
const DEFAULT_TOTAL_CHANNEL_BYTES = 256 << 20;

const MAGIC = 0x5348_4c42; // "SHLB"
const HEADER_WORDS = 16;
const PAIR_WORDS = 16;
const Header = {
  Magic: 0,
  Ranks: 1,
  RanksPerNode: 2,
  Slots: 3,
  SlotBytes: 4,
  AbortRank: 5,
  AbortReason: 6,
  HeapBytes: 7,
} as const;
const PAGE_BYTES = 65536;
/** A shared WebAssembly.Memory holds at most 65,536 pages. */
const MAX_MEMORY_BYTES = 65536 * PAGE_BYTES;
const REASONS: RankFailureKind[] = ["threw", "exited", "unresponsive"];

/** How long one Atomics.wait may sleep before the abort word and the deadline are checked again. */
const WAIT_SLICE_MS = 20;
/**
 * A peer that is running on its own core usually answers within microseconds, sooner than a sleeping
 * thread can be woken; so a wait first re-checks the counter this long, then sleeps in Atomics.wait.
 */
const SPIN_MS = 0.03;

/** What a waiting rank is doing, for the errors that end a wait. */
export interface WaitContext {
  kind: string;
  tag?: string;
  timeoutMs: number;
}

export class World {
  readonly buffer: SharedArrayBuffer;
  readonly control: Int32Array;
  /** How long a wait checks the counter before it sleeps: only while every rank can have a core of its own. */
  private readonly spinMs: number;

  constructor(readonly memory: WebAssembly.Memory, readonly layout: WorldLayout, readonly rank: number) {
    this.buffer = memory.buffer as unknown as SharedArrayBuffer;
    this.control = new Int32Array(this.buffer, 0, layout.controlBytes / 4);
    const cores = (globalThis.navigator as Navigator | undefined)?.hardwareConcurrency ?? 1;
    this.spinMs = layout.ranks <= cores ? SPIN_MS : 0;
  }

  /** The node a rank lives on. */
  nodeOf(rank: number): number {
    return Math.floor(rank / this.layout.ranksPerNode);
  }

  /** Index of the head counter of channel src → dst; the tail counter follows it. */
  pairWord(src: number, dst: number): number {
    return HEADER_WORDS + (src * this.layout.ranks + dst) * PAIR_WORDS;
  }

  /** Byte offset of the first slot of channel src → dst. */
  channelOffset(src: number, dst: number): number {
    const n = this.layout.ranks;
    const index = src * (n - 1) + (dst < src ? dst : dst - 1);
    return this.layout.controlBytes + index * this.layout.channelBytes;
  }

  /** Byte offset of rank r's heap. */
  heapOffset(rank: number): number {
    return this.layout.heapStart + rank * this.layout.heapBytes;
  }

  /**
   * Ends the world: every pending and future wait on every rank throws CollectiveAbortedError naming
   * `failedRank`. Never blocks; the first abort wins.
   */
  abort(failedRank: number, reason: RankFailureKind): void {
    if (!REASONS.includes(reason)) throw new RangeError(`abort: unknown reason "${reason}" (valid: ${REASONS.join(", ")})`);
    if (Atomics.load(this.control, Header.AbortRank) !== 0) return;
    Atomics.store(this.control, Header.AbortReason, REASONS.indexOf(reason));
    Atomics.store(this.control, Header.AbortRank, failedRank + 1);
    const n = this.layout.ranks;
    for (let src = 0; src < n; src++) {
      for (let dst = 0; dst < n; dst++) {
        Atomics.notify(this.control, this.pairWord(src, dst));
        Atomics.notify(this.control, this.pairWord(src, dst) + 1);
      }
    }
  }

  /** The failed rank and reason after abort(), or null. */
  aborted(): { failedRank: number; reason: RankFailureKind } | null {
    const rankPlusOne = Atomics.load(this.control, Header.AbortRank);
    if (rankPlusOne === 0) return null;
    return { failedRank: rankPlusOne - 1, reason: REASONS[Atomics.load(this.control, Header.AbortReason)] };
  }

  /**
   * Blocks while control[index] === value: a short spin when ranks have cores to themselves, then
   * slices of Atomics.wait. Throws CollectiveAbortedError
   * once the world is aborted and CollectiveTimeoutError (naming `peer`) after context.timeoutMs.
   */
  waitWhile(index: number, value: number, peer: number, context: WaitContext): void {
    if (this.spinMs > 0) {
      const until = performance.now() + this.spinMs;
      for (let i = 1; Atomics.load(this.control, index) === value; i++) if ((i & 63) === 0 && performance.now() > until) break;
    }
    const deadline = performance.now() + context.timeoutMs;
    while (Atomics.load(this.control, index) === value) {
      this.throwIfAborted(context);
      const left = deadline - performance.now();
      if (left <= 0) {
        throw new CollectiveTimeoutError({
          rank: this.rank,
          waitingFor: peer,
          kind: context.kind,
          tag: context.tag,
          timeoutMs: context.timeoutMs,
        });
      }
      Atomics.wait(this.control, index, value, Math.min(left, WAIT_SLICE_MS));
    }
  }

  throwIfAborted(context: WaitContext): void {
    const abort = this.aborted();
    if (abort) throw new CollectiveAbortedError({ rank: this.rank, ...abort, kind: context.kind, tag: context.tag });
  }
}

/** Allocates the shared buffer of a world on the launching side (which never waits on it). */
export function createWorld(options: WorldOptions): World {
  const layout = worldLayout(options);
  const pages = layout.bytes / PAGE_BYTES;
  const memory = new WebAssembly.Memory({ initial: pages, maximum: pages, shared: true });
  const control = new Int32Array(memory.buffer, 0, HEADER_WORDS);
  control[Header.Ranks] = layout.ranks;
  control[Header.RanksPerNode] = layout.ranksPerNode;
  control[Header.Slots] = layout.slots;
  control[Header.SlotBytes] = layout.slotBytes;
  control[Header.HeapBytes] = layout.heapBytes;
  Atomics.store(control, Header.Magic, MAGIC);
  return new World(memory, layout, -1);
}

/** Maps a world created by createWorld() as `rank`; the layout comes from the memory's header. */
export function openWorld(memory: WebAssembly.Memory, rank: number): World {
  if (!(memory instanceof WebAssembly.Memory) || !(memory.buffer instanceof SharedArrayBuffer)) {
    throw new TypeError("openWorld: expected the world's shared WebAssembly.Memory (createWorld().memory)");
  }
  const header = new Int32Array(memory.buffer, 0, HEADER_WORDS);
  if (Atomics.load(header, Header.Magic) !== MAGIC) throw new TypeError("openWorld: the memory was not made by createWorld()");
  const slotBytes = header[Header.SlotBytes];
  const layout = worldLayout({
    ranks: header[Header.Ranks],
    ranksPerNode: header[Header.RanksPerNode],
    channelBytes: slotBytes * header[Header.Slots],
    heapBytes: header[Header.HeapBytes],
  });
  if (!Number.isInteger(rank) || rank < 0 || rank >= layout.ranks) {
    throw new RangeError(`openWorld: rank ${rank} is not in this world of ${layout.ranks} ranks (valid: 0..${layout.ranks - 1})`);
  }
  return new World(memory, layout, rank);
}

/** Validates the options and computes where everything lives. */
export function worldLayout(options: WorldOptions): WorldLayout {
  const { ranks, ranksPerNode = ranks } = options;
  if (!Number.isInteger(ranks) || ranks < 1) throw new RangeError(`world: ranks must be an integer >= 1, got ${ranks}`);
  if (!Number.isInteger(ranksPerNode) || ranksPerNode < 1 || ranks % ranksPerNode !== 0) {
    throw new RangeError(`world: ranksPerNode must be a positive integer that divides ranks (${ranks}), got ${ranksPerNode}`);
  }
  const pairs = ranks * (ranks - 1);
  const channelBytes = options.channelBytes ?? defaultChannelBytes(pairs);
  const slotBytes = channelBytes / SLOTS;
  if (!Number.isInteger(slotBytes) || slotBytes % 64 !== 0 || slotBytes < MIN_SLOT_BYTES) {
    throw new RangeError(
      `world: channelBytes must be a multiple of ${SLOTS * 64} and at least ${
        SLOTS * MIN_SLOT_BYTES
      } (${SLOTS} slots), got ${channelBytes}`,
    );
  }
  const { heapBytes = 0 } = options;
  if (!Number.isInteger(heapBytes) || heapBytes < 0 || heapBytes % 64 !== 0) {
    throw new RangeError(`world: heapBytes must be a non-negative multiple of 64, got ${heapBytes}`);
  }
  const controlBytes = (HEADER_WORDS + ranks * ranks * PAIR_WORDS) * 4;
  const heapStart = controlBytes + pairs * channelBytes;
  const bytes = Math.ceil((heapStart + ranks * heapBytes) / PAGE_BYTES) * PAGE_BYTES;
  if (bytes > MAX_MEMORY_BYTES) {
    throw new RangeError(
      `world: ${ranks} ranks need ${bytes} bytes of shared memory (channels ${pairs * channelBytes}, heaps ${
        ranks * heapBytes
      }), ` +
        `more than the ${MAX_MEMORY_BYTES} a shared WebAssembly.Memory holds; lower heapBytes or channelBytes`,
    );
  }
  return {
    ranks,
    ranksPerNode,
    nodes: ranks / ranksPerNode,
    slots: SLOTS,
    slotBytes,
    channelBytes,
    controlBytes,
    heapBytes,
    heapStart,
    bytes,
  };
}

function defaultChannelBytes(pairs: number): number {
  if (pairs * DEFAULT_CHANNEL_BYTES <= DEFAULT_TOTAL_CHANNEL_BYTES) return DEFAULT_CHANNEL_BYTES;
  const fit = Math.floor(DEFAULT_TOTAL_CHANNEL_BYTES / pairs / (SLOTS * 64)) * SLOTS * 64;
  return Math.max(fit, SLOTS * MIN_SLOT_BYTES);
}
