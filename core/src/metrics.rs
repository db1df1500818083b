//! Search metrics: the fixed latency buckets of the index-scan histogram and
//! the quantiles read from it.
//!
//! The counters themselves live in Postgres shared memory (the glue); this
//! module only decides which bucket a latency falls in and how a histogram
//! turns into p50/p95/p99.

/// Upper bounds of the latency buckets, in microseconds (Prometheus `le`),
/// from 50 µs to 10 s; one more bucket holds everything above (+Inf).
pub const BUCKET_BOUNDS_US: [u64; 17] = [
    50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000,
    5_000_000, 10_000_000,
];

/// Number of buckets including the last, unbounded one.
pub const BUCKETS: usize = BUCKET_BOUNDS_US.len() + 1;

/// The bucket a latency of `us` microseconds is counted in.
pub fn bucket_for(us: u64) -> usize {
    BUCKET_BOUNDS_US.iter().position(|&b| us <= b).unwrap_or(BUCKET_BOUNDS_US.len())
}

/// The `q`-quantile (0 < q ≤ 1) of a histogram with per-bucket (not
/// cumulative) `counts`, in microseconds, interpolated linearly inside the
/// bucket that holds it as Prometheus' `histogram_quantile` does. None for
/// an empty histogram. A quantile in the unbounded bucket is reported as
/// that bucket's lower bound.
pub fn quantile_us(counts: &[u64; BUCKETS], q: f64) -> Option<f64> {
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = q.clamp(0.0, 1.0) * total as f64;
    let mut below = 0u64;
    for (i, &c) in counts.iter().enumerate() {
        if c > 0 && (below + c) as f64 >= rank {
            let lo = if i == 0 { 0.0 } else { BUCKET_BOUNDS_US[i - 1] as f64 };
            let Some(&hi) = BUCKET_BOUNDS_US.get(i) else { return Some(lo) };
            let within = ((rank - below as f64) / c as f64).clamp(0.0, 1.0);
            return Some(lo + (hi as f64 - lo) * within);
        }
        below += c;
    }
    Some(*BUCKET_BOUNDS_US.last().expect("bounds") as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_inclusive_upper_bounds() {
        assert_eq!(bucket_for(0), 0);
        assert_eq!(bucket_for(50), 0);
        assert_eq!(bucket_for(51), 1);
        assert_eq!(bucket_for(1_000), 4);
        assert_eq!(bucket_for(10_000_000), 16);
        assert_eq!(bucket_for(10_000_001), 17);
        assert_eq!(bucket_for(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn quantiles_fall_inside_the_bucket_holding_them() {
        // 90 searches of ~300 µs, 10 of ~30 ms
        let mut h = [0u64; BUCKETS];
        h[bucket_for(300)] += 90;
        h[bucket_for(30_000)] += 10;
        let p50 = quantile_us(&h, 0.5).unwrap();
        assert!(p50 > 250.0 && p50 <= 500.0, "{p50}");
        let p99 = quantile_us(&h, 0.99).unwrap();
        assert!(p99 > 25_000.0 && p99 <= 50_000.0, "{p99}");
        assert_eq!(quantile_us(&[0; BUCKETS], 0.5), None);
        let mut top = [0u64; BUCKETS];
        top[BUCKETS - 1] = 3;
        assert_eq!(quantile_us(&top, 0.99), Some(10_000_000.0));
    }

    #[test]
    fn quantiles_agree_with_sorted_samples_to_the_bucket() {
        let mut rng = crate::rng::SplitMix64(9);
        let mut samples: Vec<u64> =
            (0..10_000).map(|_| (rng.next_unit() * rng.next_unit() * 200_000.0) as u64).collect();
        let mut h = [0u64; BUCKETS];
        for &s in &samples {
            h[bucket_for(s)] += 1;
        }
        samples.sort();
        for q in [0.5, 0.95, 0.99] {
            let exact = samples[((q * samples.len() as f64) as usize).min(samples.len() - 1)];
            let est = quantile_us(&h, q).unwrap();
            assert_eq!(bucket_for(exact), bucket_for(est.ceil() as u64), "q={q} exact={exact} est={est}");
        }
    }
}
