//! Label sets: sorted, unique label pairs identifying a series, and a builder for changing them.
//!
//! A [`Labels`] value is always sorted by name and holds no empty values; every constructor keeps
//! that invariant, so equality and hashing are plain comparisons. The hash
//! ([`Labels::hash`]) is defined over the name/value bytes so that code holding borrowed pairs
//! (the scrape hot path) can compute the same hash with [`hash_label_pairs`] before allocating.

use std::fmt;

use xxhash_rust::xxh3::Xxh3;

use super::METRIC_NAME;

/// One owned label pair (for building label sets; a [`Labels`] hands out [`LabelRef`]s).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Label {
    pub name: String,
    pub value: String,
}

impl Label {
    pub fn new(name: impl Into<String>, value: impl Into<String>) -> Label {
        Label { name: name.into(), value: value.into() }
    }
}

/// A borrowed label pair of a [`Labels`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LabelRef<'a> {
    pub name: &'a str,
    pub value: &'a str,
}

impl LabelRef<'_> {
    pub fn to_owned_label(&self) -> Label {
        Label::new(self.name, self.value)
    }
}

/// A sorted set of label pairs with unique names and non-empty values.
///
/// Stored packed — every name and value back to back in one string, plus their end offsets —
/// so a label set is two allocations whatever its size, and reading it touches contiguous memory
/// (series lookups and `/federate` read millions of label sets).
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct Labels {
    text: Box<str>,
    /// End offset in `text` of each name and each value, alternating.
    ends: Box<[u32]>,
}

impl fmt::Debug for Labels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter().map(|l| (l.name, l.value))).finish()
    }
}

impl PartialOrd for Labels {
    fn partial_cmp(&self, other: &Labels) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// Lexicographic by (name, value) pairs, as Prometheus orders label sets.
impl Ord for Labels {
    fn cmp(&self, other: &Labels) -> std::cmp::Ordering {
        self.iter().map(|l| (l.name, l.value)).cmp(other.iter().map(|l| (l.name, l.value)))
    }
}

impl Labels {
    /// The empty label set.
    pub fn empty() -> Labels {
        Labels::default()
    }

    /// Builds a label set from arbitrary pairs: sorts them, drops empty values, and keeps the
    /// last value when a name repeats.
    pub fn new(mut pairs: Vec<Label>) -> Labels {
        pairs.retain(|l| !l.value.is_empty());
        // Stable sort keeps input order among equal names, so "last wins" below is well defined.
        pairs.sort_by(|a, b| a.name.cmp(&b.name));
        let mut out: Vec<Label> = Vec::with_capacity(pairs.len());
        for l in pairs {
            match out.last_mut() {
                Some(last) if last.name == l.name => *last = l,
                _ => out.push(l),
            }
        }
        Labels::pack(out.iter().map(|l| (l.name.as_str(), l.value.as_str())))
    }

    /// Convenience constructor from string pairs (tests, fixtures, synthetic series).
    pub fn from_pairs<N: AsRef<str>, V: AsRef<str>>(pairs: &[(N, V)]) -> Labels {
        Labels::new(pairs.iter().map(|(n, v)| Label::new(n.as_ref(), v.as_ref())).collect())
    }

    /// Wraps pairs the caller guarantees are already sorted, unique and non-empty.
    pub(crate) fn from_sorted_unchecked(pairs: Vec<Label>) -> Labels {
        debug_assert!(pairs.windows(2).all(|w| w[0].name < w[1].name));
        debug_assert!(pairs.iter().all(|l| !l.value.is_empty()));
        Labels::pack(pairs.iter().map(|l| (l.name.as_str(), l.value.as_str())))
    }

    /// Packs pairs that are sorted, unique and non-empty.
    fn pack<'a>(pairs: impl Iterator<Item = (&'a str, &'a str)> + Clone) -> Labels {
        let (len, count) = pairs.clone().fold((0, 0), |(len, n), (a, b)| (len + a.len() + b.len(), n + 1));
        let mut text = String::with_capacity(len);
        let mut ends = Vec::with_capacity(2 * count);
        for (n, v) in pairs {
            text.push_str(n);
            ends.push(text.len() as u32);
            text.push_str(v);
            ends.push(text.len() as u32);
        }
        Labels { text: text.into_boxed_str(), ends: ends.into_boxed_slice() }
    }

