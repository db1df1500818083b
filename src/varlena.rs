//! In-memory layouts of quiver's datums, identical to pgvector's so that
//! data written by one is read by the other (and `pg_upgrade`/`pg_dump`
//! need no conversion):
//!
//! ```text
//! vector:  int32 varlena header | int16 dim | int16 unused=0 | float4[dim]
//! halfvec: int32 varlena header | int16 dim | int16 unused=0 | float2[dim]
//! bit:     int32 varlena header | int32 bit_len | bytes[(bit_len+7)/8]  (Postgres' VarBit)
//! sparsevec: int32 varlena header | int32 dim | int32 nnz | int32 unused=0
//!            | int32 indices[nnz] (0-based, ascending) | float4 values[nnz]
//! ```
//!
//! Every raw-pointer access of the glue's datums is in this file.

use crate::fmgr::Args;
use pgrx::pg_sys;
use quiver_core::element::Element;
use quiver_core::error::{Result, VectorError};
use std::borrow::Cow;

const VARHDRSZ: usize = 4;
/// Offset of the elements: header, dim, unused.
const VECTOR_HEADER: usize = 8;

/// Detoasts argument `n` into a plain 4-byte-header varlena.
fn detoast(args: &Args, n: usize) -> *mut pg_sys::varlena {
    detoasted(args.datum(n))
}

/// `datum` (a varlena) as a plain 4-byte-header varlena: the value itself
/// when it is one already (neither short, compressed nor external, as every
/// stored vector of more than 30 dimensions is), else pg_detoast_datum's
/// palloc'd copy. The check spares the call: each call into Postgres costs
/// a guarded boundary (sigsetjmp), 4% of an exact search's time.
fn detoasted(datum: pg_sys::Datum) -> *mut pg_sys::varlena {
    let p: *mut pg_sys::varlena = datum.cast_mut_ptr();
    // SAFETY: `datum` is a non-null varlena (by the SQL signature or the
    // indexed column's type), so its header is readable; pg_detoast_datum
    // returns the value or an untoasted copy with a 4-byte header.
    unsafe {
        if pgrx::varlena::varatt_is_4b_u(p) {
            p
        } else {
            pg_sys::pg_detoast_datum(p)
        }
    }
}

/// Total size of a detoasted varlena.
fn size_of_detoasted(p: *const pg_sys::varlena) -> usize {
    // SAFETY: `p` came from pg_detoast_datum, so it has a 4-byte header.
    unsafe { pgrx::varlena::varsize_4b(p) }
}

/// A read-only view of a `vector`/`halfvec` argument. The borrow is tied to
/// `args`, which lives no longer than the call whose memory context holds it.
pub fn vector_arg<E: Element>(args: &Args, n: usize) -> Result<Cow<'_, [E]>> {
    let p = detoast(args, n);
    let total = size_of_detoasted(p);
    if total < VECTOR_HEADER {
        return Err(corrupted::<E>(format!("value of {total} bytes is shorter than its header")));
    }
    // SAFETY: at least VECTOR_HEADER bytes exist (checked above); dim is an
    // int16 at offset 4, naturally aligned because palloc and tuple storage
    // align varlenas of this type (typalign int4) to 4 bytes.
    let dim = unsafe { *((p as *const u8).add(4) as *const i16) };
    let dim = dim as u16 as usize;
    if VECTOR_HEADER + dim * E::SIZE != total {
        return Err(corrupted::<E>(format!(
            "{dim} dimensions need {} bytes, the value has {total}",
            VECTOR_HEADER + dim * E::SIZE
        )));
    }
    // SAFETY: the header lies within the value's `total` bytes (checked above).
    let data = unsafe { (p as *const u8).add(VECTOR_HEADER) };
    // A value inside a composite or a short-header copy could in principle be
    // misaligned; copy it then rather than build a misaligned slice.
    if !(data as usize).is_multiple_of(std::mem::align_of::<E>()) {
        let mut copy: Vec<E> = Vec::with_capacity(dim);
        // SAFETY: `dim * E::SIZE` bytes follow `data` (size checked above) and
        // `copy` has room for `dim` elements; byte-wise copy has no alignment needs.
        unsafe {
            std::ptr::copy_nonoverlapping(data, copy.as_mut_ptr() as *mut u8, dim * E::SIZE);
            copy.set_len(dim);
        }
        return Ok(Cow::Owned(copy));
    }
    // SAFETY: `data` is aligned for E, holds `dim` initialised elements (size
    // checked above), and the memory lives in the call's memory context,
    // which outlives every use of the slice inside the function call. f32 and
    // f16 have no invalid bit patterns.
    Ok(Cow::Borrowed(unsafe { std::slice::from_raw_parts(data as *const E, dim) }))
}

