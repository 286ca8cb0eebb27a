//! `x @ w.T` for a few rows of `x` (decoding), streaming the weight `w` `(n, k)` exactly once.
//!
//! A general gemm packs the weight matrix on every call and pads the handful of rows to its micro-kernel
//! height; during decoding (1–16 rows per step) that costs more than the product. [`PackedWeight`] packs a
//! frozen f32 weight once (f32 or bf16) and [`packed_matmul`] runs SIMD tiles over it; [`small_matmul`]
//! is the unpacked form (f64: a dot product per output; f32: packs for the one call). Forward only: they
//! serve frozen weights.

use super::{contiguous, Elem};
use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Tensor, WithDType};
use pulp::{Simd, WithSimd};
use rayon::prelude::*;

/// Rows up to which [`small_matmul`] beats the general gemm.
pub const SMALL_ROWS: usize = 16;

struct SmallMatmul;

/// Output columns per rayon task of the unpacked (f64) kernel.
const COLS: usize = 32;

#[inline(always)]
pub(crate) fn dot<T: Elem>(a: &[T], b: &[T]) -> T {
    let mut acc = [T::zero(); 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: T = ca.remainder().iter().zip(cb.remainder()).map(|(&x, &y)| x * y).sum();
    for (x, y) in ca.zip(cb) {
        for l in 0..8 {
            acc[l] += x[l] * y[l];
        }
    }
    acc.iter().fold(tail, |s, &v| s + v)
}

fn fwd<T: Elem>(x: &[T], w: &[T], m: usize, k: usize, n: usize) -> Vec<T> {
    // Column-major result (n, m): each task owns whole output columns.
    let mut yt = vec![T::zero(); n * m];
    yt.par_chunks_mut(COLS * m).enumerate().for_each(|(c, block)| {
        for (j, col) in block.chunks_mut(m).enumerate() {
            let row = &w[(c * COLS + j) * k..][..k];
            for (i, o) in col.iter_mut().enumerate() {
                *o = dot(&x[i * k..(i + 1) * k], row);
            }
        }
    });
    transpose_back(yt, m, n)
}

/// `(n, m)` column-major results to the `(m, n)` row-major output.
fn transpose_back<T: Copy>(yt: Vec<T>, m: usize, n: usize) -> Vec<T> {
    if m == 1 {
        return yt;
    }
    let mut y = yt.clone();
    for (j, col) in yt.chunks(m).enumerate() {
        for (i, &v) in col.iter().enumerate() {
            y[i * n + j] = v;
        }
    }
    y
}

/// Output columns per packed panel: two AVX-512 vectors, four AVX2 vectors.
const NP: usize = 32;

/// How [`PackedWeight`] stores the values: f32 as given, or rounded to bf16 (half the bytes a decoding
/// step streams, for the memory-bound batch-1 case; products still accumulate in f32).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DecodeWeights {
    /// The weights as they are.
    #[default]
    F32,
    /// Rounded to bf16 (round to nearest even).
    Bf16,
}

impl DecodeWeights {
    /// From `PHI4R_DECODE_WEIGHTS` (`f32`, the default, or `bf16`); another value is an error naming it.
    pub fn from_env() -> Result<Self> {
        match std::env::var("PHI4R_DECODE_WEIGHTS") {
            Err(_) => Ok(DecodeWeights::F32),
            Ok(v) => match v.as_str() {
                "f32" | "" => Ok(DecodeWeights::F32),
                "bf16" => Ok(DecodeWeights::Bf16),
                other => candle_core::bail!("PHI4R_DECODE_WEIGHTS: expected `f32` or `bf16`, got `{other}`"),
            },
        }
    }
}

/// Packed panels: f32 values, or bf16 bit pairs (`u32` lane `j` of a `kk` row holds column `2j` in its
/// low and `2j + 1` in its high 16 bits, so a shift or a mask turns a loaded vector into f32 vectors).
enum Panels {
    F32(Vec<f32>),
    Bf16(Vec<u32>),
}

