//! The two element types of quiver's vectors: `f32` (`vector`) and IEEE
//! half precision (`halfvec`). Generic code (parsing, arithmetic, checks) is
//! written once against [`Element`].

use crate::error::{Result, VectorError};
use crate::float_text::format_f32;
use half::f16;

pub trait Element: Copy + Default + PartialEq + Send + Sync + 'static {
    /// SQL type name used in messages: `vector` or `halfvec`.
    const TYPE_NAME: &'static str;
    /// Bytes per element in memory and on the wire.
    const SIZE: usize;

    fn to_f32(self) -> f32;
    /// Rounds to the element type without any check.
    fn from_f32_unchecked(v: f32) -> Self;

    /// Rounds to the element type; a finite value that overflows it is an
    /// error naming the value, as pgvector does.
    fn from_f32_checked(v: f32) -> Result<Self> {
        let e = Self::from_f32_unchecked(v);
        if e.to_f32().is_infinite() && v.is_finite() {
            let mut token = String::new();
            format_f32(v, &mut token);
            return Err(VectorError::OutOfRange { type_name: Self::TYPE_NAME, token });
        }
        Ok(e)
    }

    /// Rounds an arithmetic result; overflow to infinity is an error.
    fn from_f32_arith(v: f32) -> Result<Self> {
        let e = Self::from_f32_unchecked(v);
        if e.to_f32().is_infinite() {
            return Err(VectorError::Overflow);
        }
        Ok(e)
    }

    /// Writes the value big-endian into `dst` (exactly `SIZE` bytes).
    fn put_be(self, dst: &mut [u8]);
    fn from_bits_be(bytes: &[u8]) -> Self;
}

impl Element for f32 {
    const TYPE_NAME: &'static str = "vector";
    const SIZE: usize = 4;

    #[inline(always)]
    fn to_f32(self) -> f32 {
        self
    }
    #[inline(always)]
    fn from_f32_unchecked(v: f32) -> Self {
        v
    }
    #[inline(always)]
    fn put_be(self, dst: &mut [u8]) {
        dst.copy_from_slice(&self.to_bits().to_be_bytes());
    }
    fn from_bits_be(bytes: &[u8]) -> Self {
        f32::from_bits(u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
    }
}

impl Element for f16 {
    const TYPE_NAME: &'static str = "halfvec";
    const SIZE: usize = 2;

    #[inline(always)]
    fn to_f32(self) -> f32 {
        f16::to_f32(self)
    }
    #[inline(always)]
    fn from_f32_unchecked(v: f32) -> Self {
        f16::from_f32(v)
    }
    #[inline(always)]
    fn put_be(self, dst: &mut [u8]) {
        dst.copy_from_slice(&self.to_bits().to_be_bytes());
    }
    fn from_bits_be(bytes: &[u8]) -> Self {
        f16::from_bits(u16::from_be_bytes([bytes[0], bytes[1]]))
    }
}

/// Rejects NaN and infinity: neither may be stored in a vector.
pub fn check_element<E: Element>(v: E) -> Result<()> {
    let f = v.to_f32();
    if f.is_nan() {
        return Err(VectorError::NotANumber { type_name: E::TYPE_NAME });
    }
    if f.is_infinite() {
        return Err(VectorError::Infinite { type_name: E::TYPE_NAME });
    }
    Ok(())
}

/// Dimension between 1 and [`crate::MAX_DIM`].
pub fn check_dim<E: Element>(dim: usize) -> Result<()> {
    if dim < 1 {
        return Err(VectorError::NoDimensions { type_name: E::TYPE_NAME });
    }
    if dim > crate::MAX_DIM {
        return Err(VectorError::TooManyDimensions { type_name: E::TYPE_NAME });
    }
    Ok(())
}

/// A typmod of -1 accepts any dimension; otherwise it must match.
pub fn check_typmod_dim(typmod: i32, dim: usize) -> Result<()> {
    if typmod != -1 && typmod as i64 != dim as i64 {
        return Err(VectorError::ExpectedDimensions { expected: typmod, actual: dim });
    }
    Ok(())
}

/// Validates the integers of `vector(n)` / `halfvec(n)`.
pub fn typmod_in<E: Element>(mods: &[i32]) -> Result<i32> {
    if mods.len() != 1 {
        return Err(VectorError::InvalidTypmod);
    }
    let n = mods[0];
    if n < 1 {
        return Err(VectorError::TypmodTooSmall { type_name: E::TYPE_NAME });
    }
    if n as usize > crate::MAX_DIM {
        return Err(VectorError::TypmodTooLarge { type_name: E::TYPE_NAME });
    }
    Ok(n)
}

pub fn check_same_dims<E: Element>(a: &[E], b: &[E]) -> Result<()> {
    if a.len() != b.len() {
        return Err(VectorError::DifferentDimensions { type_name: E::TYPE_NAME, left: a.len(), right: b.len() });
    }
    Ok(())
}
