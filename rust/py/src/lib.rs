//! PyO3 bindings of isofast-core: type conversion, GIL release and error
//! mapping only. No numeric logic lives here.

mod array;
mod cluster;
mod errors;
mod head;
mod results;
mod stats;

use pyo3::prelude::*;

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    errors::preload(m)?;
    stats::register(m)?;
    cluster::register(m)?;
    head::register(m)?;
    stats::register_extra(m)?;
    m.add_class::<results::SpectralScores>()?;
    m.add_class::<results::SelfSimilarityResult>()?;
    m.add_class::<results::SecondPassResults>()?;
    m.add_class::<results::KMeansFit>()?;
    m.add_class::<results::ClusterStatistics>()?;
    m.add_class::<results::ClusterIsotropyResult>()?;
    m.add_class::<results::HeadResult>()?;
    Ok(())
}
