//! Borrowed, strided views of N×d matrices in any supported element type, and
//! the conversion of row tiles into contiguous float buffers.
//!
//! Kernels never copy a whole input: they ask a [`MatView`] for a tile of rows
//! converted to `f64` (or `f32`) and work on that. A view can describe a numpy
//! array of any strides (C, Fortran, sliced, negative strides, memory-mapped).

use crate::error::{invalid, Error, Result};
use half::{bf16, f16};
use rayon::prelude::*;
use std::marker::PhantomData;

/// Element type of a view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Elem {
    F64,
    F32,
    F16,
    BF16,
    I8,
    I16,
    I32,
    I64,
    U8,
    U16,
    U32,
    U64,
}

impl Elem {
    pub fn size(self) -> usize {
        match self {
            Elem::F64 | Elem::I64 | Elem::U64 => 8,
            Elem::F32 | Elem::I32 | Elem::U32 => 4,
            Elem::F16 | Elem::BF16 | Elem::I16 | Elem::U16 => 2,
            Elem::I8 | Elem::U8 => 1,
        }
    }

    /// Parse a numpy-style name ("float32", "bfloat16", "int64", …).
    pub fn from_name(name: &str) -> Option<Elem> {
        Some(match name {
            "float64" | "f8" | "double" => Elem::F64,
            "float32" | "f4" | "single" => Elem::F32,
            "float16" | "f2" | "half" => Elem::F16,
            "bfloat16" => Elem::BF16,
            "int8" | "i1" => Elem::I8,
            "int16" | "i2" => Elem::I16,
            "int32" | "i4" => Elem::I32,
            "int64" | "i8" => Elem::I64,
            "uint8" | "u1" => Elem::U8,
            "uint16" | "u2" => Elem::U16,
            "uint32" | "u4" => Elem::U32,
            "uint64" | "u8" => Elem::U64,
            _ => return None,
        })
    }

    /// True for float64 and integer inputs: projections and other GEMMs are
    /// then done in `f64` (centred integers are not exact in `f32`).
    pub fn needs_f64(self) -> bool {
        !matches!(self, Elem::F32 | Elem::F16 | Elem::BF16)
    }

    /// Integers cannot hold NaN/Inf, so the finiteness scan can be skipped.
    pub fn is_float(self) -> bool {
        matches!(self, Elem::F64 | Elem::F32 | Elem::F16 | Elem::BF16)
    }
}

/// A borrowed N×d matrix: base pointer, shape, byte strides and element type.
///
/// Strides are in bytes and may be negative or zero-padded; any layout numpy
/// can express is accepted.
#[derive(Clone, Copy, Debug)]
pub struct MatView<'a> {
    ptr: *const u8,
    nrows: usize,
    ncols: usize,
    row_stride: isize,
    col_stride: isize,
    elem: Elem,
    _life: PhantomData<&'a [u8]>,
}

// SAFETY: a MatView is a read-only borrow; the data it points at is never
// written through it, so sharing it between threads is sound as long as the
// owner keeps the buffer alive and unmodified (the constructor's contract).
unsafe impl Send for MatView<'_> {}
unsafe impl Sync for MatView<'_> {}

/// Types that can back a safe, contiguous row-major view.
pub trait ViewElem: Copy {
    const ELEM: Elem;
}
macro_rules! view_elem {
    ($($t:ty => $e:expr),*) => {$(impl ViewElem for $t { const ELEM: Elem = $e; })*};
}
view_elem!(f64 => Elem::F64, f32 => Elem::F32, f16 => Elem::F16, bf16 => Elem::BF16,
    i8 => Elem::I8, i16 => Elem::I16, i32 => Elem::I32, i64 => Elem::I64,
    u8 => Elem::U8, u16 => Elem::U16, u32 => Elem::U32, u64 => Elem::U64);

