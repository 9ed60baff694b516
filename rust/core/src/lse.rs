//! Streaming log-sum-exp: log Σ exp(v_i) over a stream of values without ever
//! exponentiating a raw value (LLM hidden states reach norms in the thousands,
//! so exp(⟨x, c⟩) overflows float64).
//!
//! State (m, s) with s = Σ exp(v_i − m); merging rescales the smaller-max side.
//! The exponentials use a branch-free, vectorisable `exp` on non-positive
//! arguments (|rel. error| < 2e-16 on [−708, 0]; underflows flush to 0, which
//! cannot matter next to the max term exp(0) = 1).

use crate::simd::dispatch;

/// Mergeable log-sum-exp accumulator.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LogSumExp {
    /// Running maximum (−∞ when empty).
    pub max: f64,
    /// Σ exp(v − max).
    pub sum: f64,
}

impl Default for LogSumExp {
    fn default() -> Self {
        LogSumExp { max: f64::NEG_INFINITY, sum: 0.0 }
    }
}

impl LogSumExp {
    /// log Σ exp(v); −∞ for an empty stream.
    pub fn value(&self) -> f64 {
        if self.sum == 0.0 {
            f64::NEG_INFINITY
        } else {
            self.max + self.sum.ln()
        }
    }

    /// Combine with another state (associative up to rounding).
    pub fn merge(&mut self, other: &LogSumExp) {
        if other.sum == 0.0 {
            return;
        }
        if self.sum == 0.0 {
            *self = *other;
            return;
        }
        if other.max > self.max {
            self.sum = self.sum * exp_nonpos(self.max - other.max) + other.sum;
            self.max = other.max;
        } else {
            self.sum += other.sum * exp_nonpos(other.max - self.max);
        }
    }

    /// Add every v_i in `values` (one pass for the extremes, one for the sum,
    /// float64 exponentials); [`update_both_signs`] adds the negated stream too.
    pub fn update<T: ExpSum>(&mut self, values: &[T]) {
        if values.is_empty() {
            return;
        }
        let m: f64 = T::max_min(values).0.into();
        self.merge(&LogSumExp { max: m, sum: sum_exp_shifted(values, 1.0, -m) });
    }
}

dispatch! {
    /// Σ exp(sign·v_i + shift) where every argument is ≤ 0 (up to rounding).
    pub fn sum_exp_shifted[T: Copy + Into<f64>][T](values: &[T], sign: f64, shift: f64) -> f64
        = sum_exp_16; avx2 "avx2", "fma";
}

#[inline(always)]
fn sum_exp_16<T: Copy + Into<f64>>(values: &[T], sign: f64, shift: f64) -> f64 {
    // Sixteen independent partial sums let the compiler vectorise without
    // reassociating a single float chain (which it may not do), two AVX-512
    // registers wide so the exp polynomials of two vectors overlap.
    sum_exp_lanes::<T, 16>(values, sign, shift)
}

/// The crate's one float64 exp-sum kernel: Σ_i exp(sign·v_i + shift) with
/// every exponential taken in f64 by [`exp_nonpos`], accumulated in `L`
/// independent partial sums (lane i mod L, in order), then the lanes in
/// order, then the remainder. The order is fixed by `L` alone, so results
/// do not depend on threads or on the CPU path.
#[inline(always)]
fn sum_exp_lanes<T: Copy + Into<f64>, const L: usize>(values: &[T], sign: f64, shift: f64) -> f64 {
    let mut acc = [0.0f64; L];
    let chunks = values.chunks_exact(L);
    let rem = chunks.remainder();
    for c in chunks {
        for k in 0..L {
            acc[k] += exp_nonpos(sign * c[k].into() + shift);
        }
    }
    let mut tail = 0.0;
    for &v in rem {
        tail += exp_nonpos(sign * v.into() + shift);
    }
    let mut s = 0.0;
    for a in acc {
        s += a;
    }
    s + tail
}

