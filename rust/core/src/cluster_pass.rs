//! The per-cluster streaming passes of clustered isotropy (design.md §3) as
//! public, mergeable states: the one home of the per-cluster statistics, used
//! by the in-memory recipe ([`crate::cluster`]) and by distributed schedulers
//! (isofast.dask maps the states over blocks and tree-merges them).
//!
//! Two passes, because the second needs the first's result:
//!
//! 1. [`ClusterFirstPass`]: every row is assigned to its nearest centre
//!    ([`nearest_block`]: the argmin of exact distances, ties to the lowest
//!    label, so labels do not depend on how rows are chunked), then per
//!    cluster the size, the sum, an exact zero-variance test (does any row
//!    differ from the cluster's first row?) and — when spectra are wanted —
//!    the co-moment ([`Moments`]). [`ClusterFirstPass::finish`] gives a
//!    [`ClusterPlan`]: per cluster its mean and one route — undefined (fewer
//!    than 2 rows, below `min_size`, zero variance), unit sum only (no
//!    spectra), the Gram route (n_c ≤ d) or the primal route (eigenvectors of
//!    the cluster covariance C_c = M_c/(n_c − 1)).
//! 2. [`ClusterSecondPass`]: with the plan, every row is assigned again and
//!    folded into its cluster's accumulator — centred log Z(±u_k) and the
//!    centred unit-vector sum Σ (x − m_c)/‖x − m_c‖ (primal route, via
//!    [`SecondPass`]), the unit sum alone, or the centred rows themselves
//!    (Gram route, at most d rows per cluster). [`ClusterSecondPass::finish`]
//!    gives one [`ClusterStats`] per cluster: the re-centred average cosine
//!    (‖Σ x̂‖² − n)/(n(n − 1)) (Ethayarajh 2019's identity), log I = min log Z
//!    − max log Z over ±u_k (Mu & Viswanath 2018, centred as in Cai et al.
//!    2021) and IsoScore (PR − 1)/(d − 1) of the covariance spectrum.
//!
//! Coordinates: a state subtracts `shift` (any point near the data, e.g. the
//! mean of the rows k-means was fitted on) from every row before anything
//! else; every statistic is translation-invariant, the shift only conditions
//! the arithmetic (LLM rows carry norms in the thousands). Centres and cluster
//! means inside the states are in shifted coordinates.
//!
//! States merge in any order and grouping (up to float64 rounding) and
//! serialise to bytes: magic and version, the fields in little endian, a
//! CRC-32 of everything before it; damaged or truncated bytes are an
//! [`Error::InvalidArgument`] naming the state.

use crate::checksum::crc32;
use crate::cosine::UnitSum;
use crate::error::{Error, Result};
use crate::kmeans::{nearest_block, CentreSet};
use crate::lse::{update_both_signs, LogSumExp};
use crate::moments::Moments;
use crate::partition::{PartitionState, SecondPass};
use crate::points::{PointsRef, BLOCK};
use crate::source::{tile_rows, MatView, RowSource};
use crate::spectrum::{spectral_scores, sym_eigen};
use crate::threads;
use crate::vector::{add_assign, axpy_centered, sqdist, sqnorm};
use faer::{Accum, Mat, MatRef};
use rayon::prelude::*;

/// Statistics of one cluster.
#[derive(Clone, Debug, PartialEq)]
pub struct ClusterStats {
    pub size: u64,
    /// Mean cosine over ordered pairs after re-centring at the cluster mean.
    pub avg_cosine_centered: f64,
    /// Rows equal to the cluster mean (left out of the cosine).
    pub n_zero_norm: u64,
    /// log I over c ∈ {±u_k} of the cluster covariance, cluster-centred rows.
    pub log_partition_isotropy: f64,
    pub partition_isotropy: f64,
    /// (PR − 1)/(d − 1) of the cluster covariance (biased low when n_c ≪ d).
    pub isoscore: f64,
    /// Why some values are NaN, if they are.
    pub note: Option<String>,
}

// ---------------------------------------------------------------------------
// Row buffers and tile parts
// ---------------------------------------------------------------------------

/// Per-cluster row buffers: rows of one cluster are collected until a buffer
/// is full, then handed to that cluster's state as one contiguous tile (GEMMs
/// want many rows at once; a tile holds rows of every cluster mixed).
#[derive(Clone, Debug)]
struct Gather {
    d: usize,
    cap_rows: usize,
    bufs: Vec<Vec<f64>>,
}

impl Gather {
    fn new(k: usize, d: usize) -> Self {
        // ~96 MiB for all buffers together, 64..tile_rows rows each.
        let cap_rows = ((96usize << 20) / (8 * k.max(1) * d.max(1))).clamp(64, tile_rows(d));
        Gather { d, cap_rows, bufs: vec![Vec::new(); k] }
    }

    fn is_empty(&self) -> bool {
        self.bufs.iter().all(|b| b.is_empty())
    }

    fn push(
        &mut self,
        c: usize,
        row: &[f64],
        flush: &mut impl FnMut(usize, &mut [f64], usize) -> Result<()>,
    ) -> Result<()> {
        let b = &mut self.bufs[c];
        if b.capacity() == 0 {
            b.reserve_exact(self.cap_rows * self.d);
        }
        b.extend_from_slice(row);
        if b.len() == self.cap_rows * self.d {
            flush(c, b, self.cap_rows)?;
            b.clear();
        }
        Ok(())
    }

    /// Hand over every partly filled buffer and free the buffers.
    fn finish(&mut self, flush: &mut impl FnMut(usize, &mut [f64], usize) -> Result<()>) -> Result<()> {
        for (c, b) in self.bufs.iter_mut().enumerate() {
            if !b.is_empty() {
                let rows = b.len() / self.d;
                flush(c, b, rows)?;
                b.clear();
            }
            *b = Vec::new();
        }
        Ok(())
    }
}

/// One sub-block's contribution to the first pass.
struct TilePart {
    sizes: Vec<u64>,
    sums: Vec<f64>,
    /// Row (within the tile) of each cluster's first row in this sub-block.
    first: Vec<Option<usize>>,
    varied: Vec<bool>,
}

impl TilePart {
    fn new(k: usize, d: usize) -> Self {
        TilePart { sizes: vec![0; k], sums: vec![0.0; k * d], first: vec![None; k], varied: vec![false; k] }
    }
}

/// Nearest of `centers` (`k × d`) for every row of the tile `t`, in fixed
/// sub-blocks of [`BLOCK`] rows (exact argmin: independent of the chunking).
fn assign_tile(t: &[f64], centers: &[f64], k: usize, d: usize, lab: &mut [u32]) {
    let cent = CentreSet::new(centers, k, d, false);
    let found: Vec<u32> = t
        .par_chunks(BLOCK * d)
        .map(|blk| {
            let sq: Vec<f64> = blk.chunks_exact(d).map(sqnorm).collect();
            let rows = PointsRef { data: blk, sq: &sq, n: sq.len(), d, data32: None };
            nearest_block(rows, None, &cent).into_iter().map(|f| f.label).collect::<Vec<_>>()
        })
        .collect::<Vec<_>>()
        .concat();
    lab.copy_from_slice(&found);
}

// ---------------------------------------------------------------------------
// Pass 1
// ---------------------------------------------------------------------------

