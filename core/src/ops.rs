//! Vector functions and operators with pgvector's semantics: distances
//! returned as `f64`, element-wise arithmetic with overflow checks, and the
//! helpers behind `subvector`, comparison, normalisation, quantisation and
//! the `avg`/`sum` aggregates.

use crate::element::{check_dim, check_same_dims, check_typmod_dim, Element};
use crate::error::{Result, VectorError};
use crate::kernels;
use half::f16;
use std::cmp::Ordering;

/// Distances that have a SIMD kernel for both element types.
pub trait Distances: Element {
    fn l2_squared(a: &[Self], b: &[Self]) -> f32;
    fn dot(a: &[Self], b: &[Self]) -> f32;
    fn l1(a: &[Self], b: &[Self]) -> f32;
    fn cosine_parts(a: &[Self], b: &[Self]) -> (f32, f32, f32);
}

impl Distances for f32 {
    fn l2_squared(a: &[f32], b: &[f32]) -> f32 {
        kernels::l2_squared(a, b)
    }
    fn dot(a: &[f32], b: &[f32]) -> f32 {
        kernels::dot(a, b)
    }
    fn l1(a: &[f32], b: &[f32]) -> f32 {
        kernels::l1(a, b)
    }
    fn cosine_parts(a: &[f32], b: &[f32]) -> (f32, f32, f32) {
        kernels::cosine_parts(a, b)
    }
}

impl Distances for f16 {
    fn l2_squared(a: &[f16], b: &[f16]) -> f32 {
        kernels::l2_squared_f16(a, b)
    }
    fn dot(a: &[f16], b: &[f16]) -> f32 {
        kernels::dot_f16(a, b)
    }
    fn l1(a: &[f16], b: &[f16]) -> f32 {
        kernels::l1_f16(a, b)
    }
    fn cosine_parts(a: &[f16], b: &[f16]) -> (f32, f32, f32) {
        kernels::cosine_parts_f16(a, b)
    }
}

pub fn l2_distance<E: Distances>(a: &[E], b: &[E]) -> Result<f64> {
    check_same_dims(a, b)?;
    Ok((E::l2_squared(a, b) as f64).sqrt())
}

pub fn l2_squared_distance<E: Distances>(a: &[E], b: &[E]) -> Result<f64> {
    check_same_dims(a, b)?;
    Ok(E::l2_squared(a, b) as f64)
}

pub fn inner_product<E: Distances>(a: &[E], b: &[E]) -> Result<f64> {
    check_same_dims(a, b)?;
    Ok(E::dot(a, b) as f64)
}

pub fn negative_inner_product<E: Distances>(a: &[E], b: &[E]) -> Result<f64> {
    check_same_dims(a, b)?;
    Ok(-(E::dot(a, b) as f64))
}

/// 1 - cos(a, b), clamped to [0, 2]; NaN when either vector is zero, as in pgvector.
pub fn cosine_distance<E: Distances>(a: &[E], b: &[E]) -> Result<f64> {
    check_same_dims(a, b)?;
    let (ab, aa, bb) = E::cosine_parts(a, b);
    // sqrt(a * b) rather than sqrt(a) * sqrt(b), like pgvector.
    let similarity = ab as f64 / ((aa as f64) * (bb as f64)).sqrt();
    if similarity.is_nan() {
        return Ok(f64::NAN);
    }
    Ok(1.0 - similarity.clamp(-1.0, 1.0))
}

/// Angular distance of unit vectors, in [0, 1] (pgvector's spherical distance).
pub fn spherical_distance<E: Distances>(a: &[E], b: &[E]) -> Result<f64> {
    check_same_dims(a, b)?;
    let d = (E::dot(a, b) as f64).clamp(-1.0, 1.0);
    Ok(d.acos() / std::f64::consts::PI)
}

pub fn l1_distance<E: Distances>(a: &[E], b: &[E]) -> Result<f64> {
    check_same_dims(a, b)?;
    Ok(E::l1(a, b) as f64)
}

/// Euclidean norm, accumulated in f64.
pub fn norm<E: Element>(a: &[E]) -> f64 {
    a.iter().map(|x| (x.to_f32() as f64) * (x.to_f32() as f64)).sum::<f64>().sqrt()
}

/// Unit vector in the direction of `a`; the zero vector stays zero.
pub fn l2_normalize<E: Element>(a: &[E]) -> Result<Vec<E>> {
    let n = norm(a);
    if n > 0.0 {
        a.iter().map(|x| E::from_f32_arith((x.to_f32() as f64 / n) as f32)).collect()
    } else {
        Ok(vec![E::default(); a.len()])
    }
}