    /// The `i`-th pair.
    fn at(&self, i: usize) -> LabelRef<'_> {
        let start = if i == 0 { 0 } else { self.ends[2 * i - 1] as usize };
        let mid = self.ends[2 * i] as usize;
        let end = self.ends[2 * i + 1] as usize;
        LabelRef { name: &self.text[start..mid], value: &self.text[mid..end] }
    }

    /// The value of `name`, if the set has it.
    pub fn get(&self, name: &str) -> Option<&str> {
        let (mut lo, mut hi) = (0, self.len());
        while lo < hi {
            let mid = (lo + hi) / 2;
            let l = self.at(mid);
            match l.name.cmp(name) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return Some(l.value),
            }
        }
        None
    }

    /// The value of `name`, or `""` when absent (PromQL matcher semantics).
    pub fn get_or_empty(&self, name: &str) -> &str {
        self.get(name).unwrap_or("")
    }

    pub fn has(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// The metric name (`__name__`), if any.
    pub fn metric_name(&self) -> Option<&str> {
        self.get(METRIC_NAME)
    }

    pub fn iter(&self) -> LabelsIter<'_> {
        LabelsIter { labels: self, next: 0, end: self.len() }
    }

    pub fn len(&self) -> usize {
        self.ends.len() / 2
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// The pairs as owned labels.
    pub fn to_vec(&self) -> Vec<Label> {
        self.iter().map(|l| l.to_owned_label()).collect()
    }

    /// The pairs as owned labels.
    pub fn into_vec(self) -> Vec<Label> {
        self.to_vec()
    }

    /// A 64-bit hash of the label pairs (xxh3), equal to [`hash_label_pairs`] over the same pairs.
    pub fn hash(&self) -> u64 {
        hash_label_pairs(self.iter().map(|l| (l.name, l.value)))
    }

    /// A builder starting from this set.
    pub fn builder(&self) -> LabelsBuilder {
        LabelsBuilder { pairs: self.to_vec() }
    }

    /// A copy without the named labels.
    pub fn without(&self, names: &[&str]) -> Labels {
        Labels::pack(self.iter().filter(|l| !names.contains(&l.name)).map(|l| (l.name, l.value)))
    }

    /// Bytes the set occupies on the heap and inline, for memory accounting.
    pub fn byte_size(&self) -> usize {
        std::mem::size_of::<Labels>() + self.text.len() + 4 * self.ends.len()
    }
}

/// Iterates the pairs of a [`Labels`] in name order.
#[derive(Clone)]
pub struct LabelsIter<'a> {
    labels: &'a Labels,
    next: usize,
    end: usize,
}

impl<'a> Iterator for LabelsIter<'a> {
    type Item = LabelRef<'a>;

    fn next(&mut self) -> Option<LabelRef<'a>> {
        if self.next >= self.end {
            return None;
        }
        self.next += 1;
        Some(self.labels.at(self.next - 1))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.end - self.next, Some(self.end - self.next))
    }
}

impl DoubleEndedIterator for LabelsIter<'_> {
    fn next_back(&mut self) -> Option<Self::Item> {
        if self.next >= self.end {
            return None;
        }
        self.end -= 1;
        Some(self.labels.at(self.end))
    }
}

impl ExactSizeIterator for LabelsIter<'_> {}

impl<'a> IntoIterator for &'a Labels {
    type Item = LabelRef<'a>;
    type IntoIter = LabelsIter<'a>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

/// Prometheus's display form: `{__name__="up", job="x"}`.
impl fmt::Display for Labels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("{")?;
        for (i, l) in self.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{}={:?}", l.name, l.value)?;
        }
        f.write_str("}")
    }
}

/// Hashes label pairs given in sorted order; the result equals [`Labels::hash`] for the same pairs.
pub fn hash_label_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> u64 {
    let mut h = Xxh3::new();
    for (n, v) in pairs {
        h.update(n.as_bytes());
        h.update(&[0xff]);
        h.update(v.as_bytes());
        h.update(&[0xff]);
    }
    h.digest()
}

/// Legacy (pre-UTF-8) label name rule: `[a-zA-Z_][a-zA-Z0-9_]*`.
pub fn is_valid_label_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && (b[0].is_ascii_alphabetic() || b[0] == b'_')
        && b[1..].iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_')
}

/// Legacy metric name rule: `[a-zA-Z_:][a-zA-Z0-9_:]*`.
pub fn is_valid_metric_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && (b[0].is_ascii_alphabetic() || b[0] == b'_' || b[0] == b':')
        && b[1..].iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_' || *c == b':')
}

