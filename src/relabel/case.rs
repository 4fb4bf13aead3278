//! Go's `strings.ToLower` / `strings.ToUpper`: simple, one-rune-to-one-rune Unicode case
//! mapping, used by the `lowercase` / `uppercase` actions and for action names. Rust's
//! `str::to_lowercase` / `to_uppercase` apply the full mappings instead (`ß` → `SS`, final
//! sigma), which would give different label values.

/// `strings.ToLower`.
pub(crate) fn go_to_lower(s: &str) -> String {
    if s.is_ascii() {
        return s.to_ascii_lowercase();
    }
    s.chars().map(lower_char).collect()
}

/// `strings.ToUpper`.
pub(crate) fn go_to_upper(s: &str) -> String {
    if s.is_ascii() {
        return s.to_ascii_uppercase();
    }
    s.chars().map(upper_char).collect()
}

/// A char's full lowercase mapping is its simple one whenever it is a single char; U+0130 (`İ`)
/// is the only char whose full lowercase has two, and its simple lowercase is `i`.
fn lower_char(c: char) -> char {
    let mut full = c.to_lowercase();
    match (full.next(), full.next()) {
        (Some(l), None) => l,
        _ if c == '\u{130}' => 'i',
        _ => c,
    }
}

/// Where the full uppercase mapping has several chars (`ß`, ligatures, Greek with iota
/// subscript…), the simple mapping is the char itself except for the Greek letters with
/// ypogegrammeni, which map to their prosgegrammeni capitals.
fn upper_char(c: char) -> char {
    let mut full = c.to_uppercase();
    match (full.next(), full.next()) {
        (Some(u), None) => u,
        _ => match u32::from(c) {
            0x1F80..=0x1F87 | 0x1F90..=0x1F97 | 0x1FA0..=0x1FA7 => {
                char::from_u32(u32::from(c) + 8).unwrap_or(c)
            }
            0x1FB3 => '\u{1FBC}',
            0x1FC3 => '\u{1FCC}',
            0x1FF3 => '\u{1FFC}',
            _ => c,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ascii() {
        assert_eq!(go_to_lower("FooBAR_1"), "foobar_1");
        assert_eq!(go_to_upper("FooBar_1"), "FOOBAR_1");
    }

    /// Expected values are what Go's `strings.ToLower` / `ToUpper` return.
    #[test]
    fn simple_mapping_like_go() {
        assert_eq!(go_to_upper("straße"), "STRAßE");
        assert_eq!(go_to_upper("ﬁ"), "ﬁ");
        assert_eq!(go_to_upper("ᾳ"), "ᾼ");
        assert_eq!(go_to_upper("ᾀ"), "ᾈ");
        assert_eq!(go_to_upper("ᾈ"), "ᾈ");
        assert_eq!(go_to_upper("ǅ"), "Ǆ");
        assert_eq!(go_to_lower("İSTANBUL"), "istanbul");
        assert_eq!(go_to_lower("ΟΔΟΣ"), "οδοσ");
        assert_eq!(go_to_lower("\u{212A}"), "k");
        assert_eq!(go_to_upper("ı"), "I");
        assert_eq!(go_to_lower("Ünïcødé"), "ünïcødé");
    }
}
