//! Distances on Postgres' own `bit(n)` type: `<~>` Hamming and `<%>` Jaccard.

use crate::fmgr::{float8, pg_function, Args};
use crate::varlena::bit_arg;
use pgrx::pg_sys::Datum;
use quiver_core::bits;
use quiver_core::error::Result;

fn bit_distance(a: &Args, f: fn(&[u8], usize, &[u8], usize) -> Result<f64>) -> Result<Datum> {
    let (xb, x) = bit_arg(a, 0)?;
    let (yb, y) = bit_arg(a, 1)?;
    Ok(float8(f(x, xb, y, yb)?))
}

pg_function!(hamming_distance, |a| bit_distance(&a, bits::hamming_distance));
pg_function!(jaccard_distance, |a| bit_distance(&a, bits::jaccard_distance));
