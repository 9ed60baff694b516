//! The symmetric eigensolver's two routes at size n: divide and conquer (faer's
//! default, recursion threshold 128) vs QR iteration (no recursion): seconds
//! and workspace. Usage: cargo run --release -p isofast-core --example evd_route [n]
use isofast_core::faer::{
    self,
    dyn_stack::{MemBuffer, MemStack},
    linalg::evd,
    Auto, Mat,
};
use std::time::Instant;
fn main() {
    let n: usize = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(4096);
    let mut s = 1u64;
    let b = Mat::<f64>::from_fn(n, n, |_, _| {
        s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (s >> 11) as f64 / (1u64 << 53) as f64 - 0.5
    });
    let a = &b * b.transpose();
    isofast_core::threads::install(None, || -> isofast_core::Result<()> {
        let par = isofast_core::threads::par();
        for thr in [128usize, usize::MAX] {
            let mut p: evd::SelfAdjointEvdParams = <evd::SelfAdjointEvdParams as Auto<f64>>::auto();
            p.recursion_threshold = thr;
            let req = evd::self_adjoint_evd_scratch::<f64>(n, evd::ComputeEigenvectors::Yes, par, p.into());
            let mut u = Mat::<f64>::zeros(n, n);
            let mut sd = faer::diag::Diag::<f64>::zeros(n);
            let t = Instant::now();
            let mut buf = MemBuffer::new(req);
            evd::self_adjoint_evd(a.as_ref(), sd.as_mut(), Some(u.as_mut()), par, MemStack::new(&mut buf), p.into())
                .unwrap();
            println!(
                "threshold {thr}: {:.2} s, scratch {:.0} MiB, top {:.6e}",
                t.elapsed().as_secs_f64(),
                req.size_bytes() as f64 / 1048576.0,
                sd[n - 1]
            );
        }
        Ok(())
    })
    .expect("thread pool");
}