fn corrupted<E: Element>(detail: String) -> VectorError {
    VectorError::Corrupted { type_name: E::TYPE_NAME, detail }
}

/// A new palloc'd `vector`/`halfvec` datum holding `values`.
pub fn vector_datum<E: Element>(values: &[E]) -> pg_sys::Datum {
    let size = VECTOR_HEADER + values.len() * E::SIZE;
    // SAFETY: palloc0 returns `size` zeroed bytes, maximally aligned (or
    // raises ERROR). We set the header, dim, leave unused = 0 and copy the
    // elements into the space after the header.
    unsafe {
        let p = pg_sys::palloc0(size) as *mut u8;
        pgrx::varlena::set_varsize_4b(p as *mut pg_sys::varlena, size as i32);
        *(p.add(4) as *mut i16) = values.len() as i16;
        std::ptr::copy_nonoverlapping(values.as_ptr() as *const u8, p.add(VECTOR_HEADER), values.len() * E::SIZE);
        pg_sys::Datum::from(p)
    }
}

/// A new palloc'd `bytea` datum.
pub fn bytea_datum(bytes: &[u8]) -> pg_sys::Datum {
    let size = VARHDRSZ + bytes.len();
    // SAFETY: palloc returns `size` bytes; we write the header and the bytes.
    unsafe {
        let p = pg_sys::palloc(size) as *mut u8;
        pgrx::varlena::set_varsize_4b(p as *mut pg_sys::varlena, size as i32);
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), p.add(VARHDRSZ), bytes.len());
        pg_sys::Datum::from(p)
    }
}

/// A `bit` argument: (number of bits, packed bytes).
pub fn bit_arg(args: &Args, n: usize) -> Result<(usize, &[u8])> {
    let p = detoast(args, n);
    let total = size_of_detoasted(p);
    if total < VECTOR_HEADER {
        return Err(VectorError::Corrupted { type_name: "bit", detail: "value shorter than its header".into() });
    }
    // SAFETY: at least 8 bytes exist; bit_len is the int32 at offset 4.
    let bits = unsafe { *((p as *const u8).add(4) as *const i32) };
    let bytes = total - VECTOR_HEADER;
    if bits < 0 || (bits as usize).div_ceil(8) > bytes {
        return Err(VectorError::Corrupted { type_name: "bit", detail: format!("{bits} bits in {bytes} bytes") });
    }
    // SAFETY: `bytes` bytes follow the header (from the varlena size) and
    // live for the call; u8 has no alignment or validity requirements.
    let data = unsafe { std::slice::from_raw_parts((p as *const u8).add(VECTOR_HEADER), bytes) };
    Ok((bits as usize, data))
}

/// A new palloc'd `bit(n)` datum from packed bytes.
pub fn bit_datum(bits: usize, bytes: &[u8]) -> pg_sys::Datum {
    let size = VECTOR_HEADER + bytes.len();
    // SAFETY: palloc0 gives `size` zeroed bytes; we write header, bit_len, data.
    unsafe {
        let p = pg_sys::palloc0(size) as *mut u8;
        pgrx::varlena::set_varsize_4b(p as *mut pg_sys::varlena, size as i32);
        *(p.add(4) as *mut i32) = bits as i32;
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), p.add(VECTOR_HEADER), bytes.len());
        pg_sys::Datum::from(p)
    }
}

/// The unread bytes of a `StringInfo` argument (binary receive functions).
pub fn stringinfo_unread(args: &Args, n: usize) -> &[u8] {
    let buf = args.datum(n).cast_mut_ptr::<pg_sys::StringInfoData>();
    // SAFETY: receive functions get a valid StringInfo whose `data` holds
    // `len` bytes; `cursor` <= `len` is maintained by Postgres' pq_getmsg*.
    unsafe {
        let b = &*buf;
        let start = b.cursor.max(0) as usize;
        let len = (b.len.max(0) as usize).max(start);
        std::slice::from_raw_parts((b.data as *const u8).add(start), len - start)
    }
}