impl<'a> MatView<'a> {
    /// A row-major view of a slice holding `nrows * ncols` elements.
    pub fn row_major<T: ViewElem>(data: &'a [T], nrows: usize, ncols: usize) -> Result<Self> {
        if nrows.checked_mul(ncols) != Some(data.len()) {
            return invalid(format!("slice of length {} cannot be viewed as {nrows}×{ncols}", data.len()));
        }
        let es = std::mem::size_of::<T>() as isize;
        Ok(MatView {
            ptr: data.as_ptr() as *const u8,
            nrows,
            ncols,
            row_stride: es * ncols as isize,
            col_stride: es,
            elem: T::ELEM,
            _life: PhantomData,
        })
    }

    /// A view from raw parts (for bindings over foreign buffers).
    ///
    /// # Safety
    /// For every `i < nrows`, `j < ncols`, `ptr + i*row_stride + j*col_stride`
    /// must point at a readable, properly initialised element of type `elem`
    /// that stays alive and unmodified for `'a`.
    pub unsafe fn from_raw(
        ptr: *const u8,
        nrows: usize,
        ncols: usize,
        row_stride: isize,
        col_stride: isize,
        elem: Elem,
    ) -> Self {
        MatView { ptr, nrows, ncols, row_stride, col_stride, elem, _life: PhantomData }
    }

    pub fn nrows(&self) -> usize {
        self.nrows
    }
    pub fn ncols(&self) -> usize {
        self.ncols
    }
    pub fn elem(&self) -> Elem {
        self.elem
    }

    /// Rows `start .. start + len` as a view (panics never: clamps to bounds).
    pub fn rows(&self, start: usize, len: usize) -> MatView<'a> {
        let start = start.min(self.nrows);
        let len = len.min(self.nrows - start);
        let ptr = if len == 0 {
            self.ptr
        } else {
            // SAFETY: start < nrows, so the offset stays inside the viewed buffer.
            unsafe { self.ptr.offset(start as isize * self.row_stride) }
        };
        MatView { ptr, nrows: len, ..*self }
    }

    /// Contiguous (unit column stride and aligned) rows allow slice conversions.
    fn row_is_contiguous(&self) -> bool {
        self.col_stride == self.elem.size() as isize
            && (self.ptr as usize).is_multiple_of(self.elem.size())
            && (self.row_stride as usize).is_multiple_of(self.elem.size())
    }

    #[inline]
    unsafe fn at(&self, i: usize, j: usize) -> *const u8 {
        self.ptr.offset(i as isize * self.row_stride + j as isize * self.col_stride)
    }

    /// Convert row `i` into `out` (length `ncols`).
    fn read_row<F: Float>(&self, i: usize, out: &mut [F]) {
        debug_assert_eq!(out.len(), self.ncols);
        if self.ncols == 0 {
            return;
        }
        // SAFETY: i < nrows and the constructor's contract guarantee validity.
        unsafe {
            if self.row_is_contiguous() {
                let p = self.at(i, 0);
                let n = self.ncols;
                match self.elem {
                    Elem::F64 => F::from_f64_slice(std::slice::from_raw_parts(p as *const f64, n), out),
                    Elem::F32 => F::from_f32_slice(std::slice::from_raw_parts(p as *const f32, n), out),
                    Elem::F16 => F::from_f16_slice(std::slice::from_raw_parts(p as *const f16, n), out),
                    Elem::BF16 => F::from_bf16_slice(std::slice::from_raw_parts(p as *const bf16, n), out),
                    _ => self.read_row_strided(i, out),
                }
            } else {
                self.read_row_strided(i, out);
            }
        }
    }

    unsafe fn read_row_strided<F: Float>(&self, i: usize, out: &mut [F]) {
        macro_rules! rd {
            ($t:ty, $conv:expr) => {
                for (j, o) in out.iter_mut().enumerate() {
                    let v = std::ptr::read_unaligned(self.at(i, j) as *const $t);
                    *o = F::from_f64($conv(v));
                }
            };
        }
        match self.elem {
            Elem::F64 => rd!(f64, |v: f64| v),
            Elem::F32 => {
                for (j, o) in out.iter_mut().enumerate() {
                    *o = F::from_f32(std::ptr::read_unaligned(self.at(i, j) as *const f32));
                }
            }
            Elem::F16 => rd!(u16, |v: u16| f16::from_bits(v).to_f64()),
            Elem::BF16 => rd!(u16, |v: u16| bf16::from_bits(v).to_f64()),
            Elem::I8 => rd!(i8, |v: i8| v as f64),
            Elem::I16 => rd!(i16, |v: i16| v as f64),
            Elem::I32 => rd!(i32, |v: i32| v as f64),
            Elem::I64 => rd!(i64, |v: i64| v as f64),
            Elem::U8 => rd!(u8, |v: u8| v as f64),
            Elem::U16 => rd!(u16, |v: u16| v as f64),
            Elem::U32 => rd!(u32, |v: u32| v as f64),
            Elem::U64 => rd!(u64, |v: u64| v as f64),
        }
    }

    /// Convert rows `row0 .. row0 + n` into the row-major buffer `out`
    /// (`n * ncols` long), in parallel over rows.
    pub fn read_tile<F: Float>(&self, row0: usize, n: usize, out: &mut [F]) {
        let d = self.ncols;
        assert!(row0 + n <= self.nrows && out.len() >= n * d, "tile out of bounds");
        if d == 0 {
            return;
        }
        out[..n * d].par_chunks_mut(d).with_min_len(16).enumerate().for_each(|(r, row)| self.read_row(row0 + r, row));
    }
}

