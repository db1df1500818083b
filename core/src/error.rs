//! Errors of the vector core, with pgvector's wording so that clients and
//! tests that match on messages behave the same on quiver.

use std::fmt;

/// The SQLSTATE class an error belongs to; the glue maps it to an errcode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// 22000 data_exception
    DataException,
    /// 22P02 invalid_text_representation
    InvalidTextRepresentation,
    /// 22003 numeric_value_out_of_range
    NumericValueOutOfRange,
    /// 54000 program_limit_exceeded
    ProgramLimitExceeded,
    /// 22023 invalid_parameter_value
    InvalidParameterValue,
    /// 22004 null_value_not_allowed
    NullValueNotAllowed,
    /// 08P01 protocol_violation (malformed binary input)
    ProtocolViolation,
    /// XX001 data_corrupted
    DataCorrupted,
}

#[derive(Debug, Clone, PartialEq)]
pub enum VectorError {
    /// Text input that is not `[x, y, ...]`.
    InvalidSyntax {
        type_name: &'static str,
        input: String,
        detail: Option<&'static str>,
    },
    /// A number too large for the element type (`1e39` for `vector`, `70000` for `halfvec`).
    OutOfRange {
        type_name: &'static str,
        token: String,
    },
    NoDimensions {
        type_name: &'static str,
    },
    TooManyDimensions {
        type_name: &'static str,
    },
    NotANumber {
        type_name: &'static str,
    },
    Infinite {
        type_name: &'static str,
    },
    /// Two operands of different dimensions.
    DifferentDimensions {
        type_name: &'static str,
        left: usize,
        right: usize,
    },
    /// A value whose dimension does not match the column's typmod.
    ExpectedDimensions {
        expected: i32,
        actual: usize,
    },
    /// The reserved field of the binary format is not zero.
    UnusedNotZero(i32),
    /// Binary input shorter than its header says.
    InsufficientData,
    Overflow,
    Underflow,
    InvalidTypmod,
    TypmodTooSmall {
        type_name: &'static str,
    },
    TypmodTooLarge {
        type_name: &'static str,
    },
    ArrayNotOneDimensional,
    ArrayHasNulls,
    UnsupportedArrayType,
    DifferentBitLengths {
        left: usize,
        right: usize,
    },
    /// A stored value whose size disagrees with its header.
    Corrupted {
        type_name: &'static str,
        detail: String,
    },
    /// A message of its own (sparsevec's limits and index rules), with pgvector's wording.
    Message {
        kind: ErrorKind,
        text: String,
        detail: Option<&'static str>,
    },
}

impl VectorError {
    pub fn kind(&self) -> ErrorKind {
        use VectorError::*;
        match self {
            InvalidSyntax { .. } => ErrorKind::InvalidTextRepresentation,
            OutOfRange { .. } | Overflow | Underflow => ErrorKind::NumericValueOutOfRange,
            TooManyDimensions { .. } => ErrorKind::ProgramLimitExceeded,
            InvalidTypmod | TypmodTooSmall { .. } | TypmodTooLarge { .. } => ErrorKind::InvalidParameterValue,
            ArrayHasNulls => ErrorKind::NullValueNotAllowed,
            InsufficientData => ErrorKind::ProtocolViolation,
            Corrupted { .. } => ErrorKind::DataCorrupted,
            Message { kind, .. } => *kind,
            NoDimensions { .. }
            | NotANumber { .. }
            | Infinite { .. }
            | DifferentDimensions { .. }
            | ExpectedDimensions { .. }
            | UnusedNotZero(_)
            | ArrayNotOneDimensional
            | UnsupportedArrayType
            | DifferentBitLengths { .. } => ErrorKind::DataException,
        }
    }

    /// A second line for the user (Postgres' errdetail), when there is one.
    pub fn detail(&self) -> Option<String> {
        match self {
            VectorError::InvalidSyntax { detail, .. } => detail.map(str::to_string),
            VectorError::Corrupted { detail, .. } => Some(detail.clone()),
            VectorError::Message { detail, .. } => detail.map(str::to_string),
            _ => None,
        }
    }
}

impl fmt::Display for VectorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use VectorError::*;
        match self {
            InvalidSyntax { type_name, input, .. } => {
                write!(f, "invalid input syntax for type {type_name}: \"{input}\"")
            }
            OutOfRange { type_name, token } => {
                write!(f, "\"{token}\" is out of range for type {type_name}")
            }
            NoDimensions { type_name } => write!(f, "{type_name} must have at least 1 dimension"),
            TooManyDimensions { type_name } => {
                write!(f, "{type_name} cannot have more than {} dimensions", crate::MAX_DIM)
            }
            NotANumber { type_name } => write!(f, "NaN not allowed in {type_name}"),
            Infinite { type_name } => write!(f, "infinite value not allowed in {type_name}"),
            DifferentDimensions { type_name, left, right } => {
                write!(f, "different {type_name} dimensions {left} and {right}")
            }
            ExpectedDimensions { expected, actual } => {
                write!(f, "expected {expected} dimensions, not {actual}")
            }
            UnusedNotZero(v) => write!(f, "expected unused to be 0, not {v}"),
            InsufficientData => write!(f, "insufficient data left in message"),
            Overflow => write!(f, "value out of range: overflow"),
            Underflow => write!(f, "value out of range: underflow"),
            InvalidTypmod => write!(f, "invalid type modifier"),
            TypmodTooSmall { type_name } => {
                write!(f, "dimensions for type {type_name} must be at least 1")
            }
            TypmodTooLarge { type_name } => {
                write!(f, "dimensions for type {type_name} cannot exceed {}", crate::MAX_DIM)
            }
            ArrayNotOneDimensional => write!(f, "array must be 1-D"),
            ArrayHasNulls => write!(f, "array must not contain nulls"),
            UnsupportedArrayType => write!(f, "unsupported array type"),
            DifferentBitLengths { left, right } => {
                write!(f, "different bit lengths {left} and {right}")
            }
            Corrupted { type_name, .. } => write!(f, "corrupted {type_name} value"),
            Message { text, .. } => f.write_str(text),
        }
    }
}

impl std::error::Error for VectorError {}

pub type Result<T> = std::result::Result<T, VectorError>;