/// Pass-1 state: per cluster the size, the sum (shifted coordinates), the
/// exact zero-variance test and, where spectra may need it, the co-moment.
#[derive(Clone, Debug)]
pub struct ClusterFirstPass {
    k: usize,
    d: usize,
    shift: Vec<f64>,
    /// Centres in shifted coordinates (`k × d`); `None`: labels come with
    /// every tile (crate-internal use).
    centers: Option<Vec<f64>>,
    spectra: bool,
    /// GEMMs of pass 2 in float64 (some input needed it, e.g. float64 rows).
    f64_gemm: bool,
    need_moments: Vec<bool>,
    sizes: Vec<u64>,
    sums: Vec<f64>,
    /// First row seen of each cluster (shifted coordinates).
    first: Vec<f64>,
    varied: Vec<bool>,
    /// Co-moments, created at a cluster's first row where `need_moments`.
    moments: Vec<Option<Moments>>,
    gather: Gather,
}

impl ClusterFirstPass {
    /// Assignment to `centers` (`k × d`, row-major, input coordinates) of rows
    /// shifted by `shift` (length d). `spectra`: keep the co-moments the
    /// covariance spectra need.
    pub fn new(centers: &[f64], shift: Vec<f64>, spectra: bool) -> Result<Self> {
        let d = shift.len();
        if d == 0 {
            return Err(Error::Empty("cluster pass: the shift has 0 entries (need d ≥ 1)".into()));
        }
        if centers.is_empty() {
            return Err(Error::Empty("cluster pass: no centres (k = 0; need k ≥ 1)".into()));
        }
        if !centers.len().is_multiple_of(d) {
            return Err(Error::DimMismatch {
                what: "cluster pass: centres (k × d values)".into(),
                expected: d,
                got: centers.len(),
            });
        }
        let k = centers.len() / d;
        if k > u32::MAX as usize {
            return Err(Error::InvalidArgument(format!("cluster pass: {k} centres exceed the label range")));
        }
        if let Some(j) = shift.iter().position(|v| !v.is_finite()) {
            return Err(Error::InvalidArgument(format!("cluster pass: the shift holds NaN or Inf at column {j}")));
        }
        if let Some(i) = centers.iter().position(|v| !v.is_finite()) {
            return Err(Error::InvalidArgument(format!(
                "cluster pass: centre {} holds NaN or Inf at column {}",
                i / d,
                i % d
            )));
        }
        let shifted: Vec<f64> =
            centers.chunks_exact(d).flat_map(|c| c.iter().zip(&shift).map(|(a, b)| a - b)).collect();
        Ok(Self::build(k, d, shift, Some(shifted), spectra, false, None))
    }

    /// Rows already shifted, nearest of `centers` (shifted coordinates).
    pub(crate) fn with_centers(centers: Vec<f64>, k: usize, d: usize, spectra: bool, f64_gemm: bool) -> Self {
        Self::build(k, d, vec![0.0; d], Some(centers), spectra, f64_gemm, None)
    }

    /// Rows already shifted, labels given with every tile; `sizes` (the
    /// labels' counts) spare the co-moments of clusters of ≤ d rows.
    pub(crate) fn with_labels(k: usize, d: usize, sizes: &[u64], spectra: bool, f64_gemm: bool) -> Self {
        Self::build(k, d, vec![0.0; d], None, spectra, f64_gemm, Some(sizes))
    }

    fn build(
        k: usize,
        d: usize,
        shift: Vec<f64>,
        centers: Option<Vec<f64>>,
        spectra: bool,
        f64_gemm: bool,
        known_sizes: Option<&[u64]>,
    ) -> Self {
        // The co-moment is only needed for clusters that may have more rows
        // than dimensions (sizes are unknown up front when assigning).
        let need_moments = (0..k).map(|c| spectra && known_sizes.is_none_or(|s| s[c] as usize > d)).collect();
        ClusterFirstPass {
            k,
            d,
            shift,
            centers,
            spectra,
            f64_gemm,
            need_moments,
            sizes: vec![0; k],
            sums: vec![0.0; k * d],
            first: vec![0.0; k * d],
            varied: vec![false; k],
            moments: (0..k).map(|_| None).collect(),
            gather: Gather::new(k, d),
        }
    }

    pub fn k(&self) -> usize {
        self.k
    }
    pub fn dim(&self) -> usize {
        self.d
    }
    /// Whether the co-moments for the covariance spectra are kept.
    pub fn spectra(&self) -> bool {
        self.spectra
    }
    /// Rows seen.
    pub fn count(&self) -> u64 {
        self.sizes.iter().sum()
    }
    pub fn sizes(&self) -> &[u64] {
        &self.sizes
    }

    /// Add every row of `x` (NaN/Inf refused, rows numbered within `x`).
    pub fn update(&mut self, x: &MatView<'_>) -> Result<()> {
        if x.ncols() != self.d {
            return Err(Error::DimMismatch { what: "cluster first pass".into(), expected: self.d, got: x.ncols() });
        }
        if self.centers.is_none() {
            return Err(Error::InvalidArgument("this cluster pass takes its labels with every tile".into()));
        }
        let n0 = self.count();
        let shift = self.shift.clone();
        let src = RowSource::View { x: *x, center: Some(&shift) };
        let mut lab = vec![0u32; tile_rows(self.d).min(x.nrows())];
        let done = src
            .for_each_tile(self.d, true, |_, t, nb| self.update_tile(t, nb, &mut lab[..nb]))
            .and_then(|_| self.flush());
        // float64 rows ask for float64 GEMMs in pass 2 — once some are in:
        // an update refused before any row leaves the state as it was
        if self.count() != n0 {
            self.f64_gemm |= x.elem().needs_f64();
        }
        done
    }

    /// Fold a tile of `nb` shifted rows: labels are assigned into `lab` (when
    /// the state has centres) or read from it; then sizes, sums and the
    /// zero-variance test on fixed sub-blocks in parallel, merged in order
    /// (so the sums are free of the thread count), and the co-moment rows
    /// into the per-cluster buffers.
    pub(crate) fn update_tile(&mut self, t: &mut [f64], nb: usize, lab: &mut [u32]) -> Result<()> {
        let (k, d) = (self.k, self.d);
        if let Some(c) = &self.centers {
            assign_tile(t, c, k, d, lab);
        }
        let lab_t = &lab[..nb];
        let parts: Vec<TilePart> = t
            .par_chunks(BLOCK * d)
            .enumerate()
            .map(|(b, blk)| {
                let mut part = TilePart::new(k, d);
                for (r, row) in blk.chunks_exact(d).enumerate() {
                    let c = lab_t[b * BLOCK + r] as usize;
                    part.sizes[c] += 1;
                    match part.first[c] {
                        None => part.first[c] = Some(b * BLOCK + r),
                        Some(f) => {
                            if !part.varied[c] && t[f * d..(f + 1) * d] != *row {
                                part.varied[c] = true;
                            }
                        }
                    }
                    add_assign(&mut part.sums[c * d..(c + 1) * d], row, false);
                }
                part
            })
            .collect();
        for part in parts {
            for c in 0..k {
                if part.sizes[c] == 0 {
                    continue;
                }
                let f = part.first[c].expect("a first row when the size is positive");
                let row = &t[f * d..(f + 1) * d];
                self.fold_first(c, row, part.varied[c]);
                self.sizes[c] += part.sizes[c];
                add_assign(&mut self.sums[c * d..(c + 1) * d], &part.sums[c * d..(c + 1) * d], false);
            }
        }
        if self.need_moments.iter().any(|&m| m) {
            let ClusterFirstPass { gather, moments, need_moments, .. } = self;
            let mut scratch = Vec::new();
            let mut flush = |c: usize, buf: &mut [f64], rows: usize| -> Result<()> {
                moments[c].get_or_insert_with(|| Moments::new(d)).add_tile(&mut buf[..rows * d], rows, &mut scratch);
                Ok(())
            };
            for r in 0..nb {
                let c = lab_t[r] as usize;
                if need_moments[c] {
                    gather.push(c, &t[r * d..(r + 1) * d], &mut flush)?;
                }
            }
        }
        Ok(())
    }