/// exp(x) for x ≤ 0 (x > 0 up to 1e-9 tolerated), branch-free.
///
/// Cody–Waite reduction x = n·ln2 + r, |r| ≤ ln2/2, then a degree-12 Taylor
/// polynomial in Horner form (truncation < 1e-17 relative), scaled by 2^n
/// built from exponent bits. Arguments below −708 return 0.
#[inline(always)]
// The constants are the published split of ln 2 (kept digit for digit); the
// max/min pair (unlike clamp) maps NaN to a finite argument.
#[allow(clippy::excessive_precision, clippy::manual_clamp)]
pub fn exp_nonpos(x: f64) -> f64 {
    const LOG2E: f64 = std::f64::consts::LOG2_E;
    const LN2_HI: f64 = 6.931_471_803_691_238_164_90e-1;
    const LN2_LO: f64 = 1.908_214_929_270_587_700_02e-10;
    // Adding 1.5·2^52 rounds to the nearest integer in the low mantissa bits
    // without a float→int conversion, which AVX2 cannot vectorise.
    const SHIFT: f64 = 6_755_399_441_055_744.0;
    let xc = x.max(-708.0).min(1.0);
    let kd = xc * LOG2E + SHIFT;
    let ki = kd.to_bits();
    let n = kd - SHIFT;
    let r = (xc - n * LN2_HI) - n * LN2_LO;
    let mut p = 1.0 / 479_001_600.0;
    p = p * r + 1.0 / 39_916_800.0;
    p = p * r + 1.0 / 3_628_800.0;
    p = p * r + 1.0 / 362_880.0;
    p = p * r + 1.0 / 40_320.0;
    p = p * r + 1.0 / 5_040.0;
    p = p * r + 1.0 / 720.0;
    p = p * r + 1.0 / 120.0;
    p = p * r + 1.0 / 24.0;
    p = p * r + 1.0 / 6.0;
    p = p * r + 0.5;
    p = p * r + 1.0;
    p = p * r + 1.0;
    // 2^n: the low bits of ki hold n (mod 2^12 after the shift), so
    // (ki + 1023) << 52 is the exponent field of 2^n for n ∈ [−1022, 1023].
    let scale = f64::from_bits(ki.wrapping_add(1023) << 52);
    let y = p * scale;
    if x < -708.0 {
        0.0
    } else {
        y
    }
}

// ------------------------------------------------------- blocks of one precision
//
// Blocks of projections or logits that are already in cache: one pass for
// the extremes, one per sign for Σ exp. For f32 values the exponentials are
// evaluated in f32 (16 lanes per AVX-512 register; relative error < 2e-7,
// below the f32 values' own rounding) and summed in f64; for f64 values
// everything is f64. Each kernel is compiled for AVX-512 and AVX2 and picked
// at run time; independent accumulators let the compiler vectorise without
// reassociating.

/// Precisions whose blocks the log-sum-exp folds directly.
pub trait ExpSum: Copy + PartialOrd + Into<f64> {
    /// Σ_i exp(z_i − m) in f64, every z_i ≤ m.
    fn sum_exp(z: &[Self], m: Self) -> f64;
    /// Σ_i exp(m − z_i) in f64, every z_i ≥ m (the negated stream).
    fn sum_exp_neg(z: &[Self], m: Self) -> f64;
    /// (max, min) of a non-empty block.
    fn max_min(z: &[Self]) -> (Self, Self);
}

/// Fold a block into log Z(+) (values as they are) and log Z(−) (negated):
/// one pass for both extremes, then float64 exponentials whatever T, so each
/// term is exact to 1e-16 and results are independent of how the stream was
/// cut into blocks (to rounding). The f32 shortcut [`ExpSum::sum_exp`] is for
/// the LM head, where speed matters more than chunking invariance at 1e-12.
pub fn update_both_signs<T: ExpSum>(pos: &mut LogSumExp, neg: &mut LogSumExp, z: &[T]) {
    if z.is_empty() {
        return;
    }
    let (mx, mn) = T::max_min(z);
    let (mx, mn): (f64, f64) = (mx.into(), mn.into());
    pos.merge(&LogSumExp { max: mx, sum: sum_exp_shifted(z, 1.0, -mx) });
    neg.merge(&LogSumExp { max: -mn, sum: sum_exp_shifted(z, -1.0, mn) });
}