/// Marks `consumed` bytes of a `StringInfo` argument as read.
pub fn stringinfo_advance(args: &Args, n: usize, consumed: usize) {
    let buf = args.datum(n).cast_mut_ptr::<pg_sys::StringInfoData>();
    // SAFETY: as above; `consumed` never exceeds the unread length, which the
    // decoder checked.
    unsafe {
        (*buf).cursor += consumed as i32;
    }
}

/// The elements of a one-dimensional array argument as Datums, with its
/// element type. NULL elements and arrays of more than one dimension are errors.
pub fn array_arg(args: &Args, n: usize) -> Result<(pg_sys::Oid, Vec<pg_sys::Datum>)> {
    let arr = detoast(args, n) as *mut pg_sys::ArrayType;
    // SAFETY: the argument is an array (by the SQL signature) and detoasted;
    // the header fields are read in place, and deconstruct_array fills a
    // palloc'd Datum array of `count` entries that we copy out.
    unsafe {
        if (*arr).ndim > 1 {
            return Err(VectorError::ArrayNotOneDimensional);
        }
        if (*arr).dataoffset != 0 && pg_sys::array_contains_nulls(arr) {
            return Err(VectorError::ArrayHasNulls);
        }
        let elemtype = (*arr).elemtype;
        let mut typlen: i16 = 0;
        let mut typbyval = false;
        let mut typalign: std::ffi::c_char = 0;
        pg_sys::get_typlenbyvalalign(elemtype, &mut typlen, &mut typbyval, &mut typalign);
        let mut elems: *mut pg_sys::Datum = std::ptr::null_mut();
        let mut count: i32 = 0;
        pg_sys::deconstruct_array(
            arr,
            elemtype,
            typlen as i32,
            typbyval,
            typalign,
            &mut elems,
            std::ptr::null_mut(),
            &mut count,
        );
        let out = if count > 0 { std::slice::from_raw_parts(elems, count as usize).to_vec() } else { Vec::new() };
        Ok((elemtype, out))
    }
}

/// A one-dimensional, non-empty `float8[]` aggregate state without NULLs,
/// read in place; anything else is pgvector's "<caller>: expected state
/// array" error.
pub fn float8_state_arg<'a>(args: &'a Args, n: usize, caller: &str) -> &'a [f64] {
    let arr = detoast(args, n) as *mut pg_sys::ArrayType;
    // SAFETY: the aggregate's state type is float8[]; we check it has one
    // dimension, no null bitmap and float8 elements before reading
    // ARR_DIMS[0] float8s at ARR_DATA_PTR (header rounded up to MAXALIGN).
    unsafe {
        let a = &*arr;
        let dims = (arr as *const u8).add(std::mem::size_of::<pg_sys::ArrayType>()) as *const i32;
        if a.ndim != 1 || *dims < 1 || a.dataoffset != 0 || a.elemtype != pg_sys::FLOAT8OID {
            pgrx::error!("{caller}: expected state array");
        }
        let count = *dims as usize;
        let header = std::mem::size_of::<pg_sys::ArrayType>() + 2 * std::mem::size_of::<i32>();
        let data = (arr as *const u8).add((header + 7) & !7) as *const f64;
        std::slice::from_raw_parts(data, count)
    }
}

/// A new one-dimensional array of by-value elements.
fn by_value_array(datums: &[pg_sys::Datum], elemtype: pg_sys::Oid, len: i16, align: u8) -> pg_sys::Datum {
    // SAFETY: construct_array copies `datums.len()` by-value datums of the
    // given type, length and alignment into a new palloc'd array.
    unsafe {
        pg_sys::Datum::from(pg_sys::construct_array(
            datums.as_ptr() as *mut pg_sys::Datum,
            datums.len() as i32,
            elemtype,
            len as i32,
            true,
            align as std::ffi::c_char,
        ))
    }
}