    /// The zero-variance test across parts: a part of cluster `c` whose
    /// first row is `row` (and whose own rows vary or not).
    fn fold_first(&mut self, c: usize, row: &[f64], part_varied: bool) {
        let d = self.d;
        let g = &mut self.first[c * d..(c + 1) * d];
        if self.sizes[c] == 0 {
            g.copy_from_slice(row);
        } else if !self.varied[c] && *g != *row {
            self.varied[c] = true;
        }
        self.varied[c] |= part_varied;
    }

    /// Hand the buffered rows to their co-moments.
    pub(crate) fn flush(&mut self) -> Result<()> {
        let d = self.d;
        let ClusterFirstPass { gather, moments, .. } = self;
        let mut scratch = Vec::new();
        gather.finish(&mut |c: usize, buf: &mut [f64], rows: usize| -> Result<()> {
            moments[c].get_or_insert_with(|| Moments::new(d)).add_tile(&mut buf[..rows * d], rows, &mut scratch);
            Ok(())
        })
    }

    fn same_setup(&self, other: &ClusterFirstPass) -> Result<()> {
        if other.d != self.d || other.k != self.k {
            return Err(Error::InvalidArgument(format!(
                "cluster first pass merge: {} clusters × {} columns vs {} × {}",
                self.k, self.d, other.k, other.d
            )));
        }
        if other.spectra != self.spectra || other.shift != self.shift || other.centers != self.centers {
            return Err(Error::InvalidArgument(
                "cluster first pass merge: the states were built with different centres, shift or spectra".into(),
            ));
        }
        Ok(())
    }

    /// Combine with a state built from other rows.
    pub fn merge(&mut self, other: &ClusterFirstPass) -> Result<()> {
        self.same_setup(other)?;
        self.flush()?;
        if !other.gather.is_empty() {
            let mut o = other.clone();
            o.flush()?;
            return self.merge(&o);
        }
        let d = self.d;
        for c in 0..self.k {
            if other.sizes[c] == 0 {
                continue;
            }
            self.fold_first(c, &other.first[c * d..(c + 1) * d], other.varied[c]);
            self.sizes[c] += other.sizes[c];
            add_assign(&mut self.sums[c * d..(c + 1) * d], &other.sums[c * d..(c + 1) * d], false);
            if let Some(m) = &other.moments[c] {
                match &mut self.moments[c] {
                    Some(mine) => mine.merge(m)?,
                    None => self.moments[c] = Some(m.clone()),
                }
            }
        }
        self.f64_gemm |= other.f64_gemm;
        Ok(())
    }

    /// Cluster means and one plan per cluster (the covariance
    /// eigendecompositions of the primal route run here). Clusters below
    /// `min_size` rows (values ≤ 2 mean no floor) are undefined.
    pub fn finish(mut self, min_size: usize) -> Result<ClusterPlan> {
        self.flush()?;
        let (k, d) = (self.k, self.d);
        let means: Vec<Vec<f64>> = (0..k)
            .map(|c| {
                let inv = if self.sizes[c] > 0 { 1.0 / self.sizes[c] as f64 } else { 0.0 };
                self.sums[c * d..(c + 1) * d].iter().map(|v| v * inv).collect()
            })
            .collect();
        let mut routes = Vec::with_capacity(k);
        for c in 0..k {
            routes.push(route_of(self.sizes[c], self.varied[c], self.moments[c].take(), d, self.spectra, min_size)?);
        }
        let key = plan_key(k, d, &self.shift, self.centers.as_deref(), &self.sizes, &means);
        Ok(ClusterPlan {
            k,
            d,
            shift: self.shift,
            centers: self.centers,
            f64_gemm: self.f64_gemm,
            sizes: self.sizes,
            means,
            routes,
            key,
        })
    }

    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let mut s = self.clone();
        s.flush()?;
        let mut w = Writer::new(FIRST_MAGIC);
        w.u64s(&[s.k as u64, s.d as u64]);
        w.bools(&[s.spectra, s.f64_gemm, s.centers.is_some()]);
        w.f64s(&s.shift);
        if let Some(c) = &s.centers {
            w.f64s(c);
        }
        w.bools(&s.need_moments);
        w.u64s(&s.sizes);
        w.f64s(&s.sums);
        w.f64s(&s.first);
        w.bools(&s.varied);
        for m in &s.moments {
            match m {
                None => w.u64s(&[0]),
                Some(m) => {
                    let b = m.to_bytes();
                    w.u64s(&[b.len() as u64]);
                    w.raw(&b);
                }
            }
        }
        Ok(w.finish())
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<ClusterFirstPass> {
        let mut r = Reader::open(bytes, FIRST_MAGIC, "ClusterFirstPass")?;
        let (k, d) = (r.len()?, r.len()?);
        if k == 0 || d == 0 || k.checked_mul(d).is_none_or(|kd| kd > bytes.len()) {
            return Err(r.bad(format!("{k} clusters × {d} columns")));
        }
        let (spectra, f64_gemm, has_centers) = (r.bool()?, r.bool()?, r.bool()?);
        let shift = r.f64s(d)?;
        let centers = if has_centers { Some(r.f64s(k * d)?) } else { None };
        let need_moments = r.bools(k)?;
        let sizes = r.u64s(k)?;
        let sums = r.f64s(k * d)?;
        let first = r.f64s(k * d)?;
        let varied = r.bools(k)?;
        let mut moments = Vec::with_capacity(k);
        for (c, &size) in sizes.iter().enumerate() {
            let len = r.len()?;
            if len == 0 {
                moments.push(None);
                continue;
            }
            let m = Moments::from_bytes(r.take(len)?).map_err(|e| r.bad(format!("cluster {c}: {e}")))?;
            if m.dim() != d || m.count() != size {
                return Err(r.bad(format!(
                    "cluster {c}: co-moment of {} rows × {} for {size} rows",
                    m.count(),
                    m.dim(),
                )));
            }
            moments.push(Some(m));
        }
        r.end()?;
        Ok(ClusterFirstPass {
            k,
            d,
            shift,
            centers,
            spectra,
            f64_gemm,
            need_moments,
            sizes,
            sums,
            first,
            varied,
            moments,
            gather: Gather::new(k, d),
        })
    }
}

// ---------------------------------------------------------------------------
// The plan between the passes
// ---------------------------------------------------------------------------

/// How one cluster's statistics are computed.
#[derive(Clone, Debug)]
enum Route {
    /// Fewer than 2 rows, below the size floor, or all rows identical.
    Undefined(String),
    /// Mean-centred unit sum only (no spectra requested): (x − m)/‖x − m‖
    /// summed row by row — the [`UnitSum`] of the re-centred rows.
    CosineOnly,
    /// n_c > d: covariance eigenvalues and eigenvectors (columns, d × d),
    /// then a streamed [`SecondPass`].
    Primal { eigenvalues: Vec<f64>, vectors: Mat<f64> },
    /// n_c ≤ d: rows kept (≤ d² values), spectrum from the n_c×n_c Gram matrix.
    Dual,
}

