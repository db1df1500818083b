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
    /// The distance a graph of unit-length vectors is built with. For them
    /// inner product and L2 rank alike, and L2 is a metric (a point is its
    /// own nearest neighbour), which the heuristic's pruning assumes. For
    /// other vectors see `linking`.
    pub fn construction(self) -> Metric {
        match self {
            Metric::NegativeDot => Metric::L2Squared,
            m => m,
        }
    }

    /// The distance a graph of `kind` elements is built with. Sparse
    /// vectors share few coordinates, so by L2, L1 or inner product the
    /// nearest of almost every element are the same few of extreme norm:
    /// lists filled with those hubs (measured: 2.6 links of 32 kept by the
    /// heuristic, or hundreds of elements unreachable when lists were
    /// filled) do not navigate. Linked by the cosine, they are joined by
    /// the coordinates they share, which any of the four metrics ranks by.
    ///
    /// Only high-dimensional sparse vectors are sparse in this sense: up
    /// to `SPARSE_AS_DENSE_DIMS` dimensions (what a `vector` may have) they
    /// are treated as dense ones, which pgvector's tests on `sparsevec(3)`
    /// showed the cosine graph serves badly.
    pub fn construction_for(self, kind: ElementKind, dims: u32) -> Metric {
        if links_by_cosine(kind, dims) {
            Metric::Cosine
        } else {
            self.construction()
        }
    }

    /// The distance an element joins the graph by, given whether its
    /// vector and the entry point's are of unit length (`is_unit_length`).
    ///
    /// An inner-product query's top results are the elements of largest
    /// norm in its direction, on the rim of the data. Linked by L2, the
    /// rim's few elements are tied to the dense middle rather than to each
    /// other, and a walk on the rim finds its next step only through
    /// elements of lower inner product: on pgvector's test data (10,000
    /// `halfvec(10)` of `2 * random() * random()`, top 20) recall at
    /// `ef_search = 40` was 0.86-0.94. Linked by the inner product, with the
    /// lists filled past the heuristic's choice as pgvector fills them
    /// (`hnsw::select_neighbors_filled`), the rim links to itself: 1.0.
    /// Unit-length vectors keep the L2 graph, in which the same recall
    /// costs fewer distances (the lists are not filled).
    pub fn linking(self, kind: ElementKind, dims: u32, unit_length: bool) -> Metric {
        if self == Metric::NegativeDot && !unit_length && !links_by_cosine(kind, dims) {
            Metric::NegativeDot
        } else {
            self.construction_for(kind, dims)
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

/// Whether a vector of squared norm `squared_norm` counts as unit length
/// (normalized embeddings, stored as halfvec too) for `Metric::linking`.
pub fn unit_squared_norm(squared_norm: f32) -> bool {
    (squared_norm - 1.0).abs() <= 0.02
}

/// Whether stored vector bytes of `kind` are of unit length (bits: no norm).
pub fn is_unit_length(kind: ElementKind, v: &[u8]) -> bool {
    kind == ElementKind::Bits || unit_squared_norm(-distance_raw(kind, Metric::NegativeDot, v, v))
}

/// Sparse vectors of at most this many dimensions link as dense ones do.
pub const SPARSE_AS_DENSE_DIMS: u32 = 2000;

/// Whether an index of `kind` elements and `dims` dimensions links its graph
/// by the cosine, with lists filled past the heuristic's choice (see
/// `Metric::construction_for` and `hnsw::select_neighbors_filled`).
pub fn links_by_cosine(kind: ElementKind, dims: u32) -> bool {
    kind == ElementKind::Sparse && dims > SPARSE_AS_DENSE_DIMS
}

/// The element kinds an index can hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElementKind {
    F32,
    F16,
    Bits,
    /// `sparsevec`: a variable number of (index, value) pairs per element,
    /// stored as all indices (u32) and then all values (f32); see
    /// [`sparse_raw`].
    Sparse,
}

impl ElementKind {
    pub fn code(self) -> u8 {
        match self {
            ElementKind::F32 => 1,
            ElementKind::F16 => 2,
            ElementKind::Bits => 3,
            ElementKind::Sparse => 4,
        }
    }
    pub fn from_code(c: u8) -> Option<ElementKind> {
        Some(match c {
            1 => ElementKind::F32,
            2 => ElementKind::F16,
            3 => ElementKind::Bits,
            4 => ElementKind::Sparse,
            _ => return None,
        })
    }
    /// Bytes needed for `dim` dimensions (bits for `Bits`); 0 for
    /// `Sparse`, whose elements vary in size (the rest of their item).
    pub fn bytes_for(self, dim: usize) -> usize {
        match self {
            ElementKind::F32 => dim * 4,
            ElementKind::F16 => dim * 2,
            ElementKind::Bits => dim.div_ceil(8),
            ElementKind::Sparse => 0,
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
        self.data.len().checked_div(self.width).unwrap_or(0)
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
fn typed<E: bytemuck::Pod + Default>(b: &[u8]) -> std::borrow::Cow<'_, [E]> {
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
        ElementKind::Sparse => sparse_raw::distance(metric, a, b),
    }
}

/// Raw `f32`/`f16` vector bytes as f32 values (quantization works in f32).
pub fn to_f32(kind: ElementKind, b: &[u8]) -> Vec<f32> {
    match kind {
        ElementKind::F32 => typed::<f32>(b).into_owned(),
        ElementKind::F16 => typed::<f16>(b).iter().map(|x| x.to_f32()).collect(),
        ElementKind::Bits => b.iter().map(|x| *x as f32).collect(),
        // only quantization converts, and sparse indexes are not quantized
        ElementKind::Sparse => sparse_raw::values(b).into_owned(),
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
        ElementKind::Sparse => sparse_raw::normalize(b),
    }
}

/// Sparse vectors as an index stores them: `n` indices (u32, ascending)
/// followed by their `n` values (f32), little-endian, `8 n` bytes in all.
/// The distances walk both index lists in step, as pgvector's do.
pub mod sparse_raw {
    use super::{typed, Metric};
    use std::borrow::Cow;

    /// The stored form of pgvector's sparsevec payload: its indices and values.
    pub fn encode(indices: &[i32], values: &[f32]) -> Vec<u8> {
        let mut out = Vec::with_capacity(8 * indices.len());
        indices.iter().for_each(|i| out.extend_from_slice(&(*i as u32).to_le_bytes()));
        values.iter().for_each(|v| out.extend_from_slice(&v.to_le_bytes()));
        out
    }

    /// Whether `b` is a well-formed stored sparse vector (whole pairs,
    /// strictly ascending indices).
    pub fn valid(b: &[u8]) -> bool {
        b.len().is_multiple_of(8) && indices(b).windows(2).all(|w| w[0] < w[1])
    }

    pub fn indices(b: &[u8]) -> Cow<'_, [u32]> {
        typed::<u32>(&b[..b.len() / 8 * 4])
    }

    pub fn values(b: &[u8]) -> Cow<'_, [f32]> {
        typed::<f32>(&b[b.len() / 8 * 4..b.len() / 8 * 8])
    }

    pub fn distance(metric: Metric, a: &[u8], b: &[u8]) -> f32 {
        let (ai, av, bi, bv) = (indices(a), values(a), indices(b), values(b));
        let (mut i, mut j) = (0, 0);
        let (mut dot, mut l2, mut l1, mut na, mut nb) = (0f64, 0f64, 0f64, 0f64, 0f64);
        while i < ai.len() || j < bi.len() {
            let (x, y) = if j == bi.len() || (i < ai.len() && ai[i] < bi[j]) {
                i += 1;
                (av[i - 1] as f64, 0.0)
            } else if i == ai.len() || bi[j] < ai[i] {
                j += 1;
                (0.0, bv[j - 1] as f64)
            } else {
                i += 1;
                j += 1;
                (av[i - 1] as f64, bv[j - 1] as f64)
            };
            dot += x * y;
            l2 += (x - y) * (x - y);
            l1 += (x - y).abs();
            na += x * x;
            nb += y * y;
        }
        (match metric {
            Metric::L2Squared => l2,
            Metric::NegativeDot => -dot,
            // the cosine proper (stored vectors of a cosine index are unit
            // already; other sparse indexes link by it, see construction_for)
            Metric::Cosine if na == 0.0 || nb == 0.0 => 0.0,
            Metric::Cosine => -dot / (na.sqrt() * nb.sqrt()),
            Metric::L1 => l1,
            Metric::Hamming | Metric::Jaccard => f64::NAN,
        }) as f32
    }

    /// Scales the values to unit length in place; false for a zero vector.
    pub fn normalize(b: &mut [u8]) -> bool {
        let n = b.len() / 8;
        let mut vals: Vec<f32> = values(b).into_owned();
        let norm = vals.iter().map(|x| (*x as f64) * (*x as f64)).sum::<f64>().sqrt();
        if norm == 0.0 || !norm.is_finite() {
            return false;
        }
        vals.iter_mut().for_each(|x| *x = (*x as f64 / norm) as f32);
        for (k, v) in vals.iter().enumerate() {
            b[4 * n + 4 * k..4 * n + 4 * k + 4].copy_from_slice(&v.to_le_bytes());
        }
        true
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        fn dense(idx: &[i32], val: &[f32], dim: usize) -> Vec<f32> {
            let mut d = vec![0f32; dim];
            idx.iter().zip(val).for_each(|(i, v)| d[*i as usize] = *v);
            d
        }

        #[test]
        fn distances_equal_the_dense_ones() {
            let (ai, av) = (vec![0, 3, 7], vec![1.5f32, -2.0, 4.0]);
            let (bi, bv) = (vec![1, 3, 8, 9], vec![2.0f32, 1.0, -1.0, 0.5]);
            let (a, b) = (encode(&ai, &av), encode(&bi, &bv));
            let (da, db) = (dense(&ai, &av, 10), dense(&bi, &bv, 10));
            for m in [Metric::L2Squared, Metric::NegativeDot, Metric::L1] {
                let want = f32::distance_dense(m, &da, &db);
                assert!((distance(m, &a, &b) - want).abs() < 1e-5, "{m:?}");
                assert!((distance(m, &b, &a) - want).abs() < 1e-5, "{m:?} symmetric");
            }
            assert_eq!(distance(Metric::L2Squared, &a, &a), 0.0);
            assert_eq!(distance(Metric::L2Squared, &[], &[]), 0.0);
        }

        trait Dense {
            fn distance_dense(m: Metric, a: &[f32], b: &[f32]) -> f32;
        }
        impl Dense for f32 {
            fn distance_dense(m: Metric, a: &[f32], b: &[f32]) -> f32 {
                <f32 as crate::space::IndexElement>::distance(m, a, b)
            }
        }

        #[test]
        fn normalize_scales_values_and_keeps_indices() {
            let mut b = encode(&[2, 5], &[3.0, 4.0]);
            assert!(normalize(&mut b));
            assert_eq!(indices(&b).as_ref(), &[2, 5]);
            assert_eq!(values(&b).as_ref(), &[0.6, 0.8]);
            assert!(!normalize(&mut encode(&[1], &[0.0])));
            assert!(!normalize(&mut []));
        }

        #[test]
        fn validity_needs_whole_pairs_in_ascending_order() {
            assert!(valid(&encode(&[1, 4], &[1.0, 1.0])));
            assert!(!valid(&encode(&[4, 1], &[1.0, 1.0])));
            assert!(!valid(&encode(&[1, 1], &[1.0, 1.0])));
            assert!(!valid(&[0u8; 12]));
            assert!(valid(&[]));
        }
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

#[cfg(test)]
mod linking_tests {
    use super::*;

    fn f32_bytes(v: &[f32]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    #[test]
    fn inner_product_links_by_itself_only_for_vectors_not_of_unit_length() {
        assert!(is_unit_length(ElementKind::F32, &f32_bytes(&[0.6, 0.8])));
        assert!(is_unit_length(ElementKind::F32, &f32_bytes(&[0.6, 0.805])), "halfvec rounding stays unit");
        assert!(!is_unit_length(ElementKind::F32, &f32_bytes(&[1.2, 1.6])));
        assert!(!is_unit_length(ElementKind::F32, &f32_bytes(&[0.0, 0.0])));
        let ip = Metric::NegativeDot;
        assert_eq!(ip.linking(ElementKind::F32, 10, false), Metric::NegativeDot);
        assert_eq!(ip.linking(ElementKind::F32, 10, true), Metric::L2Squared);
        // high-dimensional sparse vectors link by the cosine whatever their norms
        assert_eq!(ip.linking(ElementKind::Sparse, 30_000, false), Metric::Cosine);
        assert_eq!(Metric::L2Squared.linking(ElementKind::F32, 10, false), Metric::L2Squared);
        assert_eq!(Metric::Cosine.linking(ElementKind::F16, 10, false), Metric::Cosine);
    }
}