fn elementwise<E: Element>(a: &[E], b: &[E], f: impl Fn(f32, f32) -> f32) -> Result<Vec<E>> {
    check_same_dims(a, b)?;
    a.iter().zip(b).map(|(x, y)| E::from_f32_arith(f(x.to_f32(), y.to_f32()))).collect()
}

pub fn add<E: Element>(a: &[E], b: &[E]) -> Result<Vec<E>> {
    elementwise(a, b, |x, y| x + y)
}

pub fn sub<E: Element>(a: &[E], b: &[E]) -> Result<Vec<E>> {
    elementwise(a, b, |x, y| x - y)
}

/// Element-wise product; a product that rounds to zero from non-zero factors is underflow.
pub fn mul<E: Element>(a: &[E], b: &[E]) -> Result<Vec<E>> {
    let r = elementwise(a, b, |x, y| x * y)?;
    for ((x, y), z) in a.iter().zip(b).zip(&r) {
        if z.to_f32() == 0.0 && x.to_f32() != 0.0 && y.to_f32() != 0.0 {
            return Err(VectorError::Underflow);
        }
    }
    Ok(r)
}

pub fn concat<E: Element>(a: &[E], b: &[E]) -> Result<Vec<E>> {
    check_dim::<E>(a.len() + b.len())?;
    let mut r = Vec::with_capacity(a.len() + b.len());
    r.extend_from_slice(a);
    r.extend_from_slice(b);
    Ok(r)
}

/// `subvector(v, start, count)`: 1-based like `substring`, clipped at the ends.
pub fn subvector<E: Element>(a: &[E], start: i32, count: i32) -> Result<Vec<E>> {
    let none = || VectorError::NoDimensions { type_name: E::TYPE_NAME };
    if count < 1 {
        return Err(none());
    }
    let dim = a.len() as i64;
    let (start, count) = (start as i64, count as i64);
    let end = (start + count).min(dim + 1);
    let start = start.max(1);
    if start > dim || end <= start {
        return Err(none());
    }
    Ok(a[(start - 1) as usize..(end - 1) as usize].to_vec())
}

/// Values first, then dimension, consistent with Postgres arrays.
pub fn compare<E: Element>(a: &[E], b: &[E]) -> Ordering {
    for (x, y) in a.iter().zip(b) {
        let (x, y) = (x.to_f32(), y.to_f32());
        if x < y {
            return Ordering::Less;
        }
        if x > y {
            return Ordering::Greater;
        }
    }
    a.len().cmp(&b.len())
}

/// One bit per dimension, set where the value is positive; the bit string
/// is big-endian within each byte as Postgres' `bit` type stores it.
pub fn binary_quantize<E: Element>(a: &[E]) -> Vec<u8> {
    let mut out = vec![0u8; a.len().div_ceil(8)];
    for (i, x) in a.iter().enumerate() {
        if x.to_f32() > 0.0 {
            out[i / 8] |= 0x80 >> (i % 8);
        }
    }
    out
}

/// Converts numbers from an array cast, checking dimension, typmod and finiteness.
pub fn from_f64s<E: Element>(values: &[f64], typmod: i32) -> Result<Vec<E>> {
    check_dim::<E>(values.len())?;
    check_typmod_dim(typmod, values.len())?;
    values
        .iter()
        .map(|v| {
            let e = E::from_f32_checked(*v as f32)?;
            crate::element::check_element(e)?;
            Ok(e)
        })
        .collect()
}

/// Converts between element types (`vector` <-> `halfvec`), checking overflow.
pub fn convert<A: Element, B: Element>(a: &[A], typmod: i32) -> Result<Vec<B>> {
    check_dim::<B>(a.len())?;
    check_typmod_dim(typmod, a.len())?;
    a.iter().map(|x| B::from_f32_checked(x.to_f32())).collect()
}

/// The `avg` aggregate's state: `[n, sum_1, ..., sum_dim]` in f64, as pgvector
/// keeps it so that states from parallel workers combine.
pub fn accum<E: Element>(state: &[f64], value: &[E]) -> Result<Vec<f64>> {
    let n = state.first().copied().unwrap_or(0.0);
    let sums = state.get(1..).unwrap_or(&[]);
    let mut out = Vec::with_capacity(value.len() + 1);
    out.push(n + 1.0);
    if sums.is_empty() {
        out.extend(value.iter().map(|x| x.to_f32() as f64));
    } else {
        check_typmod_dim(sums.len() as i32, value.len())?;
        for (s, x) in sums.iter().zip(value) {
            let v = s + x.to_f32() as f64;
            if v.is_infinite() {
                return Err(VectorError::Overflow);
            }
            out.push(v);
        }
    }
    Ok(out)
}

