//! Measures faer's f32/f64 GEMM rate on n×n products (the FLOP-floor yardstick
//! of benches/). Usage: cargo run --release -p isofast-core --example gemm_rate [n]
use isofast_core::faer::{self, Accum, Mat};
use std::time::Instant;

fn rate<T: faer::traits::RealField + Copy>(n: usize, one: T) -> f64 {
    let a: Mat<T> = Mat::from_fn(n, n, |i, j| if (i + j) % 3 == 0 { one } else { one + one });
    let b = a.clone();
    let mut c: Mat<T> = Mat::zeros(n, n);
    let par = isofast_core::threads::install(None, || Ok(isofast_core::threads::par())).expect("thread pool");
    isofast_core::threads::install(None, || {
        faer::linalg::matmul::matmul(c.as_mut(), Accum::Replace, a.as_ref(), b.as_ref(), one, par);
        let t = Instant::now();
        let reps = 3;
        for _ in 0..reps {
            faer::linalg::matmul::matmul(c.as_mut(), Accum::Replace, a.as_ref(), b.as_ref(), one, par);
        }
        Ok(2.0 * (n as f64).powi(3) * reps as f64 / t.elapsed().as_secs_f64() / 1e9)
    })
    .expect("thread pool")
}

fn main() {
    let n: usize = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(2048);
    println!("faer f32 GEMM {n}^3: {:.1} GFLOP/s", rate::<f32>(n, 1.0));
    println!("faer f64 GEMM {n}^3: {:.1} GFLOP/s", rate::<f64>(n, 1.0));
}
