//! Go's float semantics where Prometheus's results depend on them: `math.Max`/`Min` (NaN wins),
//! `strconv` formatting and parsing, `sort.Sort`'s order of ties, and the natural ordering of
//! `sort_by_label`.

/// Go's `strconv.FormatFloat(v, 'g', -1, 64)` for finite values.
pub(crate) fn go_format_g(v: f64) -> String {
    if v == 0.0 {
        return if v.is_sign_negative() { "-0".into() } else { "0".into() };
    }
    // Shortest round-trip digits and decimal exponent, via Rust's `{:e}`.
    let e = format!("{v:e}");
    let (mantissa, exp) = e.split_once('e').unwrap_or((&e, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if !(-4..21).contains(&exp) {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exp.abs())
    } else {
        format!("{v}")
    }
}

/// Go's `%g` for the values warnings show.
pub(crate) fn go_float_g(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf".into() } else { "-Inf".into() }
    } else {
        go_format_g(v)
    }
}

/// Go's `math.Max`: NaN wins.
pub(crate) fn go_max(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() { f64::NAN } else { a.max(b) }
}

/// Go's `math.Min`: NaN wins.
pub(crate) fn go_min(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() { f64::NAN } else { a.min(b) }
}

/// Parses an `le` value as Go's `ParseFloat` does (`+Inf`, `inf`, `NaN`, `1e3`, hex).
pub(crate) fn parse_go_float(s: &str) -> Result<f64, ()> {
    let t = s.trim_start_matches('+');
    match t.to_ascii_lowercase().as_str() {
        "inf" | "infinity" => return Ok(if s.starts_with('-') { f64::NEG_INFINITY } else { f64::INFINITY }),
        "-inf" | "-infinity" => return Ok(f64::NEG_INFINITY),
        "nan" => return Ok(f64::NAN),
        _ => {}
    }
    if s.is_empty() || s.contains(char::is_whitespace) {
        return Err(());
    }
    s.parse::<f64>().map_err(|_| ())
}

/// Go's `sort.Sort` on small inputs is an insertion sort driven by `less`; we reproduce it so
/// that ties and NaNs end up in the same order as Prometheus's.
pub(crate) fn go_sort<T>(v: &mut [T], less: impl Fn(&T, &T) -> bool) {
    if v.len() <= 12 {
        for i in 1..v.len() {
            let mut j = i;
            while j > 0 && less(&v[j], &v[j - 1]) {
                v.swap(j, j - 1);
                j -= 1;
            }
        }
    } else {
        v.sort_by(|a, b| {
            if less(a, b) {
                std::cmp::Ordering::Less
            } else if less(b, a) {
                std::cmp::Ordering::Greater
            } else {
                std::cmp::Ordering::Equal
            }
        });
    }
}

/// Natural ordering of label values: digit runs compare as numbers.
pub(crate) fn natural_less(a: &str, b: &str) -> bool {
    fn chunks(s: &str) -> Vec<&str> {
        let mut out = Vec::new();
        let mut start = 0;
        let b = s.as_bytes();
        for i in 1..=b.len() {
            if i == b.len() || b[i].is_ascii_digit() != b[start].is_ascii_digit() {
                out.push(&s[start..i]);
                start = i;
            }
        }
        out
    }
    let (ca, cb) = (chunks(a), chunks(b));
    for (x, y) in ca.iter().zip(cb.iter()) {
        if x == y {
            continue;
        }
        if let (Ok(nx), Ok(ny)) = (x.parse::<u128>(), y.parse::<u128>()) {
            if nx != ny {
                return nx < ny;
            }
            return x < y;
        }
        return x < y;
    }
    ca.len() < cb.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn natural_order() {
        assert!(natural_less("a2", "a10"));
        assert!(!natural_less("a10", "a2"));
        assert!(natural_less("abc", "abd"));
        assert!(natural_less("1", "1a"));
    }

    #[test]
    fn go_float_parsing() {
        assert_eq!(parse_go_float("+Inf"), Ok(f64::INFINITY));
        assert_eq!(parse_go_float("0.5"), Ok(0.5));
        assert!(parse_go_float("").is_err());
        assert!(parse_go_float("Hello World").is_err());
    }
}
