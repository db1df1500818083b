//! SQL entry points of the `vector` and `halfvec` types: I/O, typmod,
//! casts, distances, arithmetic, comparison and aggregate support. Each
//! generic body below is instantiated for both element types with
//! pgvector's C symbol names, which `sql/*.sql` binds to SQL names.

use crate::fmgr::{boolean, cstring, float8, int4, pg_function, Args};
use crate::varlena::*;
use half::f16;
use pgrx::pg_sys;
use quiver_core::element::{typmod_in, Element};
use quiver_core::error::{Result, VectorError};
use quiver_core::ops::{self, Distances};
use quiver_core::{text, wire};
use std::cmp::Ordering;

type Datum = pg_sys::Datum;

fn input<E: Element>(a: &Args) -> Result<Datum> {
    // Non-UTF-8 input can only be malformed: vectors are ASCII.
    let raw = a.cstr(0);
    let s = String::from_utf8_lossy(raw);
    let v = text::parse_vector::<E>(&s, a.i32(2))?;
    Ok(vector_datum(&v))
}

fn output<E: Element>(a: &Args) -> Result<Datum> {
    let v = vector_arg::<E>(a, 0)?;
    Ok(cstring(&text::format_vector(&v)))
}

fn typmod<E: Element>(a: &Args) -> Result<Datum> {
    Ok(int4(typmod_in::<E>(&typmods_arg(a, 0))?))
}

fn receive<E: Element>(a: &Args) -> Result<Datum> {
    let (v, used) = wire::decode::<E>(stringinfo_unread(a, 0), a.i32(2))?;
    stringinfo_advance(a, 0, used);
    Ok(vector_datum(&v))
}

fn send<E: Element>(a: &Args) -> Result<Datum> {
    let v = vector_arg::<E>(a, 0)?;
    Ok(bytea_datum(&wire::encode(&v)))
}

/// `vector(v, typmod, explicit)`: the cast that enforces `vector(n)`.
fn coerce_typmod<E: Element>(a: &Args) -> Result<Datum> {
    let v = vector_arg::<E>(a, 0)?;
    quiver_core::element::check_typmod_dim(a.i32(1), v.len())?;
    Ok(a.datum(0))
}

fn distance<E: Distances>(a: &Args, f: fn(&[E], &[E]) -> Result<f64>) -> Result<Datum> {
    let x = vector_arg::<E>(a, 0)?;
    let y = vector_arg::<E>(a, 1)?;
    Ok(float8(f(&x, &y)?))
}

fn binary_op<E: Element>(a: &Args, f: fn(&[E], &[E]) -> Result<Vec<E>>) -> Result<Datum> {
    let x = vector_arg::<E>(a, 0)?;
    let y = vector_arg::<E>(a, 1)?;
    Ok(vector_datum(&f(&x, &y)?))
}

fn compare_with<E: Element>(a: &Args, accept: fn(Ordering) -> bool) -> Result<Datum> {
    let x = vector_arg::<E>(a, 0)?;
    let y = vector_arg::<E>(a, 1)?;
    Ok(boolean(accept(ops::compare(&x, &y))))
}

fn cmp<E: Element>(a: &Args) -> Result<Datum> {
    let x = vector_arg::<E>(a, 0)?;
    let y = vector_arg::<E>(a, 1)?;
    Ok(int4(ops::compare(&x, &y) as i32))
}

fn dims<E: Element>(a: &Args) -> Result<Datum> {
    Ok(int4(vector_arg::<E>(a, 0)?.len() as i32))
}

fn norm<E: Element>(a: &Args) -> Result<Datum> {
    Ok(float8(ops::norm(&vector_arg::<E>(a, 0)?)))
}

fn normalize<E: Element>(a: &Args) -> Result<Datum> {
    Ok(vector_datum(&ops::l2_normalize(&vector_arg::<E>(a, 0)?)?))
}

fn sub_vector<E: Element>(a: &Args) -> Result<Datum> {
    let v = vector_arg::<E>(a, 0)?;
    Ok(vector_datum(&ops::subvector(&v, a.i32(1), a.i32(2))?))
}

fn quantize<E: Element>(a: &Args) -> Result<Datum> {
    let v = vector_arg::<E>(a, 0)?;
    Ok(bit_datum(v.len(), &ops::binary_quantize(&v)))
}

fn accum<E: Element>(a: &Args) -> Result<Datum> {
    let state = float8_state_arg(a, 0, &format!("{}_accum", E::TYPE_NAME));
    let v = vector_arg::<E>(a, 1)?;
    Ok(float8_array_datum(&ops::accum(state, &v)?))
}

