//! Running kernels on a chosen number of threads.
//!
//! Pools are built once per size and cached, so `n_threads` can be passed on
//! every call for free. Kernels are written so that results depend on the
//! thread count only through float64 rounding (≤ 1e-12 relative).

use rayon::{ThreadPool, ThreadPoolBuilder};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

fn pools() -> &'static Mutex<HashMap<usize, Arc<ThreadPool>>> {
    static POOLS: OnceLock<Mutex<HashMap<usize, Arc<ThreadPool>>>> = OnceLock::new();
    POOLS.get_or_init(|| Mutex::new(HashMap::new()))
}

/// Number of logical cores visible to this process.
pub fn available() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

/// Run `f` inside a rayon pool of `n` threads (`None` or 0 = all cores).
pub fn install<R: Send>(n: Option<usize>, f: impl FnOnce() -> R + Send) -> R {
    let n = match n {
        None | Some(0) => available(),
        Some(n) => n,
    };
    let pool = {
        let mut map = pools().lock().unwrap_or_else(|e| e.into_inner());
        map.entry(n)
            .or_insert_with(|| {
                Arc::new(
                    ThreadPoolBuilder::new()
                        .num_threads(n)
                        .thread_name(|i| format!("isofast-{i}"))
                        .build()
                        .expect("building a rayon thread pool"),
                )
            })
            .clone()
    };
    pool.install(f)
}

/// faer parallelism matching the current rayon pool.
pub fn par() -> faer::Par {
    let n = rayon::current_num_threads();
    if n <= 1 {
        faer::Par::Seq
    } else {
        faer::Par::rayon(n)
    }
}
