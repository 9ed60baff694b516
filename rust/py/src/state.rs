//! Borrowing rules shared by the streaming state classes (`Moments`,
//! `SecondPass`, `ClusterFirstPass`, `ClusterSecondPass`): their updates run
//! with the GIL released, so a state can be borrowed by another thread; that
//! is an `InputError`, not PyO3's `RuntimeError`, and `s.merge(s)` is a
//! merge with an equal copy, not a borrow conflict.

use crate::errors::{InputError, Result};
use pyo3::prelude::*;
use pyo3::PyClass;

/// The error for a state used from two threads at once.
pub fn busy(what: &str) -> PyErr {
    InputError::new_err(format!("this {what} state is in use by another thread: use one per thread and merge() them"))
}

/// `merge(mine, theirs)` with `theirs` borrowed (not copied: it may hold
/// d × m directions), or a clone of `slf` when both are the same object, so
/// that `s.merge(s)` doubles the state as merging an equal copy would.
pub fn merge_into<T>(
    slf: &Bound<'_, T>,
    other: &Bound<'_, T>,
    what: &str,
    merge: impl FnOnce(&mut T, &T) -> Result<()>,
) -> Result<()>
where
    T: PyClass<Frozen = pyo3::pyclass::boolean_struct::False> + Clone,
{
    if slf.as_any().is(other.as_any()) {
        let same = slf.try_borrow().map_err(|_| busy(what))?.clone();
        return merge(&mut *slf.try_borrow_mut().map_err(|_| busy(what))?, &same);
    }
    let theirs = other.try_borrow().map_err(|_| busy(what))?;
    merge(&mut *slf.try_borrow_mut().map_err(|_| busy(what))?, &theirs)
}
