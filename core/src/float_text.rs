//! Shortest round-trip decimal text for `f32`, in the exact layout of
//! Postgres' `float4out` (and so of pgvector's `vector_out`): fixed notation
//! when the decimal exponent is in [-4, 5], otherwise `d.ddde+XX`.

use std::fmt::Write;

/// Appends the text of `v` to `out`.
pub fn format_f32(v: f32, out: &mut String) {
    if v.is_nan() {
        out.push_str("NaN");
        return;
    }
    if v.is_infinite() {
        out.push_str(if v > 0.0 { "Infinity" } else { "-Infinity" });
        return;
    }
    if v == 0.0 {
        out.push_str(if v.is_sign_negative() { "-0" } else { "0" });
        return;
    }
    // Rust's `{:e}` yields the shortest digits that round-trip, e.g. `-1.2345e-7`.
    let mut sci = String::with_capacity(24);
    write!(sci, "{v:e}").expect("writing to a String cannot fail");
    let (mantissa, exponent) = sci.split_once('e').expect("{:e} always has an exponent");
    let exponent: i32 = exponent.parse().expect("{:e} exponent is an integer");
    let (negative, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => (true, m),
        None => (false, mantissa),
    };
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    if negative {
        out.push('-');
    }
    if (-4..=5).contains(&exponent) {
        if exponent >= 0 {
            let int_len = exponent as usize + 1;
            if digits.len() <= int_len {
                out.push_str(&digits);
                out.extend(std::iter::repeat_n('0', int_len - digits.len()));
            } else {
                out.push_str(&digits[..int_len]);
                out.push('.');
                out.push_str(&digits[int_len..]);
            }
        } else {
            out.push_str("0.");
            out.extend(std::iter::repeat_n('0', (-exponent - 1) as usize));
            out.push_str(&digits);
        }
    } else {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let sign = if exponent < 0 { '-' } else { '+' };
        write!(out, "e{sign}{:02}", exponent.abs()).expect("writing to a String cannot fail");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(v: f32) -> String {
        let mut s = String::new();
        format_f32(v, &mut s);
        s
    }

    /// Expected strings were read off Postgres 15's `float4out`.
    #[test]
    fn matches_postgres_float4out() {
        let cases: &[(f32, &str)] = &[
            (1.0, "1"),
            (0.1, "0.1"),
            (123456.0, "123456"),
            (1234567.0, "1.234567e+06"),
            (12345678.0, "1.2345678e+07"),
            (1e15, "1e+15"),
            (123456789012345.0, "1.2345679e+14"),
            (1.5e-4, "0.00015"),
            (1e-4, "0.0001"),
            (1e-5, "1e-05"),
            (0.001234, "0.001234"),
            (3.4e38, "3.4e+38"),
            (1.17549435e-38, "1.1754944e-38"),
            (1e-45, "1e-45"),
            (0.3333333333, "0.33333334"),
            (2.5e10, "2.5e+10"),
            (100.0, "100"),
            (1e6, "1e+06"),
            (-1.5, "-1.5"),
            (0.0, "0"),
            (-0.0, "-0"),
        ];
        for (v, want) in cases {
            assert_eq!(f(*v), *want, "formatting {v}");
        }
    }

    #[test]
    fn round_trips() {
        let mut x: u32 = 12345;
        for _ in 0..100_000 {
            x = x.wrapping_mul(1664525).wrapping_add(1013904223);
            let v = f32::from_bits(x);
            if !v.is_finite() {
                continue;
            }
            let s = f(v);
            let back: f32 = s.parse().unwrap();
            assert_eq!(back.to_bits(), v.to_bits(), "{v:e} printed as {s}");
        }
    }
}