/// [`ExpSum`] for one precision: `$sum::<NEG>(z, m)` is the block's exp
/// sum (Σ exp(z − m), or Σ exp(m − z) when NEG), dispatched at run time.
macro_rules! exp_sum_impl {
    ($t:ty, $lanes:expr, $sum:ident) => {
        impl ExpSum for $t {
            fn sum_exp(z: &[$t], m: $t) -> f64 {
                dispatch_sum::<false>(z, m)
            }
            fn sum_exp_neg(z: &[$t], m: $t) -> f64 {
                dispatch_sum::<true>(z, m)
            }
            dispatch! {
                fn max_min(z: &[$t]) -> ($t, $t) = mm_generic; avx2 "avx2";
            }
        }

        dispatch! {
            fn dispatch_sum[const NEG: bool][NEG](z: &[$t], m: $t) -> f64 = $sum; avx2 "avx2", "fma";
        }

        #[inline(always)]
        fn mm_generic(z: &[$t]) -> ($t, $t) {
            const L: usize = $lanes;
            let mut hi = [<$t>::NEG_INFINITY; L];
            let mut lo = [<$t>::INFINITY; L];
            let chunks = z.chunks_exact(L);
            let rem = chunks.remainder();
            for c in chunks {
                for j in 0..L {
                    hi[j] = if c[j] > hi[j] { c[j] } else { hi[j] };
                    lo[j] = if c[j] < lo[j] { c[j] } else { lo[j] };
                }
            }
            let (mut h, mut l) = (<$t>::NEG_INFINITY, <$t>::INFINITY);
            for &x in rem.iter().chain(hi.iter()) {
                h = if x > h { x } else { h };
            }
            for &x in rem.iter().chain(lo.iter()) {
                l = if x < l { x } else { l };
            }
            (h, l)
        }
    };
}

mod f64_block {
    use super::*;
    exp_sum_impl!(f64, 8, sum_f64);

    /// The f64 kernel on eight lanes: z − m is exactly 1·z + (−m), and m − z
    /// exactly (−1)·z + m, so these are [`sum_exp_lanes`]'s terms.
    #[inline(always)]
    fn sum_f64<const NEG: bool>(z: &[f64], m: f64) -> f64 {
        if NEG {
            sum_exp_lanes::<f64, 8>(z, -1.0, m)
        } else {
            sum_exp_lanes::<f64, 8>(z, 1.0, -m)
        }
    }
}

mod f32_block {
    use super::*;
    exp_sum_impl!(f32, 16, sum_f32);

    /// Exponentials in f32 ([`exp_nonpos_f32`]), summed in f64 on 16 lanes.
    #[inline(always)]
    fn sum_f32<const NEG: bool>(z: &[f32], m: f32) -> f64 {
        const L: usize = 16;
        let mut acc = [0.0f64; L];
        let chunks = z.chunks_exact(L);
        let rem = chunks.remainder();
        for c in chunks {
            for j in 0..L {
                let a = if NEG { m - c[j] } else { c[j] - m };
                acc[j] += exp_nonpos_f32(a) as f64;
            }
        }
        let mut tail = 0.0;
        for &x in rem {
            let a = if NEG { m - x } else { x - m };
            tail += exp_nonpos_f32(a) as f64;
        }
        let mut s = 0.0;
        for a in acc {
            s += a;
        }
        s + tail
    }
}