/// Merges two aggregate states (count, then sums) as pgvector's
/// vector_combine does: an empty side (count 0) yields the other, which must
/// then be a valid vector's dimensions.
pub fn combine(a: &[f64], b: &[f64]) -> Result<Vec<f64>> {
    let (na, nb) = (a.first().copied().unwrap_or(0.0), b.first().copied().unwrap_or(0.0));
    let (sa, sb) = (a.get(1..).unwrap_or(&[]), b.get(1..).unwrap_or(&[]));
    let mut out = Vec::with_capacity(sa.len().max(sb.len()) + 1);
    if na == 0.0 {
        check_dim::<f32>(sb.len())?;
        out.push(nb);
        out.extend_from_slice(sb);
    } else if nb == 0.0 {
        check_dim::<f32>(sa.len())?;
        out.push(na);
        out.extend_from_slice(sa);
    } else {
        check_dim::<f32>(sa.len())?;
        check_typmod_dim(sa.len() as i32, sb.len())?;
        out.push(na + nb);
        for (x, y) in sa.iter().zip(sb) {
            let v = x + y;
            if v.is_infinite() {
                return Err(VectorError::Overflow);
            }
            out.push(v);
        }
    }
    Ok(out)
}

/// The mean from an aggregate state; `None` when no rows were aggregated.
pub fn average<E: Element>(state: &[f64]) -> Result<Option<Vec<E>>> {
    let n = state.first().copied().unwrap_or(0.0);
    let sums = state.get(1..).unwrap_or(&[]);
    if n == 0.0 {
        return Ok(None);
    }
    check_dim::<E>(sums.len())?;
    sums.iter()
        .map(|s| {
            let mean = (s / n) as f32;
            if mean.is_nan() {
                return Err(VectorError::NotANumber { type_name: E::TYPE_NAME });
            }
            if mean.is_infinite() {
                return Err(VectorError::Infinite { type_name: E::TYPE_NAME });
            }
            E::from_f32_arith(mean)
        })
        .collect::<Result<Vec<E>>>()
        .map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn aggregate_states_are_checked_as_pgvector_checks_them() {
        // a count without sums is no vector
        assert_eq!(average::<f32>(&[1.0]).unwrap_err().to_string(), "vector must have at least 1 dimension");
        assert_eq!(average::<f16>(&[1.0]).unwrap_err().to_string(), "halfvec must have at least 1 dimension");
        assert_eq!(combine(&[0.0], &[0.0]).unwrap_err().to_string(), "vector must have at least 1 dimension");
        let big: Vec<f64> = (1..=16_002).map(f64::from).collect();
        for (a, b) in [(&[0.0][..], &big[..]), (&big[..], &[0.0][..]), (&big[..], &big[..])] {
            assert_eq!(combine(a, b).unwrap_err().to_string(), "vector cannot have more than 16000 dimensions");
        }
        assert_eq!(combine(&[1.0, 2.0], &[3.0, 4.0]).unwrap(), vec![4.0, 6.0]);
        // means that are not finite floats are errors, never [NaN]
        assert_eq!(average::<f32>(&[1.0, f64::NAN]).unwrap_err().to_string(), "NaN not allowed in vector");
        assert_eq!(average::<f32>(&[1.0, 1e300]).unwrap_err().to_string(), "infinite value not allowed in vector");
        assert_eq!(average::<f32>(&[0.0, 5.0]).unwrap(), None);
    }

    #[test]
    fn issue_example_cosine() {
        let d = cosine_distance(&[1.0f32, 2.0, 3.0], &[3.0, 2.0, 1.0]).unwrap();
        assert!((d - 0.2857142857142857).abs() < 1e-12, "{d}");
    }

    #[test]
    fn distances_reject_mixed_dimensions() {
        let e = l2_distance(&[1.0f32, 2.0], &[1.0, 2.0, 3.0]).unwrap_err();
        assert_eq!(e.to_string(), "different vector dimensions 2 and 3");
        let h = [f16::ONE];
        let e = inner_product(&h, &[f16::ONE, f16::ONE]).unwrap_err();
        assert_eq!(e.to_string(), "different halfvec dimensions 1 and 2");
    }

    #[test]
    fn zero_vector_cosine_is_nan() {
        assert!(cosine_distance(&[0.0f32, 0.0], &[1.0, 1.0]).unwrap().is_nan());
    }

    #[test]
    fn arithmetic_overflow_and_underflow() {
        assert_eq!(add(&[3e38f32], &[3e38]).unwrap_err(), VectorError::Overflow);
        assert_eq!(sub(&[-3e38f32], &[3e38]).unwrap_err(), VectorError::Overflow);
        assert_eq!(mul(&[1e-30f32], &[1e-30]).unwrap_err(), VectorError::Underflow);
        assert_eq!(mul(&[2.0f32, 0.0], &[3.0, 5.0]).unwrap(), vec![6.0, 0.0]);
        let big = f16::from_f32(60000.0);
        assert_eq!(add(&[big], &[big]).unwrap_err(), VectorError::Overflow);
    }

    #[test]
    fn subvector_follows_substring_rules() {
        let v = [1.0f32, 2.0, 3.0, 4.0, 5.0];
        assert_eq!(subvector(&v, 1, 3).unwrap(), vec![1.0, 2.0, 3.0]);
        assert_eq!(subvector(&v, 3, 2).unwrap(), vec![3.0, 4.0]);
        assert_eq!(subvector(&v, -1, 3).unwrap(), vec![1.0]);
        assert_eq!(subvector(&v, 4, 10).unwrap(), vec![4.0, 5.0]);
        assert_eq!(subvector(&v, 3, i32::MAX).unwrap(), vec![3.0, 4.0, 5.0]);
        assert!(subvector(&v, 6, 1).is_err());
        assert!(subvector(&v, 1, 0).is_err());
        assert!(subvector(&v, -5, 3).is_err());
        assert!(subvector(&v, i32::MIN, i32::MAX).is_err());
    }

    #[test]
    fn quantize_sets_bits_for_positive_values() {
        assert_eq!(
            binary_quantize(&[1.0f32, -1.0, 0.0, 2.0, 0.5, -3.0, 1.0, 1.0, 7.0]),
            vec![0b1001_1011, 0b1000_0000]
        );
    }

    #[test]
    fn aggregates_average_and_combine() {
        let s = accum(&[0.0], &[1.0f32, 2.0]).unwrap();
        let s = accum(&s, &[3.0f32, 6.0]).unwrap();
        assert_eq!(s, vec![2.0, 4.0, 8.0]);
        let t = accum(&[0.0], &[5.0f32, 5.0]).unwrap();
        let all = combine(&s, &t).unwrap();
        assert_eq!(average::<f32>(&all).unwrap().unwrap(), vec![3.0, 13.0 / 3.0]);
        assert_eq!(combine(&[0.0], &t).unwrap(), t);
        assert!(average::<f32>(&[0.0]).unwrap().is_none());
        assert_eq!(accum(&s, &[1.0f32]).unwrap_err().to_string(), "expected 2 dimensions, not 1");
    }

    proptest! {
        #[test]
        fn distances_match_f64_reference(
            (a, b) in (1usize..64).prop_flat_map(|n| (prop::collection::vec(-10f32..10f32, n), prop::collection::vec(-10f32..10f32, n)))
        ) {
            let r_l2: f64 = a.iter().zip(&b).map(|(x, y)| (*x as f64 - *y as f64).powi(2)).sum::<f64>().sqrt();
            let r_ip: f64 = a.iter().zip(&b).map(|(x, y)| *x as f64 * *y as f64).sum();
            let r_l1: f64 = a.iter().zip(&b).map(|(x, y)| (*x as f64 - *y as f64).abs()).sum();
            let na: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
            let nb: f64 = b.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
            let tol = 1e-3 * (1.0 + na * nb);
            prop_assert!((l2_distance(&a, &b).unwrap() - r_l2).abs() <= tol);
            prop_assert!((inner_product(&a, &b).unwrap() - r_ip).abs() <= tol);
            prop_assert!((negative_inner_product(&a, &b).unwrap() + r_ip).abs() <= tol);
            prop_assert!((l1_distance(&a, &b).unwrap() - r_l1).abs() <= tol);
            prop_assert!((norm(&a) - na).abs() <= 1e-9 * (1.0 + na));
            if na > 1e-3 && nb > 1e-3 {
                let r_cos = 1.0 - (r_ip / (na * nb)).clamp(-1.0, 1.0);
                prop_assert!((cosine_distance(&a, &b).unwrap() - r_cos).abs() <= 1e-4);
            }
        }

        #[test]
        fn normalized_vectors_have_unit_norm(a in prop::collection::vec(-1e6f32..1e6f32, 1..64)) {
            let n = l2_normalize(&a).unwrap();
            if norm(&a) > 0.0 {
                prop_assert!((norm(&n) - 1.0).abs() < 1e-5);
            }
        }

        #[test]
        fn compare_is_a_total_order_consistent_with_equality(
            a in prop::collection::vec(-3i8..3, 0..5), b in prop::collection::vec(-3i8..3, 0..5)
        ) {
            let fa: Vec<f32> = a.iter().map(|x| *x as f32).collect();
            let fb: Vec<f32> = b.iter().map(|x| *x as f32).collect();
            // Lexicographic with a shorter prefix first: exactly Vec<i8>'s order.
            prop_assert_eq!(compare(&fa, &fb), a.cmp(&b));
            prop_assert_eq!(compare(&fa, &fb), compare(&fb, &fa).reverse());
        }
    }
}
