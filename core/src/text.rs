//! The text form `[1,2,3]`, parsed with pgvector's rules: whitespace around
//! numbers and after the closing bracket is allowed, anything else is an
//! error naming the input. Numbers follow `strtof` (decimal, exponent,
//! `inf`/`nan` spellings, which are then rejected as non-finite).

use crate::element::{check_dim, check_element, check_typmod_dim, Element};
use crate::error::{Result, VectorError};
use crate::float_text::format_f32;

/// Postgres' `vector_isspace`: space, \t, \n, \r, \v, \f.
pub(crate) fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

/// Length of the longest prefix of `s` that `strtof` would consume as a
/// decimal number (0 when there is none).
pub(crate) fn number_prefix_len(s: &[u8]) -> usize {
    let mut i = 0;
    if i < s.len() && (s[i] == b'+' || s[i] == b'-') {
        i += 1;
    }
    // inf, infinity, nan (any case)
    let rest = &s[i..];
    let starts_with_ci = |word: &[u8]| rest.len() >= word.len() && rest[..word.len()].eq_ignore_ascii_case(word);
    if starts_with_ci(b"infinity") {
        return i + 8;
    }
    if starts_with_ci(b"inf") || starts_with_ci(b"nan") {
        return i + 3;
    }
    let int_start = i;
    while i < s.len() && s[i].is_ascii_digit() {
        i += 1;
    }
    let mut mantissa_digits = i - int_start;
    if i < s.len() && s[i] == b'.' {
        let frac_start = i + 1;
        let mut j = frac_start;
        while j < s.len() && s[j].is_ascii_digit() {
            j += 1;
        }
        mantissa_digits += j - frac_start;
        if mantissa_digits > 0 {
            i = j;
        }
    }
    if mantissa_digits == 0 {
        return 0;
    }
    if i < s.len() && (s[i] == b'e' || s[i] == b'E') {
        let mut j = i + 1;
        if j < s.len() && (s[j] == b'+' || s[j] == b'-') {
            j += 1;
        }
        let exp_start = j;
        while j < s.len() && s[j].is_ascii_digit() {
            j += 1;
        }
        if j > exp_start {
            i = j;
        }
    }
    i
}

/// Parses one number token the way `strtof` would, reporting overflow.
fn parse_number<E: Element>(token: &str) -> Result<f32> {
    let lower = token.to_ascii_lowercase();
    let unsigned = lower.trim_start_matches(['+', '-']);
    let literal_special = unsigned.starts_with("inf") || unsigned.starts_with("nan");
    // Rust's parser accepts the same decimal grammar and rounds correctly;
    // it has no leading '+' problem and handles "inf"/"nan" spellings.
    let v: f32 = token.parse().map_err(|_| VectorError::InvalidSyntax {
        type_name: E::TYPE_NAME,
        input: token.to_string(),
        detail: None,
    })?;
    if v.is_infinite() && !literal_special {
        return Err(VectorError::OutOfRange { type_name: E::TYPE_NAME, token: token.to_string() });
    }
    Ok(v)
}

/// Parses the text form of a vector of `E`, checking the typmod.
pub fn parse_vector<E: Element>(input: &str, typmod: i32) -> Result<Vec<E>> {
    let syntax = |detail: Option<&'static str>| VectorError::InvalidSyntax {
        type_name: E::TYPE_NAME,
        input: input.to_string(),
        detail,
    };
    let s = input.as_bytes();
    let mut pt = 0;
    while pt < s.len() && is_space(s[pt]) {
        pt += 1;
    }
    if pt >= s.len() || s[pt] != b'[' {
        return Err(syntax(Some("Vector contents must start with \"[\".")));
    }
    pt += 1;
    while pt < s.len() && is_space(s[pt]) {
        pt += 1;
    }
    if pt < s.len() && s[pt] == b']' {
        return Err(VectorError::NoDimensions { type_name: E::TYPE_NAME });
    }
    let mut values: Vec<E> = Vec::new();
    loop {
        if values.len() == crate::MAX_DIM {
            return Err(VectorError::TooManyDimensions { type_name: E::TYPE_NAME });
        }
        while pt < s.len() && is_space(s[pt]) {
            pt += 1;
        }
        if pt >= s.len() {
            return Err(syntax(None));
        }
        let len = number_prefix_len(&s[pt..]);
        if len == 0 {
            return Err(syntax(None));
        }
        // The prefix is ASCII, so slicing the &str at these byte offsets is valid.
        let token = &input[pt..pt + len];
        let v = parse_number::<E>(token).map_err(|e| match e {
            VectorError::InvalidSyntax { .. } => syntax(None),
            other => other,
        })?;
        let e = E::from_f32_checked(v)?;
        check_element(e)?;
        values.push(e);
        pt += len;
        while pt < s.len() && is_space(s[pt]) {
            pt += 1;
        }
        match s.get(pt) {
            Some(b',') => pt += 1,
            Some(b']') => {
                pt += 1;
                break;
            }
            _ => return Err(syntax(None)),
        }
    }
    while pt < s.len() && is_space(s[pt]) {
        pt += 1;
    }
    if pt != s.len() {
        return Err(syntax(Some("Junk after closing right brace.")));
    }
    check_dim::<E>(values.len())?;
    check_typmod_dim(typmod, values.len())?;
    Ok(values)
}

