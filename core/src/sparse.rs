//! `sparsevec`, pgvector's sparse vector: text form `{1:1.5,3:2}/5`
//! (1-based indices, zeros omitted), binary form int32 dim, int32 nnz,
//! int32 unused, int32 indices[nnz] (0-based), float4 values[nnz], and
//! the distances, norms and ordering pgvector defines on it. Indices are
//! always sorted and unique; no stored value is zero.

use crate::error::{ErrorKind, Result, VectorError};
use crate::float_text::format_f32;
use crate::text::{is_space, number_prefix_len};
use std::cmp::Ordering;

/// Largest dimension of a sparsevec.
pub const MAX_DIM: i64 = 1_000_000_000;
/// Largest number of non-zero elements of a sparsevec.
pub const MAX_NNZ: usize = 16_000;
const TYPE: &str = "sparsevec";

#[derive(Debug, Clone, PartialEq)]
pub struct SparseVec {
    pub dim: i32,
    /// 0-based, ascending, unique.
    pub indices: Vec<i32>,
    /// Non-zero, finite; one per index.
    pub values: Vec<f32>,
}

fn message(kind: ErrorKind, text: impl Into<String>) -> VectorError {
    VectorError::Message { kind, text: text.into(), detail: None }
}

fn syntax(input: &str, detail: Option<&'static str>) -> VectorError {
    VectorError::InvalidSyntax { type_name: TYPE, input: input.to_string(), detail }
}

pub fn check_dim(dim: i64) -> Result<()> {
    if dim < 1 {
        return Err(message(ErrorKind::DataException, "sparsevec must have at least 1 dimension"));
    }
    if dim > MAX_DIM {
        return Err(message(
            ErrorKind::ProgramLimitExceeded,
            format!("sparsevec cannot have more than {MAX_DIM} dimensions"),
        ));
    }
    Ok(())
}

pub fn check_nnz(nnz: i64, dim: i64) -> Result<()> {
    if nnz < 0 {
        return Err(message(ErrorKind::DataException, "sparsevec cannot have negative number of elements"));
    }
    if nnz > MAX_NNZ as i64 {
        return Err(message(
            ErrorKind::ProgramLimitExceeded,
            format!("sparsevec cannot have more than {MAX_NNZ} non-zero elements"),
        ));
    }
    if nnz > dim {
        return Err(message(ErrorKind::ProgramLimitExceeded, "sparsevec cannot have more elements than dimensions"));
    }
    Ok(())
}

fn check_expected_dim(typmod: i32, dim: i64) -> Result<()> {
    if typmod != -1 && typmod as i64 != dim {
        return Err(VectorError::ExpectedDimensions { expected: typmod, actual: dim as usize });
    }
    Ok(())
}

/// Index `i` of `indices` is within `dim` and above the one before it.
fn check_index(indices: &[i32], i: usize, dim: i32) -> Result<()> {
    let index = indices[i];
    if index < 0 || index >= dim {
        return Err(message(ErrorKind::DataException, "sparsevec index out of bounds"));
    }
    if i > 0 {
        if index < indices[i - 1] {
            return Err(message(ErrorKind::DataException, "sparsevec indices must be in ascending order"));
        }
        if index == indices[i - 1] {
            return Err(message(ErrorKind::DataException, "sparsevec indices must not contain duplicates"));
        }
    }
    Ok(())
}

fn check_element(v: f32) -> Result<()> {
    if v.is_nan() {
        return Err(VectorError::NotANumber { type_name: TYPE });
    }
    if v.is_infinite() {
        return Err(VectorError::Infinite { type_name: TYPE });
    }
    Ok(())
}

/// `strtol` on a prefix of `s` (after whitespace the caller skipped):
/// the value, clamped to `lo..=hi` as pgvector clamps it, and its length.
fn parse_long(s: &[u8], lo: i64, hi: i64) -> Option<(i64, usize)> {
    let mut i = 0;
    let negative = match s.first() {
        Some(b'-') => {
            i = 1;
            true
        }
        Some(b'+') => {
            i = 1;
            false
        }
        _ => false,
    };
    let start = i;
    let mut v: i64 = 0;
    while i < s.len() && s[i].is_ascii_digit() {
        v = v.saturating_mul(10).saturating_add((s[i] - b'0') as i64);
        i += 1;
    }
    if i == start {
        return None;
    }
    let v = if negative { -v } else { v };
    Some((v.clamp(lo, hi), i))
}

