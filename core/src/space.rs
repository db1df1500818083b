//! What an index compares: element kind (float4, float2, bits), the metric,
//! and flat storage of many vectors for in-memory builds and tests.

use crate::kernels;
use half::f16;

/// The ordering distance an index uses. Every variant is monotone with the
/// SQL operator it serves, so ordering by it orders by the operator:
/// squared L2 for `<->`, negative dot for `<#>` and (on unit vectors) `<=>`,
/// L1 for `<+>`, Hamming for `<~>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    L2Squared,
    NegativeDot,
    /// Negative dot of unit vectors: inputs are normalised before use.
    Cosine,
    L1,
    Hamming,
    /// 1 - |a ∧ b| / |a ∨ b| of bit strings (`<%>`).
    Jaccard,
}

impl Metric {
    pub fn code(self) -> u8 {
        match self {
            Metric::L2Squared => 1,
            Metric::NegativeDot => 2,
            Metric::Cosine => 3,
            Metric::L1 => 4,
            Metric::Hamming => 5,
            Metric::Jaccard => 6,
        }
    }
    pub fn from_code(c: u8) -> Option<Metric> {
        Some(match c {
            1 => Metric::L2Squared,
            2 => Metric::NegativeDot,
            3 => Metric::Cosine,
            4 => Metric::L1,
            5 => Metric::Hamming,
            6 => Metric::Jaccard,
            _ => return None,
        })
    }
    /// The distance a graph is built with. Inner product is not a metric
    /// (a point is not its own nearest neighbour), and graphs linked by it
    /// leave small-norm points hard to reach; linking by L2 gives a
    /// navigable graph, which queries then walk with the inner product.
    pub fn construction(self) -> Metric {
        match self {
            Metric::NegativeDot => Metric::L2Squared,
            m => m,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Metric::L2Squared => "l2",
            Metric::NegativeDot => "ip",
            Metric::Cosine => "cosine",
            Metric::L1 => "l1",
            Metric::Hamming => "hamming",
            Metric::Jaccard => "jaccard",
        }
    }
}

/// The element kinds an index can hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElementKind {
    F32,
    F16,
    Bits,
}

impl ElementKind {
    pub fn code(self) -> u8 {
        match self {
            ElementKind::F32 => 1,
            ElementKind::F16 => 2,
            ElementKind::Bits => 3,
        }
    }
    pub fn from_code(c: u8) -> Option<ElementKind> {
        Some(match c {
            1 => ElementKind::F32,
            2 => ElementKind::F16,
            3 => ElementKind::Bits,
            _ => return None,
        })
    }
    /// Bytes needed for `dim` dimensions (bits for `Bits`).
    pub fn bytes_for(self, dim: usize) -> usize {
        match self {
            ElementKind::F32 => dim * 4,
            ElementKind::F16 => dim * 2,
            ElementKind::Bits => dim.div_ceil(8),
        }
    }
}

/// An element type the index can store and compare under a metric.
pub trait IndexElement: bytemuck::Pod + Default + Send + Sync + 'static {
    const KIND: ElementKind;
    fn distance(metric: Metric, a: &[Self], b: &[Self]) -> f32;
    /// Scales to unit length in place; false for the zero vector (not indexable under cosine).
    fn normalize(v: &mut [Self]) -> bool;
}

impl IndexElement for f32 {
    const KIND: ElementKind = ElementKind::F32;
    #[inline]
    fn distance(metric: Metric, a: &[f32], b: &[f32]) -> f32 {
        match metric {
            Metric::L2Squared => kernels::l2_squared(a, b),
            Metric::NegativeDot | Metric::Cosine => -kernels::dot(a, b),
            Metric::L1 => kernels::l1(a, b),
            Metric::Hamming | Metric::Jaccard => f32::NAN,
        }
    }
    fn normalize(v: &mut [f32]) -> bool {
        let n = v.iter().map(|x| (*x as f64) * (*x as f64)).sum::<f64>().sqrt();
        if n == 0.0 || !n.is_finite() {
            return false;
        }
        v.iter_mut().for_each(|x| *x = (*x as f64 / n) as f32);
        true
    }
}

impl IndexElement for f16 {
    const KIND: ElementKind = ElementKind::F16;
    #[inline]
    fn distance(metric: Metric, a: &[f16], b: &[f16]) -> f32 {
        match metric {
            Metric::L2Squared => kernels::l2_squared_f16(a, b),
            Metric::NegativeDot | Metric::Cosine => -kernels::dot_f16(a, b),
            Metric::L1 => kernels::l1_f16(a, b),
            Metric::Hamming | Metric::Jaccard => f32::NAN,
        }
    }
    fn normalize(v: &mut [f16]) -> bool {
        let n = v.iter().map(|x| (x.to_f32() as f64).powi(2)).sum::<f64>().sqrt();
        if n == 0.0 || !n.is_finite() {
            return false;
        }
        v.iter_mut().for_each(|x| *x = f16::from_f32((x.to_f32() as f64 / n) as f32));
        true
    }
}

impl IndexElement for u8 {
    const KIND: ElementKind = ElementKind::Bits;
    #[inline]
    fn distance(metric: Metric, a: &[u8], b: &[u8]) -> f32 {
        if metric == Metric::Jaccard {
            let (ab, aa, bb) = kernels::jaccard_parts(a, b);
            // pgvector's convention: no shared set bit is distance 1
            return if ab == 0 { 1.0 } else { (1.0 - ab as f64 / (aa + bb - ab) as f64) as f32 };
        }
        kernels::hamming(a, b) as f32
    }
    fn normalize(_v: &mut [u8]) -> bool {
        true
    }
}

