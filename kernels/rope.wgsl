// Rotary position embedding, rotate-half form, on x [rows, T, D] (rows = B·H, D even, h = D / 2):
// for j < h and p = t + position_offset, angle = p · theta^(−2j/D),
//   y[j] = x[j]·cos − x[j + h]·sin,   y[j + h] = x[j + h]·cos + x[j]·sin,
// with sin negated (direction −1) for the inverse rotation, which is the backward.
//
// Bindings: 0 params, 1 x (read), 2 frequencies (read), 3 y (write). x and y are dense row-major
// f32; with VEC4 (h % 4 == 0) they and the table are read as vec4s of four consecutive j, and
// `half_units` is h in those units. frequencies holds theta^(−2j/D), computed in f64 on the host,
// as three f32 planes [3, h]: the top 12 significant bits, the next 12 bits, and the rest.
// Dispatch: one invocation per (t, unit of j) — T · half_units of them, 64 per workgroup — and per
// block of `rows_per_block` rows, which it walks with the same cos/sin: ceil(T · half_units / 64)
// · blocks workgroups, linear, folded over x and y (the (t, j) group varies fastest).
//
// The angle must agree with the f64 reference for positions in the thousands, where one f32
// rounding of p · f is already ~1e-4 rad. Splitting p and the frequency into 12-bit halves makes
// the four big partial products exact; they are reduced by k·π/2 (π/2 in three pieces, Cody–Waite)
// before they are summed, so the reduced angle r ∈ [−π/4, π/4] is good to a few 1e-7 (for angles
// below 2^16 · π/2, i.e. positions up to ~100,000; past that the error grows with p), and sin/cos
// of r come from minimax polynomials (no reliance on the driver's sin/cos range reduction).

struct Params {
  rows: u32,
  time: u32,
  half_units: u32,
  rows_per_block: u32,
  blocks: u32,
  position_offset: i32,
  direction: f32,
}

@group(0) @binding(0) var<uniform> params: Params;

#if VEC4
alias Unit = vec4<f32>;
alias IntUnit = vec4<i32>;
#else
alias Unit = f32;
alias IntUnit = i32;
#endif

@group(0) @binding(1) var<storage, read> x: array<Unit>;
@group(0) @binding(2) var<storage, read> frequencies: array<Unit>;
@group(0) @binding(3) var<storage, read_write> y: array<Unit>;

const WORKGROUP = 64u;
const TWO_OVER_PI = 0.636619772367581343;
// π/2 = PIO2_HI + PIO2_MID + PIO2_LO; k · PIO2_HI is exact for k < 2^16, k · PIO2_MID for k < 2^12.
const PIO2_HI = 1.5703125;
const PIO2_MID = 4.837512969970703125e-4;
const PIO2_LO = 7.54978995489188216e-8;
// Minimax polynomials of sin and cos on [−π/4, π/4] (relative error ~1e-7).
const SIN_1 = -1.6666654611e-1;
const SIN_2 = 8.3321608736e-3;
const SIN_3 = -1.9515295891e-4;
const COS_1 = 4.166664568298827e-2;
const COS_2 = -1.388731625493765e-3;
const COS_3 = 2.443315711809948e-5;

struct Rotation {
  cosine: Unit,
  sine: Unit,
}

// cos and sin of p · (hi + mid + lo) for p ≥ 0, hi and mid of 12 significant bits.
fn rotation(p: u32, hi: Unit, mid: Unit, lo: Unit) -> Rotation {
  let p_hi = f32(p & 0xfffff000u);
  let p_lo = f32(p & 0xfffu);
  let a1 = p_hi * hi;
  let a2 = p_lo * hi;
  let a3 = p_hi * mid;
  let a4 = p_lo * mid;
  let a5 = f32(p) * lo;
  let k = round((((a1 + a2) + (a3 + a4)) + a5) * TWO_OVER_PI);
  let r = ((((a1 - k * PIO2_HI) + a2) - k * PIO2_MID) + (a3 + a4)) + (a5 - k * PIO2_LO);
  let z = r * r;
  let sin_r = r + r * z * (SIN_1 + z * (SIN_2 + z * SIN_3));
  let cos_r = 1.0 - 0.5 * z + z * z * (COS_1 + z * (COS_2 + z * COS_3));
  // Quadrant q = k mod 4: (cos, sin) = (c, s), (−s, c), (−c, −s), (s, −c).
  let q = IntUnit(k) & IntUnit(3);
  let odd = (q & IntUnit(1)) == IntUnit(1);
  let c = select(cos_r, sin_r, odd);
  let s = select(sin_r, cos_r, odd);
  return Rotation(select(c, -c, (q == IntUnit(1)) | (q == IntUnit(2))), select(s, -s, q >= IntUnit(2)));
}

@compute @workgroup_size(WORKGROUP)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let pair_units = params.time * params.half_units;
  let groups = (pair_units + WORKGROUP - 1u) / WORKGROUP;
  let linear = wid.x + wid.y * nwg.x;
  let block = linear / groups;
  let pair = (linear % groups) * WORKGROUP + lid;
  if (pair >= pair_units || block >= params.blocks) { return; }
  let t = pair / params.half_units;
  let j = pair % params.half_units;

  let position = i32(t) + params.position_offset;
  let turn = rotation(u32(abs(position)), frequencies[j], frequencies[params.half_units + j],
                      frequencies[2u * params.half_units + j]);
  // A negative position turns the other way: sin(−a) = −sin(a).
  let sine = turn.sine * select(params.direction, -params.direction, position < 0);

  let first_row = block * params.rows_per_block;
  let last_row = min(first_row + params.rows_per_block, params.rows);
  for (var row = first_row; row < last_row; row++) {
    let i = (row * params.time + t) * 2u * params.half_units + j;
    let first = x[i];
    let second = x[i + params.half_units];
    y[i] = first * turn.cosine - second * sine;
    y[i + params.half_units] = second * turn.cosine + first * sine;
  }
}