/// Accumulates changes to a label set; used by relabelling and by label merging on ingest.
///
/// Setting a label to `""` deletes it, as in Prometheus.
#[derive(Debug, Clone, Default)]
pub struct LabelsBuilder {
    /// Kept sorted by name; may hold empty values until [`LabelsBuilder::labels`] drops them.
    pairs: Vec<Label>,
}

impl LabelsBuilder {
    pub fn new(base: Labels) -> LabelsBuilder {
        LabelsBuilder { pairs: base.to_vec() }
    }

    /// Starts from unsorted pairs (e.g. discovered target labels).
    pub fn from_pairs(pairs: Vec<Label>) -> LabelsBuilder {
        LabelsBuilder { pairs: Labels::new(pairs).to_vec() }
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.find(name).ok().map(|i| self.pairs[i].value.as_str())
    }

    pub fn get_or_empty(&self, name: &str) -> &str {
        self.get(name).unwrap_or("")
    }

    /// Sets `name` to `value`; an empty value deletes the label.
    pub fn set(&mut self, name: &str, value: &str) {
        match self.find(name) {
            Ok(i) if value.is_empty() => {
                self.pairs.remove(i);
            }
            Ok(i) => {
                if self.pairs[i].value != value {
                    self.pairs[i].value = value.to_string();
                }
            }
            Err(_) if value.is_empty() => {}
            Err(i) => self.pairs.insert(i, Label::new(name, value)),
        }
    }

    pub fn del(&mut self, name: &str) {
        if let Ok(i) = self.find(name) {
            self.pairs.remove(i);
        }
    }

    /// Keeps only labels for which `keep` returns true.
    pub fn retain(&mut self, mut keep: impl FnMut(&Label) -> bool) {
        self.pairs.retain(|l| keep(l));
    }

    pub fn iter(&self) -> impl Iterator<Item = &Label> {
        self.pairs.iter()
    }

    /// Finishes the builder into a valid label set.
    pub fn labels(mut self) -> Labels {
        self.pairs.retain(|l| !l.value.is_empty());
        Labels::from_sorted_unchecked(self.pairs)
    }

    /// The current state as a label set, leaving the builder usable.
    pub fn to_labels(&self) -> Labels {
        Labels::pack(
            self.pairs.iter().filter(|l| !l.value.is_empty()).map(|l| (l.name.as_str(), l.value.as_str())),
        )
    }

    fn find(&self, name: &str) -> Result<usize, usize> {
        self.pairs.binary_search_by(|l| l.name.as_str().cmp(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_sorts_dedups_and_drops_empty() {
        let l = Labels::new(vec![
            Label::new("b", "2"),
            Label::new("a", "1"),
            Label::new("c", ""),
            Label::new("b", "3"),
        ]);
        assert_eq!(l, Labels::from_pairs(&[("a", "1"), ("b", "3")]));
        assert_eq!(l.get("b"), Some("3"));
        assert_eq!(l.get("c"), None);
        assert_eq!(l.get_or_empty("c"), "");
    }

    #[test]
    fn hash_matches_borrowed_pairs_and_separates_boundaries() {
        let l = Labels::from_pairs(&[("__name__", "up"), ("job", "x")]);
        assert_eq!(l.hash(), hash_label_pairs([("__name__", "up"), ("job", "x")]));
        let a = Labels::from_pairs(&[("a", "bc")]);
        let b = Labels::from_pairs(&[("ab", "c")]);
        assert_ne!(a.hash(), b.hash());
    }

    #[test]
    fn builder_set_and_delete() {
        let mut b = Labels::from_pairs(&[("a", "1"), ("b", "2")]).builder();
        b.set("c", "3");
        b.set("a", "");
        b.del("b");
        b.set("d", "");
        assert_eq!(b.labels(), Labels::from_pairs(&[("c", "3")]));
    }

    #[test]
    fn names_validity() {
        assert!(is_valid_label_name("_a1"));
        assert!(!is_valid_label_name("1a"));
        assert!(!is_valid_label_name("a:b"));
        assert!(is_valid_metric_name("job:rate5m:sum"));
        assert!(!is_valid_metric_name(""));
    }

    #[test]
    fn display_like_prometheus() {
        let l = Labels::from_pairs(&[("__name__", "up"), ("job", "a\"b")]);
        assert_eq!(l.to_string(), r#"{__name__="up", job="a\"b"}"#);
    }
}