/// A frozen weight `(n, k)` rearranged once for decoding into panels of `NP` (32) output columns, each
/// stored `k`-major (`w[j0..j0 + NP][kk]` contiguous for each `kk`; `n` padded to a multiple of `NP`
/// with zeros). A tile of rows then reads one contiguous stream that the hardware prefetcher follows,
/// and multiplies each loaded weight vector by a broadcast input value: no horizontal sums and no
/// per-call packing (which is what a general gemm spends a decoding step on).
pub struct PackedWeight {
    data: Panels,
    n: usize,
    k: usize,
}

impl PackedWeight {
    /// Packs row-major f32 `w` of shape `(n, k)`.
    pub fn new(w: &[f32], n: usize, k: usize) -> Self {
        Self::with(w, n, k, DecodeWeights::F32)
    }

    /// Packs row-major f32 `w` of shape `(n, k)`, stored as `store` says.
    pub fn with(w: &[f32], n: usize, k: usize, store: DecodeWeights) -> Self {
        assert_eq!(w.len(), n * k, "PackedWeight: {} values for ({n}, {k})", w.len());
        let len = n.div_ceil(NP) * NP * k;
        let data = match store {
            DecodeWeights::F32 => {
                let mut data = vec![0f32; len];
                if k > 0 {
                    data.par_chunks_mut(NP * k).enumerate().for_each(|(p, panel)| {
                        for c in 0..NP.min(n - p * NP) {
                            for (kk, &v) in w[(p * NP + c) * k..][..k].iter().enumerate() {
                                panel[kk * NP + c] = v;
                            }
                        }
                    });
                }
                Panels::F32(data)
            }
            DecodeWeights::Bf16 => {
                let mut data = vec![0u32; len / 2];
                if k > 0 {
                    data.par_chunks_mut(NP / 2 * k).enumerate().for_each(|(p, panel)| {
                        for c in 0..NP.min(n - p * NP) {
                            let shift = 16 * (c % 2);
                            for (kk, &v) in w[(p * NP + c) * k..][..k].iter().enumerate() {
                                panel[kk * NP / 2 + c / 2] |= u32::from(half::bf16::from_f32(v).to_bits()) << shift;
                            }
                        }
                    });
                }
                Panels::Bf16(data)
            }
        };
        PackedWeight { data, n, k }
    }

    /// Packs a frozen `(n, k)` f32 tensor.
    pub fn from_tensor(w: &Tensor) -> Result<Self> {
        Self::from_tensor_with(w, DecodeWeights::F32)
    }

    /// Packs a frozen `(n, k)` f32 tensor, stored as `store` says.
    pub fn from_tensor_with(w: &Tensor, store: DecodeWeights) -> Result<Self> {
        let (n, k) = w.dims2()?;
        Ok(Self::with(&w.contiguous()?.flatten_all()?.to_vec1::<f32>()?, n, k, store))
    }

    /// `(n, k)`.
    pub fn dims(&self) -> (usize, usize) {
        (self.n, self.k)
    }

    /// `x @ w.T` for row-major `x` of shape `(m, k)`: the row-major `(m, n)` result.
    fn matmul(&self, x: &[f32], m: usize) -> Vec<f32> {
        let (n, k) = (self.n, self.k);
        let mut y = vec![0f32; m * n];
        if k == 0 || m == 0 || n == 0 {
            return y;
        }
        let arch = pulp::Arch::new();
        // One task per panel: its (m, NP) block, then scattered into the row-major result.
        let mut blocks = vec![0f32; n.div_ceil(NP) * NP * m];
        match &self.data {
            Panels::F32(data) => {
                blocks.par_chunks_mut(m * NP).zip(data.par_chunks(NP * k)).for_each(|(out, panel)| {
                    arch.dispatch(Panel { x, panel, k, out });
                });
            }
            Panels::Bf16(data) => {
                blocks.par_chunks_mut(m * NP).zip(data.par_chunks(NP / 2 * k)).for_each(|(out, panel)| {
                    arch.dispatch(Panel { x, panel, k, out });
                });
            }
        }
        for (p, block) in blocks.chunks(m * NP).enumerate() {
            let cols = NP.min(n - p * NP);
            for (i, row) in block.chunks(NP).enumerate() {
                y[i * n + p * NP..][..cols].copy_from_slice(&row[..cols]);
            }
        }
        y
    }
}

