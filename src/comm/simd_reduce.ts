// The collectives' element-wise reductions (reduce_kernels.ts) as WebAssembly SIMD loops, for arrays
// that live in the world's shared WebAssembly.Memory. A rank combines two incoming vectors of 16 bytes
// per instruction instead of one element per JS iteration: about 0.43 ns per f32 element against
// 1.06 ns for the JS loop, some 2.5x faster.
//
// The module is assembled here, byte by byte, by the small encoder below. It imports the memory as
// ("env", "memory") and exports one function per (array type, combination), named after its SIMD
// instruction ("f32x4.add", "i32x4.max_s", "i8x16.min_u", ...), each of type
//   (d: i32, a: i32, b: i32, bytes: i32) -> ()
// which for every 16-byte vector at offset i < bytes stores OP(v128.load(a + i), v128.load(b + i)) at d + i
// (d, a, b are byte offsets into the memory; bytes is a multiple of 16).
//
// The results equal reduce_kernels.ts combine() bit for bit, up to the payload of NaN results:
// - f32 sum: JS adds the two f32 values in double and rounds to f32 on the store. A double holds more
//   than twice the 24 bits of an f32 significand plus two, so rounding the double sum to f32 gives the
//   correctly rounded f32 sum, which is what f32x4.add computes (overflow to ±Infinity and subnormals
//   included: JS and wasm keep IEEE subnormals).
// - f32 max/min: f32x4.max/min return NaN when either lane is NaN and order +0 above -0, as Math.max
//   and Math.min do. Which NaN comes out is left open by both JS and wasm, and V8 differs: Math.max
//   gives the negative quiet NaN where f32x4.max gives the positive one, and a sum of two NaNs keeps
//   the payload of whichever operand the instruction favours. The reductions only need NaN-ness.
// - i32 sum wraps modulo 2^32 (i32x4.add), u8 sum modulo 2^8 (i8x16.add); i32 max/min compare signed
//   (Int32Array), u8 max/min unsigned (Uint8Array).

import { combine as combineJs, type CommArray, type ReduceOp } from "./reduce_kernels.ts";

// ---- Encoder: unsigned LEB128, length-prefixed vectors and names, sections. ----

function leb128(n: number): number[] {
  const out: number[] = [];
  do {
    const low = n & 0x7f;
    n >>>= 7;
    out.push(n === 0 ? low : low | 0x80);
  } while (n !== 0);
  return out;
}

/** A vector of already encoded items: its count, then the items. */
function vec(items: number[][]): number[] {
  return [...leb128(items.length), ...items.flat()];
}

function name(text: string): number[] {
  const utf8 = [...new TextEncoder().encode(text)];
  return [...leb128(utf8.length), ...utf8];
}

function section(id: number, body: number[]): number[] {
  return [id, ...leb128(body.length), ...body];
}

// ---- The module. ----

type Lanes = "f32" | "i32" | "u8";
type Combination = "sum" | "max" | "min";
type Kernel = (d: number, a: number, b: number, bytes: number) => void;

/** The SIMD instruction that combines two vectors of each array type: its name and its opcode after 0xfd. */
const INSTRUCTIONS: Record<Lanes, Record<Combination, [string, number]>> = {
  f32: { sum: ["f32x4.add", 0xe4], max: ["f32x4.max", 0xe9], min: ["f32x4.min", 0xe8] },
  i32: { sum: ["i32x4.add", 0xae], max: ["i32x4.max_s", 0xb8], min: ["i32x4.min_s", 0xb6] },
  u8: { sum: ["i8x16.add", 0x6e], max: ["i8x16.max_u", 0x79], min: ["i8x16.min_u", 0x77] },
};

const [D, A, B, BYTES, I] = [0, 1, 2, 3, 4]; // the parameters, then the one local: the byte offset i
const PREAMBLE = [0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00]; // magic "\0asm", version 1
const MEMARG = [0, 0]; // alignment hint 2^0 (views may start at any byte), offset 0

/** The body of one kernel: a loop over the 16-byte vectors that applies the SIMD instruction `simdOp`. */
function kernelBody(simdOp: number): number[] {
  // deno-fmt-ignore: one instruction per line, its name beside it
  const code = [
    ...vec([[1, 0x7f]]), // locals: 1 × i32 (i)
    0x02, 0x40, //            block (no result)
    0x03, 0x40, //              loop (no result)
    0x20, I, 0x20, BYTES, //      local.get i, local.get bytes
    0x4f, 0x0d, 1, //             i32.ge_u, br_if 1: leave the block once i >= bytes
    0x20, D, 0x20, I, 0x6a, //    local.get d, local.get i, i32.add: the store's address
    0x20, A, 0x20, I, 0x6a, //    local.get a, local.get i, i32.add
    0xfd, 0x00, ...MEMARG, //     v128.load
    0x20, B, 0x20, I, 0x6a, //    local.get b, local.get i, i32.add
    0xfd, 0x00, ...MEMARG, //     v128.load
    0xfd, ...leb128(simdOp), //   the combining instruction
    0xfd, 0x0b, ...MEMARG, //     v128.store
    0x20, I, 0x41, 16, 0x6a, //   local.get i, i32.const 16, i32.add
    0x21, I, //                   local.set i
    0x0c, 0, //                   br 0: next vector
    0x0b, //                    end (loop)
    0x0b, //                  end (block)
    0x0b, //                end (function)
  ];
  return [...leb128(code.length), ...code];
}