/// Scan a converted tile for NaN/Inf; returns the first (row, col) offender.
pub fn first_non_finite<F: Float>(tile: &[F], d: usize) -> Option<(usize, usize)> {
    if d == 0 {
        return None;
    }
    let row = tile.par_chunks(d).with_min_len(16).position_first(|r| r.iter().any(|v| !v.is_finite_()))?;
    let col = tile[row * d..(row + 1) * d].iter().position(|v| !v.is_finite_()).unwrap_or(0);
    Some((row, col))
}

/// Checks a tile and maps an offender to a stream-global error.
pub fn check_finite<F: Float>(tile: &[F], d: usize, row_offset: u64, elem: Elem) -> Result<()> {
    if !elem.is_float() {
        return Ok(());
    }
    match first_non_finite(tile, d) {
        Some((r, c)) => Err(Error::NonFinite { row: row_offset + r as u64, col: c }),
        None => Ok(()),
    }
}

/// The two accumulation/working precisions kernels convert tiles into.
pub trait Float:
    Copy + Send + Sync + Default + PartialOrd + std::fmt::Debug + faer::traits::RealField + 'static
{
    fn from_f64(v: f64) -> Self;
    fn from_f32(v: f32) -> Self;
    fn to_f64(self) -> f64;
    fn is_finite_(self) -> bool;
    fn from_f64_slice(src: &[f64], out: &mut [Self]);
    fn from_f32_slice(src: &[f32], out: &mut [Self]);
    fn from_f16_slice(src: &[f16], out: &mut [Self]);
    fn from_bf16_slice(src: &[bf16], out: &mut [Self]);
}

impl Float for f64 {
    #[inline]
    fn from_f64(v: f64) -> Self {
        v
    }
    #[inline]
    fn from_f32(v: f32) -> Self {
        v as f64
    }
    #[inline]
    fn to_f64(self) -> f64 {
        self
    }
    #[inline]
    fn is_finite_(self) -> bool {
        self.is_finite()
    }
    fn from_f64_slice(src: &[f64], out: &mut [Self]) {
        out.copy_from_slice(src)
    }
    fn from_f32_slice(src: &[f32], out: &mut [Self]) {
        for (o, s) in out.iter_mut().zip(src) {
            *o = *s as f64;
        }
    }
    fn from_f16_slice(src: &[f16], out: &mut [Self]) {
        use half::slice::HalfFloatSliceExt;
        src.convert_to_f64_slice(out)
    }
    fn from_bf16_slice(src: &[bf16], out: &mut [Self]) {
        use half::slice::HalfFloatSliceExt;
        src.convert_to_f64_slice(out)
    }
}

