//! SQL entry points of `sparsevec` (pgvector's sparse vector): I/O, typmod,
//! casts to and from `vector`, `halfvec` and arrays, distances, norms and
//! comparison, under pgvector's C symbol names, which `sql/sparsevec.sql`
//! binds. The logic is in `quiver_core::sparse`.

use crate::fmgr::{boolean, cstring, float8, int4, pg_function, Args};
use crate::varlena::*;
use crate::vector_type::array_as_f64s;
use half::f16;
use pgrx::pg_sys;
use quiver_core::element::{check_dim, Element};
use quiver_core::error::{ErrorKind, Result, VectorError};
use quiver_core::ops;
use quiver_core::sparse::{self, SparseVec};
use std::cmp::Ordering;

type Datum = pg_sys::Datum;

fn input(a: &Args) -> Result<Datum> {
    let raw = a.cstr(0);
    let s = String::from_utf8_lossy(raw);
    Ok(sparse_datum(&sparse::parse(&s, a.i32(2))?))
}

fn typmod(a: &Args) -> Result<Datum> {
    let mods = typmods_arg(a, 0);
    let invalid = |text: String| VectorError::Message { kind: ErrorKind::InvalidParameterValue, text, detail: None };
    if mods.len() != 1 {
        return Err(VectorError::InvalidTypmod);
    }
    if mods[0] < 1 {
        return Err(invalid("dimensions for type sparsevec must be at least 1".into()));
    }
    if mods[0] as i64 > sparse::MAX_DIM {
        return Err(invalid(format!("dimensions for type sparsevec cannot exceed {}", sparse::MAX_DIM)));
    }
    Ok(int4(mods[0]))
}

fn receive(a: &Args) -> Result<Datum> {
    let (v, used) = sparse::decode(stringinfo_unread(a, 0), a.i32(2))?;
    stringinfo_advance(a, 0, used);
    Ok(sparse_datum(&v))
}

fn coerce_typmod(a: &Args) -> Result<Datum> {
    let v = sparse_arg(a, 0)?;
    quiver_core::element::check_typmod_dim(a.i32(1), v.dim as usize)?;
    Ok(a.datum(0))
}

fn from_dense<E: Element>(a: &Args) -> Result<Datum> {
    let v = vector_arg::<E>(a, 0)?;
    let values: Vec<f32> = v.iter().map(|x| x.to_f32()).collect();
    Ok(sparse_datum(&sparse::from_dense(&values, a.i32(1))?))
}

fn to_dense<E: Element>(a: &Args) -> Result<Datum> {
    let v = sparse_arg(a, 0)?;
    // the dense type's limit first: a sparsevec may have 10^9 dimensions
    check_dim::<E>(v.dim as usize)?;
    Ok(vector_datum(&ops::convert::<f32, E>(&sparse::to_dense(&v), a.i32(1))?))
}

fn from_array(a: &Args) -> Result<Datum> {
    let values: Vec<f32> = array_as_f64s(a)?.iter().map(|x| *x as f32).collect();
    Ok(sparse_datum(&sparse::from_dense(&values, a.i32(1))?))
}

fn distance(a: &Args, f: fn(&SparseVec, &SparseVec) -> Result<f64>) -> Result<Datum> {
    Ok(float8(f(&sparse_arg(a, 0)?, &sparse_arg(a, 1)?)?))
}

fn compare_with(a: &Args, accept: fn(Ordering) -> bool) -> Result<Datum> {
    Ok(boolean(accept(sparse::compare(&sparse_arg(a, 0)?, &sparse_arg(a, 1)?))))
}

fn output(a: &Args) -> Result<Datum> {
    Ok(cstring(&sparse::format(&sparse_arg(a, 0)?)))
}

fn send(a: &Args) -> Result<Datum> {
    Ok(bytea_datum(&sparse::encode(&sparse_arg(a, 0)?)))
}

fn norm(a: &Args) -> Result<Datum> {
    Ok(float8(sparse::l2_norm(&sparse_arg(a, 0)?)))
}

fn normalize(a: &Args) -> Result<Datum> {
    Ok(sparse_datum(&sparse::l2_normalize(&sparse_arg(a, 0)?)?))
}

fn cmp(a: &Args) -> Result<Datum> {
    Ok(int4(sparse::compare(&sparse_arg(a, 0)?, &sparse_arg(a, 1)?) as i32))
}

pg_function!(sparsevec_in, |a| input(&a));
pg_function!(sparsevec_out, |a| output(&a));
pg_function!(sparsevec_typmod_in, |a| typmod(&a));
pg_function!(sparsevec_recv, |a| receive(&a));
pg_function!(sparsevec_send, |a| send(&a));
pg_function!(sparsevec, |a| coerce_typmod(&a));
pg_function!(vector_to_sparsevec, |a| from_dense::<f32>(&a));
pg_function!(halfvec_to_sparsevec, |a| from_dense::<f16>(&a));
pg_function!(sparsevec_to_vector, |a| to_dense::<f32>(&a));
pg_function!(sparsevec_to_halfvec, |a| to_dense::<f16>(&a));
pg_function!(array_to_sparsevec, |a| from_array(&a));
pg_function!(sparsevec_l2_distance, |a| distance(&a, sparse::l2_distance));
pg_function!(sparsevec_l2_squared_distance, |a| distance(&a, sparse::l2_squared_distance));
pg_function!(sparsevec_inner_product, |a| distance(&a, sparse::inner_product));
pg_function!(sparsevec_negative_inner_product, |a| distance(&a, sparse::negative_inner_product));
pg_function!(sparsevec_cosine_distance, |a| distance(&a, sparse::cosine_distance));
pg_function!(sparsevec_l1_distance, |a| distance(&a, sparse::l1_distance));
pg_function!(sparsevec_l2_norm, |a| norm(&a));
pg_function!(sparsevec_l2_normalize, |a| normalize(&a));
pg_function!(sparsevec_lt, |a| compare_with(&a, |o| o == Ordering::Less));
pg_function!(sparsevec_le, |a| compare_with(&a, |o| o != Ordering::Greater));
pg_function!(sparsevec_eq, |a| compare_with(&a, |o| o == Ordering::Equal));
pg_function!(sparsevec_ne, |a| compare_with(&a, |o| o != Ordering::Equal));
pg_function!(sparsevec_ge, |a| compare_with(&a, |o| o != Ordering::Less));
pg_function!(sparsevec_gt, |a| compare_with(&a, |o| o == Ordering::Greater));
pg_function!(sparsevec_cmp, |a| cmp(&a));
