//! PyO3 bindings of isofast-core: type conversion, GIL release and error
//! mapping only. No numeric logic lives here.
//!
//! The module is declarative: every class and function Python sees is one
//! `#[pymodule_export]` line below (its type in `python/isofast/_core.pyi`).

mod array;
mod cluster;
mod cluster_pass;
mod errors;
mod head;
mod results;
mod state;
mod stats;

use pyo3::prelude::*;

#[pymodule]
mod _core {
    use pyo3::prelude::*;

    #[pymodule_export]
    use crate::stats::{
        all_but_the_top, available_threads, column_mean, fast_tile_rows, log_partition, row_norms, self_similarity,
        spectral_scores, sym_eigen, unit_sum, Moments, SecondPass,
    };

    #[pymodule_export]
    use crate::cluster::{cluster_isotropy, cluster_statistics, kmeans, silhouette_score};

    #[pymodule_export]
    use crate::cluster_pass::{ClusterFirstPass, ClusterPlan, ClusterSecondPass};

    #[pymodule_export]
    use crate::head::log_partition_head;

    #[pymodule_export]
    use crate::results::{
        ClusterIsotropyResult, ClusterStatistics, HeadResult, KMeansFit, SecondPassResults, SelfSimilarityResult,
        SpectralScores,
    };

    #[pymodule_init]
    fn init(m: &Bound<'_, PyModule>) -> PyResult<()> {
        m.add("__version__", env!("CARGO_PKG_VERSION"))?;
        crate::errors::preload(m)
    }
}
