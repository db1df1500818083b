//! k-means for the `ivfflat` index: the centers its lists are built around.
//! Vectors come in as f32 rows (bit strings as 0/1 per bit). Spherical
//! k-means (centers scaled to unit length) serves inner product and cosine,
//! as pgvector does; plain k-means serves L2 and Hamming (on 0/1 values the
//! squared L2 distance is the Hamming distance).

/// `k` centers for `rows` (each of `dim` values): k-means++ seeding, then
/// Lloyd iterations until no row changes list or `iterations` pass. With
/// fewer distinct rows than `k`, the remaining centers repeat rows (their
/// lists stay empty until inserts land there).
pub fn kmeans(rows: &[f32], dim: usize, k: usize, spherical: bool, iterations: usize, seed: u64) -> Vec<f32> {
    assert!(dim > 0 && k > 0);
    let n = rows.len() / dim;
    let mut centers = vec![0f32; k * dim];
    if n == 0 {
        return centers;
    }
    let row = |i: usize| &rows[i * dim..(i + 1) * dim];
    let mut rng = crate::hnsw::SplitMix64(seed);
    // k-means++: each next center drawn with probability proportional to
    // the squared distance to the nearest center so far
    let first = (rng.next_u64() % n as u64) as usize;
    centers[..dim].copy_from_slice(row(first));
    let mut nearest: Vec<f32> = (0..n).map(|i| l2_squared(row(i), &centers[..dim])).collect();
    for c in 1..k {
        let total: f64 = nearest.iter().map(|d| *d as f64).sum();
        let pick = if total <= 0.0 {
            c % n
        } else {
            let mut target = (rng.next_u64() as f64 / u64::MAX as f64) * total;
            let mut chosen = n - 1;
            for (i, d) in nearest.iter().enumerate() {
                target -= *d as f64;
                if target <= 0.0 {
                    chosen = i;
                    break;
                }
            }
            chosen
        };
        centers[c * dim..(c + 1) * dim].copy_from_slice(row(pick));
        for i in 0..n {
            let d = l2_squared(row(i), &centers[c * dim..(c + 1) * dim]);
            if d < nearest[i] {
                nearest[i] = d;
            }
        }
    }
    if spherical {
        normalize_rows(&mut centers, dim);
    }
    let mut assignment = vec![usize::MAX; n];
    for _ in 0..iterations {
        let mut changed = 0;
        for i in 0..n {
            let best = nearest_center(&centers, dim, row(i), spherical);
            if assignment[i] != best {
                assignment[i] = best;
                changed += 1;
            }
        }
        let mut sums = vec![0f64; k * dim];
        let mut counts = vec![0usize; k];
        for i in 0..n {
            let c = assignment[i];
            counts[c] += 1;
            for (s, x) in sums[c * dim..(c + 1) * dim].iter_mut().zip(row(i)) {
                *s += *x as f64;
            }
        }
        for c in 0..k {
            if counts[c] == 0 {
                continue; // an empty list keeps its center
            }
            for j in 0..dim {
                centers[c * dim + j] = (sums[c * dim + j] / counts[c] as f64) as f32;
            }
        }
        if spherical {
            normalize_rows(&mut centers, dim);
        }
        if changed == 0 {
            break;
        }
    }
    centers
}

/// The center nearest to `v`: least L2 distance, or, spherical, greatest
/// inner product with the unit-length centers.
pub fn nearest_center(centers: &[f32], dim: usize, v: &[f32], spherical: bool) -> usize {
    let mut best = (f32::INFINITY, 0);
    for (c, center) in centers.chunks_exact(dim).enumerate() {
        let d = if spherical { -dot(center, v) } else { l2_squared(center, v) };
        if d < best.0 {
            best = (d, c);
        }
    }
    best.1
}

fn l2_squared(a: &[f32], b: &[f32]) -> f32 {
    crate::kernels::l2_squared(a, b)
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    crate::kernels::dot(a, b)
}

fn normalize_rows(rows: &mut [f32], dim: usize) {
    for r in rows.chunks_exact_mut(dim) {
        let n = r.iter().map(|x| (*x as f64) * (*x as f64)).sum::<f64>().sqrt();
        if n > 0.0 && n.is_finite() {
            r.iter_mut().for_each(|x| *x = (*x as f64 / n) as f32);
        }
    }
}

/// Bit strings (packed bytes, most significant bit first, as Postgres'
/// `bit`) as 0/1 values, and centers back to bits (a bit is set where at
/// least half of the list's rows have it).
pub fn bits_to_f32(bytes: &[u8], bits: usize) -> Vec<f32> {
    (0..bits).map(|i| ((bytes[i / 8] >> (7 - i % 8)) & 1) as f32).collect()
}

pub fn f32_to_bits(values: &[f32]) -> Vec<u8> {
    let mut out = vec![0u8; values.len().div_ceil(8)];
    for (i, v) in values.iter().enumerate() {
        if *v >= 0.5 {
            out[i / 8] |= 1 << (7 - i % 8);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_separated_clusters() {
        // three tight clusters far apart, 30 rows each
        let mut rows = Vec::new();
        for c in 0..3 {
            for i in 0..30 {
                rows.extend_from_slice(&[c as f32 * 100.0 + (i % 5) as f32 * 0.1, (i % 3) as f32 * 0.1]);
            }
        }
        let centers = kmeans(&rows, 2, 3, false, 20, 7);
        let mut xs: Vec<i32> = centers.chunks_exact(2).map(|c| (c[0] / 100.0).round() as i32).collect();
        xs.sort();
        assert_eq!(xs, vec![0, 1, 2]);
        // every row goes to the center of its own cluster
        for (i, r) in rows.chunks_exact(2).enumerate() {
            let c = nearest_center(&centers, 2, r, false);
            assert_eq!((centers[2 * c] / 100.0).round() as usize, i / 30);
        }
    }

    #[test]
    fn spherical_centers_are_unit_length_and_fewer_rows_than_lists_work() {
        let rows = [3.0f32, 4.0, -1.0, 0.0];
        let centers = kmeans(&rows, 2, 4, true, 10, 1);
        for c in centers.chunks_exact(2) {
            let n = (c[0] * c[0] + c[1] * c[1]).sqrt();
            assert!((n - 1.0).abs() < 1e-5, "{c:?}");
        }
        assert_eq!(kmeans(&[], 2, 3, false, 5, 1), vec![0.0; 6]);
    }

    #[test]
    fn bits_round_trip() {
        let b = [0b1010_0000u8, 0b1000_0000];
        let f = bits_to_f32(&b, 9);
        assert_eq!(f, vec![1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0]);
        assert_eq!(f32_to_bits(&f), b.to_vec());
    }
}
