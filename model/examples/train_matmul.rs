//! Times candle's (gemm crate) f32 matmul on the training step's shapes.
use candle_core::{Device, Tensor};
use std::time::Instant;

fn main() -> candle_core::Result<()> {
    let dev = Device::Cpu;
    for (n, k, m) in [
        (1024, 1024, 1024),
        (4096, 256, 768),
        (4096, 256, 1024),
        (4096, 1024, 256),
        (4096, 512, 2048),
        (4096, 2048, 512),
        (4096, 512, 1536),
    ] {
        let a = Tensor::randn(0f32, 1.0, (n, k), &dev)?;
        let b = Tensor::randn(0f32, 1.0, (k, m), &dev)?;
        let bt = Tensor::randn(0f32, 1.0, (m, k), &dev)?;
        let at = Tensor::randn(0f32, 1.0, (k, n), &dev)?;
        for (name, f) in [
            ("a@b", Box::new(|| a.matmul(&b)) as Box<dyn Fn() -> candle_core::Result<Tensor>>),
            ("a@bt.t", Box::new(|| a.matmul(&bt.t()?))),
            ("at.t@b", Box::new(|| at.t()?.matmul(&b))),
        ] {
            for _ in 0..3 {
                f()?;
            }
            let r = 10;
            let t = Instant::now();
            for _ in 0..r {
                f()?;
            }
            let dt = t.elapsed().as_secs_f64() / r as f64;
            print!("{n} {k} {m} {name} {:.1}  ", 2.0 * (n * k * m) as f64 / dt / 1e9);
        }
        println!();
    }
    // Attention of the tiny training step: 16 x 4 heads, t = 256, d = 64 (scores, then probs @ v), and
    // the backward's products.
    let (bh, t, d) = (64, 256, 64);
    let q = Tensor::randn(0f32, 1.0, (bh, t, d), &dev)?;
    let k = Tensor::randn(0f32, 1.0, (bh, t, d), &dev)?;
    let p = Tensor::randn(0f32, 1.0, (bh, t, t), &dev)?;
    for (name, f) in [
        ("q@k.t", Box::new(|| q.matmul(&k.t()?)) as Box<dyn Fn() -> candle_core::Result<Tensor>>),
        ("p@v", Box::new(|| p.matmul(&k))),
        ("p.t@v", Box::new(|| p.t()?.matmul(&k))),
        ("p@v.t..", Box::new(|| p.matmul(&q))),
    ] {
        for _ in 0..3 {
            f()?;
        }
        let r = 10;
        let t0 = Instant::now();
        for _ in 0..r {
            f()?;
        }
        let dt = t0.elapsed().as_secs_f64() / r as f64;
        println!("attn {name} {:.2} ms {:.1} GFLOPS", dt * 1e3, 2.0 * (bh * t * t * d) as f64 / dt / 1e9);
    }
    Ok(())
}