/// The text form of a vector: `[1,2.5,-3e+20]`.
pub fn format_vector<E: Element>(values: &[E]) -> String {
    let mut out = String::with_capacity(values.len() * 10 + 2);
    out.push('[');
    for (i, v) in values.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        format_f32(v.to_f32(), &mut out);
    }
    out.push(']');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use half::f16;
    use proptest::prelude::*;

    fn p(s: &str) -> Result<Vec<f32>> {
        parse_vector::<f32>(s, -1)
    }

    #[test]
    fn accepts_pgvector_forms() {
        assert_eq!(p("[1,2,3]").unwrap(), vec![1.0, 2.0, 3.0]);
        assert_eq!(p("  [ 1 , -2.5e1 ,+.5 ]  ").unwrap(), vec![1.0, -25.0, 0.5]);
        assert_eq!(p("[1.]").unwrap(), vec![1.0]);
        assert_eq!(p("[1e-50]").unwrap(), vec![0.0]);
    }

    #[test]
    fn rejects_malformed_text_with_pgvector_messages() {
        let msg = |s: &str| p(s).unwrap_err().to_string();
        assert_eq!(msg("[1,,2]"), "invalid input syntax for type vector: \"[1,,2]\"");
        assert_eq!(msg("[1 2]"), "invalid input syntax for type vector: \"[1 2]\"");
        assert_eq!(msg("]"), "invalid input syntax for type vector: \"]\"");
        assert_eq!(msg(""), "invalid input syntax for type vector: \"\"");
        assert_eq!(msg("[1,2"), "invalid input syntax for type vector: \"[1,2\"");
        assert_eq!(msg("[1,2]x"), "invalid input syntax for type vector: \"[1,2]x\"");
        assert_eq!(msg("[1e]"), "invalid input syntax for type vector: \"[1e]\"");
        assert_eq!(msg("[.]"), "invalid input syntax for type vector: \"[.]\"");
        assert_eq!(msg("[1,]"), "invalid input syntax for type vector: \"[1,]\"");
        assert_eq!(msg("[]"), "vector must have at least 1 dimension");
        assert_eq!(msg("[1e39]"), "\"1e39\" is out of range for type vector");
        assert_eq!(msg("[NaN]"), "NaN not allowed in vector");
        assert_eq!(msg("[-inf]"), "infinite value not allowed in vector");
        assert_eq!(msg("[Infinity]"), "infinite value not allowed in vector");
        assert_eq!(p("[1,2]x").unwrap_err().detail().as_deref(), Some("Junk after closing right brace."));
    }

    #[test]
    fn checks_dimensions() {
        let many = format!("[{}]", vec!["1"; 16_001].join(","));
        assert_eq!(p(&many).unwrap_err().to_string(), "vector cannot have more than 16000 dimensions");
        let max = format!("[{}]", vec!["1"; 16_000].join(","));
        assert_eq!(p(&max).unwrap().len(), 16_000);
        assert_eq!(parse_vector::<f32>("[1,2]", 3).unwrap_err().to_string(), "expected 3 dimensions, not 2");
    }

    #[test]
    fn halfvec_range_and_rounding() {
        let h = parse_vector::<f16>("[1,0.1,65504]", -1).unwrap();
        assert_eq!(format_vector(&h), "[1,0.099975586,65504]");
        assert_eq!(
            parse_vector::<f16>("[70000]", -1).unwrap_err().to_string(),
            "\"70000\" is out of range for type halfvec"
        );
    }

    #[test]
    fn non_ascii_input_is_a_syntax_error_not_a_panic() {
        assert!(matches!(p("[1,é]"), Err(VectorError::InvalidSyntax { .. })));
        assert!(matches!(p("[1]é"), Err(VectorError::InvalidSyntax { .. })));
        assert!(matches!(p("é"), Err(VectorError::InvalidSyntax { .. })));
    }

    proptest! {
        #[test]
        fn format_then_parse_is_identity(v in prop::collection::vec(-1e30f32..1e30f32, 1..50)) {
            let text = format_vector(&v);
            let back = p(&text).unwrap();
            prop_assert_eq!(back, v);
        }

        #[test]
        fn parser_never_panics(s in "\\PC{0,40}") {
            let _ = p(&s);
            let _ = parse_vector::<f16>(&s, 3);
        }

        #[test]
        fn parser_never_panics_on_bracketed_junk(s in "[\\[\\]0-9eE+\\-., naifINF]{0,30}") {
            let _ = p(&s);
        }
    }
}
