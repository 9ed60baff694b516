//! PyO3 bindings of isofast-core: type conversion, GIL release and error
//! mapping only. No numeric logic lives here.

mod array;
mod cluster;
mod cluster_pass;
mod head;
mod stats;

use pyo3::prelude::*;

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    stats::register(m)?;
    cluster::register(m)?;
    cluster_pass::register(m)?;
    head::register(m)?;
    stats::register_extra(m)?;
    Ok(())
}
