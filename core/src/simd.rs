//! x86-64 AVX2+FMA (+F16C for halfvec, POPCNT for bits) distance kernels.
//!
//! This is the only place in the core with `unsafe`: the intrinsics need
//! `target_feature`, and each function may only be called after
//! [`crate::kernels`] has checked at run time that the CPU has those
//! features. Loads are unaligned (`loadu`) and bounded by the slice length,
//! so no pointer leaves its slice.

#[cfg(target_arch = "x86_64")]
pub mod x86 {
    use half::f16;
    use std::arch::x86_64::*;

    /// Horizontal sum of 8 lanes.
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn hsum(v: __m256) -> f32 {
        let lo = _mm256_castps256_ps128(v);
        let hi = _mm256_extractf128_ps(v, 1);
        let s = _mm_add_ps(lo, hi);
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 0x55));
        _mm_cvtss_f32(s)
    }

    /// # Safety
    /// The CPU must support AVX2 and FMA; `a` and `b` have the same length.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn l2_squared(a: &[f32], b: &[f32]) -> f32 {
        // SAFETY: the caller checked this function's CPU features (see the module
        // comment); every pointer read is at an index below the slices' common length.
        unsafe {
            let n = a.len().min(b.len());
            let (pa, pb) = (a.as_ptr(), b.as_ptr());
            let mut acc0 = _mm256_setzero_ps();
            let mut acc1 = _mm256_setzero_ps();
            let mut i = 0;
            while i + 16 <= n {
                let d0 = _mm256_sub_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)));
                let d1 = _mm256_sub_ps(_mm256_loadu_ps(pa.add(i + 8)), _mm256_loadu_ps(pb.add(i + 8)));
                acc0 = _mm256_fmadd_ps(d0, d0, acc0);
                acc1 = _mm256_fmadd_ps(d1, d1, acc1);
                i += 16;
            }
            while i + 8 <= n {
                let d0 = _mm256_sub_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)));
                acc0 = _mm256_fmadd_ps(d0, d0, acc0);
                i += 8;
            }
            let mut s = hsum(_mm256_add_ps(acc0, acc1));
            while i < n {
                let t = *pa.add(i) - *pb.add(i);
                s += t * t;
                i += 1;
            }
            s
        }
    }

    /// # Safety
    /// The CPU must support AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn dot(a: &[f32], b: &[f32]) -> f32 {
        // SAFETY: the caller checked this function's CPU features (see the module
        // comment); every pointer read is at an index below the slices' common length.
        unsafe {
            let n = a.len().min(b.len());
            let (pa, pb) = (a.as_ptr(), b.as_ptr());
            let mut acc0 = _mm256_setzero_ps();
            let mut acc1 = _mm256_setzero_ps();
            let mut i = 0;
            while i + 16 <= n {
                acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)), acc0);
                acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i + 8)), _mm256_loadu_ps(pb.add(i + 8)), acc1);
                i += 16;
            }
            while i + 8 <= n {
                acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)), acc0);
                i += 8;
            }
            let mut s = hsum(_mm256_add_ps(acc0, acc1));
            while i < n {
                s += *pa.add(i) * *pb.add(i);
                i += 1;
            }
            s
        }
    }

    /// # Safety
    /// The CPU must support AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn l1(a: &[f32], b: &[f32]) -> f32 {
        // SAFETY: the caller checked this function's CPU features (see the module
        // comment); every pointer read is at an index below the slices' common length.
        unsafe {
            let n = a.len().min(b.len());
            let (pa, pb) = (a.as_ptr(), b.as_ptr());
            // Clearing the sign bit is |x|.
            let mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fff_ffff));
            let mut acc = _mm256_setzero_ps();
            let mut i = 0;
            while i + 8 <= n {
                let d = _mm256_sub_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)));
                acc = _mm256_add_ps(acc, _mm256_and_ps(d, mask));
                i += 8;
            }
            let mut s = hsum(acc);
            while i < n {
                s += (*pa.add(i) - *pb.add(i)).abs();
                i += 1;
            }
            s
        }
    }

    /// # Safety
    /// The CPU must support AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn cosine_parts(a: &[f32], b: &[f32]) -> (f32, f32, f32) {
        // SAFETY: the caller checked this function's CPU features (see the module
        // comment); every pointer read is at an index below the slices' common length.
        unsafe {
            let n = a.len().min(b.len());
            let (pa, pb) = (a.as_ptr(), b.as_ptr());
            let (mut ab, mut aa, mut bb) = (_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps());
            let mut i = 0;
            while i + 8 <= n {
                let x = _mm256_loadu_ps(pa.add(i));
                let y = _mm256_loadu_ps(pb.add(i));
                ab = _mm256_fmadd_ps(x, y, ab);
                aa = _mm256_fmadd_ps(x, x, aa);
                bb = _mm256_fmadd_ps(y, y, bb);
                i += 8;
            }
            let (mut sab, mut saa, mut sbb) = (hsum(ab), hsum(aa), hsum(bb));
            while i < n {
                let (x, y) = (*pa.add(i), *pb.add(i));
                sab += x * y;
                saa += x * x;
                sbb += y * y;
                i += 1;
            }
            (sab, saa, sbb)
        }
    }

    /// Loads 8 halves and widens them to f32.
    #[inline]
    #[target_feature(enable = "avx2,f16c")]
    unsafe fn load_f16x8(p: *const f16) -> __m256 {
        // SAFETY: the caller checked this function's CPU features (see the module
        // comment); every pointer read is at an index below the slices' common length.
        unsafe { _mm256_cvtph_ps(_mm_loadu_si128(p as *const __m128i)) }
    }

    /// # Safety
    /// The CPU must support AVX2, FMA and F16C.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn l2_squared_f16(a: &[f16], b: &[f16]) -> f32 {
        // SAFETY: the caller checked this function's CPU features (see the module
        // comment); every pointer read is at an index below the slices' common length.
        unsafe {
            let n = a.len().min(b.len());
            let (pa, pb) = (a.as_ptr(), b.as_ptr());
            let mut acc = _mm256_setzero_ps();
            let mut i = 0;
            while i + 8 <= n {
                let d = _mm256_sub_ps(load_f16x8(pa.add(i)), load_f16x8(pb.add(i)));
                acc = _mm256_fmadd_ps(d, d, acc);
                i += 8;
            }
            let mut s = hsum(acc);
            while i < n {
                let t = (*pa.add(i)).to_f32() - (*pb.add(i)).to_f32();
                s += t * t;
                i += 1;
            }
            s
        }
    }

    /// # Safety
    /// The CPU must support AVX2, FMA and F16C.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn dot_f16(a: &[f16], b: &[f16]) -> f32 {
        // SAFETY: the caller checked this function's CPU features (see the module
        // comment); every pointer read is at an index below the slices' common length.
        unsafe {
            let n = a.len().min(b.len());
            let (pa, pb) = (a.as_ptr(), b.as_ptr());
            let mut acc = _mm256_setzero_ps();
            let mut i = 0;
            while i + 8 <= n {
                acc = _mm256_fmadd_ps(load_f16x8(pa.add(i)), load_f16x8(pb.add(i)), acc);
                i += 8;
            }
            let mut s = hsum(acc);
            while i < n {
                s += (*pa.add(i)).to_f32() * (*pb.add(i)).to_f32();
                i += 1;
            }
            s
        }
    }

    /// # Safety
    /// The CPU must support AVX2, FMA and F16C.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn l1_f16(a: &[f16], b: &[f16]) -> f32 {
        // SAFETY: the caller checked this function's CPU features (see the module
        // comment); every pointer read is at an index below the slices' common length.
        unsafe {
            let n = a.len().min(b.len());
            let (pa, pb) = (a.as_ptr(), b.as_ptr());
            let mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fff_ffff));
            let mut acc = _mm256_setzero_ps();
            let mut i = 0;
            while i + 8 <= n {
                let d = _mm256_sub_ps(load_f16x8(pa.add(i)), load_f16x8(pb.add(i)));
                acc = _mm256_add_ps(acc, _mm256_and_ps(d, mask));
                i += 8;
            }
            let mut s = hsum(acc);
            while i < n {
                s += ((*pa.add(i)).to_f32() - (*pb.add(i)).to_f32()).abs();
                i += 1;
            }
            s
        }
    }

    /// # Safety
    /// The CPU must support AVX2, FMA and F16C.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn cosine_parts_f16(a: &[f16], b: &[f16]) -> (f32, f32, f32) {
        // SAFETY: the caller checked this function's CPU features (see the module
        // comment); every pointer read is at an index below the slices' common length.
        unsafe {
            let n = a.len().min(b.len());
            let (pa, pb) = (a.as_ptr(), b.as_ptr());
            let (mut ab, mut aa, mut bb) = (_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps());
            let mut i = 0;
            while i + 8 <= n {
                let x = load_f16x8(pa.add(i));
                let y = load_f16x8(pb.add(i));
                ab = _mm256_fmadd_ps(x, y, ab);
                aa = _mm256_fmadd_ps(x, x, aa);
                bb = _mm256_fmadd_ps(y, y, bb);
                i += 8;
            }
            let (mut sab, mut saa, mut sbb) = (hsum(ab), hsum(aa), hsum(bb));
            while i < n {
                let (x, y) = ((*pa.add(i)).to_f32(), (*pb.add(i)).to_f32());
                sab += x * y;
                saa += x * x;
                sbb += y * y;
                i += 1;
            }
            (sab, saa, sbb)
        }
    }

    /// # Safety
    /// The CPU must support POPCNT.
    #[target_feature(enable = "popcnt")]
    pub unsafe fn hamming(a: &[u8], b: &[u8]) -> u64 {
        // With the feature enabled, count_ones compiles to the popcnt instruction.
        crate::scalar::hamming(a, b)
    }

    /// # Safety
    /// The CPU must support POPCNT.
    #[target_feature(enable = "popcnt")]
    pub unsafe fn jaccard_parts(a: &[u8], b: &[u8]) -> (u64, u64, u64) {
        let (mut ab, mut aa, mut bb) = (0u64, 0u64, 0u64);
        let mut ca = a.chunks_exact(8);
        let mut cb = b.chunks_exact(8);
        for (x, y) in (&mut ca).zip(&mut cb) {
            let x = u64::from_ne_bytes(x.try_into().expect("chunk of 8"));
            let y = u64::from_ne_bytes(y.try_into().expect("chunk of 8"));
            ab += (x & y).count_ones() as u64;
            aa += x.count_ones() as u64;
            bb += y.count_ones() as u64;
        }
        let (r1, r2, r3) = crate::scalar::jaccard_parts(ca.remainder(), cb.remainder());
        (ab + r1, aa + r2, bb + r3)
    }
}
