//! Time of analyze's two passes on random f32 rows: pass 1 (float64
//! tile-centred co-moment + unit sums) against the bare lower-triangular
//! float64 rank-k update it is built on, and pass 2 (projections on 2·d
//! directions + streaming log-sum-exp + centred unit sums).
//! Usage: cargo run --release -p isofast-core --example pass_rates [n] [d]
use isofast_core::faer::{
    linalg::matmul::triangular::{self, BlockStructure},
    Accum, Mat, MatRef,
};
use isofast_core::moments::Moments;
use isofast_core::partition::SecondPass;
use isofast_core::source::{tile_rows, MatView};
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
    let nd2 = n as f64 * (d * d) as f64;
    isofast_core::threads::install(None, || -> isofast_core::Result<()> {
        let par = isofast_core::threads::par();
        let t = Instant::now();
        let mut m = Moments::new(d);
        m.update(&v).unwrap();
        let p1 = t.elapsed().as_secs_f64();
        let b = tile_rows(d);
        let tile: Vec<f64> = x[..b * d].iter().map(|&v| v as f64).collect();
        let y = MatRef::from_row_major_slice(&tile, b, d);
        let mut acc = Mat::<f64>::zeros(d, d);
        let t = Instant::now();
        for _ in 0..n / b {
            triangular::matmul(
                acc.as_mut(),
                BlockStructure::TriangularLower,
                Accum::Add,
                y.transpose(),
                BlockStructure::Rectangular,
                y,
                BlockStructure::Rectangular,
                1.0,
                par,
            );
        }
        let syrk = t.elapsed().as_secs_f64();
        println!(
            "pass 1 {n}x{d}: {p1:.3} s ({:.1} GFLOP/s); bare f64 syrk over the same rows: {syrk:.3} s ({:.1} GFLOP/s)",
            nd2 / p1 / 1e9,
            (n / b * b) as f64 * (d * d) as f64 / syrk / 1e9
        );
        let eye = Mat::<f64>::from_fn(d, d, |i, j| if i == j { 1.0 } else { 0.0 });
        let t = Instant::now();
        let mut sp = SecondPass::new(vec![0.1; d], eye.clone(), eye, false).unwrap();
        sp.update(&v).unwrap();
        let p2 = t.elapsed().as_secs_f64();
        println!(
            "pass 2 {n}x{d}: {p2:.3} s ({:.1} GFLOP/s effective), log I = {:.6}",
            4.0 * nd2 / p2 / 1e9,
            sp.raw.log_isotropy()
        );
        Ok(())
    })
    .expect("thread pool");
}