impl Float for f32 {
    #[inline]
    fn from_f64(v: f64) -> Self {
        v as f32
    }
    #[inline]
    fn from_f32(v: f32) -> Self {
        v
    }
    #[inline]
    fn to_f64(self) -> f64 {
        self as f64
    }
    #[inline]
    fn is_finite_(self) -> bool {
        self.is_finite()
    }
    fn from_f64_slice(src: &[f64], out: &mut [Self]) {
        for (o, s) in out.iter_mut().zip(src) {
            *o = *s as f32;
        }
    }
    fn from_f32_slice(src: &[f32], out: &mut [Self]) {
        out.copy_from_slice(src)
    }
    fn from_f16_slice(src: &[f16], out: &mut [Self]) {
        use half::slice::HalfFloatSliceExt;
        src.convert_to_f32_slice(out)
    }
    fn from_bf16_slice(src: &[bf16], out: &mut [Self]) {
        use half::slice::HalfFloatSliceExt;
        src.convert_to_f32_slice(out)
    }
}

/// Column means of a row-major f64 tile of `nb` rows: sum, then divide once
/// (identical rows then give their exact value).
pub fn tile_mean(t: &[f64], nb: usize, d: usize) -> Vec<f64> {
    let mut mb = vec![0.0f64; d];
    let tm = faer::MatRef::from_row_major_slice(&t[..nb * d], nb, d);
    let ones = vec![1.0f64; nb];
    let w = faer::MatRef::from_column_major_slice(ones.as_slice(), nb, 1);
    let acc = faer::MatMut::from_column_major_slice_mut(mb.as_mut_slice(), d, 1);
    faer::linalg::matmul::matmul(acc, faer::Accum::Replace, tm.transpose(), w, 1.0, crate::threads::par());
    let inv = 1.0 / nb as f64;
    mb.iter_mut().for_each(|v| *v *= inv);
    mb
}

/// Refuse a view with zero columns: no statistic is defined on d = 0 rows,
/// and tiles of d = 0 would be chunked by zero (a panic).
pub fn require_cols(x: &MatView<'_>, what: &str) -> Result<()> {
    if x.ncols() == 0 {
        return Err(Error::Empty(format!("{what}: the input has {} rows and 0 columns (need d ≥ 1)", x.nrows())));
    }
    Ok(())
}

/// Stream `x` as converted, finiteness-checked f64 tiles; `f(tile, first_row)`
/// sees each tile once, in row order. `row_offset` numbers rows in errors.
pub fn for_each_tile(
    x: &MatView<'_>,
    row_offset: u64,
    mut f: impl FnMut(&mut [f64], usize) -> Result<()>,
) -> Result<()> {
    require_cols(x, "row tiles")?;
    let (n, d) = (x.nrows(), x.ncols());
    stream_tiles(n, d, |start, nb, t| {
        x.read_tile(start, nb, t);
        check_finite(t, d, row_offset + start as u64, x.elem())?;
        f(t, start)
    })
}

/// Where the rows of a streaming pass are read from: all rows of a view, or
/// the listed rows of one, minus an optional centre.
pub(crate) enum RowSource<'a> {
    /// All rows of a view, minus `center`.
    View { x: MatView<'a>, center: Option<&'a [f64]> },
    /// The listed rows of a view, minus `center`.
    Indexed { x: MatView<'a>, rows: &'a [usize], center: &'a [f64] },
}

