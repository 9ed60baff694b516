//! isofast-core: exact, streaming isotropy statistics for embedding matrices.
//!
//! Pure Rust (no Python): other Rust tools can depend on it, and `cargo test`
//! runs without an interpreter. Inputs are borrowed [`source::MatView`]s of any
//! layout and element type; every kernel streams row tiles, accumulates in
//! float64 and runs on a chosen number of threads ([`threads::install`]).
//!
//! Definitions follow the project's design contract (design.md §3).

pub mod abtt;
pub mod analyze;
pub mod checksum;
pub mod cluster;
pub mod cluster_pass;
pub mod cosine;
pub mod error;
pub mod head;
pub mod kmeans;
pub mod lse;
pub mod moments;
pub mod norms;
pub mod partition;
pub mod points;
pub mod random;
pub mod rankone;
pub mod silhouette;
mod simd;
pub mod source;
pub mod spectrum;
pub mod threads;
pub mod vector;

pub use analyze::{analyze, AnalyzeOptions, Report};
pub use error::{Error, Result};
pub use faer;
pub use moments::Moments;
pub use source::{Elem, MatView};