fn route_of(
    nc: u64,
    varied: bool,
    moments: Option<Moments>,
    d: usize,
    spectra: bool,
    min_size: usize,
) -> Result<Route> {
    if nc < 2 {
        return Ok(Route::Undefined(format!(
            "cluster has {nc} row(s): the cosine over pairs and the covariance need at least 2"
        )));
    }
    if (nc as usize) < min_size {
        return Ok(Route::Undefined(format!(
            "below min_cluster_size = {min_size}: cluster has {nc} rows (statistics of very small clusters are dominated by their size; a 2-row cluster's re-centred cosine is exactly -1)"
        )));
    }
    if !varied {
        return Ok(Route::Undefined(ZERO_VARIANCE.into()));
    }
    if !spectra {
        return Ok(Route::CosineOnly);
    }
    if nc as usize <= d {
        return Ok(Route::Dual);
    }
    let m = moments.expect("co-moment kept for clusters larger than d");
    let cov = m.covariance()?;
    let eig = sym_eigen(cov.as_ref())?;
    // (The exact-equality test catches identical rows; this guards a
    // spectrum that rounds to zero. Written so that NaN also fails.)
    if eig.values.iter().sum::<f64>().partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater) {
        return Ok(Route::Undefined(ZERO_VARIANCE.into()));
    }
    Ok(Route::Primal { eigenvalues: eig.values, vectors: eig.vectors })
}

const ZERO_VARIANCE: &str = "all rows of the cluster are identical (zero variance)";

/// Result of pass 1, input of pass 2: per cluster its size, mean and route.
#[derive(Clone, Debug)]
pub struct ClusterPlan {
    k: usize,
    d: usize,
    shift: Vec<f64>,
    centers: Option<Vec<f64>>,
    f64_gemm: bool,
    sizes: Vec<u64>,
    /// Cluster means, shifted coordinates.
    means: Vec<Vec<f64>>,
    routes: Vec<Route>,
    /// Fingerprint tying second-pass states to this plan.
    key: u64,
}

/// FNV-1a over the plan's defining numbers (never 0: 0 marks an empty state).
fn plan_key(k: usize, d: usize, shift: &[f64], centers: Option<&[f64]>, sizes: &[u64], means: &[Vec<f64>]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |v: u64| {
        for b in v.to_le_bytes() {
            h = (h ^ b as u64).wrapping_mul(0x0100_0000_01b3);
        }
    };
    eat(k as u64);
    eat(d as u64);
    shift.iter().chain(centers.unwrap_or(&[])).chain(means.iter().flatten()).for_each(|v| eat(v.to_bits()));
    sizes.iter().for_each(|&s| eat(s));
    h | 1
}

impl ClusterPlan {
    pub fn k(&self) -> usize {
        self.k
    }
    pub fn dim(&self) -> usize {
        self.d
    }
    pub fn shift(&self) -> &[f64] {
        &self.shift
    }
    pub fn sizes(&self) -> &[u64] {
        &self.sizes
    }
    /// Cluster means in shifted coordinates (add [`ClusterPlan::shift`] for
    /// input coordinates).
    pub fn means(&self) -> &[Vec<f64>] {
        &self.means
    }
    /// Centres the rows are assigned to (shifted coordinates), if any.
    pub fn centers(&self) -> Option<&[f64]> {
        self.centers.as_deref()
    }
    /// Route of each cluster: "undefined", "cosine", "primal" or "gram".
    pub fn routes(&self) -> Vec<&'static str> {
        self.routes
            .iter()
            .map(|r| match r {
                Route::Undefined(_) => "undefined",
                Route::CosineOnly => "cosine",
                Route::Primal { .. } => "primal",
                Route::Dual => "gram",
            })
            .collect()
    }

    /// Move the eigenvectors out (crate-internal: the plan then serves no
    /// further pass).
    pub(crate) fn take_vectors(&mut self) -> Vec<Option<Mat<f64>>> {
        self.routes
            .iter_mut()
            .map(|r| match r {
                Route::Primal { vectors, .. } => Some(std::mem::replace(vectors, Mat::zeros(0, 0))),
                _ => None,
            })
            .collect()
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut w = Writer::new(PLAN_MAGIC);
        w.u64s(&[self.k as u64, self.d as u64, self.key]);
        w.bools(&[self.f64_gemm, self.centers.is_some()]);
        w.f64s(&self.shift);
        if let Some(c) = &self.centers {
            w.f64s(c);
        }
        w.u64s(&self.sizes);
        self.means.iter().for_each(|m| w.f64s(m));
        for r in &self.routes {
            match r {
                Route::Undefined(note) => {
                    w.u64s(&[0, note.len() as u64]);
                    w.raw(note.as_bytes());
                }
                Route::CosineOnly => w.u64s(&[1]),
                Route::Primal { eigenvalues, vectors } => {
                    w.u64s(&[2, vectors.ncols() as u64]);
                    w.f64s(eigenvalues);
                    for j in 0..vectors.ncols() {
                        w.f64s(vectors.col(j).try_as_col_major().expect("contiguous eigenvector").as_slice());
                    }
                }
                Route::Dual => w.u64s(&[3]),
            }
        }
        w.finish()
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<ClusterPlan> {
        let mut r = Reader::open(bytes, PLAN_MAGIC, "ClusterPlan")?;
        let (k, d, key) = (r.len()?, r.len()?, r.u64()?);
        if k == 0 || d == 0 || k.checked_mul(d).is_none_or(|kd| kd > bytes.len()) {
            return Err(r.bad(format!("{k} clusters × {d} columns")));
        }
        let (f64_gemm, has_centers) = (r.bool()?, r.bool()?);
        let shift = r.f64s(d)?;
        let centers = if has_centers { Some(r.f64s(k * d)?) } else { None };
        let sizes = r.u64s(k)?;
        let means: Vec<Vec<f64>> = (0..k).map(|_| r.f64s(d)).collect::<Result<_>>()?;
        let mut routes = Vec::with_capacity(k);
        for c in 0..k {
            routes.push(match r.u64()? {
                0 => {
                    let len = r.len()?;
                    let note =
                        String::from_utf8(r.take(len)?.to_vec()).map_err(|_| r.bad(format!("cluster {c}: note")))?;
                    Route::Undefined(note)
                }
                1 => Route::CosineOnly,
                2 => {
                    let m = r.len()?;
                    if m != d {
                        return Err(r.bad(format!("cluster {c}: {m} eigenvectors for d = {d}")));
                    }
                    let eigenvalues = r.f64s(d)?;
                    let v = r.f64s(d * d)?;
                    Route::Primal { eigenvalues, vectors: Mat::from_fn(d, d, |i, j| v[i + j * d]) }
                }
                3 => Route::Dual,
                t => return Err(r.bad(format!("cluster {c}: unknown route {t}"))),
            });
        }
        r.end()?;
        if plan_key(k, d, &shift, centers.as_deref(), &sizes, &means) != key {
            return Err(r.bad("the fingerprint does not match the plan's numbers".into()));
        }
        Ok(ClusterPlan { k, d, shift, centers, f64_gemm, sizes, means, routes, key })
    }
}

// ---------------------------------------------------------------------------
// Pass 2
// ---------------------------------------------------------------------------

/// One cluster's pass-2 accumulator.
#[derive(Clone, Debug)]
enum Acc {
    Skip,
    Unit(UnitSum),
    /// Centred log Z(±u_k) and the centred unit sum.
    Primal {
        centered: PartitionState,
        unit: UnitSum,
    },
    /// The cluster's rows (shifted coordinates, row-major).
    Rows(Vec<f64>),
}

/// Pass-2 state: one accumulator per cluster, tied to its [`ClusterPlan`].
/// [`ClusterSecondPass::empty`] (no plan yet) is the identity of `merge`.
#[derive(Clone, Debug)]
pub struct ClusterSecondPass {
    key: u64,
    d: usize,
    accs: Vec<Acc>,
    /// Rows seen per cluster (checked against the plan's sizes at the end).
    seen: Vec<u64>,
}

/// Live [`SecondPass`] states and row buffers of one update.
struct Session {
    passes: Vec<Option<SecondPass>>,
    gather: Gather,
}

