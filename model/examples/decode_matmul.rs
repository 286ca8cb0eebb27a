//! The decoding matmul kernel against candle's gemm, for a few rows of `x` times a frozen weight.
//!
//!   cargo run --release -p phi4r-model --example decode_matmul [-- N_x_K,... ROWS,... [WEIGHTS]]
//!
//! e.g. `-- 2048x512,512x2048 1,16 48`. WEIGHTS (default 16) weights of each shape are cycled so they
//! come from beyond the caches, as in a decoding step (16 x 4 MB fits this machine's L3, 48 x 4 MB does
//! not); each figure is the best of 15 passes. Runs on the rayon pool the
//! model uses (`RAYON_NUM_THREADS`). First it prints the machine's ceiling for a decoding step that
//! streams its weights from memory: the read bandwidth of a vectorized sum over 1 GiB on that pool.
use candle_core::{Device, Result, Tensor};
use phi4r_model::kernels::{packed_matmul, PackedWeight};
use pulp::{Simd, WithSimd};
use rayon::prelude::*;
use std::time::Instant;

/// Sums a slice with the widest vectors pulp finds (the loop compiles for AVX-512 / AVX2).
struct Sum<'a>(&'a [f32]);

impl WithSimd for Sum<'_> {
    type Output = f32;

    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) -> f32 {
        let (head, tail) = S::as_simd_f32s(self.0);
        let mut acc = [simd.splat_f32s(0.0); 4];
        for c in head.chunks_exact(4) {
            for (a, &x) in acc.iter_mut().zip(c) {
                *a = simd.add_f32s(*a, x);
            }
        }
        let v = acc.iter().fold(simd.splat_f32s(0.0), |s, &a| simd.add_f32s(s, a));
        simd.reduce_sum_f32s(v) + tail.iter().sum::<f32>()
    }
}

/// GB/s of a parallel vectorized read of 1 GiB, best of 5.
fn read_bandwidth() -> f64 {
    let v = vec![1f32; 256 << 20];
    let arch = pulp::Arch::new();
    let mut best = f64::MAX;
    for _ in 0..5 {
        let t = Instant::now();
        let s: f32 = v.par_chunks(1 << 16).map(|c| arch.dispatch(Sum(c))).sum();
        best = best.min(t.elapsed().as_secs_f64());
        std::hint::black_box(s);
    }
    (v.len() * 4) as f64 / best / 1e9
}

fn list<T>(arg: Option<String>, default: &str, parse: impl Fn(&str) -> Option<T>) -> Vec<T> {
    let s = arg.unwrap_or_else(|| default.to_string());
    s.split(',').map(|v| parse(v).unwrap_or_else(|| panic!("cannot parse `{v}` in `{s}`"))).collect()
}

/// Best seconds per call of `f` over `ws`.
fn best(ws: usize, mut f: impl FnMut(usize) -> Result<Tensor>) -> Result<f64> {
    let mut dt = f64::MAX;
    for _ in 0..15 {
        let t = Instant::now();
        for i in 0..ws {
            f(i)?;
        }
        dt = dt.min(t.elapsed().as_secs_f64() / ws as f64);
    }
    Ok(dt)
}

fn run() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let shapes = list(args.next(), "2048x512,512x2048,1536x512", |v| {
        let (n, k) = v.split_once('x')?;
        Some((n.parse::<usize>().ok()?, k.parse::<usize>().ok()?))
    });
    let rows = list(args.next(), "1,4,16", |v| v.parse::<usize>().ok());
    let weights: usize = args.next().map_or(Ok(16), |v| v.parse()).map_err(candle_core::Error::wrap)?;
    let dev = Device::Cpu;
    println!("memory read bandwidth: {:.1} GB/s ({} threads)", read_bandwidth(), rayon::current_num_threads());
    for (n, k) in shapes {
        let ws: Vec<Tensor> =
            (0..weights.max(1)).map(|_| Tensor::randn(0f32, 1.0, (n, k), &dev)).collect::<Result<_>>()?;
        let ps: Vec<PackedWeight> = ws.iter().map(PackedWeight::from_tensor).collect::<Result<_>>()?;
        for &m in &rows {
            let x = Tensor::randn(0f32, 1.0, (m, k), &dev)?;
            let packed = best(ws.len(), |i| packed_matmul(&x, &ps[i]))?;
            let gemm = best(ws.len(), |i| x.matmul(&ws[i].t()?))?;
            let gflops = |s: f64| 2.0 * (m * n * k) as f64 / s / 1e9;
            println!(
                "({n}, {k}) x {m} rows: packed {:.1} us ({:.1} GFLOP/s, {:.1} GB/s of weights), gemm {:.1} us ({:.1} GFLOP/s): x{:.2}",
                packed * 1e6,
                gflops(packed),
                (n * k * 4) as f64 / packed / 1e9,
                gemm * 1e6,
                gflops(gemm),
                gemm / packed
            );
        }
    }
    Ok(())
}

fn main() -> Result<()> {
    let pool =
        phi4r_model::ComputePool::new("bench", phi4r_model::default_threads()).map_err(candle_core::Error::wrap)?;
    pool.install(run)
}
