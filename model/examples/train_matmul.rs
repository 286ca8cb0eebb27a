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
    Ok(())
}