/// A new `float8[]` datum.
pub fn float8_array_datum(values: &[f64]) -> pg_sys::Datum {
    let datums: Vec<pg_sys::Datum> = values.iter().map(|v| crate::fmgr::float8(*v)).collect();
    by_value_array(&datums, pg_sys::FLOAT8OID, 8, b'd')
}

/// A new `real[]` datum.
pub fn float4_array_datum(values: &[f32]) -> pg_sys::Datum {
    use pgrx::IntoDatum;
    let datums: Vec<pg_sys::Datum> = values.iter().map(|v| v.into_datum().expect("float4")).collect();
    by_value_array(&datums, pg_sys::FLOAT4OID, 4, b'i')
}

/// The integer typmods of a `cstring[]` argument (`vector(3)` gives `[3]`).
pub fn typmods_arg(args: &Args, n: usize) -> Vec<i32> {
    let arr = args.datum(n).cast_mut_ptr::<pg_sys::ArrayType>();
    let mut count: i32 = 0;
    // SAFETY: ArrayGetIntegerTypmods validates the cstring[] (raising ERROR on
    // junk) and returns a palloc'd array of `count` int32s.
    unsafe {
        let p = pg_sys::ArrayGetIntegerTypmods(arr, &mut count);
        if count <= 0 {
            return Vec::new();
        }
        std::slice::from_raw_parts(p, count as usize).to_vec()
    }
}

/// The dimensions and raw element bytes of a `vector`, `halfvec` or `bit`
/// datum (for the index), or of a `sparsevec` in the index's stored form
/// (`quiver_core::space::sparse_raw`). A value whose size disagrees with
/// its header is reported as corrupted.
pub fn datum_payload(datum: pg_sys::Datum, kind: quiver_core::space::ElementKind) -> (usize, Vec<u8>) {
    use quiver_core::space::ElementKind;
    if kind == ElementKind::Sparse {
        return sparse_payload(datum);
    }
    let p = detoasted(datum);
    let total = size_of_detoasted(p);
    if total < VECTOR_HEADER {
        pgrx::error!("quiver: indexed value of {total} bytes is shorter than its header");
    }
    // SAFETY: at least 8 bytes exist (checked); the header fields are read
    // unaligned-safely with read_unaligned.
    let (dims, bytes) = unsafe {
        let base = p as *const u8;
        match kind {
            ElementKind::Bits => {
                let bits = std::ptr::read_unaligned(base.add(4) as *const i32).max(0) as usize;
                (bits, bits.div_ceil(8))
            }
            ElementKind::F32 => {
                let d = std::ptr::read_unaligned(base.add(4) as *const i16) as u16 as usize;
                (d, d * 4)
            }
            ElementKind::F16 => {
                let d = std::ptr::read_unaligned(base.add(4) as *const i16) as u16 as usize;
                (d, d * 2)
            }
            ElementKind::Sparse => unreachable!("handled above"),
        }
    };
    if VECTOR_HEADER + bytes > total {
        pgrx::error!("quiver: indexed value claims {dims} dimensions but has {total} bytes");
    }
    // SAFETY: `bytes` bytes follow the header (checked just above).
    let data = unsafe { std::slice::from_raw_parts((p as *const u8).add(VECTOR_HEADER), bytes) }.to_vec();
    if p as *mut u8 != datum.cast_mut_ptr::<u8>() {
        // SAFETY: a copy pg_detoast_datum palloc'd for us; its bytes were
        // copied above. Freed so that scans rescoring many table rows do
        // not pile detoasted copies up in the query's memory context.
        unsafe { pg_sys::pfree(p as *mut std::ffi::c_void) };
    }
    (dims, data)
}

/// Offset of a sparsevec's indices: header, dim, nnz, unused.
const SPARSE_HEADER: usize = 16;