/// One task: every row of `x` (row-major, `k` wide) against one panel into `out` (m, NP). The panel
/// holds f32 values (`W = f32`) or bf16 pairs (`W = u32`, see [`Panels`]).
struct Panel<'a, W> {
    x: &'a [f32],
    panel: &'a [W],
    k: usize,
    out: &'a mut [f32],
}

/// Row tiles covering `m` rows, `(first row, rows)`: 8 at a time where `eight` (the accumulators fit
/// the registers), then 4, 2 and 1.
fn row_tiles(m: usize, eight: bool) -> impl Iterator<Item = (usize, usize)> {
    let mut i0 = 0;
    std::iter::from_fn(move || {
        let left = m - i0;
        let mr = match left {
            0 => return None,
            _ if left >= 8 && eight => 8,
            _ if left >= 4 => 4,
            _ if left >= 2 => 2,
            _ => 1,
        };
        i0 += mr;
        Some((i0 - mr, mr))
    })
}

/// Asks for the cache line holding `v` to be brought into L1 ahead of its use (one vector of a
/// panel row is one 64-byte line under AVX-512).
#[inline(always)]
#[allow(unsafe_code)]
fn prefetch<T>(v: &T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: SSE is part of the x86-64 baseline, and a prefetch neither faults nor reads memory into
    // the program: it is a hint to the cache, here for an address inside a live slice.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>((v as *const T).cast())
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = v;
}

/// Panel rows per block for `m` rows: [`KB`] when there is more than one row tile, else the whole
/// panel in one block, without prefetches (measured: one tile streaming the whole panel runs 7–9%
/// faster at batch 1 on the model than blocked and prefetched).
fn block_rows(m: usize, k: usize) -> usize {
    if m > 8 {
        KB
    } else {
        k.max(1)
    }
}

/// One row tile's turn over one block of panel rows: rows `i0..i0 + mr`, panel rows `k0..k1`, and the
/// rows `next` of the following block it is to prefetch (empty but for the first tile of a block).
struct TileStep {
    i0: usize,
    mr: usize,
    k0: usize,
    k1: usize,
    next: std::ops::Range<usize>,
}

/// The order the row tiles of `m` rows (8 at a time where `eight`) run over a `k`-row panel: block by
/// block ([`block_rows`]), every tile over a block before the next block.
fn tile_steps(m: usize, k: usize, eight: bool) -> impl Iterator<Item = TileStep> {
    let kb = block_rows(m, k);
    (0..k).step_by(kb).flat_map(move |k0| {
        let k1 = (k0 + kb).min(k);
        row_tiles(m, eight).enumerate().map(move |(t, (i0, mr))| {
            let next = if t == 0 && kb < k { k1..(k1 + kb).min(k) } else { k1..k1 };
            TileStep { i0, mr, k0, k1, next }
        })
    })
}

/// Panel rows (`kk`) per block. Every row tile runs over one block before the next block is read, so
/// the tiles after the first find it in L1 (128 rows × 128 B = 16 KiB) instead of streaming the panel
/// again. The first tile also prefetches the next block, line by line as it goes, so that block
/// arrives while this one is computed instead of each load waiting on memory. The accumulators
/// go to memory between blocks: one load and one store per vector every 128 rows.
const KB: usize = 128;

impl WithSimd for Panel<'_, u32> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) {
        match S::F32_LANES {
            16 => self.tiles::<S, 1>(simd),
            8 => self.tiles::<S, 2>(simd),
            _ => self.scalar(),
        }
    }
}