impl RowSource<'_> {
    pub(crate) fn len(&self) -> usize {
        match self {
            RowSource::View { x, .. } => x.nrows(),
            RowSource::Indexed { rows, .. } => rows.len(),
        }
    }

    /// Call `f(start, tile, rows)` on consecutive tiles of centred f64 rows
    /// ([`tile_rows`] rows each, as [`for_each_tile`]); `check` rejects
    /// NaN/Inf (naming the input row) before `f` sees a tile.
    pub(crate) fn for_each_tile(
        &self,
        d: usize,
        check: bool,
        mut f: impl FnMut(usize, &mut [f64], usize) -> Result<()>,
    ) -> Result<()> {
        let n = self.len();
        if n == 0 || d == 0 {
            return Ok(());
        }
        stream_tiles(n, d, |start, nb, t| {
            let (x, center) = match self {
                RowSource::View { x, center } => {
                    x.read_tile(start, nb, t);
                    (x, *center)
                }
                RowSource::Indexed { x, rows, center } => {
                    t.par_chunks_mut(d)
                        .zip(rows[start..start + nb].par_iter())
                        .with_min_len(32)
                        .for_each(|(out, &i)| x.rows(i, 1).read_tile(0, 1, out));
                    (x, Some(*center))
                }
            };
            if check && x.elem().is_float() {
                if let Some((r, c)) = first_non_finite(t, d) {
                    let row = match self {
                        RowSource::View { .. } => start + r,
                        RowSource::Indexed { rows, .. } => rows[start + r],
                    };
                    return Err(Error::NonFinite { row: row as u64, col: c });
                }
            }
            if let Some(c) = center {
                t.par_chunks_mut(d).with_min_len(64).for_each(|row| {
                    for (v, m) in row.iter_mut().zip(c) {
                        *v -= m;
                    }
                });
            }
            f(start, t, nb)
        })
    }
}

/// The tile loop every streaming read shares: one buffer of at most
/// [`tile_rows`]`(d)` rows, `fill(start, rows, tile)` then `f` per tile, in
/// row order.
fn stream_tiles(n: usize, d: usize, mut fill_then: impl FnMut(usize, usize, &mut [f64]) -> Result<()>) -> Result<()> {
    let b = tile_rows(d);
    let mut buf = vec![0.0f64; b.min(n) * d];
    let mut start = 0;
    while start < n {
        let nb = b.min(n - start);
        fill_then(start, nb, &mut buf[..nb * d])?;
        start += nb;
    }
    Ok(())
}

/// Rows per tile: large enough for GEMM efficiency, small enough that a tile
/// of `f64` stays near 16 MiB whatever `d` is.
pub fn tile_rows(d: usize) -> usize {
    let target = (16usize << 20) / (8 * d.max(1));
    target.clamp(256, 8192) / 64 * 64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::identity_op)] // index arithmetic spelled out as row * d + col
    fn strided_and_contiguous_reads_agree() {
        let data: Vec<f32> = (0..24).map(|v| v as f32).collect();
        let v = MatView::row_major(&data, 4, 6).unwrap();
        let mut out = vec![0f64; 24];
        v.read_tile(0, 4, &mut out);
        assert_eq!(out[7], 7.0);
        // Transposed (Fortran-like) view of the same buffer: 6×4.
        let t = unsafe { MatView::from_raw(data.as_ptr() as *const u8, 6, 4, 4, 24, Elem::F32) };
        let mut out_t = vec![0f64; 24];
        t.read_tile(0, 6, &mut out_t);
        assert_eq!(out_t[1 * 4 + 2], data[2 * 6 + 1] as f64);
        // Sub-view of rows.
        let s = v.rows(2, 5);
        assert_eq!(s.nrows(), 2);
    }

    #[test]
    fn non_finite_is_located() {
        let mut data = vec![1.0f64; 30];
        data[17] = f64::NAN;
        assert_eq!(first_non_finite(&data, 5), Some((3, 2)));
        let e = check_finite(&data, 5, 100, Elem::F64).unwrap_err();
        assert_eq!(e, Error::NonFinite { row: 103, col: 2 });
    }

    #[test]
    fn half_types_convert() {
        let h: Vec<bf16> = [1.5f32, -2.0, 3.25].iter().map(|v| bf16::from_f32(*v)).collect();
        let v = MatView::row_major(&h, 1, 3).unwrap();
        let mut out = vec![0f64; 3];
        v.read_tile(0, 1, &mut out);
        assert_eq!(out, vec![1.5, -2.0, 3.25]);
    }
}
