// SimdReducer (src/comm/simd_reduce.ts) against the JS loops of reduce_kernels.ts, which run on private
// copies of the same operands: every op × array type × length × placement in the shared memory, on
// random data full of NaN, ±0, ±Infinity, subnormals, overflowing i32 and wrapping u8 values. Then a
// few results written out by hand, aliasing, the fallbacks to the JS loops, and the memory checks.

import assert from "node:assert/strict";
import { combine as combineJs, type CommArray, type ReduceOp } from "../src/comm/reduce_kernels.ts";
import { SimdReducer } from "../src/comm/simd_reduce.ts";

type Lanes = "f32" | "i32" | "u8";
type View = new (buffer: ArrayBufferLike, byteOffset: number, length: number) => CommArray;

const OPS: ReduceOp[] = ["sum", "avg", "max", "min"];
const VIEWS: Record<Lanes, View> = { f32: Float32Array, i32: Int32Array, u8: Uint8Array };
const LENGTHS = [0, 1, 3, 4, 5, 15, 16, 17, 1000, 4099];
// Byte offsets of (d, a, b) inside their regions: aligned to 16, and shifted so that no two agree mod 16.
const PLACEMENTS: Record<Lanes, [number, number, number][]> = {
  f32: [[0, 0, 0], [4, 8, 12], [12, 0, 4]],
  i32: [[0, 0, 0], [4, 8, 12], [12, 0, 4]],
  u8: [[0, 0, 0], [1, 2, 3], [7, 0, 13]],
};
const REGION = 20_000; // bytes per operand: 4099 × 4 plus room for the placements and guard bytes
const GUARD = 32; // bytes either side of d that must keep their values

const memory = new WebAssembly.Memory({ initial: 1, maximum: 64, shared: true });
const reducer = new SimdReducer(memory);

/** A seeded generator of uint32 values (xorshift32), so that a failure replays. */
function randomBits(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return x >>> 0;
  };
}

const SPECIAL_F32 = [NaN, -NaN, 0, -0, Infinity, -Infinity, 1e-45, -1e-45, 1e-40, 3.4e38, -3.4e38, 1, -1];
const NAN_BITS = [0xffc00000, 0x7fa12345, 0x7fffffff, 0xffc00001]; // negative, signalling and payload NaNs

/** Fills `view` with data of its type: plain values mixed with the values that stress each reduction. */
function fill(lanes: Lanes, view: CommArray, next: () => number): void {
  const bits = lanes === "f32" ? new Uint32Array(view.buffer, view.byteOffset, view.length) : view;
  for (let i = 0; i < view.length; i++) {
    const r = next();
    if (lanes === "u8") view[i] = r % 4 === 0 ? [0, 1, 128, 255][r % 16 >> 2] : r >>> 24;
    else if (lanes === "i32") {
      const near = [0x7fffffff, -0x80000000, 0, -1][r & 3];
      view[i] = r % 3 === 0 ? near - ((r >>> 8) % 5) : r % 3 === 1 ? r | 0 : (r >>> 20) - 2048;
    } else if (r % 8 === 0) bits[i] = NAN_BITS[(r >>> 3) % NAN_BITS.length];
    else if (r % 8 < 4) view[i] = SPECIAL_F32[(r >>> 3) % SPECIAL_F32.length];
    else view[i] = ((r >>> 16) - 32768) * 2 ** ((r & 0xff) % 60 - 30);
  }
}

/**
 * Asserts got equals expected bit for bit, naming the first difference. NaNs match any NaN: neither JS
 * nor wasm fixes the payload or sign of a NaN result and V8 picks differently in the two (Math.max
 * returns the negative quiet NaN, f32x4.max the positive one), so NaN-ness is what the reduction keeps.
 */
function assertSame(got: CommArray, expected: CommArray, what: string): void {
  assert.equal(got.length, expected.length, `${what}: length`);
  const [g, e] = got instanceof Float32Array
    ? [
      new Uint32Array(got.buffer, got.byteOffset, got.length),
      new Uint32Array(expected.buffer, expected.byteOffset, expected.length),
    ]
    : [got, expected];
  for (let i = 0; i < got.length; i++) {
    if (g[i] === e[i] || (Number.isNaN(got[i]) && Number.isNaN(expected[i]))) continue;
    assert.fail(`${what}: index ${i}: got ${got[i]} (bits ${g[i]}), expected ${expected[i]} (bits ${e[i]})`);
  }
}