impl Panel<'_, u32> {
    /// Rows in tiles of 8, 4, 2 and 1, block by block; `VQ` u32 vectors per panel row
    /// (`VQ * lanes == NP / 2`).
    #[inline(always)]
    fn tiles<S: Simd, const VQ: usize>(self, simd: S) {
        let Panel { x, panel, k, out } = self;
        let w = S::as_simd_u32s(panel).0;
        let m = out.len() / NP;
        // Per row: VQ vectors of even columns and VQ of odd ones, interleaved into `out` at the end.
        let mut acc = vec![simd.splat_f32s(0.0); m * VQ * 2];
        // 8 rows x 2 vectors = 16 accumulators under AVX-512; AVX2 has half the registers.
        for TileStep { i0, mr, k0, k1, next } in tile_steps(m, k, VQ == 1) {
            let (x, a) = (&x[i0 * k..(i0 + mr) * k], &mut acc[i0 * VQ * 2..(i0 + mr) * VQ * 2]);
            let (wb, next) = (&w[k0 * VQ..k1 * VQ], &w[next.start * VQ..next.end * VQ]);
            // Only the first tile prefetches, and it has 4 or 8 rows when there is more than one.
            match (mr, next.is_empty()) {
                (8, false) => bf16_tile::<S, 8, VQ, true>(simd, x, k, k0, wb, next, a),
                (8, true) => bf16_tile::<S, 8, VQ, false>(simd, x, k, k0, wb, next, a),
                (4, false) => bf16_tile::<S, 4, VQ, true>(simd, x, k, k0, wb, next, a),
                (4, true) => bf16_tile::<S, 4, VQ, false>(simd, x, k, k0, wb, next, a),
                (2, _) => bf16_tile::<S, 2, VQ, false>(simd, x, k, k0, wb, next, a),
                _ => bf16_tile::<S, 1, VQ, false>(simd, x, k, k0, wb, next, a),
            }
        }
        let lanes = S::F32_LANES;
        let mut scratch = [0f32; NP];
        for (row, o) in acc.chunks_exact(VQ * 2).zip(out.chunks_exact_mut(NP)) {
            // scratch[(2q + h) * lanes + j] is column 2 (q * lanes + j) + h.
            S::as_mut_simd_f32s(&mut scratch).0[..VQ * 2].copy_from_slice(row);
            for q in 0..VQ {
                for h in 0..2 {
                    for j in 0..lanes {
                        o[2 * (q * lanes + j) + h] = scratch[(2 * q + h) * lanes + j];
                    }
                }
            }
        }
    }

    /// Without a vector unit pulp knows: plain loops.
    fn scalar(self) {
        let Panel { x, panel, k, out } = self;
        for (xr, o) in x.chunks_exact(k).zip(out.chunks_exact_mut(NP)) {
            for (&a, wr) in xr.iter().zip(panel.chunks_exact(NP / 2)) {
                for (j, &pair) in wr.iter().enumerate() {
                    o[2 * j] += a * f32::from_bits(pair << 16);
                    o[2 * j + 1] += a * f32::from_bits(pair & 0xFFFF_0000);
                }
            }
        }
    }
}

