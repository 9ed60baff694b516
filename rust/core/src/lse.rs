//! Streaming log-sum-exp: log Σ exp(v_i) over a stream of values without ever
//! exponentiating a raw value (LLM hidden states reach norms in the thousands,
//! so exp(⟨x, c⟩) overflows float64).
//!
//! State (m, s) with s = Σ exp(v_i − m); merging rescales the smaller-max side.
//! The exponentials use a branch-free, vectorisable `exp` on non-positive
//! arguments (|rel. error| < 2e-16 on [−708, 0]; underflows flush to 0, which
//! cannot matter next to the max term exp(0) = 1).

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

    /// Add `sign * v_i + offset` for every v_i in `values` (one pass for the max,
    /// one for the sum).
    pub fn update<T: Copy + Into<f64>>(&mut self, values: &[T], sign: f64, offset: f64) {
        if values.is_empty() {
            return;
        }
        let m = max_shifted(values, sign, offset);
        let s = sum_exp_shifted(values, sign, offset - m);
        self.merge(&LogSumExp { max: m, sum: s });
    }
}

/// max_i (sign·v_i + offset), with eight independent lane maxima so the loop
/// vectorises (a single running max is a serial dependency chain).
pub fn max_shifted<T: Copy + Into<f64>>(values: &[T], sign: f64, offset: f64) -> f64 {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the feature was detected at run time.
            return unsafe { max_avx512(values, sign, offset) };
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the feature was detected at run time.
            return unsafe { max_avx2(values, sign, offset) };
        }
    }
    max_generic(values, sign, offset)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn max_avx512<T: Copy + Into<f64>>(values: &[T], sign: f64, offset: f64) -> f64 {
    max_generic(values, sign, offset)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn max_avx2<T: Copy + Into<f64>>(values: &[T], sign: f64, offset: f64) -> f64 {
    max_generic(values, sign, offset)
}

#[inline(always)]
fn max_generic<T: Copy + Into<f64>>(values: &[T], sign: f64, offset: f64) -> f64 {
    const L: usize = 8;
    let mut acc = [f64::NEG_INFINITY; L];
    let chunks = values.chunks_exact(L);
    let rem = chunks.remainder();
    for c in chunks {
        for k in 0..L {
            acc[k] = acc[k].max(sign * c[k].into() + offset);
        }
    }
    let mut m = acc.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    for &v in rem {
        m = m.max(sign * v.into() + offset);
    }
    m
}

/// Σ exp(sign·v_i + shift) where every argument is ≤ 0 (up to rounding).
pub fn sum_exp_shifted<T: Copy + Into<f64>>(values: &[T], sign: f64, shift: f64) -> f64 {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the feature was detected at run time.
            return unsafe { sum_exp_avx512(values, sign, shift) };
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: the features were detected at run time.
            return unsafe { sum_exp_avx2(values, sign, shift) };
        }
    }
    sum_exp_generic(values, sign, shift)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn sum_exp_avx512<T: Copy + Into<f64>>(values: &[T], sign: f64, shift: f64) -> f64 {
    sum_exp_generic(values, sign, shift)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn sum_exp_avx2<T: Copy + Into<f64>>(values: &[T], sign: f64, shift: f64) -> f64 {
    sum_exp_generic(values, sign, shift)
}

#[inline(always)]
fn sum_exp_generic<T: Copy + Into<f64>>(values: &[T], sign: f64, shift: f64) -> f64 {
    // Sixteen independent partial sums let the compiler vectorise without
    // reassociating a single float chain (which it may not do), two AVX-512
    // registers wide so the exp polynomials of two vectors overlap.
    const L: usize = 16;
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
    fn lse_is_stable_and_mergeable() {
        let v: Vec<f64> = (0..1000).map(|i| 5000.0 + (i as f64) * 0.01).collect();
        let mut a = LogSumExp::default();
        a.update(&v, 1.0, 0.0);
        let m = v.iter().cloned().fold(f64::MIN, f64::max);
        let reference = m + v.iter().map(|x| (x - m).exp()).sum::<f64>().ln();
        assert!((a.value() - reference).abs() < 1e-12 * reference.abs());
        let (l, r) = v.split_at(313);
        let mut b = LogSumExp::default();
        b.update(r, 1.0, 0.0);
        let mut c = LogSumExp::default();
        c.update(l, 1.0, 0.0);
        b.merge(&c);
        assert!((b.value() - reference).abs() < 1e-12 * reference.abs());
        let mut neg = LogSumExp::default();
        neg.update(&v, -1.0, 0.0);
        assert!((neg.value() - (-5000.0 + v.iter().map(|x| (5000.0 - x).exp()).sum::<f64>().ln())).abs() < 1e-9);
        assert_eq!(LogSumExp::default().value(), f64::NEG_INFINITY);
    }
}
