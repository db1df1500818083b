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
    let mut rng = crate::rng::SplitMix64(seed);
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
        for (i, near) in nearest.iter_mut().enumerate() {
            let d = l2_squared(row(i), &centers[c * dim..(c + 1) * dim]);
            if d < *near {
                *near = d;
            }
        }
    }
    if spherical {
        normalize_rows(&mut centers, dim);
    }
    elkan(rows, dim, k, &mut centers, spherical, iterations);
    centers
}

/// Bytes `kmeans` needs besides the rows: the centers (f32), their sums
/// (f64), the per-row lower bounds of Elkan's algorithm (rows x centers)
/// and the center distances.
pub fn kmeans_memory(rows: usize, dim: usize, k: usize) -> usize {
    4 * k * dim + 8 * k * dim + 4 * (rows * k + k * k + 3 * rows + 2 * k)
}

/// Lloyd's iterations, with Elkan's bounds (the triangle inequality on L2
/// distances) skipping most row-center distances once centers settle. For
/// spherical k-means the L2 distance to unit-length centers orders them as
/// the inner product does, so the same bounds hold.
fn elkan(rows: &[f32], dim: usize, k: usize, centers: &mut [f32], spherical: bool, iterations: usize) {
    let n = rows.len() / dim;
    let row = |i: usize| &rows[i * dim..(i + 1) * dim];
    let dist = |a: &[f32], b: &[f32]| l2_squared(a, b).max(0.0).sqrt();
    let mut lower = vec![0f32; n * k];
    let mut upper = vec![0f32; n];
    let mut assign = vec![0usize; n];
    for i in 0..n {
        let mut best = (f32::INFINITY, 0);
        for c in 0..k {
            let d = dist(row(i), &centers[c * dim..(c + 1) * dim]);
            lower[i * k + c] = d;
            if d < best.0 {
                best = (d, c);
            }
        }
        upper[i] = best.0;
        assign[i] = best.1;
    }
    let mut half_cc = vec![0f32; k * k];
    let mut s = vec![0f32; k];
    for _ in 0..iterations {
        for a in 0..k {
            s[a] = f32::INFINITY;
            for b in 0..k {
                let d = if a == b {
                    0.0
                } else {
                    0.5 * dist(&centers[a * dim..(a + 1) * dim], &centers[b * dim..(b + 1) * dim])
                };
                half_cc[a * k + b] = d;
                if a != b && d < s[a] {
                    s[a] = d;
                }
            }
        }
        let mut changed = 0;
        for i in 0..n {
            let mut ci = assign[i];
            if upper[i] <= s[ci] {
                continue;
            }
            let mut stale = true;
            for c in 0..k {
                if c == ci || upper[i] <= lower[i * k + c] || upper[i] <= half_cc[ci * k + c] {
                    continue;
                }
                if stale {
                    upper[i] = dist(row(i), &centers[ci * dim..(ci + 1) * dim]);
                    lower[i * k + ci] = upper[i];
                    stale = false;
                    if upper[i] <= lower[i * k + c] || upper[i] <= half_cc[ci * k + c] {
                        continue;
                    }
                }
                let d = dist(row(i), &centers[c * dim..(c + 1) * dim]);
                lower[i * k + c] = d;
                if d < upper[i] {
                    upper[i] = d;
                    ci = c;
                }
            }
            if ci != assign[i] {
                assign[i] = ci;
                changed += 1;
            }
        }
        // new centers: the means of their rows (an empty list keeps its center)
        let mut sums = vec![0f64; k * dim];
        let mut counts = vec![0usize; k];
        for (i, &c) in assign.iter().enumerate() {
            counts[c] += 1;
            for (acc, x) in sums[c * dim..(c + 1) * dim].iter_mut().zip(row(i)) {
                *acc += *x as f64;
            }
        }
        let mut moved = vec![0f32; k];
        for c in 0..k {
            if counts[c] == 0 {
                continue;
            }
            let mut next: Vec<f32> = (0..dim).map(|j| (sums[c * dim + j] / counts[c] as f64) as f32).collect();
            if spherical {
                normalize_rows(&mut next, dim);
            }
            moved[c] = dist(&centers[c * dim..(c + 1) * dim], &next);
            centers[c * dim..(c + 1) * dim].copy_from_slice(&next);
        }
        for i in 0..n {
            for c in 0..k {
                let l = &mut lower[i * k + c];
                *l = (*l - moved[c]).max(0.0);
            }
            upper[i] += moved[assign[i]];
        }
        if changed == 0 && moved.iter().all(|m| *m == 0.0) {
            break;
        }
    }
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
    fn converged_centers_are_the_means_of_their_rows() {
        // Elkan's skipped distances must not change the answer: at
        // convergence every center is the mean of the rows nearest to it
        let mut rng = crate::rng::SplitMix64(3);
        let (n, dim, k) = (600, 6, 12);
        let rows: Vec<f32> = (0..n * dim).map(|_| (rng.next_unit() * 10.0) as f32).collect();
        let centers = kmeans(&rows, dim, k, false, 500, 11);
        let mut sums = vec![0f64; k * dim];
        let mut counts = vec![0usize; k];
        for r in rows.chunks_exact(dim) {
            let c = nearest_center(&centers, dim, r, false);
            counts[c] += 1;
            for (s, x) in sums[c * dim..(c + 1) * dim].iter_mut().zip(r) {
                *s += *x as f64;
            }
        }
        for c in 0..k {
            assert!(counts[c] > 0);
            for j in 0..dim {
                let mean = sums[c * dim + j] / counts[c] as f64;
                assert!(
                    (mean - centers[c * dim + j] as f64).abs() < 1e-3,
                    "center {c}: {mean} vs {}",
                    centers[c * dim + j]
                );
            }
        }
    }

    #[test]
    fn bits_round_trip() {
        let b = [0b1010_0000u8, 0b1000_0000];
        let f = bits_to_f32(&b, 9);
        assert_eq!(f, vec![1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0]);
        assert_eq!(f32_to_bits(&f), b.to_vec());
    }
}
