//! Throughput of the streaming log-sum-exp on float32 projections (one thread).
use isofast_core::lse::LogSumExp;
use std::time::Instant;

fn main() {
    let n = 1 << 22;
    let v: Vec<f32> = (0..n).map(|i| ((i * 7919) % 10007) as f32 * 0.01 - 50.0).collect();
    let mut acc = LogSumExp::default();
    acc.update(&v);
    let reps = 20;
    let t = Instant::now();
    for _ in 0..reps {
        let mut a = LogSumExp::default();
        a.update(&v);
        acc.merge(&a);
    }
    let s = t.elapsed().as_secs_f64();
    println!("{:.3} ns per value (max + exp-sum), log Z = {:.6}", s * 1e9 / (n * reps) as f64, acc.value());
}
