// A rank's heap: its region of the world's shared memory, where comm.alloc() places the arrays that
// peers read directly. A collective whose data lies here hands its peers the data's place instead of
// streaming it through the channels (envelope.ts), so each byte moves once, as over NVLink between
// GPUs; NCCL's registered user buffers and PyTorch's symmetric memory serve the same end.
//
// Allocation is first fit over a list of free ranges kept in address order, ranges aligned to 64
// bytes (a cache line, and a whole number of SIMD vectors); free() merges a range with its free
// neighbours, so the heap does not fragment under alloc/free pairs.

import type { CommArray } from "./reduce_kernels.ts";
import type { World } from "./world.ts";

const ALIGN = 64;
const ARRAY_TYPES = { f32: Float32Array, i32: Int32Array, u8: Uint8Array, f16: Uint16Array } as const;
export type HeapDType = keyof typeof ARRAY_TYPES;
export type HeapArray<D extends HeapDType> = InstanceType<typeof ARRAY_TYPES[D]>;

interface Range {
  start: number;
  bytes: number;
}

export class Heap {
  /** Free ranges in address order. */
  private gaps: Range[];
  /** Start → bytes of every live allocation. */
  private readonly live = new Map<number, number>();

  constructor(private readonly world: World) {
    const { heapBytes } = world.layout;
    this.gaps = heapBytes > 0 ? [{ start: world.heapOffset(world.rank), bytes: heapBytes }] : [];
  }

  /** Bytes not allocated. */
  get freeBytes(): number {
    return this.gaps.reduce((sum, range) => sum + range.bytes, 0);
  }

  /** A zero-filled array of `length` elements in this rank's heap. */
  alloc(length: number, dtype: HeapDType = "f32"): CommArray {
    const Type = ARRAY_TYPES[dtype];
    if (!Type) {
      throw new TypeError(`alloc: dtype must be one of ${Object.keys(ARRAY_TYPES).join(", ")}, got ${JSON.stringify(dtype)}`);
    }
    if (!Number.isInteger(length) || length < 0) {
      throw new RangeError(`alloc: length must be a non-negative integer, got ${length}`);
    }
    const bytes = Math.max(ALIGN, Math.ceil((length * Type.BYTES_PER_ELEMENT) / ALIGN) * ALIGN);
    const index = this.gaps.findIndex((range) => range.bytes >= bytes);
    if (index < 0) {
      const largest = Math.max(0, ...this.gaps.map((range) => range.bytes));
      throw new RangeError(
        `alloc: ${length} ${dtype} elements (${bytes} bytes) do not fit rank ${this.world.rank}'s heap of ${this.world.layout.heapBytes} bytes ` +
          `(${this.freeBytes} free, largest free range ${largest}); launch with a larger heapBytes`,
      );
    }
    const range = this.gaps[index];
    const start = range.start;
    if (range.bytes === bytes) this.gaps.splice(index, 1);
    else this.gaps[index] = { start: start + bytes, bytes: range.bytes - bytes };
    this.live.set(start, bytes);
    const array = new Type(this.world.buffer as unknown as ArrayBuffer, start, length);
    array.fill(0);
    return array;
  }

  /** Returns an array from alloc() to the heap. */
  free(array: CommArray): void {
    const start = array.byteOffset;
    const bytes = array.buffer === this.world.buffer ? this.live.get(start) : undefined;
    if (bytes === undefined) {
      throw new RangeError(
        `free: the array (${array.constructor.name} of ${array.length} at byte ${start}) is not a live allocation of rank ${this.world.rank}'s heap`,
      );
    }
    this.live.delete(start);
    let index = this.gaps.findIndex((range) => range.start > start);
    if (index < 0) index = this.gaps.length;
    this.gaps.splice(index, 0, { start, bytes });
    const next = this.gaps[index + 1];
    if (next && start + bytes === next.start) this.gaps.splice(index, 2, { start, bytes: bytes + next.bytes });
    const previous = this.gaps[index - 1];
    if (previous && previous.start + previous.bytes === start) {
      this.gaps.splice(index - 1, 2, { start: previous.start, bytes: previous.bytes + this.gaps[index].bytes });
    }
  }
}
