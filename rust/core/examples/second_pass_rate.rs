//! Time of the second pass (partition functions + centred cosine) on random
//! f32 rows. Usage: cargo run --release -p isofast-core --example second_pass_rate [n] [d]
use isofast_core::faer::Mat;
use isofast_core::partition::SecondPass;
use isofast_core::source::MatView;
use std::time::Instant;

fn main() {
    let mut a = std::env::args().skip(1).map(|s| s.parse::<usize>().unwrap());
    let n = a.next().unwrap_or(200_000);
    let d = a.next().unwrap_or(768);
    let mut s = 7u64;
    let x: Vec<f32> = (0..n * d)
        .map(|_| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (s >> 40) as f32 / (1u64 << 24) as f32 - 0.3
        })
        .collect();
    let v = MatView::row_major(&x, n, d).unwrap();
    let eye = Mat::<f64>::from_fn(d, d, |i, j| if i == j { 1.0 } else { 0.0 });
    isofast_core::threads::install(None, || {
        let t = Instant::now();
        let mut sp = SecondPass::new(vec![0.1; d], eye.clone(), eye.clone(), false).unwrap();
        sp.update(&v).unwrap();
        let secs = t.elapsed().as_secs_f64();
        let gflop = 4.0 * (n * d * d) as f64 / 1e9;
        println!("second pass {n}x{d}: {secs:.3} s ({:.1} GFLOP/s effective), log I = {:.6}", gflop / secs, sp.raw.log_isotropy());
    });
}