/// [`tile`] over bf16 pairs: each loaded `u32` vector becomes the even columns (`<< 16`, as a multiply
/// by 65536) and the odd ones (high half masked), accumulated separately; `acc_mem` holds the
/// accumulators between blocks (per row, `[q][h]`: vector `q`'s even columns, then its odd ones).
#[inline(always)]
fn bf16_tile<S: Simd, const MR: usize, const VQ: usize, const PF: bool>(
    simd: S,
    x: &[f32],
    k: usize,
    k0: usize,
    w: &[S::u32s],
    next: &[S::u32s],
    acc_mem: &mut [S::f32s],
) {
    let kb = w.len() / VQ;
    let zero = simd.splat_f32s(0.0);
    let (shift, high) = (simd.splat_u32s(1 << 16), simd.splat_u32s(0xFFFF_0000));
    let mut xr: [&[f32]; MR] = [&[]; MR];
    for (i, r) in xr.iter_mut().enumerate() {
        *r = &x[i * k + k0..][..kb];
    }
    let mut acc = [[[zero; 2]; VQ]; MR];
    for (i, a) in acc_mem.chunks_exact(VQ * 2).enumerate() {
        for q in 0..VQ {
            acc[i][q] = [a[2 * q], a[2 * q + 1]];
        }
    }
    for (kk, wk) in w.chunks_exact(VQ).enumerate() {
        if PF {
            for v in next.get(kk * VQ..(kk + 1) * VQ).unwrap_or(&[]) {
                prefetch(v);
            }
        }
        let mut we = [[zero; 2]; VQ];
        for q in 0..VQ {
            we[q][0] = simd.transmute_f32s_u32s(simd.mul_u32s(wk[q], shift));
            we[q][1] = simd.transmute_f32s_u32s(simd.and_u32s(wk[q], high));
        }
        for i in 0..MR {
            let a = simd.splat_f32s(xr[i][kk]);
            for q in 0..VQ {
                for h in 0..2 {
                    acc[i][q][h] = simd.mul_add_f32s(a, we[q][h], acc[i][q][h]);
                }
            }
        }
    }
    for (i, a) in acc_mem.chunks_exact_mut(VQ * 2).enumerate() {
        for q in 0..VQ {
            a[2 * q] = acc[i][q][0];
            a[2 * q + 1] = acc[i][q][1];
        }
    }
}

impl WithSimd for Panel<'_, f32> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) {
        match S::F32_LANES {
            16 => self.tiles::<S, 2>(simd),
            8 => self.tiles::<S, 4>(simd),
            _ => self.scalar(),
        }
    }
}

impl Panel<'_, f32> {
    /// Rows in tiles of 8, 4, 2 and 1, block by block; `VP` vectors per panel row (`VP * lanes == NP`).
    /// `out` (zeroed by the caller) holds the accumulators between blocks.
    #[inline(always)]
    fn tiles<S: Simd, const VP: usize>(self, simd: S) {
        let Panel { x, panel, k, out } = self;
        let w = S::as_simd_f32s(panel).0;
        let m = out.len() / NP;
        // 8 rows x 2 vectors = 16 accumulators under AVX-512; AVX2 has half the registers.
        for TileStep { i0, mr, k0, k1, next } in tile_steps(m, k, VP <= 2) {
            let (x, o) = (&x[i0 * k..(i0 + mr) * k], &mut out[i0 * NP..(i0 + mr) * NP]);
            let (wb, next) = (&w[k0 * VP..k1 * VP], &w[next.start * VP..next.end * VP]);
            // Only the first tile prefetches, and it has 4 or 8 rows when there is more than one.
            match (mr, next.is_empty()) {
                (8, false) => tile::<S, 8, VP, true>(simd, x, k, k0, wb, next, o),
                (8, true) => tile::<S, 8, VP, false>(simd, x, k, k0, wb, next, o),
                (4, false) => tile::<S, 4, VP, true>(simd, x, k, k0, wb, next, o),
                (4, true) => tile::<S, 4, VP, false>(simd, x, k, k0, wb, next, o),
                (2, _) => tile::<S, 2, VP, false>(simd, x, k, k0, wb, next, o),
                _ => tile::<S, 1, VP, false>(simd, x, k, k0, wb, next, o),
            }
        }
    }

    /// Without a vector unit pulp knows: plain loops.
    fn scalar(self) {
        let Panel { x, panel, k, out } = self;
        for (xr, o) in x.chunks_exact(k).zip(out.chunks_exact_mut(NP)) {
            for (&a, wr) in xr.iter().zip(panel.chunks_exact(NP)) {
                for (o, &b) in o.iter_mut().zip(wr) {
                    *o += a * b;
                }
            }
        }
    }
}

