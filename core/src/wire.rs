//! pgvector's binary wire format, used by `COPY ... BINARY` and by client
//! libraries in binary mode: int16 dim, int16 unused (0), then `dim`
//! elements in network byte order (float4 for `vector`, the raw IEEE half
//! bits for `halfvec`).

use crate::element::{check_dim, check_element, check_typmod_dim, Element};
use crate::error::{Result, VectorError};

pub fn encode<E: Element>(values: &[E]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + values.len() * E::SIZE);
    encode_into(values, &mut out);
    out
}

fn header(dims: usize, out: &mut Vec<u8>) {
    out.extend_from_slice(&(dims as u16).to_be_bytes());
    out.extend_from_slice(&0u16.to_be_bytes());
}

/// `encode`, appended to `out` (4 + dim x element size bytes).
pub fn encode_into<E: Element>(values: &[E], out: &mut Vec<u8>) {
    header(values.len(), out);
    // one resize, then a loop the compiler turns into vector byte swaps
    // (a push per element cost 3% of a snapshot restore when it used this)
    let start = out.len();
    out.resize(start + values.len() * E::SIZE, 0);
    for (v, dst) in values.iter().zip(out[start..].chunks_exact_mut(E::SIZE)) {
        v.put_be(dst);
    }
}

/// The `vector` whose elements are the little-endian f32s `le` (as a
/// snapshot stores them), appended to `out` without decoding them: each
/// element's bytes reversed, in one pass the compiler vectorises.
pub fn encode_le_f32_into(le: &[u8], out: &mut Vec<u8>) {
    header(le.len() / 4, out);
    let start = out.len();
    out.extend_from_slice(&le[..le.len() / 4 * 4]);
    for e in out[start..].chunks_exact_mut(4) {
        e.reverse();
    }
}

/// Decodes one value from the front of `buf`; returns it and the number of
/// bytes consumed. A header that promises more data than `buf` holds is an
/// error, never a read past the end.
pub fn decode<E: Element>(buf: &[u8], typmod: i32) -> Result<(Vec<E>, usize)> {
    if buf.len() < 4 {
        return Err(VectorError::InsufficientData);
    }
    let dim = u16::from_be_bytes([buf[0], buf[1]]) as usize;
    let unused = u16::from_be_bytes([buf[2], buf[3]]) as i32;
    check_dim::<E>(dim)?;
    check_typmod_dim(typmod, dim)?;
    if unused != 0 {
        return Err(VectorError::UnusedNotZero(unused));
    }
    let need = 4 + dim * E::SIZE;
    if buf.len() < need {
        return Err(VectorError::InsufficientData);
    }
    let values: Vec<E> = buf[4..need].chunks_exact(E::SIZE).map(E::from_bits_be).collect();
    for v in &values {
        check_element(*v)?;
    }
    Ok((values, need))
}

#[cfg(test)]
mod tests {
    use super::*;
    use half::f16;
    use proptest::prelude::*;

    #[test]
    fn layout_is_pgvectors() {
        assert_eq!(encode(&[1.0f32, -2.0]), vec![0, 2, 0, 0, 0x3f, 0x80, 0, 0, 0xc0, 0, 0, 0]);
        let le: Vec<u8> = [1.0f32, -2.0, 3.5e-7].iter().flat_map(|x| x.to_le_bytes()).collect();
        let mut out = vec![9];
        encode_le_f32_into(&le, &mut out);
        assert_eq!(out[1..], encode(&[1.0f32, -2.0, 3.5e-7])[..]);
        assert_eq!(encode(&[f16::ONE]), vec![0, 1, 0, 0, 0x3c, 0x00]);
    }

    #[test]
    fn lying_headers_are_errors() {
        // claims 3 dimensions, carries 2
        let mut b = encode(&[1.0f32, 2.0]);
        b[1] = 3;
        assert_eq!(decode::<f32>(&b, -1).unwrap_err(), VectorError::InsufficientData);
        assert_eq!(decode::<f32>(&[0, 1], -1).unwrap_err(), VectorError::InsufficientData);
        let mut b = encode(&[1.0f32]);
        b[3] = 7;
        assert_eq!(decode::<f32>(&b, -1).unwrap_err().to_string(), "expected unused to be 0, not 7");
        assert_eq!(decode::<f32>(&[0, 0, 0, 0], -1).unwrap_err().to_string(), "vector must have at least 1 dimension");
        assert_eq!(
            decode::<f32>(&[0xff, 0xff, 0, 0], -1).unwrap_err().to_string(),
            "vector cannot have more than 16000 dimensions"
        );
        let nan = [0, 1, 0, 0, 0x7f, 0xc0, 0, 0];
        assert_eq!(decode::<f32>(&nan, -1).unwrap_err().to_string(), "NaN not allowed in vector");
        assert_eq!(decode::<f32>(&encode(&[1.0f32]), 2).unwrap_err().to_string(), "expected 2 dimensions, not 1");
    }

    proptest! {
        #[test]
        fn round_trip(v in prop::collection::vec(-1e30f32..1e30f32, 1..100)) {
            let b = encode(&v);
            let (back, used) = decode::<f32>(&b, -1).unwrap();
            prop_assert_eq!(used, b.len());
            prop_assert_eq!(back, v);
        }

        #[test]
        fn decode_never_panics(b in prop::collection::vec(any::<u8>(), 0..64)) {
            let _ = decode::<f32>(&b, -1);
            let _ = decode::<f16>(&b, 3);
        }
    }
}