/// Parses the text form, checking the typmod; elements may come in any
/// order and zeros are dropped, as pgvector does.
pub fn parse(input: &str, typmod: i32) -> Result<SparseVec> {
    let s = input.as_bytes();
    let max_nnz = 1 + s.iter().filter(|&&b| b == b',').count();
    if max_nnz > MAX_NNZ {
        return Err(message(
            ErrorKind::ProgramLimitExceeded,
            format!("sparsevec cannot have more than {MAX_NNZ} non-zero elements"),
        ));
    }
    let skip = |pt: &mut usize| {
        while *pt < s.len() && is_space(s[*pt]) {
            *pt += 1;
        }
    };
    let mut pt = 0;
    skip(&mut pt);
    if s.get(pt) != Some(&b'{') {
        return Err(syntax(input, Some("Vector contents must start with \"{\".")));
    }
    pt += 1;
    skip(&mut pt);
    let mut elements: Vec<(i64, f32)> = Vec::new();
    if s.get(pt) == Some(&b'}') {
        pt += 1;
    } else {
        loop {
            skip(&mut pt);
            if pt >= s.len() {
                return Err(syntax(input, None));
            }
            let (index, len) =
                parse_long(&s[pt..], i32::MIN as i64 + 1, i32::MAX as i64).ok_or_else(|| syntax(input, None))?;
            pt += len;
            skip(&mut pt);
            if s.get(pt) != Some(&b':') {
                return Err(syntax(input, None));
            }
            pt += 1;
            skip(&mut pt);
            let len = number_prefix_len(&s[pt..]);
            if len == 0 {
                return Err(syntax(input, None));
            }
            let token = &input[pt..pt + len];
            let value: f32 = token.parse().map_err(|_| syntax(input, None))?;
            let lower = token.to_ascii_lowercase();
            let unsigned = lower.trim_start_matches(['+', '-']);
            let literal_special = unsigned.starts_with("inf") || unsigned.starts_with("nan");
            let as_f64: f64 = token.parse().unwrap_or(0.0);
            // strtof's range errors: overflow to infinity, or underflow of a non-zero literal to 0
            if !literal_special
                && (value.is_infinite() || (value == 0.0 && as_f64 != 0.0 && (as_f64.abs() as f32) == 0.0))
            {
                return Err(VectorError::OutOfRange { type_name: TYPE, token: token.to_string() });
            }
            check_element(value)?;
            if value != 0.0 {
                elements.push((index - 1, value));
            }
            pt += len;
            skip(&mut pt);
            match s.get(pt) {
                Some(b',') => pt += 1,
                Some(b'}') => {
                    pt += 1;
                    break;
                }
                _ => return Err(syntax(input, None)),
            }
        }
    }
    skip(&mut pt);
    if s.get(pt) != Some(&b'/') {
        return Err(syntax(input, Some("Unexpected end of input.")));
    }
    pt += 1;
    skip(&mut pt);
    let (dim, len) = parse_long(&s[pt..], i32::MIN as i64, i32::MAX as i64).ok_or_else(|| syntax(input, None))?;
    pt += len;
    skip(&mut pt);
    if pt != s.len() {
        return Err(syntax(input, Some("Junk after closing.")));
    }
    check_dim(dim)?;
    check_expected_dim(typmod, dim)?;
    elements.sort_by_key(|e| e.0);
    let mut v = SparseVec {
        dim: dim as i32,
        indices: Vec::with_capacity(elements.len()),
        values: Vec::with_capacity(elements.len()),
    };
    for (i, (index, value)) in elements.into_iter().enumerate() {
        v.indices.push(index.clamp(i32::MIN as i64, i32::MAX as i64) as i32);
        v.values.push(value);
        check_index(&v.indices, i, v.dim)?;
    }
    Ok(v)
}

/// The text form: `{1:1.5,3:2}/5`.
pub fn format(v: &SparseVec) -> String {
    let mut out = String::with_capacity(v.values.len() * 12 + 8);
    out.push('{');
    for (i, (index, value)) in v.indices.iter().zip(&v.values).enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&(*index as i64 + 1).to_string());
        out.push(':');
        format_f32(*value, &mut out);
    }
    out.push_str("}/");
    out.push_str(&v.dim.to_string());
    out
}

/// Checks a value read from storage (or any source): pgvector's invariants.
pub fn validate(v: &SparseVec) -> Result<()> {
    check_dim(v.dim as i64)?;
    check_nnz(v.indices.len() as i64, v.dim as i64)?;
    for i in 0..v.indices.len() {
        check_index(&v.indices, i, v.dim)?;
    }
    Ok(())
}