fn combine(a: &Args) -> Result<Datum> {
    // halfvec_combine is this C function too, so pgvector's errors name vector_combine
    let (x, y) = (float8_state_arg(a, 0, "vector_combine"), float8_state_arg(a, 1, "vector_combine"));
    Ok(float8_array_datum(&ops::combine(x, y)?))
}

fn average<E: Element>(a: &Args) -> Result<Datum> {
    match ops::average::<E>(float8_state_arg(a, 0, &format!("{}_avg", E::TYPE_NAME)))? {
        Some(v) => Ok(vector_datum(&v)),
        // SAFETY: fcinfo is live; marking the result NULL is how a C function returns NULL.
        None => Ok(unsafe { pgrx::fcinfo::pg_return_null(a.fcinfo()) }),
    }
}

/// `integer[]`, `real[]`, `double precision[]` or `numeric[]` to a vector.
fn from_array<E: Element>(a: &Args) -> Result<Datum> {
    Ok(vector_datum(&ops::from_f64s::<E>(&array_as_f64s(a)?, a.i32(1))?))
}

/// Argument 0, an `integer[]`, `real[]`, `double precision[]` or
/// `numeric[]`, as f64s each rounded through f32 (as a C cast to float does).
pub(crate) fn array_as_f64s(a: &Args) -> Result<Vec<f64>> {
    let (elemtype, datums) = array_arg(a, 0)?;
    let values: Vec<f64> = match elemtype {
        t if t == pg_sys::INT4OID => datums.iter().map(|d| d.value() as i32 as f32 as f64).collect(),
        t if t == pg_sys::FLOAT4OID => datums.iter().map(|d| f32::from_bits(d.value() as u32) as f64).collect(),
        t if t == pg_sys::FLOAT8OID => {
            // Round to f32 first, as a C cast does, so halfvec rounds from the same value.
            datums.iter().map(|d| f64::from_bits(d.value() as u64) as f32 as f64).collect()
        }
        t if t == pg_sys::NUMERICOID => datums
            .iter()
            .map(|d| {
                // SAFETY: numeric_float4 takes one numeric datum and returns a
                // float4 (raising ERROR itself when out of range).
                let r = unsafe { pgrx::fcinfo::direct_function_call::<f32>(pg_sys::numeric_float4, &[Some(*d)]) };
                r.expect("numeric_float4 returns a value") as f64
            })
            .collect(),
        _ => return Err(VectorError::UnsupportedArrayType),
    };
    Ok(values)
}

fn to_float4_array<E: Element>(a: &Args) -> Result<Datum> {
    let v = vector_arg::<E>(a, 0)?;
    let values: Vec<f32> = v.iter().map(|x| x.to_f32()).collect();
    Ok(float4_array_datum(&values))
}

fn convert<A: Element, B: Element>(a: &Args) -> Result<Datum> {
    let v = vector_arg::<A>(a, 0)?;
    Ok(vector_datum(&ops::convert::<A, B>(&v, a.i32(1))?))
}

// ---- vector (float4) ----
pg_function!(vector_in, |a| input::<f32>(&a));
pg_function!(vector_out, |a| output::<f32>(&a));
pg_function!(vector_typmod_in, |a| typmod::<f32>(&a));
pg_function!(vector_recv, |a| receive::<f32>(&a));
pg_function!(vector_send, |a| send::<f32>(&a));
pg_function!(vector, |a| coerce_typmod::<f32>(&a));
pg_function!(l2_distance, |a| distance::<f32>(&a, ops::l2_distance));
pg_function!(vector_l2_squared_distance, |a| distance::<f32>(&a, ops::l2_squared_distance));
pg_function!(inner_product, |a| distance::<f32>(&a, ops::inner_product));
pg_function!(vector_negative_inner_product, |a| distance::<f32>(&a, ops::negative_inner_product));
pg_function!(cosine_distance, |a| distance::<f32>(&a, ops::cosine_distance));
pg_function!(vector_spherical_distance, |a| distance::<f32>(&a, ops::spherical_distance));
pg_function!(l1_distance, |a| distance::<f32>(&a, ops::l1_distance));
pg_function!(vector_dims, |a| dims::<f32>(&a));
pg_function!(vector_norm, |a| norm::<f32>(&a));
pg_function!(l2_normalize, |a| normalize::<f32>(&a));
pg_function!(binary_quantize, |a| quantize::<f32>(&a));
pg_function!(subvector, |a| sub_vector::<f32>(&a));
pg_function!(vector_add, |a| binary_op::<f32>(&a, ops::add));
pg_function!(vector_sub, |a| binary_op::<f32>(&a, ops::sub));
pg_function!(vector_mul, |a| binary_op::<f32>(&a, ops::mul));
pg_function!(vector_concat, |a| binary_op::<f32>(&a, ops::concat));
pg_function!(vector_lt, |a| compare_with::<f32>(&a, Ordering::is_lt));
pg_function!(vector_le, |a| compare_with::<f32>(&a, Ordering::is_le));
pg_function!(vector_eq, |a| compare_with::<f32>(&a, Ordering::is_eq));
pg_function!(vector_ne, |a| compare_with::<f32>(&a, Ordering::is_ne));
pg_function!(vector_ge, |a| compare_with::<f32>(&a, Ordering::is_ge));
pg_function!(vector_gt, |a| compare_with::<f32>(&a, Ordering::is_gt));
pg_function!(vector_cmp, |a| cmp::<f32>(&a));
pg_function!(vector_accum, |a| accum::<f32>(&a));
pg_function!(vector_combine, |a| combine(&a));
pg_function!(vector_avg, |a| average::<f32>(&a));
pg_function!(array_to_vector, |a| from_array::<f32>(&a));
pg_function!(vector_to_float4, |a| to_float4_array::<f32>(&a));
pg_function!(vector_to_halfvec, |a| convert::<f32, f16>(&a));

