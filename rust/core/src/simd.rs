//! Run-time SIMD dispatch: one portable kernel, compiled three times.
//!
//! [`dispatch!`] defines a function that calls an `#[inline(always)]` generic
//! kernel through a copy compiled with `target_feature(enable = "avx512f")`
//! when the CPU has AVX-512F, else through a copy compiled with the AVX2 feature
//! set the invocation names (`"avx2"`, or `"avx2", "fma"` where the kernel's
//! polynomials benefit from FMA instructions), else the plain build.
//!
//! Why results are bitwise equal on every path: the kernels are written with
//! independent accumulators in a fixed order, and Rust never reassociates float
//! additions nor contracts a·b + c into an FMA on its own, so enabling wider
//! registers (or FMA availability) changes only the instructions, never the
//! arithmetic.

/// Define a function dispatching on the CPU's features at run time:
///
/// ```ignore
/// dispatch! {
///     /// docs
///     #[inline]
///     pub fn name[T: Bound, const C: bool][T, C](a: &[T], b: f64) -> f64 = kernel; avx2 "avx2", "fma";
/// }
/// ```
///
/// The two bracket groups (optional) are the generic parameters as declared
/// and as passed on (`kernel::<T, C>`); `kernel` takes the same arguments.
/// Usable in item position and inside `impl` blocks.
macro_rules! dispatch {
    (
        $(#[$meta:meta])*
        $vis:vis fn $name:ident $([$($decl:tt)*] [$($use:tt)*])? ($($arg:ident : $ty:ty),* $(,)?) $(-> $ret:ty)?
        = $generic:ident; avx2 $($feat:tt),+;
    ) => {
        $(#[$meta])*
        $vis fn $name $(<$($decl)*>)? ($($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f")]
                unsafe fn avx512 $(<$($decl)*>)? ($($arg: $ty),*) $(-> $ret)? {
                    $generic $(::<$($use)*>)? ($($arg),*)
                }
                #[target_feature($(enable = $feat),+)]
                unsafe fn avx2 $(<$($decl)*>)? ($($arg: $ty),*) $(-> $ret)? {
                    $generic $(::<$($use)*>)? ($($arg),*)
                }
                if std::arch::is_x86_feature_detected!("avx512f") {
                    // SAFETY: the feature was detected at run time.
                    return unsafe { avx512 $(::<$($use)*>)? ($($arg),*) };
                }
                if $(std::arch::is_x86_feature_detected!($feat))&&+ {
                    // SAFETY: the features were detected at run time.
                    return unsafe { avx2 $(::<$($use)*>)? ($($arg),*) };
                }
            }
            $generic $(::<$($use)*>)? ($($arg),*)
        }
    };
}

pub(crate) use dispatch;