/// The binary form (network byte order).
pub fn encode(v: &SparseVec) -> Vec<u8> {
    let mut out = Vec::with_capacity(12 + v.indices.len() * 8);
    out.extend_from_slice(&v.dim.to_be_bytes());
    out.extend_from_slice(&(v.indices.len() as i32).to_be_bytes());
    out.extend_from_slice(&0i32.to_be_bytes());
    for i in &v.indices {
        out.extend_from_slice(&i.to_be_bytes());
    }
    for x in &v.values {
        out.extend_from_slice(&x.to_bits().to_be_bytes());
    }
    out
}

/// Decodes one value from the front of `buf`: the value and the bytes used.
pub fn decode(buf: &[u8], typmod: i32) -> Result<(SparseVec, usize)> {
    let int = |at: usize| -> Result<i32> {
        buf.get(at..at + 4).map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]])).ok_or(VectorError::InsufficientData)
    };
    let (dim, nnz, unused) = (int(0)?, int(4)?, int(8)?);
    check_dim(dim as i64)?;
    check_nnz(nnz as i64, dim as i64)?;
    check_expected_dim(typmod, dim as i64)?;
    if unused != 0 {
        return Err(VectorError::UnusedNotZero(unused));
    }
    let nnz = nnz as usize;
    let mut v = SparseVec { dim, indices: Vec::with_capacity(nnz), values: Vec::with_capacity(nnz) };
    for i in 0..nnz {
        v.indices.push(int(12 + 4 * i)?);
        check_index(&v.indices, i, dim)?;
    }
    for i in 0..nnz {
        let x = f32::from_bits(int(12 + 4 * nnz + 4 * i)? as u32);
        check_element(x)?;
        if x == 0.0 {
            return Err(message(
                ErrorKind::DataException,
                "binary representation of sparsevec cannot contain zero values",
            ));
        }
        v.values.push(x);
    }
    Ok((v, 12 + 8 * nnz))
}

/// A dense vector (as f32 values) made sparse, checking the typmod.
pub fn from_dense(values: &[f32], typmod: i32) -> Result<SparseVec> {
    check_dim(values.len() as i64)?;
    check_expected_dim(typmod, values.len() as i64)?;
    let nnz = values.iter().filter(|x| **x != 0.0).count();
    check_nnz(nnz as i64, values.len() as i64)?;
    let mut v =
        SparseVec { dim: values.len() as i32, indices: Vec::with_capacity(nnz), values: Vec::with_capacity(nnz) };
    for (i, x) in values.iter().enumerate() {
        if *x != 0.0 {
            v.indices.push(i as i32);
            v.values.push(*x);
        }
    }
    for x in &v.values {
        check_element(*x)?;
    }
    Ok(v)
}

/// The dense values of `v`.
pub fn to_dense(v: &SparseVec) -> Vec<f32> {
    let mut out = vec![0.0f32; v.dim.max(0) as usize];
    for (i, x) in v.indices.iter().zip(&v.values) {
        out[*i as usize] = *x;
    }
    out
}

fn check_same_dims(a: &SparseVec, b: &SparseVec) -> Result<()> {
    if a.dim != b.dim {
        return Err(VectorError::DifferentDimensions { type_name: TYPE, left: a.dim as usize, right: b.dim as usize });
    }
    Ok(())
}

/// Walks both index lists in order: `both(x, y)` where both have an index,
/// `one(x)` where only one does. Sums in f32, as pgvector does.
fn merge(a: &SparseVec, b: &SparseVec, both: impl Fn(f32, f32) -> f32, one: impl Fn(f32) -> f32) -> f32 {
    let (mut i, mut j, mut acc) = (0, 0, 0.0f32);
    while i < a.indices.len() && j < b.indices.len() {
        match a.indices[i].cmp(&b.indices[j]) {
            Ordering::Equal => {
                acc += both(a.values[i], b.values[j]);
                i += 1;
                j += 1;
            }
            Ordering::Less => {
                acc += one(a.values[i]);
                i += 1;
            }
            Ordering::Greater => {
                acc += one(b.values[j]);
                j += 1;
            }
        }
    }
    acc += a.values[i..].iter().fold(0.0f32, |s, x| s + one(*x));
    acc += b.values[j..].iter().fold(0.0f32, |s, x| s + one(*x));
    acc
}

