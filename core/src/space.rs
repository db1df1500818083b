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
}

impl Metric {
    pub fn code(self) -> u8 {
        match self {
            Metric::L2Squared => 1,
            Metric::NegativeDot => 2,
            Metric::Cosine => 3,
            Metric::L1 => 4,
            Metric::Hamming => 5,
        }
    }
    pub fn from_code(c: u8) -> Option<Metric> {
        Some(match c {
            1 => Metric::L2Squared,
            2 => Metric::NegativeDot,
            3 => Metric::Cosine,
            4 => Metric::L1,
            5 => Metric::Hamming,
            _ => return None,
        })
    }
    pub fn name(self) -> &'static str {
        match self {
            Metric::L2Squared => "l2",
            Metric::NegativeDot => "ip",
            Metric::Cosine => "cosine",
            Metric::L1 => "l1",
            Metric::Hamming => "hamming",
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
pub trait IndexElement: Copy + Default + Send + Sync + 'static {
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
            Metric::Hamming => f32::NAN,
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
            Metric::Hamming => f32::NAN,
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
    fn distance(_metric: Metric, a: &[u8], b: &[u8]) -> f32 {
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