impl ClusterSecondPass {
    pub fn new(plan: &ClusterPlan) -> Self {
        let d = plan.d;
        let accs = plan
            .routes
            .iter()
            .zip(&plan.sizes)
            .map(|(r, &nc)| match r {
                Route::Undefined(_) => Acc::Skip,
                Route::CosineOnly => Acc::Unit(UnitSum::new(d)),
                Route::Primal { vectors, .. } => {
                    Acc::Primal { centered: PartitionState::new(vectors.ncols()), unit: UnitSum::new(d) }
                }
                Route::Dual => Acc::Rows(Vec::with_capacity(nc as usize * d)),
            })
            .collect();
        ClusterSecondPass { key: plan.key, d, accs, seen: vec![0; plan.k] }
    }

    /// A state without a plan (e.g. before unpickling): merging it is a no-op.
    pub fn empty() -> Self {
        ClusterSecondPass { key: 0, d: 0, accs: Vec::new(), seen: Vec::new() }
    }

    pub fn is_empty(&self) -> bool {
        self.key == 0
    }

    /// Rows seen.
    pub fn count(&self) -> u64 {
        self.seen.iter().sum()
    }

    fn check_plan(&mut self, plan: &ClusterPlan) -> Result<()> {
        if self.is_empty() {
            *self = ClusterSecondPass::new(plan);
        }
        if self.key != plan.key {
            return Err(Error::InvalidArgument(
                "cluster second pass: this state was built for another ClusterPlan".into(),
            ));
        }
        Ok(())
    }

    /// Assign every row of `x` to the plan's centres and fold it in; returns
    /// the labels (NaN/Inf refused, rows numbered within `x`).
    pub fn update(&mut self, plan: &ClusterPlan, x: &MatView<'_>) -> Result<Vec<u32>> {
        if x.ncols() != plan.d {
            return Err(Error::DimMismatch { what: "cluster second pass".into(), expected: plan.d, got: x.ncols() });
        }
        if plan.centers.is_none() && plan.k > 1 {
            return Err(Error::InvalidArgument("this cluster plan takes its labels with every tile".into()));
        }
        self.check_plan(plan)?;
        let src = RowSource::View { x: *x, center: Some(&plan.shift) };
        let mut lab = vec![0u32; x.nrows()];
        self.update_source(plan, None, &src, &mut lab, true)?;
        Ok(lab)
    }

    /// Fold every row of `src` (already shifted): labels assigned into `lab`
    /// when the plan has centres, else read from it. `vectors` (the plan's
    /// eigenvectors taken out, crate-internal) spares their copy.
    pub(crate) fn update_source(
        &mut self,
        plan: &ClusterPlan,
        vectors: Option<Vec<Option<Mat<f64>>>>,
        src: &RowSource<'_>,
        lab: &mut [u32],
        check: bool,
    ) -> Result<()> {
        self.check_plan(plan)?;
        let (k, d) = (plan.k, plan.d);
        let mut vectors = vectors;
        let passes = plan
            .routes
            .iter()
            .enumerate()
            .map(|(c, r)| match r {
                Route::Primal { vectors: v, .. } => {
                    let v = vectors.as_mut().and_then(|all| all[c].take()).unwrap_or_else(|| v.clone());
                    SecondPass::new(plan.means[c].clone(), Mat::zeros(d, 0), v, plan.f64_gemm).map(Some)
                }
                _ => Ok(None),
            })
            .collect::<Result<Vec<_>>>()?;
        let mut sess = Session { passes, gather: Gather::new(k, d) };
        let assign = plan.centers.as_deref().filter(|_| k > 1);
        src.for_each_tile(d, check, |start, t, nb| {
            let l = &mut lab[start..start + nb];
            if let Some(c) = assign {
                assign_tile(t, c, k, d, l);
            }
            self.update_tile(plan, &mut sess, t, nb, l)
        })?;
        let Session { mut passes, mut gather } = sess;
        gather.finish(&mut |c: usize, buf: &mut [f64], rows: usize| -> Result<()> {
            passes[c].as_mut().expect("primal route").update(&MatView::row_major(&buf[..rows * d], rows, d)?)
        })?;
        for (acc, pass) in self.accs.iter_mut().zip(passes) {
            if let (Acc::Primal { centered, unit }, Some(p)) = (acc, pass) {
                centered.merge(&p.centered)?;
                unit.merge(&p.unit_centered)?;
            }
        }
        Ok(())
    }

    /// Fold a tile of `nb` shifted rows with labels `lab`: unit vectors of the
    /// unit-sum-only clusters on fixed sub-blocks merged in order, rows of
    /// the primal clusters into their buffers, Gram-route rows kept.
    fn update_tile(&mut self, plan: &ClusterPlan, sess: &mut Session, t: &[f64], nb: usize, lab: &[u32]) -> Result<()> {
        let (k, d) = (plan.k, plan.d);
        let lab_t = &lab[..nb];
        for &c in lab_t {
            self.seen[c as usize] += 1;
        }
        if plan.routes.iter().any(|r| matches!(r, Route::CosineOnly)) {
            let cosine = |c: usize| matches!(plan.routes[c], Route::CosineOnly);
            let parts: Vec<Vec<UnitSum>> = t
                .par_chunks(BLOCK * d)
                .enumerate()
                .map(|(b, blk)| {
                    let mut part: Vec<UnitSum> = (0..k).map(|_| UnitSum::new(d)).collect();
                    for (r, row) in blk.chunks_exact(d).enumerate() {
                        let c = lab_t[b * BLOCK + r] as usize;
                        if cosine(c) {
                            let m = &plan.means[c];
                            let s2 = sqdist(row, m);
                            let u = &mut part[c];
                            if s2 > 0.0 {
                                u.n_nonzero += 1;
                                axpy_centered(&mut u.sum, row, m, 1.0 / s2.sqrt());
                            } else {
                                u.n_zero += 1;
                            }
                        }
                    }
                    part
                })
                .collect();
            for part in parts {
                for (acc, p) in self.accs.iter_mut().zip(&part) {
                    if let Acc::Unit(u) = acc {
                        if p.n_nonzero + p.n_zero > 0 {
                            u.merge(p)?;
                        }
                    }
                }
            }
        }
        let Session { passes, gather } = sess;
        let mut flush = |c: usize, buf: &mut [f64], rows: usize| -> Result<()> {
            passes[c].as_mut().expect("primal route").update(&MatView::row_major(&buf[..rows * d], rows, d)?)
        };
        for r in 0..nb {
            let c = lab_t[r] as usize;
            let row = &t[r * d..(r + 1) * d];
            match &mut self.accs[c] {
                Acc::Primal { .. } => gather.push(c, row, &mut flush)?,
                Acc::Rows(rows) => rows.extend_from_slice(row),
                _ => {}
            }
        }
        Ok(())
    }

    /// Combine with a state built from other rows under the same plan.
    pub fn merge(&mut self, other: &ClusterSecondPass) -> Result<()> {
        if other.is_empty() {
            return Ok(());
        }
        if self.is_empty() {
            *self = other.clone();
            return Ok(());
        }
        if other.key != self.key {
            return Err(Error::InvalidArgument(
                "cluster second pass merge: the states were built for different ClusterPlans".into(),
            ));
        }
        for (s, o) in self.seen.iter_mut().zip(&other.seen) {
            *s += o;
        }
        for (a, b) in self.accs.iter_mut().zip(&other.accs) {
            match (a, b) {
                (Acc::Skip, Acc::Skip) => {}
                (Acc::Unit(u), Acc::Unit(v)) => u.merge(v)?,
                (Acc::Primal { centered, unit }, Acc::Primal { centered: c2, unit: u2 }) => {
                    centered.merge(c2)?;
                    unit.merge(u2)?;
                }
                (Acc::Rows(r), Acc::Rows(r2)) => r.extend_from_slice(r2),
                _ => return Err(Error::InvalidArgument("cluster second pass merge: routes differ".into())),
            }
        }
        Ok(())
    }