pub fn l2_squared_distance(a: &SparseVec, b: &SparseVec) -> Result<f64> {
    check_same_dims(a, b)?;
    Ok(merge(a, b, |x, y| (x - y) * (x - y), |x| x * x) as f64)
}

pub fn l2_distance(a: &SparseVec, b: &SparseVec) -> Result<f64> {
    Ok(l2_squared_distance(a, b)?.sqrt())
}

fn dot(a: &SparseVec, b: &SparseVec) -> f32 {
    merge(a, b, |x, y| x * y, |_| 0.0)
}

pub fn inner_product(a: &SparseVec, b: &SparseVec) -> Result<f64> {
    check_same_dims(a, b)?;
    Ok(dot(a, b) as f64)
}

pub fn negative_inner_product(a: &SparseVec, b: &SparseVec) -> Result<f64> {
    Ok(-inner_product(a, b)?)
}

pub fn cosine_distance(a: &SparseVec, b: &SparseVec) -> Result<f64> {
    check_same_dims(a, b)?;
    let na = a.values.iter().fold(0.0f32, |s, x| s + x * x);
    let nb = b.values.iter().fold(0.0f32, |s, x| s + x * x);
    let similarity = dot(a, b) as f64 / (na as f64 * nb as f64).sqrt();
    if similarity.is_nan() {
        return Ok(f64::NAN);
    }
    Ok(1.0 - similarity.clamp(-1.0, 1.0))
}

pub fn l1_distance(a: &SparseVec, b: &SparseVec) -> Result<f64> {
    check_same_dims(a, b)?;
    Ok(merge(a, b, |x, y| (x - y).abs(), |x| x.abs()) as f64)
}

pub fn l2_norm(a: &SparseVec) -> f64 {
    // fold from +0: an empty f64 sum is -0, and sqrt(-0) prints as -0
    a.values.iter().fold(0.0f64, |s, x| s + *x as f64 * *x as f64).sqrt()
}

/// `a` scaled to unit length (the zero vector stays zero); elements that
/// underflow to zero are dropped.
pub fn l2_normalize(a: &SparseVec) -> Result<SparseVec> {
    let norm = l2_norm(a);
    if norm <= 0.0 {
        return Ok(a.clone());
    }
    let mut out = SparseVec {
        dim: a.dim,
        indices: Vec::with_capacity(a.indices.len()),
        values: Vec::with_capacity(a.values.len()),
    };
    for (i, x) in a.indices.iter().zip(&a.values) {
        let v = (*x as f64 / norm) as f32;
        if v.is_infinite() {
            return Err(VectorError::Overflow);
        }
        if v != 0.0 {
            out.indices.push(*i);
            out.values.push(v);
        }
    }
    Ok(out)
}

