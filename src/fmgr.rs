//! Plumbing for version-1 C functions written in Rust.
//!
//! quiver writes its SQL by hand (in `sql/`) to stay byte-for-byte
//! compatible with pgvector's catalog, so functions are exported as plain
//! `fmgr` entry points rather than through `#[pg_extern]`'s type mapping.
//! [`pg_function!`] emits the entry point, its `pg_finfo_*` record and the
//! `#[pg_guard]` that turns Rust panics and Postgres errors into proper
//! `ereport(ERROR)`s.

use pgrx::pg_sys;
use pgrx::{IntoDatum, PgSqlErrorCode};
use quiver_core::error::{ErrorKind, VectorError};

/// Defines `extern "C-unwind" fn $name(fcinfo)` callable from SQL as
/// `AS 'MODULE_PATHNAME', '$name'`. The body receives an [`Args`] and
/// returns `Result<Datum, VectorError>`; errors become `ereport(ERROR)`.
macro_rules! pg_function {
    ($name:ident, |$args:ident| $body:expr) => {
        ::paste::paste! {
            #[no_mangle]
            #[doc(hidden)]
            pub extern "C" fn [<pg_finfo_ $name>]() -> &'static ::pgrx::pg_sys::Pg_finfo_record {
                const V1: ::pgrx::pg_sys::Pg_finfo_record =
                    ::pgrx::pg_sys::Pg_finfo_record { api_version: 1 };
                &V1
            }
        }

        #[::pgrx::pg_guard]
        #[no_mangle]
        pub unsafe extern "C-unwind" fn $name(fcinfo: ::pgrx::pg_sys::FunctionCallInfo) -> ::pgrx::pg_sys::Datum {
            // SAFETY: Postgres calls this entry point with a valid fcinfo whose
            // arguments match the SQL declaration in sql/*.sql.
            let $args = unsafe { $crate::fmgr::Args::new(fcinfo) };
            let result: ::std::result::Result<::pgrx::pg_sys::Datum, ::quiver_core::error::VectorError> = $body;
            match result {
                Ok(datum) => datum,
                Err(e) => $crate::fmgr::raise(e),
            }
        }
    };
}
pub(crate) use pg_function;

/// Raises a core error as `ereport(ERROR)` with the matching SQLSTATE.
pub fn raise(e: VectorError) -> ! {
    let code = match e.kind() {
        ErrorKind::DataException => PgSqlErrorCode::ERRCODE_DATA_EXCEPTION,
        ErrorKind::InvalidTextRepresentation => PgSqlErrorCode::ERRCODE_INVALID_TEXT_REPRESENTATION,
        ErrorKind::NumericValueOutOfRange => PgSqlErrorCode::ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE,
        ErrorKind::ProgramLimitExceeded => PgSqlErrorCode::ERRCODE_PROGRAM_LIMIT_EXCEEDED,
        ErrorKind::InvalidParameterValue => PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
        ErrorKind::NullValueNotAllowed => PgSqlErrorCode::ERRCODE_NULL_VALUE_NOT_ALLOWED,
        ErrorKind::ProtocolViolation => PgSqlErrorCode::ERRCODE_INVALID_BINARY_REPRESENTATION,
        ErrorKind::DataCorrupted => PgSqlErrorCode::ERRCODE_DATA_CORRUPTED,
    };
    let mut report = pgrx::pg_sys::panic::ErrorReport::new(code, e.to_string(), "quiver");
    if let Some(detail) = e.detail() {
        report = report.set_detail(detail);
    }
    report.report(pgrx::PgLogLevel::ERROR);
    unreachable!("ereport(ERROR) does not return")
}

/// The arguments of one call.
pub struct Args {
    fcinfo: pg_sys::FunctionCallInfo,
}

impl Args {
    /// # Safety
    /// `fcinfo` must be the live call info of the current function call.
    pub unsafe fn new(fcinfo: pg_sys::FunctionCallInfo) -> Self {
        Args { fcinfo }
    }

    pub fn fcinfo(&self) -> pg_sys::FunctionCallInfo {
        self.fcinfo
    }

    /// The raw datum of argument `n`. All quiver functions are STRICT, so
    /// Postgres never passes NULL to them.
    pub fn datum(&self, n: usize) -> pg_sys::Datum {
        // SAFETY: `fcinfo` is live for the call (see `new`) and every caller
        // asks only for argument positions its SQL declaration has.
        unsafe { pgrx::fcinfo::pg_getarg_datum_raw(self.fcinfo, n) }
    }

    pub fn i32(&self, n: usize) -> i32 {
        self.datum(n).value() as i32
    }

    /// A `cstring` argument, as bytes without the trailing NUL.
    pub fn cstr(&self, n: usize) -> &[u8] {
        // SAFETY: cstring arguments are NUL-terminated strings that live in
        // the caller's memory context for the duration of the call.
        unsafe { std::ffi::CStr::from_ptr(self.datum(n).cast_mut_ptr::<std::ffi::c_char>()) }.to_bytes()
    }
}

pub fn float8(v: f64) -> pg_sys::Datum {
    v.into_datum().expect("float8 datum")
}

pub fn int4(v: i32) -> pg_sys::Datum {
    v.into_datum().expect("int4 datum")
}

pub fn boolean(v: bool) -> pg_sys::Datum {
    v.into_datum().expect("bool datum")
}

/// A palloc'd NUL-terminated copy of `s`, for cstring results.
pub fn cstring(s: &str) -> pg_sys::Datum {
    // SAFETY: palloc returns len+1 writable bytes (or raises ERROR); we write
    // exactly the string and its terminator.
    unsafe {
        let p = pg_sys::palloc(s.len() + 1) as *mut u8;
        std::ptr::copy_nonoverlapping(s.as_ptr(), p, s.len());
        *p.add(s.len()) = 0;
        pg_sys::Datum::from(p)
    }
}