/// A `sparsevec` datum's dimensions and its indices and values as an index
/// stores them; checked as `sparse_arg` checks arguments.
fn sparse_payload(datum: pg_sys::Datum) -> (usize, Vec<u8>) {
    let p = detoasted(datum);
    let total = size_of_detoasted(p);
    if total < SPARSE_HEADER {
        pgrx::error!("quiver: indexed sparsevec of {total} bytes is shorter than its header");
    }
    // SAFETY: `total` bytes are readable from `p`; every read is within
    // SPARSE_HEADER + 8 * nnz <= total, checked before the slices are made.
    let (dim, bytes) = unsafe {
        let base = p as *const u8;
        let int = |at: usize| std::ptr::read_unaligned(base.add(at) as *const i32);
        let (dim, nnz) = (int(4), int(8));
        if nnz < 0 || SPARSE_HEADER + 8 * nnz as usize != total || dim < 0 {
            pgrx::error!("quiver: indexed sparsevec claims {nnz} elements but has {total} bytes");
        }
        let n = nnz as usize;
        let mut indices = Vec::with_capacity(n);
        let mut values = Vec::with_capacity(n);
        for k in 0..n {
            indices.push(int(SPARSE_HEADER + 4 * k));
            values.push(std::ptr::read_unaligned(base.add(SPARSE_HEADER + 4 * n + 4 * k) as *const f32));
        }
        if indices.windows(2).any(|w| w[0] >= w[1]) || indices.iter().any(|i| *i < 0 || *i >= dim) {
            pgrx::error!("quiver: indexed sparsevec has indices out of order or range");
        }
        (dim as usize, quiver_core::space::sparse_raw::encode(&indices, &values))
    };
    if p as *mut u8 != datum.cast_mut_ptr::<u8>() {
        // SAFETY: a copy pg_detoast_datum palloc'd for us, no longer used.
        unsafe { pg_sys::pfree(p as *mut std::ffi::c_void) };
    }
    (dim, bytes)
}

/// A `sparsevec` argument, copied out and checked (a stored value that
/// breaks pgvector's invariants is reported, never trusted).
pub fn sparse_arg(args: &Args, n: usize) -> Result<quiver_core::sparse::SparseVec> {
    let p = detoast(args, n);
    let total = size_of_detoasted(p);
    let corrupt = |detail: String| VectorError::Corrupted { type_name: "sparsevec", detail };
    if total < SPARSE_HEADER {
        return Err(corrupt(format!("value of {total} bytes is shorter than its header")));
    }
    // SAFETY: `total` bytes are readable from `p` (its varlena size); every
    // read below is within SPARSE_HEADER + 8 * nnz <= total, checked first,
    // and read_unaligned has no alignment needs.
    unsafe {
        let base = p as *const u8;
        let int = |at: usize| std::ptr::read_unaligned(base.add(at) as *const i32);
        let (dim, nnz) = (int(4), int(8));
        if nnz < 0 || SPARSE_HEADER + 8 * nnz as usize != total {
            return Err(corrupt(format!("{nnz} elements do not fit a value of {total} bytes")));
        }
        let nnz = nnz as usize;
        let indices = (0..nnz).map(|i| int(SPARSE_HEADER + 4 * i)).collect();
        let values = (0..nnz).map(|i| f32::from_bits(int(SPARSE_HEADER + 4 * nnz + 4 * i) as u32)).collect();
        let v = quiver_core::sparse::SparseVec { dim, indices, values };
        quiver_core::sparse::validate(&v).map_err(|e| corrupt(e.to_string()))?;
        Ok(v)
    }
}

/// A new palloc'd `sparsevec` datum.
pub fn sparse_datum(v: &quiver_core::sparse::SparseVec) -> pg_sys::Datum {
    let nnz = v.indices.len();
    let size = SPARSE_HEADER + 8 * nnz;
    // SAFETY: palloc0 returns `size` zeroed, maximally aligned bytes (or
    // raises ERROR); we write the header, dim, nnz (unused stays 0), then
    // nnz indices and nnz values, exactly filling `size`.
    unsafe {
        let p = pg_sys::palloc0(size) as *mut u8;
        pgrx::varlena::set_varsize_4b(p as *mut pg_sys::varlena, size as i32);
        *(p.add(4) as *mut i32) = v.dim;
        *(p.add(8) as *mut i32) = nnz as i32;
        std::ptr::copy_nonoverlapping(v.indices.as_ptr() as *const u8, p.add(SPARSE_HEADER), 4 * nnz);
        std::ptr::copy_nonoverlapping(v.values.as_ptr() as *const u8, p.add(SPARSE_HEADER + 4 * nnz), 4 * nnz);
        pg_sys::Datum::from(p)
    }
}