/** The module's bytes: imports a shared memory of at least `pages` pages, exports one kernel per instruction. */
function moduleBytes(pages: number): Uint8Array<ArrayBuffer> {
  const instructions = Object.values(INSTRUCTIONS).flatMap((byCombination) => Object.values(byCombination));
  const i32 = 0x7f;
  return new Uint8Array([
    ...PREAMBLE,
    ...section(1, vec([[0x60, ...vec([[i32], [i32], [i32], [i32]]), ...vec([])]])), // type 0: (i32 × 4) -> ()
    // import ("env", "memory"): kind 0x02 memory, limits 0x03 shared with min and max. The max is 65536
    // pages, the most a 32-bit memory can have, not the memory's current size: the memory's own maximum
    // (which JS cannot read) must not exceed the import's, so a memory that may still grow would not link.
    ...section(2, vec([[...name("env"), ...name("memory"), 0x02, 0x03, ...leb128(pages), ...leb128(65536)]])),
    ...section(3, vec(instructions.map(() => [0]))), // every function has type 0
    ...section(7, vec(instructions.map(([text], index) => [...name(text), 0x00, ...leb128(index)]))), // kind 0x00 function
    ...section(10, vec(instructions.map(([, simdOp]) => kernelBody(simdOp)))),
  ]);
}

// ---- The reducer. ----

function lanesOf(array: CommArray): Lanes {
  return array instanceof Float32Array ? "f32" : array instanceof Int32Array ? "i32" : "u8";
}

/** Whether x shares bytes with d without starting at the same byte (the SIMD loop reads before it writes). */
function overlapsShifted(d: CommArray, x: CommArray): boolean {
  return x.byteOffset !== d.byteOffset && x.byteOffset < d.byteOffset + d.byteLength &&
    d.byteOffset < x.byteOffset + x.byteLength;
}

/** Combines arrays of one shared WebAssembly.Memory with SIMD; other arrays go to the JS loops. */
export class SimdReducer {
  readonly memory: WebAssembly.Memory;
  private readonly kernels: Record<Lanes, Record<Combination, Kernel>>;

  constructor(memory: WebAssembly.Memory) {
    const buffer = memory.buffer as ArrayBufferLike; // typed ArrayBuffer, a SharedArrayBuffer when shared
    if (!(buffer instanceof SharedArrayBuffer)) {
      throw new TypeError(`SimdReducer: the memory must be shared (new WebAssembly.Memory({ ..., shared: true }))`);
    }
    this.memory = memory;
    const module = new WebAssembly.Module(moduleBytes(buffer.byteLength / 65536));
    const exports = new WebAssembly.Instance(module, { env: { memory } }).exports;
    const kernelsOf = (lanes: Lanes) => {
      const [sum, max, min] = (["sum", "max", "min"] as const).map((c) => exports[INSTRUCTIONS[lanes][c][0]] as Kernel);
      return { sum, max, min };
    };
    this.kernels = { f32: kernelsOf("f32"), i32: kernelsOf("i32"), u8: kernelsOf("u8") };
  }

  /**
   * How many leading bytes of d combine() runs with SIMD: its whole 16-byte vectors when d, a and b
   * are views of the memory's buffer as it is now (views from before a grow() are not), of one type
   * other than f16 (which has no SIMD lanes), a and b hold d.length elements and neither overlaps d
   * other than exactly; 0 otherwise.
   */
  simdBytes(d: CommArray, a: CommArray, b: CommArray): number {
    const buffer = this.memory.buffer;
    const usable = !(d instanceof Uint16Array) && d.buffer === buffer && a.buffer === buffer && b.buffer === buffer &&
      a.constructor === d.constructor && b.constructor === d.constructor &&
      a.length >= d.length && b.length >= d.length && !overlapsShifted(d, a) && !overlapsShifted(d, b);
    return usable ? d.byteLength - (d.byteLength % 16) : 0;
  }

  /**
   * d[i] = a[i] op b[i] for the first d.length elements, as reduce_kernels.ts combine() computes it;
   * avg combines as sum. d may alias a or b. SIMD runs over simdBytes(d, a, b), the JS loops over the rest.
   */
  combine(op: ReduceOp, d: CommArray, a: CommArray, b: CommArray): void {
    const bytes = this.simdBytes(d, a, b);
    if (bytes === 0) return combineJs(op, d, a, b);
    this.kernels[lanesOf(d)][op === "avg" ? "sum" : op](d.byteOffset, a.byteOffset, b.byteOffset, bytes);
    const done = bytes / d.BYTES_PER_ELEMENT;
    if (done < d.length) combineJs(op, d.subarray(done), a.subarray(done), b.subarray(done));
  }
}
