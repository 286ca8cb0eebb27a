//! Times candle's f32 matmul (the gemm crate) on the training step's shapes, in GFLOP/s: the linear
//! layers' products as the forward and backward issue them, then attention's batched products.
//!
//! `RAYON_NUM_THREADS=2 cargo run --release -p phi4r-model --example train_matmul`
use candle_core::{Device, Result, Tensor};
use std::time::Instant;

/// Seconds per call of `f`, the mean of 10 after 3 warm-up calls.
fn time(f: &dyn Fn() -> Result<Tensor>) -> Result<f64> {
    for _ in 0..3 {
        f()?;
    }
    let r = 10;
    let t = Instant::now();
    for _ in 0..r {
        f()?;
    }
    Ok(t.elapsed().as_secs_f64() / r as f64)
}

type Product<'a> = (&'a str, Box<dyn Fn() -> Result<Tensor> + 'a>);

fn main() -> Result<()> {
    let dev = Device::Cpu;
    for (n, k, m) in [
        (1024, 1024, 1024),
        (4096, 256, 768),
        (4096, 256, 1024),
        (4096, 1024, 256),
        (4096, 512, 2048),
        (4096, 2048, 512),
        (4096, 512, 1536),
        // Weight gradients: dW = dy.t @ x, reducing over the 4,096 tokens.
        (768, 4096, 256),
        (1024, 4096, 256),
        (1536, 4096, 512),
        (4096, 4096, 512),
        (512, 4096, 2048),
    ] {
        let a = Tensor::randn(0f32, 1.0, (n, k), &dev)?;
        let b = Tensor::randn(0f32, 1.0, (k, m), &dev)?;
        let bt = Tensor::randn(0f32, 1.0, (m, k), &dev)?;
        let at = Tensor::randn(0f32, 1.0, (k, n), &dev)?;
        let products: [Product; 3] = [
            ("a@b", Box::new(|| a.matmul(&b))),
            ("a@bt.t", Box::new(|| a.matmul(&bt.t()?))),
            ("at.t@b", Box::new(|| at.t()?.matmul(&b))),
        ];
        for (name, f) in &products {
            print!("{n} {k} {m} {name} {:.1}  ", 2.0 * (n * k * m) as f64 / time(f.as_ref())? / 1e9);
        }
        println!();
    }
    // Attention of the tiny training step: 16 x 4 heads, t = 256, d = 64 (scores, then probs @ v).
    let (bh, t, d) = (64, 256, 64);
    let q = Tensor::randn(0f32, 1.0, (bh, t, d), &dev)?;
    let k = Tensor::randn(0f32, 1.0, (bh, t, d), &dev)?;
    let p = Tensor::randn(0f32, 1.0, (bh, t, t), &dev)?;
    // The backward's products have these shapes too: dP = dO @ v.t, dv = P.t @ dO, dq = dS @ k,
    // dk = dS.t @ q.
    let products: [Product; 3] = [
        ("q@k.t", Box::new(|| q.matmul(&k.t()?))),
        ("p@v", Box::new(|| p.matmul(&k))),
        ("p.t@v", Box::new(|| p.t()?.matmul(&k))),
    ];
    for (name, f) in &products {
        let dt = time(f.as_ref())?;
        println!("attn {name} {:.2} ms {:.1} GFLOPS", dt * 1e3, 2.0 * (bh * t * t * d) as f64 / dt / 1e9);
    }
    Ok(())
}