/// exp(x) in f32 for x ≤ 0 (small positive rounding tolerated), branch-free:
/// Cody–Waite reduction x = n·ln2 + r with n from the 1.5·2^23 rounding
/// trick, Cephes' degree-7 polynomial for e^r (relative error < 2e-7), 2^n
/// from exponent bits. Arguments below −87 return 0 (e^−87 ≈ 1.6e−38 next to
/// the max term 1).
#[inline(always)]
pub fn exp_nonpos_f32(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    const SHIFT: f32 = 12_582_912.0; // 1.5·2^23: adding it rounds to an integer
    let xc = x.clamp(-87.0, 0.5);
    let t = xc * LOG2E + SHIFT;
    let n = t - SHIFT;
    let r = (xc - n * LN2_HI) - n * LN2_LO;
    let mut p = 1.987_569_1e-4f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5;
    let y = p * (r * r) + r + 1.0;
    // t's mantissa holds n + 1.5·2^23; the difference of the bit patterns is n.
    let e = (t.to_bits() as i32).wrapping_sub(SHIFT.to_bits() as i32) + 127;
    let v = y * f32::from_bits((e as u32) << 23);
    if x < -87.0 {
        0.0
    } else {
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_matches_std() {
        let mut worst: f64 = 0.0;
        let mut x = -707.9;
        while x <= 0.0 {
            let a = exp_nonpos(x);
            let b = x.exp();
            worst = worst.max(((a - b) / b).abs());
            x += 0.0137;
        }
        assert!(worst < 4e-16, "worst relative error {worst}");
        assert_eq!(exp_nonpos(-1000.0), 0.0);
        assert_eq!(exp_nonpos(0.0), 1.0);
    }

    #[test]
    fn block_kernels_match_plain_f64_in_both_signs() {
        for n in [1usize, 7, 16, 17, 1000] {
            let v64: Vec<f64> = (0..n).map(|i| 900.0 + ((i * 7919) % 1009) as f64 * 0.037 - (i % 3) as f64).collect();
            let v32: Vec<f32> = v64.iter().map(|&x| x as f32).collect();
            let plain = |sign: f64, v: &[f64]| {
                let m = v.iter().map(|x| sign * x).fold(f64::NEG_INFINITY, f64::max);
                m + v.iter().map(|x| (sign * x - m).exp()).sum::<f64>().ln()
            };
            let w32: Vec<f64> = v32.iter().map(|&x| x as f64).collect();
            let (mut p, mut q) = (LogSumExp::default(), LogSumExp::default());
            update_both_signs(&mut p, &mut q, &v64);
            assert!((p.value() - plain(1.0, &v64)).abs() < 1e-12);
            assert!((q.value() - plain(-1.0, &v64)).abs() < 1e-12);
            let (mut p, mut q) = (LogSumExp::default(), LogSumExp::default());
            update_both_signs(&mut p, &mut q, &v32);
            assert!((p.value() - plain(1.0, &w32)).abs() < 1e-12, "{n}");
            assert!((q.value() - plain(-1.0, &w32)).abs() < 1e-12, "{n}");
            // The f32 shortcut: relative error < 2e-7 per term.
            let (mx, mn) = f32::max_min(&v32);
            let fast_pos = mx as f64 + f32::sum_exp(&v32, mx).ln();
            let fast_neg = -(mn as f64) + f32::sum_exp_neg(&v32, mn).ln();
            assert!((fast_pos - plain(1.0, &w32)).abs() < 5e-7, "{n}");
            assert!((fast_neg - plain(-1.0, &w32)).abs() < 5e-7, "{n}");
        }
    }

    #[test]
    fn f64_block_sum_is_the_plain_difference_kernel_bitwise() {
        // The f64 block sums reuse the shifted kernel (1·z + (−m) ≡ z − m):
        // the bits must equal an eight-lane sum of exp(z − m) written out.
        let plain = |z: &[f64], m: f64, neg: bool| {
            let mut acc = [0.0f64; 8];
            let ch = z.chunks_exact(8);
            let rem = ch.remainder();
            for c in ch {
                for j in 0..8 {
                    acc[j] += exp_nonpos(if neg { m - c[j] } else { c[j] - m });
                }
            }
            let tail: f64 = rem.iter().fold(0.0, |t, &x| t + exp_nonpos(if neg { m - x } else { x - m }));
            acc.iter().fold(0.0, |s, a| s + a) + tail
        };
        for n in [1usize, 8, 13, 1000] {
            let z: Vec<f64> = (0..n).map(|i| -3.0 + ((i * 7919) % 1009) as f64 * 0.0173).collect();
            let (mx, mn) = f64::max_min(&z);
            assert_eq!(f64::sum_exp(&z, mx).to_bits(), plain(&z, mx, false).to_bits());
            assert_eq!(f64::sum_exp_neg(&z, mn).to_bits(), plain(&z, mn, true).to_bits());
        }
    }

    #[test]
    fn lse_is_stable_and_mergeable() {
        let v: Vec<f64> = (0..1000).map(|i| 5000.0 + (i as f64) * 0.01).collect();
        let mut a = LogSumExp::default();
        a.update(&v);
        let m = v.iter().cloned().fold(f64::MIN, f64::max);
        let reference = m + v.iter().map(|x| (x - m).exp()).sum::<f64>().ln();
        assert!((a.value() - reference).abs() < 1e-12 * reference.abs());
        let (l, r) = v.split_at(313);
        let mut b = LogSumExp::default();
        b.update(r);
        let mut c = LogSumExp::default();
        c.update(l);
        b.merge(&c);
        assert!((b.value() - reference).abs() < 1e-12 * reference.abs());
        let (mut pos, mut neg) = (LogSumExp::default(), LogSumExp::default());
        update_both_signs(&mut pos, &mut neg, &v);
        assert!((pos.value() - reference).abs() < 1e-12 * reference.abs());
        assert!((neg.value() - (-5000.0 + v.iter().map(|x| (5000.0 - x).exp()).sum::<f64>().ln())).abs() < 1e-9);
        assert_eq!(LogSumExp::default().value(), f64::NEG_INFINITY);
    }
}
