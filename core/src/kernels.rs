//! Distance kernels chosen once at run time: the SIMD ones when the CPU has
//! the features, the scalar ones otherwise. Callers use the free functions.

use half::f16;
use std::sync::OnceLock;

type F32Pair = fn(&[f32], &[f32]) -> f32;
type F32Triple = fn(&[f32], &[f32]) -> (f32, f32, f32);
type F16Pair = fn(&[f16], &[f16]) -> f32;
type F16Triple = fn(&[f16], &[f16]) -> (f32, f32, f32);
type BitsCount = fn(&[u8], &[u8]) -> u64;
type BitsTriple = fn(&[u8], &[u8]) -> (u64, u64, u64);

/// One table of kernel entry points.
#[derive(Clone, Copy)]
pub struct Kernels {
    pub name: &'static str,
    pub l2_squared: F32Pair,
    pub dot: F32Pair,
    pub l1: F32Pair,
    pub cosine_parts: F32Triple,
    pub l2_squared_f16: F16Pair,
    pub dot_f16: F16Pair,
    pub l1_f16: F16Pair,
    pub cosine_parts_f16: F16Triple,
    pub hamming: BitsCount,
    pub jaccard_parts: BitsTriple,
}

pub const SCALAR: Kernels = Kernels {
    name: "scalar",
    l2_squared: crate::scalar::l2_squared,
    dot: crate::scalar::dot,
    l1: crate::scalar::l1,
    cosine_parts: crate::scalar::cosine_parts,
    l2_squared_f16: crate::scalar::l2_squared_f16,
    dot_f16: crate::scalar::dot_f16,
    l1_f16: crate::scalar::l1_f16,
    cosine_parts_f16: crate::scalar::cosine_parts_f16,
    hamming: crate::scalar::hamming,
    jaccard_parts: crate::scalar::jaccard_parts,
};

#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)] // calls into crate::simd after the CPU check
mod avx2 {
    use super::*;
    use crate::simd::x86;
    // SAFETY (every wrapper below): this table is only handed out by
    // `simd_kernels()` after `is_x86_feature_detected!` confirmed avx2, fma,
    // f16c and popcnt on this CPU.
    fn l2_squared(a: &[f32], b: &[f32]) -> f32 {
        // SAFETY: only reachable through the AVX2 table (see above).
        unsafe { x86::l2_squared(a, b) }
    }
    fn dot(a: &[f32], b: &[f32]) -> f32 {
        // SAFETY: only reachable through the AVX2 table (see above).
        unsafe { x86::dot(a, b) }
    }
    fn l1(a: &[f32], b: &[f32]) -> f32 {
        // SAFETY: only reachable through the AVX2 table (see above).
        unsafe { x86::l1(a, b) }
    }
    fn cosine_parts(a: &[f32], b: &[f32]) -> (f32, f32, f32) {
        // SAFETY: only reachable through the AVX2 table (see above).
        unsafe { x86::cosine_parts(a, b) }
    }
    fn l2_squared_f16(a: &[f16], b: &[f16]) -> f32 {
        // SAFETY: only reachable through the AVX2 table (see above).
        unsafe { x86::l2_squared_f16(a, b) }
    }
    fn dot_f16(a: &[f16], b: &[f16]) -> f32 {
        // SAFETY: only reachable through the AVX2 table (see above).
        unsafe { x86::dot_f16(a, b) }
    }
    fn l1_f16(a: &[f16], b: &[f16]) -> f32 {
        // SAFETY: only reachable through the AVX2 table (see above).
        unsafe { x86::l1_f16(a, b) }
    }
    fn cosine_parts_f16(a: &[f16], b: &[f16]) -> (f32, f32, f32) {
        // SAFETY: only reachable through the AVX2 table (see above).
        unsafe { x86::cosine_parts_f16(a, b) }
    }
    fn hamming(a: &[u8], b: &[u8]) -> u64 {
        // SAFETY: only reachable through the AVX2 table (see above).
        unsafe { x86::hamming(a, b) }
    }
    fn jaccard_parts(a: &[u8], b: &[u8]) -> (u64, u64, u64) {
        // SAFETY: only reachable through the AVX2 table (see above).
        unsafe { x86::jaccard_parts(a, b) }
    }

    pub(super) const AVX2: Kernels = Kernels {
        name: "avx2+fma+f16c",
        l2_squared,
        dot,
        l1,
        cosine_parts,
        l2_squared_f16,
        dot_f16,
        l1_f16,
        cosine_parts_f16,
        hamming,
        jaccard_parts,
    };
}

/// The SIMD table if this CPU can run it.
pub fn simd_kernels() -> Option<Kernels> {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx2")
            && std::is_x86_feature_detected!("fma")
            && std::is_x86_feature_detected!("f16c")
            && std::is_x86_feature_detected!("popcnt")
        {
            return Some(avx2::AVX2);
        }
    }
    None
}

static ACTIVE: OnceLock<Kernels> = OnceLock::new();

/// The kernels in use in this process.
#[inline]
pub fn active() -> &'static Kernels {
    ACTIVE.get_or_init(|| simd_kernels().unwrap_or(SCALAR))
}

