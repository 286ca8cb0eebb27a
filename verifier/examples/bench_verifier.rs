//! The verifier benchmark without the actors CLI (same code as `phi4r-actors bench verifier`):
//! `cargo run --release -p phi4r-verifier --example bench_verifier -- ../shared/data/eval`.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args().nth(1).unwrap_or_else(|| "../shared/data/eval".to_string());
    let report = phi4r_verifier::bench::run(std::path::Path::new(&dir))?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}