/// pgvector's order: values before dimensions, as Postgres orders arrays.
pub fn compare(a: &SparseVec, b: &SparseVec) -> Ordering {
    let nnz = a.indices.len().min(b.indices.len());
    for i in 0..nnz {
        let (ai, bi, ax, bx) = (a.indices[i], b.indices[i], a.values[i], b.values[i]);
        if ai < bi {
            return if ax < 0.0 { Ordering::Less } else { Ordering::Greater };
        }
        if ai > bi {
            return if bx < 0.0 { Ordering::Greater } else { Ordering::Less };
        }
        if ax < bx {
            return Ordering::Less;
        }
        if ax > bx {
            return Ordering::Greater;
        }
    }
    if a.indices.len() < b.indices.len() && b.indices[nnz] < a.dim {
        return if b.values[nnz] < 0.0 { Ordering::Greater } else { Ordering::Less };
    }
    if a.indices.len() > b.indices.len() && a.indices[nnz] < b.dim {
        return if a.values[nnz] < 0.0 { Ordering::Less } else { Ordering::Greater };
    }
    a.dim.cmp(&b.dim)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sv(s: &str) -> SparseVec {
        parse(s, -1).unwrap()
    }

    #[test]
    fn text_round_trip_and_pgvector_errors() {
        assert_eq!(format(&sv("{1:1.5,3:3.5}/5")), "{1:1.5,3:3.5}/5");
        assert_eq!(format(&sv(" { 3 : 3.5 ,  1  :  1.5  } / 5 ")), "{1:1.5,3:3.5}/5");
        assert_eq!(format(&sv("{1:0,2:1}/2")), "{2:1}/2");
        assert_eq!(format(&sv("{}/3")), "{}/3");
        let err = |s: &str| parse(s, -1).unwrap_err().to_string();
        assert_eq!(err("{1:hello,2:1}/2"), "invalid input syntax for type sparsevec: \"{1:hello,2:1}/2\"");
        assert_eq!(err("{1:NaN,2:1}/2"), "NaN not allowed in sparsevec");
        assert_eq!(err("{1:-Infinity,2:1}/2"), "infinite value not allowed in sparsevec");
        assert_eq!(err("{1:4e38,2:1}/2"), "\"4e38\" is out of range for type sparsevec");
        assert_eq!(err("{1:1e-46,2:1}/2"), "\"1e-46\" is out of range for type sparsevec");
        assert_eq!(err("{}"), "invalid input syntax for type sparsevec: \"{}\"");
        assert_eq!(err("{1:1,1:2}/2"), "sparsevec indices must not contain duplicates");
        assert_eq!(err("{0:1}/2"), "sparsevec index out of bounds");
        assert_eq!(err("{3:1}/2"), "sparsevec index out of bounds");
        assert_eq!(err("{}/0"), "sparsevec must have at least 1 dimension");
        assert_eq!(err("{}/1000000001"), "sparsevec cannot have more than 1000000000 dimensions");
        assert_eq!(err("{}/2 x"), "invalid input syntax for type sparsevec: \"{}/2 x\"");
        assert_eq!(parse("{1:1}/3", 2).unwrap_err().to_string(), "expected 2 dimensions, not 3");
    }

    #[test]
    fn binary_round_trip_and_checks() {
        let v = sv("{2:1.5,4:-3}/5");
        let b = encode(&v);
        assert_eq!(b.len(), 12 + 16);
        assert_eq!(&b[..4], &5i32.to_be_bytes());
        assert_eq!(&b[12..16], &1i32.to_be_bytes(), "indices are 0-based on the wire");
        assert_eq!(decode(&b, -1).unwrap(), (v, 28));
        assert_eq!(decode(&b[..20], -1).unwrap_err(), VectorError::InsufficientData);
        let mut zero = encode(&sv("{1:1}/2"));
        zero[16..20].copy_from_slice(&0f32.to_bits().to_be_bytes());
        assert_eq!(
            decode(&zero, -1).unwrap_err().to_string(),
            "binary representation of sparsevec cannot contain zero values"
        );
    }

    #[test]
    fn distances_match_the_dense_ones() {
        let (a, b) = (sv("{1:1,3:2,4:-1}/5"), sv("{2:3,3:1,5:2}/5"));
        let (da, db) = (to_dense(&a), to_dense(&b));
        let l2: f64 = da.iter().zip(&db).map(|(x, y)| ((x - y) * (x - y)) as f64).sum();
        assert!((l2_squared_distance(&a, &b).unwrap() - l2).abs() < 1e-6);
        let ip: f64 = da.iter().zip(&db).map(|(x, y)| (x * y) as f64).sum();
        assert!((inner_product(&a, &b).unwrap() - ip).abs() < 1e-6);
        let l1: f64 = da.iter().zip(&db).map(|(x, y)| (x - y).abs() as f64).sum();
        assert!((l1_distance(&a, &b).unwrap() - l1).abs() < 1e-6);
        let cos = 1.0 - ip / (l2_norm(&a) * l2_norm(&b));
        assert!((cosine_distance(&a, &b).unwrap() - cos).abs() < 1e-6);
        assert!(cosine_distance(&a, &sv("{}/5")).unwrap().is_nan());
        assert_eq!(l2_distance(&a, &sv("{}/4")).unwrap_err().to_string(), "different sparsevec dimensions 5 and 4");
        assert_eq!(format(&l2_normalize(&sv("{1:3,2:4}/2")).unwrap()), "{1:0.6,2:0.8}/2");
        assert!(l2_norm(&sv("{}/2")).is_sign_positive());
    }

    #[test]
    fn order_is_pgvectors() {
        let mut vs = vec![sv("{1:1,2:2,3:3}/3"), sv("{}/3"), sv("{1:1,2:1,3:1}/3")];
        vs.sort_by(compare);
        let got: Vec<String> = vs.iter().map(format).collect();
        assert_eq!(got, ["{}/3", "{1:1,2:1,3:1}/3", "{1:1,2:2,3:3}/3"]);
        assert_eq!(compare(&sv("{1:-1}/2"), &sv("{}/2")), Ordering::Less);
        assert_eq!(compare(&sv("{}/2"), &sv("{}/3")), Ordering::Less);
    }
}
