//! Error type of the kernel crate. Every fallible kernel returns [`Result`];
//! no kernel panics on bad input (the bindings map variants to Python exceptions).

use std::fmt;

/// What went wrong, with enough context for a user to fix the input.
#[derive(Debug, Clone, PartialEq)]
pub enum Error {
    /// The input holds too few rows (or columns) for the statistic.
    Empty(String),
    /// A chunk, matrix or state has a different column count than expected.
    DimMismatch { what: String, expected: usize, got: usize },
    /// A NaN or ±Inf was found; `row` counts from the start of the stream.
    NonFinite { row: u64, col: usize },
    /// As `NonFinite`, in a named input of a kernel that takes several
    /// (e.g. `"C (contexts)"` of the LM-head kernels).
    NonFiniteIn { what: &'static str, row: u64, col: usize },
    /// Any other invalid argument (bad eps, k, labels, …).
    InvalidArgument(String),
    /// A numerical procedure failed (e.g. the eigensolver did not converge).
    Numerical(String),
    /// The OS refused a resource (threads, memory) the kernel needed.
    Resource(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Empty(msg) => write!(f, "{msg}"),
            Error::DimMismatch { what, expected, got } => {
                write!(f, "dimension mismatch in {what}: expected {expected} columns, got {got}")
            }
            Error::NonFinite { row, col } => {
                write!(f, "input contains NaN or Inf: first non-finite value at row {row}, column {col}")
            }
            Error::NonFiniteIn { what, row, col } => {
                write!(f, "{what} contains NaN or Inf: first non-finite value at row {row}, column {col}")
            }
            Error::InvalidArgument(msg) => write!(f, "{msg}"),
            Error::Numerical(msg) | Error::Resource(msg) => write!(f, "{msg}"),
        }
    }
}

impl std::error::Error for Error {}

pub type Result<T> = std::result::Result<T, Error>;

pub(crate) fn invalid<T>(msg: impl Into<String>) -> Result<T> {
    Err(Error::InvalidArgument(msg.into()))
}