    /// One [`ClusterStats`] per cluster of `plan`.
    pub fn finish(self, plan: &ClusterPlan) -> Result<Vec<ClusterStats>> {
        let mut s = self;
        s.check_plan(plan)?;
        for (c, (&seen, &nc)) in s.seen.iter().zip(&plan.sizes).enumerate() {
            if seen != nc {
                return Err(Error::InvalidArgument(format!(
                    "the input changed between the passes: cluster {c} got {nc} rows in pass 1 and {seen} in pass 2"
                )));
            }
        }
        let d = plan.d;
        s.accs
            .into_iter()
            .zip(&plan.routes)
            .enumerate()
            .map(|(c, (acc, route))| {
                let nc = plan.sizes[c];
                Ok(match (acc, route) {
                    (_, Route::Undefined(note)) => nan_stats(nc, note.clone()),
                    (Acc::Unit(unit), _) => ClusterStats {
                        size: nc,
                        avg_cosine_centered: unit.average(),
                        n_zero_norm: unit.n_zero,
                        log_partition_isotropy: f64::NAN,
                        partition_isotropy: f64::NAN,
                        isoscore: f64::NAN,
                        note: None,
                    },
                    (Acc::Primal { centered, unit }, Route::Primal { eigenvalues, .. }) => {
                        let (isoscore, note) = isoscore_of(eigenvalues);
                        let li = centered.log_isotropy();
                        ClusterStats {
                            size: nc,
                            avg_cosine_centered: unit.average(),
                            n_zero_norm: unit.n_zero,
                            log_partition_isotropy: li,
                            partition_isotropy: li.exp(),
                            isoscore,
                            note,
                        }
                    }
                    (Acc::Rows(mut rows), Route::Dual) => dual_stats(&mut rows, &plan.means[c], nc as usize, d)?,
                    _ => return Err(Error::InvalidArgument(format!("cluster {c}: state and plan routes differ"))),
                })
            })
            .collect()
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut w = Writer::new(SECOND_MAGIC);
        w.u64s(&[self.key, self.d as u64, self.accs.len() as u64]);
        w.u64s(&self.seen);
        let unit = |w: &mut Writer, u: &UnitSum| {
            w.u64s(&[u.n_nonzero, u.n_zero]);
            w.f64s(&u.sum);
        };
        for a in &self.accs {
            match a {
                Acc::Skip => w.u64s(&[0]),
                Acc::Unit(u) => {
                    w.u64s(&[1]);
                    unit(&mut w, u);
                }
                Acc::Primal { centered, unit: u } => {
                    w.u64s(&[2, centered.pos.len() as u64]);
                    for l in centered.pos.iter().chain(&centered.neg) {
                        w.f64s(&[l.max, l.sum]);
                    }
                    unit(&mut w, u);
                }
                Acc::Rows(r) => {
                    w.u64s(&[3, r.len() as u64]);
                    w.f64s(r);
                }
            }
        }
        w.finish()
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<ClusterSecondPass> {
        let mut r = Reader::open(bytes, SECOND_MAGIC, "ClusterSecondPass")?;
        let (key, d, k) = (r.u64()?, r.len()?, r.len()?);
        if key == 0 {
            r.end()?;
            return Ok(ClusterSecondPass::empty());
        }
        if k == 0 || d == 0 || k.checked_mul(d).is_none_or(|kd| kd > bytes.len()) {
            return Err(r.bad(format!("{k} clusters × {d} columns")));
        }
        let seen = r.u64s(k)?;
        let unit = |r: &mut Reader<'_>| -> Result<UnitSum> {
            let (n_nonzero, n_zero) = (r.u64()?, r.u64()?);
            Ok(UnitSum { sum: r.f64s(d)?, n_nonzero, n_zero })
        };
        let mut accs = Vec::with_capacity(k);
        for (c, &rows) in seen.iter().enumerate() {
            accs.push(match r.u64()? {
                0 => Acc::Skip,
                1 => Acc::Unit(unit(&mut r)?),
                2 => {
                    let m = r.len()?;
                    if m != d {
                        return Err(r.bad(format!("cluster {c}: {m} directions for d = {d}")));
                    }
                    let v = r.f64s(4 * m)?;
                    let lse = |i: usize| LogSumExp { max: v[2 * i], sum: v[2 * i + 1] };
                    let centered =
                        PartitionState { pos: (0..m).map(lse).collect(), neg: (m..2 * m).map(lse).collect() };
                    Acc::Primal { centered, unit: unit(&mut r)? }
                }
                3 => {
                    let len = r.len()?;
                    // checked: lying bytes may claim any row count
                    if rows.checked_mul(d as u64) != Some(len as u64) {
                        return Err(r.bad(format!("cluster {c}: {len} values for {rows} rows")));
                    }
                    Acc::Rows(r.f64s(len)?)
                }
                t => return Err(r.bad(format!("cluster {c}: unknown route {t}"))),
            });
        }
        r.end()?;
        Ok(ClusterSecondPass { key, d, accs, seen })
    }
}

// ---------------------------------------------------------------------------
// Per-cluster statistics
// ---------------------------------------------------------------------------

fn nan_stats(size: u64, note: String) -> ClusterStats {
    ClusterStats {
        size,
        avg_cosine_centered: f64::NAN,
        n_zero_norm: 0,
        log_partition_isotropy: f64::NAN,
        partition_isotropy: f64::NAN,
        isoscore: f64::NAN,
        note: Some(note),
    }
}

fn isoscore_of(values: &[f64]) -> (f64, Option<String>) {
    match spectral_scores(values, 0.8) {
        Ok(s) => (s.isoscore, None),
        Err(e) => (f64::NAN, Some(format!("IsoScore undefined: {e}"))),
    }
}

/// Statistics of a cluster of n_c ≤ d rows from its n_c×n_c Gram matrix.
///
/// With Y the re-centred rows, YYᵀ = VΛVᵀ and YᵀY share their non-zero
/// eigenvalues; u_k = Yᵀv_k/√Λ_k, so the projections Y·u_k = √Λ_k·v_k. The
/// covariance eigenvalues are Λ/(n_c − 1) padded with zeros to d, and every
/// null direction u (Yu = 0) has Z(±u) = n_c, i.e. log Z = ln n_c — which is
/// also the smallest possible log Z of centred rows (Jensen), as in the
/// primal computation.
fn dual_stats(rows: &mut [f64], mean: &[f64], nc: usize, d: usize) -> Result<ClusterStats> {
    rows.par_chunks_mut(d).for_each(|r| crate::cosine::center_row(r, mean));
    let mut unit = UnitSum::new(d);
    let mut scratch = Vec::new();
    unit.add_tile(rows, d, &mut scratch);
    let y = MatRef::from_row_major_slice(&rows[..], nc, d);
    let mut g = Mat::<f64>::zeros(nc, nc);
    faer::linalg::matmul::matmul(g.as_mut(), Accum::Replace, y, y.transpose(), 1.0, threads::par());
    let eig = sym_eigen(g.as_ref())?;
    let total: f64 = eig.values.iter().sum();
    if total.partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater) {
        return Ok(nan_stats(nc as u64, ZERO_VARIANCE.into()));
    }
    let mut values: Vec<f64> = eig.values.iter().map(|v| v / (nc as f64 - 1.0)).collect();
    values.resize(d.max(values.len()), 0.0);
    let (isoscore, note) = isoscore_of(&values);
    let rank = eig.values.iter().filter(|&&v| v > 0.0).count();
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    let logs: Vec<(f64, f64)> = (0..rank)
        .into_par_iter()
        .map(|k| {
            let s = eig.values[k].sqrt();
            let proj: Vec<f64> = (0..nc).map(|i| s * eig.vectors[(i, k)]).collect();
            let (mut p, mut m) = (LogSumExp::default(), LogSumExp::default());
            update_both_signs(&mut p, &mut m, &proj);
            (p.value(), m.value())
        })
        .collect();
    for (p, m) in logs {
        lo = lo.min(p.min(m));
        hi = hi.max(p.max(m));
    }
    if rank < d {
        let null = (nc as f64).ln();
        lo = lo.min(null);
        hi = hi.max(null);
    }
    let li = lo - hi;
    Ok(ClusterStats {
        size: nc as u64,
        avg_cosine_centered: unit.average(),
        n_zero_norm: unit.n_zero,
        log_partition_isotropy: li,
        partition_isotropy: li.exp(),
        isoscore,
        note,
    })
}