#[inline]
pub fn l2_squared(a: &[f32], b: &[f32]) -> f32 {
    (active().l2_squared)(a, b)
}
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    (active().dot)(a, b)
}
#[inline]
pub fn l1(a: &[f32], b: &[f32]) -> f32 {
    (active().l1)(a, b)
}
#[inline]
pub fn cosine_parts(a: &[f32], b: &[f32]) -> (f32, f32, f32) {
    (active().cosine_parts)(a, b)
}
#[inline]
pub fn l2_squared_f16(a: &[f16], b: &[f16]) -> f32 {
    (active().l2_squared_f16)(a, b)
}
#[inline]
pub fn dot_f16(a: &[f16], b: &[f16]) -> f32 {
    (active().dot_f16)(a, b)
}
#[inline]
pub fn l1_f16(a: &[f16], b: &[f16]) -> f32 {
    (active().l1_f16)(a, b)
}
#[inline]
pub fn cosine_parts_f16(a: &[f16], b: &[f16]) -> (f32, f32, f32) {
    (active().cosine_parts_f16)(a, b)
}
#[inline]
pub fn hamming(a: &[u8], b: &[u8]) -> u64 {
    (active().hamming)(a, b)
}
#[inline]
pub fn jaccard_parts(a: &[u8], b: &[u8]) -> (u64, u64, u64) {
    (active().jaccard_parts)(a, b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Relative closeness for sums whose order of addition differs.
    fn close(x: f32, y: f64, scale: f64) -> bool {
        (x as f64 - y).abs() <= 1e-4 * scale.max(1e-6) + 1e-6
    }

    fn ref_l2(a: &[f32], b: &[f32]) -> f64 {
        a.iter().zip(b).map(|(x, y)| (*x as f64 - *y as f64).powi(2)).sum()
    }
    fn ref_dot(a: &[f32], b: &[f32]) -> f64 {
        a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum()
    }
    fn ref_l1(a: &[f32], b: &[f32]) -> f64 {
        a.iter().zip(b).map(|(x, y)| (*x as f64 - *y as f64).abs()).sum()
    }
    fn abs_scale(a: &[f32], b: &[f32]) -> f64 {
        a.iter().zip(b).map(|(x, y)| (*x as f64 * *y as f64).abs() + (*x as f64).powi(2) + (*y as f64).powi(2)).sum()
    }

    fn pair() -> impl Strategy<Value = (Vec<f32>, Vec<f32>)> {
        (0usize..200)
            .prop_flat_map(|n| (prop::collection::vec(-100f32..100f32, n), prop::collection::vec(-100f32..100f32, n)))
    }

    fn tables() -> Vec<Kernels> {
        let mut t = vec![SCALAR];
        t.extend(simd_kernels());
        t
    }

    proptest! {
        #[test]
        fn every_f32_kernel_matches_the_f64_reference((a, b) in pair()) {
            let s = abs_scale(&a, &b);
            for k in tables() {
                prop_assert!(close((k.l2_squared)(&a, &b), ref_l2(&a, &b), s), "{} l2", k.name);
                prop_assert!(close((k.dot)(&a, &b), ref_dot(&a, &b), s), "{} dot", k.name);
                prop_assert!(close((k.l1)(&a, &b), ref_l1(&a, &b), s), "{} l1", k.name);
                let (ab, aa, bb) = (k.cosine_parts)(&a, &b);
                prop_assert!(close(ab, ref_dot(&a, &b), s));
                prop_assert!(close(aa, ref_dot(&a, &a), s));
                prop_assert!(close(bb, ref_dot(&b, &b), s));
            }
        }

        #[test]
        fn every_f16_kernel_matches_the_f64_reference((a, b) in pair()) {
            let ha: Vec<f16> = a.iter().map(|x| f16::from_f32(*x)).collect();
            let hb: Vec<f16> = b.iter().map(|x| f16::from_f32(*x)).collect();
            let fa: Vec<f32> = ha.iter().map(|x| x.to_f32()).collect();
            let fb: Vec<f32> = hb.iter().map(|x| x.to_f32()).collect();
            let s = abs_scale(&fa, &fb);
            for k in tables() {
                prop_assert!(close((k.l2_squared_f16)(&ha, &hb), ref_l2(&fa, &fb), s), "{} l2", k.name);
                prop_assert!(close((k.dot_f16)(&ha, &hb), ref_dot(&fa, &fb), s), "{} dot", k.name);
                prop_assert!(close((k.l1_f16)(&ha, &hb), ref_l1(&fa, &fb), s), "{} l1", k.name);
                let (ab, aa, bb) = (k.cosine_parts_f16)(&ha, &hb);
                prop_assert!(close(ab, ref_dot(&fa, &fb), s));
                prop_assert!(close(aa, ref_dot(&fa, &fa), s));
                prop_assert!(close(bb, ref_dot(&fb, &fb), s));
            }
        }

        #[test]
        fn bit_kernels_agree((a, b) in (0usize..100).prop_flat_map(|n| (prop::collection::vec(any::<u8>(), n), prop::collection::vec(any::<u8>(), n)))) {
            let naive_h: u64 = a.iter().zip(&b).map(|(x, y)| (0..8).filter(|i| (x >> i) & 1 != (y >> i) & 1).count() as u64).sum();
            for k in tables() {
                prop_assert_eq!((k.hamming)(&a, &b), naive_h);
                let naive_j = a.iter().zip(&b).fold((0u64, 0u64, 0u64), |acc, (x, y)| {
                    (acc.0 + (x & y).count_ones() as u64, acc.1 + x.count_ones() as u64, acc.2 + y.count_ones() as u64)
                });
                prop_assert_eq!((k.jaccard_parts)(&a, &b), naive_j);
            }
        }
    }

    #[test]
    fn simd_is_used_on_this_machine_when_available() {
        // Documents which table the tests exercised (visible with --nocapture).
        eprintln!("active kernels: {}", active().name);
        if let Some(k) = simd_kernels() {
            assert_eq!(active().name, k.name);
        }
    }
}
