//! Scalar distance kernels: the portable fallback and the reference the
//! SIMD kernels are tested against. They accumulate in `f32` like pgvector.

use half::f16;

pub fn l2_squared(a: &[f32], b: &[f32]) -> f32 {
    let mut d = 0.0f32;
    for (x, y) in a.iter().zip(b) {
        let t = x - y;
        d += t * t;
    }
    d
}

pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut d = 0.0f32;
    for (x, y) in a.iter().zip(b) {
        d += x * y;
    }
    d
}

pub fn l1(a: &[f32], b: &[f32]) -> f32 {
    let mut d = 0.0f32;
    for (x, y) in a.iter().zip(b) {
        d += (x - y).abs();
    }
    d
}

/// (a·b, a·a, b·b) in one pass, for cosine distance.
pub fn cosine_parts(a: &[f32], b: &[f32]) -> (f32, f32, f32) {
    let (mut ab, mut aa, mut bb) = (0.0f32, 0.0f32, 0.0f32);
    for (x, y) in a.iter().zip(b) {
        ab += x * y;
        aa += x * x;
        bb += y * y;
    }
    (ab, aa, bb)
}

pub fn l2_squared_f16(a: &[f16], b: &[f16]) -> f32 {
    let mut d = 0.0f32;
    for (x, y) in a.iter().zip(b) {
        let t = x.to_f32() - y.to_f32();
        d += t * t;
    }
    d
}

pub fn dot_f16(a: &[f16], b: &[f16]) -> f32 {
    let mut d = 0.0f32;
    for (x, y) in a.iter().zip(b) {
        d += x.to_f32() * y.to_f32();
    }
    d
}

pub fn l1_f16(a: &[f16], b: &[f16]) -> f32 {
    let mut d = 0.0f32;
    for (x, y) in a.iter().zip(b) {
        d += (x.to_f32() - y.to_f32()).abs();
    }
    d
}

pub fn cosine_parts_f16(a: &[f16], b: &[f16]) -> (f32, f32, f32) {
    let (mut ab, mut aa, mut bb) = (0.0f32, 0.0f32, 0.0f32);
    for (x, y) in a.iter().zip(b) {
        let (x, y) = (x.to_f32(), y.to_f32());
        ab += x * y;
        aa += x * x;
        bb += y * y;
    }
    (ab, aa, bb)
}

/// Number of differing bits.
pub fn hamming(a: &[u8], b: &[u8]) -> u64 {
    let mut d = 0u64;
    let mut ca = a.chunks_exact(8);
    let mut cb = b.chunks_exact(8);
    for (x, y) in (&mut ca).zip(&mut cb) {
        let x = u64::from_ne_bytes(x.try_into().expect("chunk of 8"));
        let y = u64::from_ne_bytes(y.try_into().expect("chunk of 8"));
        d += (x ^ y).count_ones() as u64;
    }
    for (x, y) in ca.remainder().iter().zip(cb.remainder()) {
        d += (x ^ y).count_ones() as u64;
    }
    d
}

/// (|a ∧ b|, |a|, |b|) in bits, for Jaccard distance.
pub fn jaccard_parts(a: &[u8], b: &[u8]) -> (u64, u64, u64) {
    let (mut ab, mut aa, mut bb) = (0u64, 0u64, 0u64);
    for (x, y) in a.iter().zip(b) {
        ab += (x & y).count_ones() as u64;
        aa += x.count_ones() as u64;
        bb += y.count_ones() as u64;
    }
    (ab, aa, bb)
}