/// Many vectors of one dimension, stored contiguously.
#[derive(Debug, Clone)]
pub struct FlatVectors<E> {
    /// Elements per vector (bytes for bit strings).
    pub width: usize,
    pub data: Vec<E>,
}

impl<E: IndexElement> FlatVectors<E> {
    pub fn new(width: usize) -> Self {
        FlatVectors { width, data: Vec::new() }
    }
    pub fn len(&self) -> usize {
        if self.width == 0 {
            0
        } else {
            self.data.len() / self.width
        }
    }
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
    pub fn push(&mut self, v: &[E]) {
        assert_eq!(v.len(), self.width, "vector width");
        self.data.extend_from_slice(v);
    }
    #[inline]
    pub fn get(&self, i: usize) -> &[E] {
        &self.data[i * self.width..(i + 1) * self.width]
    }
}

/// A vector's bytes in a 4-byte-aligned buffer, so they can be viewed as
/// `f32`/`f16` without copying.
#[derive(Debug, Clone, Default)]
pub struct AlignedBytes {
    words: Vec<u32>,
    len: usize,
}

impl AlignedBytes {
    pub fn from_bytes(b: &[u8]) -> Self {
        let mut words = vec![0u32; b.len().div_ceil(4)];
        bytemuck::cast_slice_mut::<u32, u8>(&mut words)[..b.len()].copy_from_slice(b);
        AlignedBytes { words, len: b.len() }
    }
    pub fn as_bytes(&self) -> &[u8] {
        &bytemuck::cast_slice::<u32, u8>(&self.words)[..self.len]
    }
    pub fn as_bytes_mut(&mut self) -> &mut [u8] {
        &mut bytemuck::cast_slice_mut::<u32, u8>(&mut self.words)[..self.len]
    }
}

/// Views bytes as elements of `E`; copies when `b` is not aligned for `E`.
fn typed<E: IndexElement>(b: &[u8]) -> std::borrow::Cow<'_, [E]> {
    match bytemuck::try_cast_slice::<u8, E>(b) {
        Ok(s) => std::borrow::Cow::Borrowed(s),
        Err(_) => {
            let n = b.len() / std::mem::size_of::<E>();
            let mut v = vec![E::default(); n];
            bytemuck::cast_slice_mut::<E, u8>(&mut v).copy_from_slice(&b[..n * std::mem::size_of::<E>()]);
            std::borrow::Cow::Owned(v)
        }
    }
}

/// Distance between two stored vectors given as raw bytes of `kind`.
pub fn distance_raw(kind: ElementKind, metric: Metric, a: &[u8], b: &[u8]) -> f32 {
    match kind {
        ElementKind::F32 => f32::distance(metric, &typed::<f32>(a), &typed::<f32>(b)),
        ElementKind::F16 => f16::distance(metric, &typed::<f16>(a), &typed::<f16>(b)),
        ElementKind::Bits => u8::distance(metric, a, b),
    }
}

/// Raw `f32`/`f16` vector bytes as f32 values (quantization works in f32).
pub fn to_f32(kind: ElementKind, b: &[u8]) -> Vec<f32> {
    match kind {
        ElementKind::F32 => typed::<f32>(b).into_owned(),
        ElementKind::F16 => typed::<f16>(b).iter().map(|x| x.to_f32()).collect(),
        ElementKind::Bits => b.iter().map(|x| *x as f32).collect(),
    }
}

/// f32 values as raw vector bytes of `kind` (`f32` or `f16`).
pub fn from_f32(kind: ElementKind, v: &[f32]) -> AlignedBytes {
    match kind {
        ElementKind::F16 => {
            let h: Vec<f16> = v.iter().map(|x| f16::from_f32(*x)).collect();
            AlignedBytes::from_bytes(bytemuck::cast_slice(&h))
        }
        _ => AlignedBytes::from_bytes(bytemuck::cast_slice(v)),
    }
}

/// Normalises raw vector bytes in place (cosine); false for the zero vector.
pub fn normalize_raw(kind: ElementKind, v: &mut AlignedBytes) -> bool {
    let b = v.as_bytes_mut();
    // AlignedBytes is 4-byte aligned, so these casts only fail on a torn length.
    match kind {
        ElementKind::F32 => bytemuck::try_cast_slice_mut::<u8, f32>(b).map(f32::normalize).unwrap_or(false),
        ElementKind::F16 => bytemuck::try_cast_slice_mut::<u8, f16>(b).map(f16::normalize).unwrap_or(false),
        ElementKind::Bits => true,
    }
}

#[cfg(test)]
mod raw_tests {
    use super::*;

    #[test]
    fn raw_distance_matches_typed_even_when_misaligned() {
        let a = [1.0f32, 2.0, 3.0];
        let b = [3.0f32, 2.0, 1.0];
        let ab: Vec<u8> = a.iter().flat_map(|x| x.to_le_bytes()).collect();
        let bb: Vec<u8> = b.iter().flat_map(|x| x.to_le_bytes()).collect();
        let mut shifted = vec![0u8];
        shifted.extend_from_slice(&ab);
        let want = f32::distance(Metric::L2Squared, &a, &b);
        assert_eq!(distance_raw(ElementKind::F32, Metric::L2Squared, &ab, &bb), want);
        assert_eq!(distance_raw(ElementKind::F32, Metric::L2Squared, &shifted[1..], &bb), want);
        let mut v = AlignedBytes::from_bytes(&ab);
        assert!(normalize_raw(ElementKind::F32, &mut v));
        let n = distance_raw(ElementKind::F32, Metric::NegativeDot, v.as_bytes(), v.as_bytes());
        assert!((n + 1.0).abs() < 1e-6);
        let mut z = AlignedBytes::from_bytes(&[0u8; 8]);
        assert!(!normalize_raw(ElementKind::F32, &mut z));
    }
}