/// `MR` rows of `x` (`MR` rows `k` wide, row-major) against the panel rows `k0..` in `w` (`VP`
/// vectors each), added into `out` (`MR * NP`): `MR * VP` vector accumulators; each weight vector
/// loaded once and used by `MR` rows, each input value broadcast once and used by `VP` vectors.
/// With `PF`, the lines of `next` (the following block) are prefetched along the way.
#[inline(always)]
fn tile<S: Simd, const MR: usize, const VP: usize, const PF: bool>(
    simd: S,
    x: &[f32],
    k: usize,
    k0: usize,
    w: &[S::f32s],
    next: &[S::f32s],
    out: &mut [f32],
) {
    let kb = w.len() / VP;
    let zero = simd.splat_f32s(0.0);
    let mut xr: [&[f32]; MR] = [&[]; MR];
    for (i, r) in xr.iter_mut().enumerate() {
        *r = &x[i * k + k0..][..kb];
    }
    let mut acc = [[zero; VP]; MR];
    for (i, o) in out.chunks_exact(NP).enumerate() {
        acc[i].copy_from_slice(&S::as_simd_f32s(o).0[..VP]);
    }
    for (kk, wk) in w.chunks_exact(VP).enumerate() {
        if PF {
            for v in next.get(kk * VP..(kk + 1) * VP).unwrap_or(&[]) {
                prefetch(v);
            }
        }
        for i in 0..MR {
            let a = simd.splat_f32s(xr[i][kk]);
            for v in 0..VP {
                acc[i][v] = simd.mul_add_f32s(a, wk[v], acc[i][v]);
            }
        }
    }
    for (i, o) in out.chunks_exact_mut(NP).enumerate() {
        S::as_mut_simd_f32s(o).0[..VP].copy_from_slice(&acc[i]);
    }
}

/// The f32 path of [`small_matmul`]: packs `w` for this one call.
fn fwd_f32(x: &[f32], w: &[f32], m: usize, k: usize, n: usize) -> Vec<f32> {
    PackedWeight::new(w, n, k).matmul(x, m)
}

struct PackedMatmul<'a>(&'a PackedWeight);

impl CustomOp1 for PackedMatmul<'_> {
    fn name(&self) -> &'static str {
        "packed-matmul"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (m, k) = l.shape().dims2()?;
        let (n, kw) = self.0.dims();
        if k != kw {
            candle_core::bail!("packed_matmul: x is ({m}, {k}) but w is ({n}, {kw})");
        }
        match s {
            CpuStorage::F32(_) => {
                let y = self.0.matmul(contiguous::<f32>(self.name(), s, l)?, m);
                Ok((f32::to_cpu_storage_owned(y), Shape::from((m, n))))
            }
            _ => candle_core::bail!("{}: only f32 is supported", self.name()),
        }
    }
}

/// `x` (m, k) f32 times the packed frozen weight `(n, k)` transposed → (m, n). No gradient.
pub fn packed_matmul(x: &Tensor, w: &PackedWeight) -> Result<Tensor> {
    x.contiguous()?.apply_op1_no_bwd(&PackedMatmul(w))
}

impl CustomOp2 for SmallMatmul {
    fn name(&self) -> &'static str {
        "small-matmul"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let (m, k) = l1.shape().dims2()?;
        let (n, k2) = l2.shape().dims2()?;
        if k != k2 {
            candle_core::bail!("small_matmul: x is ({m}, {k}) but w is ({n}, {k2})");
        }
        let y = match s1 {
            CpuStorage::F32(_) => f32::to_cpu_storage_owned(fwd_f32(
                contiguous::<f32>(self.name(), s1, l1)?,
                contiguous::<f32>(self.name(), s2, l2)?,
                m,
                k,
                n,
            )),
            CpuStorage::F64(_) => f64::to_cpu_storage_owned(fwd(
                contiguous::<f64>(self.name(), s1, l1)?,
                contiguous::<f64>(self.name(), s2, l2)?,
                m,
                k,
                n,
            )),
            _ => candle_core::bail!("{}: only f32 and f64 are supported", self.name()),
        };
        Ok((y, Shape::from((m, n))))
    }
}

