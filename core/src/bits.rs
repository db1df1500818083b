//! Distances between Postgres `bit(n)` strings (`<~>` Hamming, `<%>` Jaccard).

use crate::error::{Result, VectorError};
use crate::kernels;

fn check_lengths(a_bits: usize, b_bits: usize) -> Result<()> {
    if a_bits != b_bits {
        return Err(VectorError::DifferentBitLengths { left: a_bits, right: b_bits });
    }
    Ok(())
}

/// Number of differing bits. `a`, `b` are the packed bytes of bit strings
/// of `a_bits` and `b_bits` bits (Postgres keeps the padding bits zero).
pub fn hamming_distance(a: &[u8], a_bits: usize, b: &[u8], b_bits: usize) -> Result<f64> {
    check_lengths(a_bits, b_bits)?;
    let n = a_bits.div_ceil(8).min(a.len()).min(b.len());
    Ok(kernels::hamming(&a[..n], &b[..n]) as f64)
}

/// 1 - |a ∧ b| / |a ∨ b|; 1 when the strings share no set bit (pgvector's convention).
pub fn jaccard_distance(a: &[u8], a_bits: usize, b: &[u8], b_bits: usize) -> Result<f64> {
    check_lengths(a_bits, b_bits)?;
    let n = a_bits.div_ceil(8).min(a.len()).min(b.len());
    let (ab, aa, bb) = kernels::jaccard_parts(&a[..n], &b[..n]);
    if ab == 0 {
        return Ok(1.0);
    }
    Ok(1.0 - ab as f64 / (aa + bb - ab) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hamming_and_jaccard_on_small_strings() {
        // 101 vs 111
        assert_eq!(hamming_distance(&[0b1010_0000], 3, &[0b1110_0000], 3).unwrap(), 1.0);
        let j = jaccard_distance(&[0b1010_0000], 3, &[0b1110_0000], 3).unwrap();
        assert!((j - (1.0 - 2.0 / 3.0)).abs() < 1e-12);
        assert_eq!(jaccard_distance(&[0], 3, &[0], 3).unwrap(), 1.0);
        assert_eq!(hamming_distance(&[0], 3, &[0], 4).unwrap_err().to_string(), "different bit lengths 3 and 4");
    }
}