function bytesAround(d: CommArray): Uint8Array {
  return new Uint8Array(memory.buffer).slice(d.byteOffset - GUARD, d.byteOffset + d.byteLength + GUARD);
}

/** Runs one case and checks it against the JS loops on private copies, d's neighbours included. */
function check(op: ReduceOp, lanes: Lanes, length: number, [dAt, aAt, bAt]: number[], alias: "" | "a" | "b", seed: number) {
  const View = VIEWS[lanes];
  const next = randomBits(seed);
  const [d, a, b] = [[dAt, 0], [aAt, 1], [bAt, 2]].map(([at, k]) => new View(memory.buffer, GUARD + k * REGION + at, length));
  new Uint8Array(memory.buffer).fill(0xa5, 0, 3 * REGION + GUARD);
  fill(lanes, a, next);
  fill(lanes, b, next);
  const [privateA, privateB] = [a.slice(), b.slice()];
  const outside = bytesAround(d);
  const what = `${op} ${lanes} length ${length} at ${dAt},${aAt},${bAt}${alias ? ` d = ${alias}` : ""}`;

  if (alias === "") {
    const expected = new View(new ArrayBuffer(length * a.BYTES_PER_ELEMENT), 0, length);
    combineJs(op, expected, privateA, privateB);
    assert.equal(reducer.simdBytes(d, a, b), d.byteLength - (d.byteLength % 16), `${what}: runs SIMD`);
    reducer.combine(op, d, a, b);
    assertSame(d, expected, what);
    const after = bytesAround(d);
    outside.fill(0, GUARD, GUARD + d.byteLength);
    after.fill(0, GUARD, GUARD + d.byteLength);
    assert.deepEqual(after, outside, `${what}: bytes next to d changed`);
    assertSame(a, privateA, `${what}: a changed`);
    assertSame(b, privateB, `${what}: b changed`);
  } else {
    const target = alias === "a" ? privateA : privateB;
    combineJs(op, target, privateA, privateB);
    const aliased = alias === "a" ? a : b;
    reducer.combine(op, aliased, a, b);
    assertSame(aliased, target, what);
  }
}

Deno.test("SimdReducer.combine equals the JS loops for every op, type, length and placement", () => {
  let seed = 1;
  for (const op of OPS) {
    for (const lanes of ["f32", "i32", "u8"] as const) {
      for (const length of LENGTHS) {
        for (const placement of PLACEMENTS[lanes]) check(op, lanes, length, placement, "", seed++);
      }
    }
  }
});

Deno.test("SimdReducer.combine equals the JS loops when d is a or b", () => {
  let seed = 1000;
  for (const op of OPS) {
    for (const lanes of ["f32", "i32", "u8"] as const) {
      for (const length of [5, 16, 17, 1000]) {
        for (const alias of ["a", "b"] as const) check(op, lanes, length, PLACEMENTS[lanes][1], alias, seed++);
      }
    }
  }
});