/// `x` (m, k) times `w` (n, k) transposed → (m, n). No gradient: for frozen weights.
pub fn small_matmul(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    x.contiguous()?.apply_op2_no_bwd(&w.contiguous()?, &SmallMatmul)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};

    #[test]
    fn matches_matmul_for_one_and_several_rows() -> Result<()> {
        let dev = Device::Cpu;
        for m in [1, 2, 3, 5, 16] {
            let x = Tensor::randn(0f32, 1.0, (m, 77), &dev)?;
            let w = Tensor::randn(0f32, 1.0, (45, 77), &dev)?;
            let (x64, w64) = (x.to_dtype(candle_core::DType::F64)?, w.to_dtype(candle_core::DType::F64)?);
            let c = small_matmul(&x64, &w64)?.to_dtype(candle_core::DType::F32)?;
            let a = small_matmul(&x, &w)?;
            let b = x.matmul(&w.t()?)?;
            assert!((&a - &b)?.abs()?.max_all()?.to_scalar::<f32>()? < 1e-4);
            assert!((a - c)?.abs()?.max_all()?.to_scalar::<f32>()? < 1e-4);
        }
        Ok(())
    }

    #[test]
    fn packed_weight_matches_matmul_with_padding() -> Result<()> {
        let dev = Device::Cpu;
        // n not a multiple of the panel width, odd k, one and several panels, every row-tile size, and
        // (more than 8 rows) k over several blocks of panel rows with a short last one.
        for (m, n, k) in
            [(1, 45, 77), (3, 70, 32), (7, 4, 16), (16, 33, 100), (13, 70, 300), (10, 33, 257), (1, 32, 257)]
        {
            let x = Tensor::randn(0f32, 1.0, (m, k), &dev)?;
            let w = Tensor::randn(0f32, 1.0, (n, k), &dev)?;
            let p = PackedWeight::from_tensor(&w)?;
            assert_eq!(p.dims(), (n, k));
            let a = packed_matmul(&x, &p)?;
            let b = x.matmul(&w.t()?)?;
            assert_eq!(a.dims(), &[m, n]);
            assert!((a - b)?.abs()?.max_all()?.to_scalar::<f32>()? < 1e-4, "({m}, {n}, {k})");
        }
        let x = Tensor::randn(0f32, 1.0, (2, 8), &dev)?;
        let p = PackedWeight::from_tensor(&Tensor::zeros((3, 9), DType::F32, &dev)?)?;
        assert!(packed_matmul(&x, &p).is_err());
        Ok(())
    }

    #[test]
    fn bf16_packed_weight_matches_matmul_with_bf16_rounded_weights() -> Result<()> {
        let dev = Device::Cpu;
        for (m, n, k) in [(1, 45, 77), (3, 70, 32), (8, 64, 16), (16, 33, 100), (11, 96, 5), (15, 40, 300)] {
            let x = Tensor::randn(0f32, 1.0, (m, k), &dev)?;
            let w = Tensor::randn(0f32, 1.0, (n, k), &dev)?;
            let p = PackedWeight::from_tensor_with(&w, DecodeWeights::Bf16)?;
            let rounded = w.to_dtype(DType::BF16)?.to_dtype(DType::F32)?;
            let a = packed_matmul(&x, &p)?;
            let b = x.matmul(&rounded.t()?)?;
            assert!((&a - &b)?.abs()?.max_all()?.to_scalar::<f32>()? < 1e-4, "({m}, {n}, {k})");
            // and it is not the f32 product: the rounding is really there
            assert!((a - x.matmul(&w.t()?)?)?.abs()?.max_all()?.to_scalar::<f32>()? > 1e-4, "({m}, {n}, {k})");
        }
        let x = Tensor::randn(0f32, 1.0, (2, 8), &dev)?;
        let p = PackedWeight::from_tensor_with(&Tensor::zeros((3, 9), DType::F32, &dev)?, DecodeWeights::Bf16)?;
        assert!(packed_matmul(&x, &p).is_err());
        Ok(())
    }
}
