//! Time of the first pass (float64 tile-centred co-moment + unit sums) on
//! random f32 rows, against the bare lower-triangular float64 rank-k update
//! it is built on. Usage: cargo run --release -p isofast-core --example moments_rate [n] [d]
use isofast_core::faer::{self, linalg::matmul::triangular::{self, BlockStructure}, Accum, Mat, MatRef};
use isofast_core::moments::Moments;
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
    isofast_core::threads::install(None, || {
        let t = Instant::now();
        let mut m = Moments::new(d);
        m.update(&v).unwrap();
        let full = t.elapsed().as_secs_f64();
        let b = tile_rows(d);
        let tile: Vec<f64> = x[..b * d].iter().map(|&v| v as f64).collect();
        let y = MatRef::from_row_major_slice(&tile, b, d);
        let mut acc = Mat::<f64>::zeros(d, d);
        let par = isofast_core::threads::par();
        let t = Instant::now();
        for _ in 0..n / b {
            triangular::matmul(acc.as_mut(), BlockStructure::TriangularLower, Accum::Add, y.transpose(), BlockStructure::Rectangular, y, BlockStructure::Rectangular, 1.0, par);
        }
        let syrk = t.elapsed().as_secs_f64();
        let flops = (n / b * b) as f64 * (d * d) as f64;
        println!("moments {n}x{d}: {full:.3} s ({:.1} GFLOP/s); bare f64 syrk over the same rows: {syrk:.3} s ({:.1} GFLOP/s)", n as f64 * (d * d) as f64 / full / 1e9, flops / syrk / 1e9);
        let _ = faer::Par::Seq;
    });
}