// ---- halfvec (float2) ----
pg_function!(halfvec_in, |a| input::<f16>(&a));
pg_function!(halfvec_out, |a| output::<f16>(&a));
pg_function!(halfvec_typmod_in, |a| typmod::<f16>(&a));
pg_function!(halfvec_recv, |a| receive::<f16>(&a));
pg_function!(halfvec_send, |a| send::<f16>(&a));
pg_function!(halfvec, |a| coerce_typmod::<f16>(&a));
pg_function!(halfvec_l2_distance, |a| distance::<f16>(&a, ops::l2_distance));
pg_function!(halfvec_l2_squared_distance, |a| distance::<f16>(&a, ops::l2_squared_distance));
pg_function!(halfvec_inner_product, |a| distance::<f16>(&a, ops::inner_product));
pg_function!(halfvec_negative_inner_product, |a| distance::<f16>(&a, ops::negative_inner_product));
pg_function!(halfvec_cosine_distance, |a| distance::<f16>(&a, ops::cosine_distance));
pg_function!(halfvec_spherical_distance, |a| distance::<f16>(&a, ops::spherical_distance));
pg_function!(halfvec_l1_distance, |a| distance::<f16>(&a, ops::l1_distance));
pg_function!(halfvec_vector_dims, |a| dims::<f16>(&a));
pg_function!(halfvec_l2_norm, |a| norm::<f16>(&a));
pg_function!(halfvec_l2_normalize, |a| normalize::<f16>(&a));
pg_function!(halfvec_binary_quantize, |a| quantize::<f16>(&a));
pg_function!(halfvec_subvector, |a| sub_vector::<f16>(&a));
pg_function!(halfvec_add, |a| binary_op::<f16>(&a, ops::add));
pg_function!(halfvec_sub, |a| binary_op::<f16>(&a, ops::sub));
pg_function!(halfvec_mul, |a| binary_op::<f16>(&a, ops::mul));
pg_function!(halfvec_concat, |a| binary_op::<f16>(&a, ops::concat));
pg_function!(halfvec_lt, |a| compare_with::<f16>(&a, Ordering::is_lt));
pg_function!(halfvec_le, |a| compare_with::<f16>(&a, Ordering::is_le));
pg_function!(halfvec_eq, |a| compare_with::<f16>(&a, Ordering::is_eq));
pg_function!(halfvec_ne, |a| compare_with::<f16>(&a, Ordering::is_ne));
pg_function!(halfvec_ge, |a| compare_with::<f16>(&a, Ordering::is_ge));
pg_function!(halfvec_gt, |a| compare_with::<f16>(&a, Ordering::is_gt));
pg_function!(halfvec_cmp, |a| cmp::<f16>(&a));
pg_function!(halfvec_accum, |a| accum::<f16>(&a));
pg_function!(halfvec_avg, |a| average::<f16>(&a));
pg_function!(array_to_halfvec, |a| from_array::<f16>(&a));
pg_function!(halfvec_to_float4, |a| to_float4_array::<f16>(&a));
pg_function!(halfvec_to_vector, |a| convert::<f16, f32>(&a));
