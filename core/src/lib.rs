//! The pure-Rust core of quiver.
//!
//! Nothing in this crate knows about Postgres: no `pgrx`, no `pg_sys`, and no
//! `unsafe` outside the SIMD kernels in [`simd`]. The Postgres glue in the
//! `quiver` crate turns datums into slices, calls in here, and turns
//! [`error::VectorError`] into `ereport(ERROR)`.
//!
//! `unsafe` is denied crate-wide and allowed only where named: the SIMD
//! kernels, their dispatch table and the build's prefetch hints.
#![deny(unsafe_code)]

pub mod bits;
pub mod element;
pub mod error;
pub mod float_text;
pub mod hnsw;
pub mod ivf;
pub mod kernels;
pub mod metrics;
pub mod ops;
pub mod quantize;
pub mod rng;
pub mod scalar;
#[allow(unsafe_code)] // intrinsics behind run-time CPU feature checks
pub mod simd;
pub mod snapshot;
pub mod space;
pub mod sparse;
pub mod text;
pub mod wire;

/// Largest number of dimensions of a `vector` or `halfvec`, as in pgvector.
pub const MAX_DIM: usize = 16_000;