// ---------------------------------------------------------------------------
// Bytes
// ---------------------------------------------------------------------------

const FIRST_MAGIC: &[u8; 8] = b"ISOFCP1\x01";
const PLAN_MAGIC: &[u8; 8] = b"ISOFCPL\x01";
const SECOND_MAGIC: &[u8; 8] = b"ISOFCP2\x01";

/// Little-endian writer: magic, fields, then CRC-32 of all before it.
struct Writer(Vec<u8>);

impl Writer {
    fn new(magic: &[u8; 8]) -> Self {
        Writer(magic.to_vec())
    }
    fn u64s(&mut self, v: &[u64]) {
        v.iter().for_each(|x| self.0.extend_from_slice(&x.to_le_bytes()));
    }
    fn f64s(&mut self, v: &[f64]) {
        self.0.reserve(8 * v.len());
        v.iter().for_each(|x| self.0.extend_from_slice(&x.to_le_bytes()));
    }
    fn bools(&mut self, v: &[bool]) {
        self.0.extend(v.iter().map(|&b| b as u8));
    }
    fn raw(&mut self, b: &[u8]) {
        self.0.extend_from_slice(b);
    }
    fn finish(mut self) -> Vec<u8> {
        let crc = crc32(&self.0);
        self.0.extend_from_slice(&crc.to_le_bytes());
        self.0
    }
}

/// Bounds-checked reader of [`Writer`]'s bytes.
struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
    what: &'static str,
}

