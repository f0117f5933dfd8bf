// Dtype conversion between f32, f16, i32, u8 and i8.
//
// Bindings: 0 params, 1 src (read), 2 dst (write), both array<u32> holding packed elements:
//   f32, i32  one element per word (raw bits)
//   f16       two per word, element 2w in the low half (like a little-endian Uint16Array)
//   u8, i8    four per word, element 4w + k in byte k (like a Uint8Array / Int8Array view)
// FROM and TO are override constants (0 f32, 1 f16, 2 i32, 3 u8, 4 i8).
// Dispatch: one output word per invocation (so no two invocations share a word), workgroups of
// 256, ceil(words / 256) workgroups, linear (folded over x and y past 65,535; index =
// wid.x + wid.y · nwg.x). Elements past n in the last output word are written as 0.
//
// Conversions: float → integer rounds to nearest, ties to even (WGSL round), saturates to the
// target range and maps NaN to 0; integer → integer saturates; integer → float is exact where the
// target represents the value (i32 → f32 rounds beyond 2²⁴, and → f16 rounds through f32).
// f32 → f16 rounds to nearest even with pack2x16float; magnitudes from 65520 up become ±Infinity
// and NaN stays NaN (0x7e00 with the sign), set explicitly since pack2x16float leaves
// out-of-range values undefined.

const WORKGROUP = 256u;

const F32 = 0u;
const F16 = 1u;
const I32 = 2u;
const U8 = 3u;
const I8 = 4u;

override FROM: u32;
override TO: u32;

struct Params {
  n: u32,
  words: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> src: array<u32>;
@group(0) @binding(2) var<storage, read_write> dst: array<u32>;

fn is_float(dtype: u32) -> bool {
  return dtype == F32 || dtype == F16;
}

fn is_nan(x: f32) -> bool {
  return (bitcast<u32>(x) & 0x7fffffffu) > 0x7f800000u;
}

/** Element j of src as f32 (for float sources, and integer sources going to a float). */
fn load_float(j: u32) -> f32 {
  var value: f32;
  switch FROM {
    case F32: { value = bitcast<f32>(src[j]); }
    case F16: { value = unpack2x16float(src[j >> 1u])[j & 1u]; }
    case I32: { value = f32(bitcast<i32>(src[j])); }
    case U8: { value = f32(extractBits(src[j >> 2u], (j & 3u) * 8u, 8u)); }
    default: { value = f32(extractBits(bitcast<i32>(src[j >> 2u]), (j & 3u) * 8u, 8u)); }
  }
  return value;
}

/** Element j of an integer src as i32. */
fn load_int(j: u32) -> i32 {
  var value: i32;
  switch FROM {
    case U8: { value = i32(extractBits(src[j >> 2u], (j & 3u) * 8u, 8u)); }
    case I8: { value = extractBits(bitcast<i32>(src[j >> 2u]), (j & 3u) * 8u, 8u); }
    default: { value = bitcast<i32>(src[j]); }
  }
  return value;
}

fn int_range() -> vec2<i32> {
  var range: vec2<i32>;
  switch TO {
    case U8: { range = vec2<i32>(0, 255); }
    case I8: { range = vec2<i32>(-128, 127); }
    default: { range = vec2<i32>(-2147483647 - 1, 2147483647); }
  }
  return range;
}

/** Element j converted to the integer target: rounded, saturated, NaN → 0. */
fn to_int(j: u32) -> i32 {
  let range = int_range();
  if (!is_float(FROM)) { return clamp(load_int(j), range.x, range.y); }
  let x = load_float(j);
  // The bounds as f32: for i32, 2147483647 becomes 2³¹, so x ≥ 2³¹ saturates and every f32 below it fits.
  if (is_nan(x)) { return 0; }
  if (x <= f32(range.x)) { return range.x; }
  if (x >= f32(range.y)) { return range.y; }
  return i32(round(x));
}

/** f32 → f16 bits, round to nearest even, overflow to ±Infinity, NaN kept. */
fn to_f16_bits(x: f32) -> u32 {
  let bits = bitcast<u32>(x);
  let sign = (bits >> 16u) & 0x8000u;
  let magnitude = bits & 0x7fffffffu;
  if (magnitude > 0x7f800000u) { return sign | 0x7e00u; }
  if (magnitude >= 0x477ff000u) { return sign | 0x7c00u; }
  return pack2x16float(vec2<f32>(x, 0.0)) & 0xffffu;
}

fn elements_per_word(dtype: u32) -> u32 {
  var count: u32;
  switch dtype {
    case F16: { count = 2u; }
    case U8, I8: { count = 4u; }
    default: { count = 1u; }
  }
  return count;
}

@compute @workgroup_size(WORKGROUP)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let w = (wid.x + wid.y * nwg.x) * WORKGROUP + lid;
  if (w >= params.words) { return; }
  let per_word = elements_per_word(TO);
  var word = 0u;
  for (var k = 0u; k < per_word; k++) {
    let j = w * per_word + k;
    if (j >= params.n) { break; }
    var bits: u32;
    switch TO {
      case F32: { bits = bitcast<u32>(load_float(j)); }
      case F16: { bits = to_f16_bits(load_float(j)); }
      default: { bits = bitcast<u32>(to_int(j)); }
    }
    word |= (bits & (0xffffffffu >> (32u - 32u / per_word))) << (k * (32u / per_word));
  }
  dst[w] = word;
}
