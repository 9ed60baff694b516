//! Running kernels on a chosen number of threads.
//!
//! Pools are kept in a small LRU cache (at most [`CACHED_POOLS`] pools), so
//! passing `n_threads` on every call costs nothing for the sizes in use while
//! a sweep over many sizes cannot accumulate threads: a pool evicted from the
//! cache ends its threads once no call uses it any more. A pool never has
//! more than [`max_threads`] threads (more threads than cores only add
//! contention), and a pool that the OS refuses to start (thread or memory
//! limits) is an [`Error::Resource`], not a panic. Kernels are written so that
//! results depend on the thread count only through float64 rounding
//! (≤ 1e-12 relative).

use crate::error::{Error, Result};
use rayon::{ThreadPool, ThreadPoolBuilder};
use std::sync::{Arc, Mutex, OnceLock};

/// How many pools (of distinct sizes) are kept alive between calls.
pub const CACHED_POOLS: usize = 4;

type Cache = Vec<(usize, Arc<ThreadPool>)>;

fn pools() -> &'static Mutex<Cache> {
    static POOLS: OnceLock<Mutex<Cache>> = OnceLock::new();
    POOLS.get_or_init(|| Mutex::new(Vec::new()))
}

/// Number of logical cores visible to this process.
pub fn available() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

/// Largest pool ever built: twice the visible cores (at least 8), so a
/// request for 10 000 threads on a laptop does not start 10 000 threads.
pub fn max_threads() -> usize {
    (2 * available()).max(8)
}

/// The pool size used for a request of `n` threads (`None` or 0 = all cores).
pub fn pool_size(n: Option<usize>) -> usize {
    match n {
        None | Some(0) => available(),
        Some(n) => n.min(max_threads()),
    }
}

/// Number of pools currently cached (for tests of the bound).
pub fn cached_pools() -> usize {
    pools().lock().unwrap_or_else(|e| e.into_inner()).len()
}

fn pool(n: usize) -> Result<Arc<ThreadPool>> {
    let mut cache = pools().lock().unwrap_or_else(|e| e.into_inner());
    if let Some(i) = cache.iter().position(|(k, _)| *k == n) {
        let hit = cache.remove(i);
        let p = hit.1.clone();
        cache.insert(0, hit);
        return Ok(p);
    }
    let p = ThreadPoolBuilder::new()
        .num_threads(n)
        .thread_name(|i| format!("isofast-{i}"))
        .build()
        .map_err(|e| Error::Resource(format!("could not start a pool of {n} threads ({e}): lower n_threads")))?;
    let p = Arc::new(p);
    cache.insert(0, (n, p.clone()));
    // Dropping the evicted Arc ends that pool's threads once in-flight calls
    // holding a clone of it return.
    cache.truncate(CACHED_POOLS);
    Ok(p)
}

/// What a kernel returns, so that a pool that cannot be built becomes the
/// kernel's own error value.
pub trait PoolOutput {
    fn pool_failed(e: Error) -> Self;
}

impl<T> PoolOutput for Result<T> {
    fn pool_failed(e: Error) -> Self {
        Err(e)
    }
}

/// Run `f` inside a rayon pool of `n` threads (`None` or 0 = all cores;
/// at most [`max_threads`]).
pub fn install<R: Send + PoolOutput>(n: Option<usize>, f: impl FnOnce() -> R + Send) -> R {
    match pool(pool_size(n)) {
        Ok(p) => p.install(f),
        Err(e) => R::pool_failed(e),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pools_are_bounded_and_sized() {
        for n in 1..=60 {
            let got: Result<usize> = install(Some(n), || Ok(rayon::current_num_threads()));
            assert_eq!(got.unwrap(), n.min(max_threads()));
            assert!(cached_pools() <= CACHED_POOLS);
        }
        let got: Result<usize> = install(Some(usize::MAX), || Ok(rayon::current_num_threads()));
        assert_eq!(got.unwrap(), max_threads());
    }
}