Deno.test("SimdReducer.combine wraps, orders signed and unsigned, and follows Math.max/min on NaN and ±0", () => {
  const at = (k: number) => k * 64;
  const run = (lanes: Lanes, op: ReduceOp, x: number[], y: number[]) => {
    const View = VIEWS[lanes];
    const [d, a, b] = [0, 1, 2].map((k) => new View(memory.buffer, at(k), lanes === "u8" ? 16 : 4));
    a.fill(0);
    b.fill(0);
    a.set(x);
    b.set(y);
    assert.equal(reducer.simdBytes(d, a, b), 16);
    reducer.combine(op, d, a, b);
    return [...d.subarray(0, x.length)];
  };
  assert.deepEqual(run("i32", "sum", [0x7fffffff, -0x80000000, 7], [1, -1, -9]), [-0x80000000, 0x7fffffff, -2]);
  assert.deepEqual(run("i32", "max", [-1, 5, -0x80000000], [1, -5, 0x7fffffff]), [1, 5, 0x7fffffff]);
  assert.deepEqual(run("i32", "min", [-1, 5, -0x80000000], [1, -5, 0x7fffffff]), [-1, -5, -0x80000000]);
  assert.deepEqual(run("u8", "sum", [200, 255, 1], [100, 255, 2]), [44, 254, 3]);
  assert.deepEqual(run("u8", "max", [200, 0, 127], [100, 255, 128]), [200, 255, 128]);
  assert.deepEqual(run("u8", "min", [200, 0, 127], [100, 255, 128]), [100, 0, 127]);
  // Object.is tells +0 from -0 and matches NaN with NaN.
  const sameValues = (got: number[], expected: number[]) =>
    got.forEach((v, i) => assert.ok(Object.is(v, expected[i]), `${i}: ${v} vs ${expected[i]}`));
  sameValues(run("f32", "max", [0, -0, NaN, 1], [-0, 0, -Infinity, NaN]), [0, 0, NaN, NaN]);
  sameValues(run("f32", "min", [0, -0, NaN, 1], [-0, 0, -Infinity, NaN]), [-0, -0, NaN, NaN]);
  sameValues(run("f32", "sum", [3.4e38, 2 ** -149, Infinity, 0.1], [3.4e38, 2 ** -149, -Infinity, 0.2]), [
    Infinity,
    2 ** -148,
    NaN,
    Math.fround(Math.fround(0.1) + Math.fround(0.2)),
  ]);
});

Deno.test("SimdReducer.combine falls back to the JS loops for arrays outside the memory and for shifted overlaps", () => {
  const shared = (at: number, n: number) => new Float32Array(memory.buffer, at, n);
  const next = randomBits(77);
  const a = shared(0, 100);
  const b = shared(4096, 100);
  fill("f32", a, next);
  fill("f32", b, next);
  const privateB = b.slice();
  assert.equal(reducer.simdBytes(shared(8192, 100), a, b), 400);
  for (const op of OPS) {
    const expected = new Float32Array(100);
    combineJs(op, expected, a, privateB);
    for (const [d, x, y] of [[shared(8192, 100), a, privateB], [new Float32Array(100), a, b]]) {
      assert.equal(reducer.simdBytes(d, x, y), 0);
      reducer.combine(op, d, x, y);
      assertSame(d, expected, `${op} with a private array`);
    }
  }
  // d starts one element after a: the JS loop reads a[i + 1] after writing it, which only it reproduces.
  const d = shared(4, 99);
  const privateA = a.slice();
  const expected = privateA.subarray(1);
  combineJs("sum", expected, privateA, privateB);
  assert.equal(reducer.simdBytes(d, a, b), 0);
  reducer.combine("sum", d, a, b);
  assertSame(d, expected, "sum with d one element after a");
  assert.equal(reducer.simdBytes(shared(0, 8), new Int32Array(memory.buffer, 64, 8), shared(128, 8)), 0);
  assert.equal(reducer.simdBytes(shared(0, 8), shared(64, 4), shared(128, 8)), 0);
});

Deno.test("SimdReducer works with a grown memory, and refuses memory that is not shared", () => {
  const grown = new WebAssembly.Memory({ initial: 1, maximum: 4, shared: true });
  const before = new Int32Array(grown.buffer, 0, 8);
  grown.grow(2);
  const grownReducer = new SimdReducer(grown);
  const [d, a, b] = [0, 65536, 2 * 65536].map((at) => new Int32Array(grown.buffer, at, 1000));
  a.fill(0x7fffffff);
  b.fill(3);
  assert.equal(grownReducer.simdBytes(d, a, b), 4000);
  grownReducer.combine("sum", d, a, b);
  assert.ok(d.every((v) => v === -0x7ffffffe), "i32 sums across pages wrap");
  assert.equal(grownReducer.simdBytes(before, before, before), 0, "views from before grow() take the JS loops");
  assert.throws(() => new SimdReducer(new WebAssembly.Memory({ initial: 1 })), /must be shared/);
});