impl<'a> Reader<'a> {
    /// Check the magic (kind and version) and the checksum.
    fn open(bytes: &'a [u8], magic: &[u8; 8], what: &'static str) -> Result<Self> {
        let bad = |why: String| Error::InvalidArgument(format!("corrupt {what} state: {why}"));
        if bytes.len() < 12 {
            return Err(bad(format!("{} bytes is too short", bytes.len())));
        }
        if bytes[..7] != magic[..7] {
            return Err(bad("not a state of this kind (bad header)".into()));
        }
        if bytes[7] != magic[7] {
            return Err(bad(format!("format version {} (this build reads version {})", bytes[7], magic[7])));
        }
        let (body, tail) = bytes.split_at(bytes.len() - 4);
        let want = u32::from_le_bytes(tail.try_into().expect("4 bytes"));
        let got = crc32(body);
        if got != want {
            return Err(bad(format!("checksum {got:08x} ≠ {want:08x} (damaged or truncated bytes)")));
        }
        Ok(Reader { b: body, pos: 8, what })
    }
    fn bad(&self, why: String) -> Error {
        Error::InvalidArgument(format!("corrupt {} state: {why}", self.what))
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        match self.pos.checked_add(n) {
            Some(end) if end <= self.b.len() => {
                let s = &self.b[self.pos..end];
                self.pos = end;
                Ok(s)
            }
            _ => Err(self.bad(format!("truncated at byte {}", self.pos))),
        }
    }
    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }
    /// A count or length (must fit the bytes that remain).
    fn len(&mut self) -> Result<usize> {
        let v = self.u64()?;
        if v > self.b.len() as u64 {
            return Err(self.bad(format!("length {v} exceeds the {} bytes", self.b.len())));
        }
        Ok(v as usize)
    }
    fn u64s(&mut self, n: usize) -> Result<Vec<u64>> {
        (0..n).map(|_| self.u64()).collect()
    }
    fn f64s(&mut self, n: usize) -> Result<Vec<f64>> {
        let raw = self.take(n.checked_mul(8).ok_or_else(|| self.bad("length overflow".into()))?)?;
        Ok(raw.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes"))).collect())
    }
    fn bool(&mut self) -> Result<bool> {
        match self.take(1)?[0] {
            0 => Ok(false),
            1 => Ok(true),
            v => Err(self.bad(format!("flag byte {v}"))),
        }
    }
    fn bools(&mut self, n: usize) -> Result<Vec<bool>> {
        (0..n).map(|_| self.bool()).collect()
    }
    fn end(&self) -> Result<()> {
        if self.pos != self.b.len() {
            return Err(self.bad(format!("{} trailing bytes", self.b.len() - self.pos)));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::cluster_statistics;
    use crate::random::SplitMix64;

    fn gauss(rng: &mut SplitMix64) -> f64 {
        // Box–Muller.
        let (u, v) = (rng.uniform().max(1e-300), rng.uniform());
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }

    /// Three blobs far from 0 (600, 500 and 9 rows: the last takes the Gram
    /// route at d = 12), in random order, and centres near the blob means.
    fn data() -> (Vec<f64>, usize, usize, Vec<f64>) {
        let d = 12;
        let mut rng = SplitMix64::new(21);
        let mut rows: Vec<Vec<f64>> = Vec::new();
        for (c, (n, s)) in [(600, 1.0), (500, 0.5), (9, 0.1)].into_iter().enumerate() {
            for _ in 0..n {
                rows.push(
                    (0..d)
                        .map(|j| {
                            50.0 + 10.0 * (c * d + j == c * 13) as u8 as f64 * (c as f64 + 1.0) + s * gauss(&mut rng)
                        })
                        .collect(),
                );
            }
        }
        for i in (1..rows.len()).rev() {
            rows.swap(i, (rng.uniform() * (i + 1) as f64) as usize % (i + 1));
        }
        let mut centers = vec![50.0; 3 * d];
        for c in 0..3 {
            centers[c * d + c] += 10.0 * (c as f64 + 1.0);
        }
        let n = rows.len();
        (rows.concat(), n, d, centers)
    }

    /// Both passes over `chunks` (row ranges), states merged pairwise in a
    /// tree, each through its bytes.
    fn run(
        x: &[f64],
        d: usize,
        centers: &[f64],
        shift: &[f64],
        spectra: bool,
        chunks: &[usize],
    ) -> (Vec<u32>, ClusterPlan, Vec<ClusterStats>) {
        let views: Vec<MatView<'_>> =
            chunks.windows(2).map(|w| MatView::row_major(&x[w[0] * d..w[1] * d], w[1] - w[0], d).unwrap()).collect();
        fn tree<T: Clone>(mut v: Vec<T>, merge: impl Fn(&mut T, &T)) -> T {
            while v.len() > 1 {
                v = v
                    .chunks(2)
                    .map(|p| {
                        let mut a = p[0].clone();
                        if p.len() == 2 {
                            merge(&mut a, &p[1]);
                        }
                        a
                    })
                    .collect();
            }
            v.pop().unwrap()
        }
        let firsts: Vec<ClusterFirstPass> = views
            .iter()
            .map(|v| {
                let mut s = ClusterFirstPass::new(centers, shift.to_vec(), spectra).unwrap();
                s.update(v).unwrap();
                ClusterFirstPass::from_bytes(&s.to_bytes().unwrap()).unwrap()
            })
            .collect();
        let first = tree(firsts, |a, b| a.merge(b).unwrap());
        let plan = ClusterPlan::from_bytes(&first.finish(0).unwrap().to_bytes()).unwrap();
        let mut labels = Vec::new();
        let seconds: Vec<ClusterSecondPass> = views
            .iter()
            .map(|v| {
                let mut s = ClusterSecondPass::empty();
                labels.extend(s.update(&plan, v).unwrap());
                ClusterSecondPass::from_bytes(&s.to_bytes()).unwrap()
            })
            .collect();
        let second = tree(seconds, |a, b| a.merge(b).unwrap());
        let stats = second.finish(&plan).unwrap();
        (labels, plan, stats)
    }

    fn close(a: f64, b: f64, rel: f64) -> bool {
        (a.is_nan() && b.is_nan()) || (a - b).abs() <= rel * a.abs().max(b.abs()).max(1.0)
    }

    #[test]
    fn chunked_and_merged_states_equal_one_shot() {
        let (x, n, d, centers) = data();
        let shift = vec![50.0; d];
        for spectra in [true, false] {
            let (l1, p1, s1) = run(&x, d, &centers, &shift, spectra, &[0, n]);
            assert_eq!(p1.routes(), if spectra { ["primal", "primal", "gram"] } else { ["cosine"; 3] });
            assert_eq!(p1.sizes(), &[600, 500, 9]);
            for chunks in [vec![0, 1, 2, 500, 777, n], vec![0, 300, 301, 700, 1000, n - 1, n]] {
                let (l, p, s) = run(&x, d, &centers, &shift, spectra, &chunks);
                // Labels and sizes exactly, everything else to rounding.
                assert_eq!(l, l1);
                assert_eq!(p.sizes(), p1.sizes());
                assert_eq!(p.routes(), p1.routes());
                for (m, m1) in p.means().iter().flatten().zip(p1.means().iter().flatten()) {
                    assert!(close(*m, *m1, 1e-13), "{m} {m1}");
                }
                for (a, b) in s.iter().zip(&s1) {
                    assert_eq!((a.size, a.n_zero_norm, &a.note), (b.size, b.n_zero_norm, &b.note));
                    assert!(close(a.avg_cosine_centered, b.avg_cosine_centered, 1e-12));
                    assert!(close(a.isoscore, b.isoscore, 1e-11), "{} {}", a.isoscore, b.isoscore);
                    assert!(close(a.log_partition_isotropy, b.log_partition_isotropy, 1e-9));
                }
            }
            // The same statistics as the in-memory kernel given these labels.
            let v = MatView::row_major(&x, n, d).unwrap();
            let mem = cluster_statistics(&v, &l1, 3, spectra, Some(2)).unwrap();
            for (a, b) in s1.iter().zip(&mem) {
                assert_eq!((a.size, a.n_zero_norm), (b.size, b.n_zero_norm));
                assert!(close(a.avg_cosine_centered, b.avg_cosine_centered, 1e-12));
                assert!(close(a.isoscore, b.isoscore, 1e-11));
                assert!(close(a.log_partition_isotropy, b.log_partition_isotropy, 1e-8));
            }
        }
    }

    #[test]
    fn bytes_round_trip_bitwise() {
        let (x, n, d, centers) = data();
        let v = MatView::row_major(&x, n, d).unwrap();
        let mut first = ClusterFirstPass::new(&centers, vec![50.0; d], true).unwrap();
        first.update(&v).unwrap();
        let b = first.to_bytes().unwrap();
        assert_eq!(ClusterFirstPass::from_bytes(&b).unwrap().to_bytes().unwrap(), b);
        let plan = first.finish(0).unwrap();
        let pb = plan.to_bytes();
        let plan2 = ClusterPlan::from_bytes(&pb).unwrap();
        assert_eq!(plan2.to_bytes(), pb);
        let mut second = ClusterSecondPass::new(&plan);
        second.update(&plan, &v).unwrap();
        let sb = second.to_bytes();
        let back = ClusterSecondPass::from_bytes(&sb).unwrap();
        assert_eq!(back.to_bytes(), sb);
        let (a, b) = (second.finish(&plan).unwrap(), back.finish(&plan2).unwrap());
        for (p, q) in a.iter().zip(&b) {
            assert_eq!(p.size, q.size);
            for (u, w) in [
                (p.avg_cosine_centered, q.avg_cosine_centered),
                (p.isoscore, q.isoscore),
                (p.log_partition_isotropy, q.log_partition_isotropy),
            ] {
                assert_eq!(u.to_bits(), w.to_bits());
            }
        }
        let empty = ClusterSecondPass::from_bytes(&ClusterSecondPass::empty().to_bytes()).unwrap();
        assert!(empty.is_empty());
    }

    #[test]
    fn damaged_bytes_and_mismatched_states_are_errors() {
        let (x, n, d, centers) = data();
        let v = MatView::row_major(&x[..200 * d], 200, d).unwrap();
        let mut first = ClusterFirstPass::new(&centers, vec![50.0; d], true).unwrap();
        first.update(&v).unwrap();
        let plan = first.clone().finish(0).unwrap();
        let mut second = ClusterSecondPass::new(&plan);
        second.update(&plan, &v).unwrap();
        type Read = fn(&[u8]) -> Result<()>;
        let all: [(Vec<u8>, Read); 3] = [
            (first.to_bytes().unwrap(), |b| ClusterFirstPass::from_bytes(b).map(|_| ())),
            (plan.to_bytes(), |b| ClusterPlan::from_bytes(b).map(|_| ())),
            (second.to_bytes(), |b| ClusterSecondPass::from_bytes(b).map(|_| ())),
        ];
        for (b, read) in &all {
            read(b).unwrap();
            for at in [0, 7, 9, b.len() / 2, b.len() - 1] {
                let mut bad = b.clone();
                bad[at] ^= 0x10;
                let e = read(&bad).unwrap_err().to_string();
                assert!(e.contains("corrupt"), "{e}");
            }
            assert!(read(&b[..b.len() - 3]).unwrap_err().to_string().contains("corrupt"));
            assert!(read(&b[..5]).unwrap_err().to_string().contains("too short"));
        }
        // Another kind of state, another version.
        assert!(ClusterPlan::from_bytes(&all[0].0).unwrap_err().to_string().contains("bad header"));
        let mut v2 = all[1].0.clone();
        v2[7] = 9;
        assert!(ClusterPlan::from_bytes(&v2).unwrap_err().to_string().contains("version 9"));
        // States of different setups or plans do not merge.
        let mut other = ClusterFirstPass::new(&centers, vec![49.0; d], true).unwrap();
        assert!(other.merge(&first).is_err());
        let other_plan = other.finish(0).unwrap();
        let mut s2 = ClusterSecondPass::new(&other_plan);
        assert!(s2.merge(&second).is_err());
        assert!(second.clone().finish(&other_plan).is_err());
        // Pass 2 over other rows than pass 1.
        let mut short = ClusterSecondPass::new(&plan);
        short.update(&plan, &v.rows(0, 150)).unwrap();
        assert!(short.finish(&plan).unwrap_err().to_string().contains("changed between the passes"));
        let _ = n;
        // NaN is refused with its row.
        let mut nan = x[..10 * d].to_vec();
        nan[3 * d + 4] = f64::NAN;
        let vn = MatView::row_major(&nan, 10, d).unwrap();
        let mut s = ClusterFirstPass::new(&centers, vec![50.0; d], true).unwrap();
        assert_eq!(s.update(&vn).unwrap_err(), Error::NonFinite { row: 3, col: 4 });
    }
}
