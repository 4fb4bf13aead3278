//! The head's inverted index: label name → value → sorted series refs ("postings"), and the
//! set algebra that turns label matchers into a sorted list of refs.
//!
//! Postings are plain sorted `Vec<SeriesRef>`s rather than roaring bitmaps: refs are handed out
//! in increasing order, so adding a series is a push; most lists in a head are tiny
//! (`instance`, `pod`, ... often have one series per value), where a vector costs 8 bytes per
//! entry and a roaring treemap for 64-bit refs costs a B-tree node; and the head's hot
//! operations (one equality list, a regex union, an intersection) are linear merges either way.
//! Roaring remains a good fit for the on-disk block index, which is written once.

use std::borrow::Cow;
use std::collections::{BinaryHeap, HashMap, HashSet};

use crate::model::{Labels, METRIC_NAME, MatchOp, Matcher};
use crate::storage::{Cardinality, SeriesRef};

#[derive(Default)]
pub(crate) struct MemPostings {
    by_name: HashMap<String, HashMap<String, Vec<SeriesRef>>>,
    /// Every series, sorted: the start for selections made only of empty-matching matchers.
    all: Vec<SeriesRef>,
}

/// The `limit` largest counts offered (ties: the smaller name), without building the names of
/// the others.
struct Top {
    limit: usize,
    /// The kept entries; the top is the one to drop first (smallest count, then largest name).
    heap: BinaryHeap<(std::cmp::Reverse<u64>, String)>,
}

impl Top {
    fn new(limit: usize) -> Top {
        Top { limit, heap: BinaryHeap::new() }
    }

    fn offer(&mut self, count: u64, name: impl FnOnce() -> String) {
        if self.limit == 0 {
            return;
        }
        if self.heap.len() < self.limit {
            self.heap.push((std::cmp::Reverse(count), name()));
            return;
        }
        let Some((std::cmp::Reverse(worst), worst_name)) = self.heap.peek() else { return };
        if count < *worst {
            return;
        }
        let name = name();
        if count > *worst || name < *worst_name {
            self.heap.pop();
            self.heap.push((std::cmp::Reverse(count), name));
        }
    }

    /// Largest first, ties by name.
    fn into_sorted(self) -> Vec<(String, u64)> {
        // The heap's ascending order is largest count first, then smallest name.
        self.heap.into_sorted_vec().into_iter().map(|(std::cmp::Reverse(c), n)| (n, c)).collect()
    }
}

fn insert_sorted(list: &mut Vec<SeriesRef>, r: SeriesRef) {
    // Refs are allocated in order, so this is almost always a push; concurrent creators may
    // arrive slightly out of order.
    match list.last() {
        Some(&last) if last > r => {
            let i = list.partition_point(|&x| x < r);
            list.insert(i, r);
        }
        _ => list.push(r),
    }
}

impl MemPostings {
    pub(crate) fn add(&mut self, r: SeriesRef, labels: &Labels) {
        for l in labels {
            let values = match self.by_name.get_mut(l.name) {
                Some(v) => v,
                None => self.by_name.entry(l.name.to_string()).or_default(),
            };
            let list = match values.get_mut(l.value) {
                Some(list) => list,
                None => values.entry(l.value.to_string()).or_default(),
            };
            insert_sorted(list, r);
        }
        insert_sorted(&mut self.all, r);
    }

    /// Removes a batch of series: each affected list is filtered once.
    pub(crate) fn delete<'a>(&mut self, dead: impl IntoIterator<Item = (SeriesRef, &'a Labels)>) {
        let mut refs = HashSet::new();
        let mut touched: HashSet<(&str, &str)> = HashSet::new();
        for (r, labels) in dead {
            refs.insert(r);
            for l in labels {
                touched.insert((l.name, l.value));
            }
        }
        if refs.is_empty() {
            return;
        }
        for (name, value) in touched {
            let Some(values) = self.by_name.get_mut(name) else { continue };
            if let Some(list) = values.get_mut(value) {
                list.retain(|r| !refs.contains(r));
                if list.is_empty() {
                    values.remove(value);
                }
            }
            if values.is_empty() {
                self.by_name.remove(name);
            }
        }
        self.all.retain(|r| !refs.contains(r));
    }

    #[cfg(test)]
    pub(crate) fn all(&self) -> &[SeriesRef] {
        &self.all
    }

    /// Label names with at least one series, unsorted.
    pub(crate) fn names(&self) -> impl Iterator<Item = &str> {
        self.by_name.keys().map(String::as_str)
    }

    /// Values of `name` with their postings, unsorted.
    pub(crate) fn values(&self, name: &str) -> impl Iterator<Item = (&str, &[SeriesRef])> {
        self.by_name.get(name).into_iter().flat_map(|m| m.iter().map(|(v, l)| (v.as_str(), l.as_slice())))
    }

    /// The index's cardinality, each list cut to its `limit` largest entries. Walks every
    /// posting list once (their lengths, not their refs) and allocates names only for entries
    /// that make it into a list.
    pub(crate) fn cardinality(&self, limit: usize) -> Cardinality {
        let mut metrics = Top::new(limit);
        let mut values_per_name = Top::new(limit);
        let mut bytes_per_name = Top::new(limit);
        let mut pairs = Top::new(limit);
        let mut num_label_pairs = 0u64;
        for (name, values) in &self.by_name {
            values_per_name.offer(values.len() as u64, || name.clone());
            let mut bytes = 0u64;
            for (value, list) in values {
                let series = list.len() as u64;
                if name == METRIC_NAME {
                    metrics.offer(series, || value.clone());
                }
                pairs.offer(series, || format!("{name}={value}"));
                bytes = bytes.saturating_add(series.saturating_mul(value.len() as u64));
                num_label_pairs += 1;
            }
            bytes_per_name.offer(bytes, || name.clone());
        }
        Cardinality {
            num_label_pairs,
            series_count_by_metric_name: metrics.into_sorted(),
            label_value_count_by_label_name: values_per_name.into_sorted(),
            memory_in_bytes_by_label_name: bytes_per_name.into_sorted(),
            series_count_by_label_value_pair: pairs.into_sorted(),
        }
    }

    /// Union of the postings of the values of `m.name` for which `accept(value)` holds.
    fn union_where(&self, name: &str, accept: impl Fn(&str) -> bool) -> Cow<'_, [SeriesRef]> {
        let Some(values) = self.by_name.get(name) else { return Cow::Borrowed(&[]) };
        let lists: Vec<&[SeriesRef]> =
            values.iter().filter(|(v, _)| accept(v)).map(|(_, l)| l.as_slice()).collect();
        union(lists)
    }

    fn get(&self, name: &str, value: &str) -> &[SeriesRef] {
        self.by_name.get(name).and_then(|v| v.get(value)).map_or(&[][..], Vec::as_slice)
    }

    /// Postings of the series whose `name` value the regex `pattern` (anchored) matches, for
    /// the shapes that need no regex engine; `None` for the others.
    fn regex_fast(&self, name: &str, pattern: &str) -> Option<Cow<'_, [SeriesRef]>> {
        match RegexShape::of(pattern)? {
            RegexShape::Set(alternatives) => {
                let mut lists: Vec<&[SeriesRef]> = alternatives.iter().map(|v| self.get(name, v)).collect();
                lists.sort_unstable_by_key(|l| l.as_ptr() as usize);
                lists.dedup_by_key(|l| l.as_ptr() as usize);
                Some(union(lists))
            }
            RegexShape::Prefix(prefix) => Some(self.union_where(name, |v| v.starts_with(prefix))),
        }
    }

    /// Postings of the series that have label `m.name` with a value `m` accepts.
    fn matching(&self, m: &Matcher) -> Cow<'_, [SeriesRef]> {
        match m.op {
            MatchOp::Equal => Cow::Borrowed(self.get(&m.name, &m.value)),
            MatchOp::Regex => match self.regex_fast(&m.name, &m.value) {
                Some(list) => list,
                None => self.union_where(&m.name, |v| m.matches(v)),
            },
            MatchOp::NotEqual | MatchOp::NotRegex => self.union_where(&m.name, |v| m.matches(v)),
        }
    }

    /// Postings of the series that have label `m.name` with a value `m` rejects.
    fn rejected(&self, m: &Matcher) -> Cow<'_, [SeriesRef]> {
        match m.op {
            MatchOp::NotEqual => Cow::Borrowed(self.get(&m.name, &m.value)),
            MatchOp::NotRegex => match self.regex_fast(&m.name, &m.value) {
                Some(list) => list,
                None => self.union_where(&m.name, |v| !m.matches(v)),
            },
            MatchOp::Equal | MatchOp::Regex => self.union_where(&m.name, |v| !m.matches(v)),
        }
    }

    /// Sorted refs of the series whose labels satisfy every matcher (a missing label reads as
    /// `""`). Matchers that reject `""` each give a list to intersect, smallest first; matchers
    /// that accept `""` (so also series lacking the label) subtract the series they reject.
    /// With no matcher of the first kind the selection starts from all series.
    pub(crate) fn select(&self, matchers: &[Matcher]) -> Vec<SeriesRef> {
        let mut positive: Vec<Cow<'_, [SeriesRef]>> = Vec::new();
        let mut negative: Vec<&Matcher> = Vec::new();
        for m in matchers {
            if m.matches_empty() {
                negative.push(m);
            } else {
                let list = self.matching(m);
                if list.is_empty() {
                    return Vec::new();
                }
                positive.push(list);
            }
        }
        positive.sort_by_key(|l| l.len());
        let mut result: Vec<SeriesRef> = match positive.split_first() {
            None => self.all.clone(),
            Some((first, rest)) => {
                let mut acc = first.to_vec();
                for l in rest {
                    if acc.is_empty() {
                        break;
                    }
                    acc = intersect(&acc, l);
                }
                acc
            }
        };
        for m in negative {
            if result.is_empty() {
                break;
            }
            let rejected = self.rejected(m);
            if !rejected.is_empty() {
                result = subtract(&result, &rejected);
            }
        }
        result
    }
}

/// Regexes common in dashboards that the index answers without running the regex: literal
/// alternations (`a|b|c`, looked up directly) and a literal followed by `.*` (a prefix test; the
/// `.` matches newlines too, as matchers compile with `(?s)`).
#[derive(Debug, PartialEq)]
enum RegexShape<'a> {
    Set(Vec<&'a str>),
    Prefix(&'a str),
}

impl<'a> RegexShape<'a> {
    fn of(pattern: &'a str) -> Option<RegexShape<'a>> {
        const META: &[char] = &['\\', '.', '+', '*', '?', '(', ')', '|', '[', ']', '{', '}', '^', '$'];
        if let Some(prefix) = pattern.strip_suffix(".*")
            && !prefix.contains(META)
        {
            return Some(RegexShape::Prefix(prefix));
        }
        let alternatives: Vec<&str> = pattern.split('|').collect();
        alternatives.iter().all(|a| !a.contains(META)).then_some(RegexShape::Set(alternatives))
    }
}

/// Union of sorted lists. Each series has one value per label name, so the lists of one name are
/// disjoint and concatenating then sorting is exact (dedup kept for safety).
fn union(mut lists: Vec<&[SeriesRef]>) -> Cow<'_, [SeriesRef]> {
    match lists.len() {
        0 => Cow::Borrowed(&[]),
        1 => Cow::Borrowed(lists.swap_remove(0)),
        _ => {
            let mut out: Vec<SeriesRef> = Vec::with_capacity(lists.iter().map(|l| l.len()).sum());
            for l in lists {
                out.extend_from_slice(l);
            }
            out.sort_unstable();
            out.dedup();
            Cow::Owned(out)
        }
    }
}

/// Intersection of sorted lists; gallops through `b` when it is much longer than `a`.
pub(crate) fn intersect(a: &[SeriesRef], b: &[SeriesRef]) -> Vec<SeriesRef> {
    let (a, b) = if a.len() <= b.len() { (a, b) } else { (b, a) };
    let mut out = Vec::with_capacity(a.len());
    if b.len() > 16 * a.len() {
        let mut rest = b;
        for &x in a {
            let i = rest.partition_point(|&y| y < x);
            rest = &rest[i..];
            match rest.first() {
                Some(&y) if y == x => out.push(x),
                Some(_) => {}
                None => break,
            }
        }
        return out;
    }
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                out.push(a[i]);
                i += 1;
                j += 1;
            }
        }
    }
    out
}

/// `a` without the elements of `b`, both sorted.
pub(crate) fn subtract(a: &[SeriesRef], b: &[SeriesRef]) -> Vec<SeriesRef> {
    let mut out = Vec::with_capacity(a.len());
    let mut j = 0;
    for &x in a {
        while j < b.len() && b[j] < x {
            j += 1;
        }
        if j >= b.len() || b[j] != x {
            out.push(x);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index() -> MemPostings {
        let mut p = MemPostings::default();
        p.add(1, &Labels::from_pairs(&[("__name__", "up"), ("job", "a")]));
        p.add(3, &Labels::from_pairs(&[("__name__", "up"), ("job", "b"), ("env", "prod")]));
        p.add(2, &Labels::from_pairs(&[("__name__", "x"), ("job", "a")]));
        p
    }

    #[test]
    fn cardinality_keeps_the_largest_entries_largest_first() {
        let p = index();
        let c = p.cardinality(2);
        let owned = |v: &[(&str, u64)]| v.iter().map(|(n, c)| (n.to_string(), *c)).collect::<Vec<_>>();
        assert_eq!(c.num_label_pairs, 5);
        assert_eq!(c.series_count_by_metric_name, owned(&[("up", 2), ("x", 1)]));
        assert_eq!(c.label_value_count_by_label_name, owned(&[("__name__", 2), ("job", 2)]));
        // __name__: "up" twice and "x" once; job: "a" twice and "b" once; env: "prod" once.
        assert_eq!(c.memory_in_bytes_by_label_name, owned(&[("__name__", 5), ("env", 4)]));
        assert_eq!(c.series_count_by_label_value_pair, owned(&[("__name__=up", 2), ("job=a", 2)]));
        assert_eq!(p.cardinality(0), Cardinality { num_label_pairs: 5, ..Cardinality::default() });
        assert_eq!(p.cardinality(100).series_count_by_label_value_pair.len(), 5);
    }

    fn sel(p: &MemPostings, ms: &[(MatchOp, &str, &str)]) -> Vec<SeriesRef> {
        let ms: Vec<Matcher> = ms.iter().map(|&(op, n, v)| Matcher::new(op, n, v).unwrap()).collect();
        p.select(&ms)
    }

    #[test]
    fn out_of_order_inserts_stay_sorted() {
        let p = index();
        assert_eq!(p.all(), &[1, 2, 3]);
        assert_eq!(sel(&p, &[(MatchOp::Equal, "job", "a")]), vec![1, 2]);
    }

    #[test]
    fn matcher_algebra() {
        use MatchOp::*;
        let p = index();
        assert_eq!(sel(&p, &[(Equal, "__name__", "up"), (Equal, "job", "b")]), vec![3]);
        assert_eq!(sel(&p, &[(NotEqual, "job", "a")]), vec![3]);
        assert_eq!(sel(&p, &[(Regex, "job", "a|b")]), vec![1, 2, 3]);
        assert_eq!(sel(&p, &[(NotRegex, "__name__", "u.*")]), vec![2]);
        assert_eq!(sel(&p, &[(Equal, "env", "")]), vec![1, 2]);
        assert_eq!(sel(&p, &[(NotEqual, "env", "")]), vec![3]);
        assert_eq!(sel(&p, &[(Regex, "env", "|prod")]), vec![1, 2, 3]);
        assert_eq!(sel(&p, &[(Equal, "nope", "x")]), Vec::<SeriesRef>::new());
        assert_eq!(sel(&p, &[(NotEqual, "nope", "x")]), vec![1, 2, 3]);
        assert_eq!(sel(&p, &[]), vec![1, 2, 3]);
    }

    #[test]
    fn regex_shapes() {
        assert_eq!(RegexShape::of("a|b"), Some(RegexShape::Set(vec!["a", "b"])));
        assert_eq!(RegexShape::of("abc"), Some(RegexShape::Set(vec!["abc"])));
        assert_eq!(RegexShape::of("a|"), Some(RegexShape::Set(vec!["a", ""])));
        assert_eq!(RegexShape::of("host-.*"), Some(RegexShape::Prefix("host-")));
        assert_eq!(RegexShape::of(".*"), Some(RegexShape::Prefix("")));
        for slow in ["a.b", "a.+", "(a|b)", "a\\|b", "x.*y", "a.*|b", "[ab]", "a?"] {
            assert_eq!(RegexShape::of(slow), None, "{slow}");
        }
    }

    #[test]
    fn fast_and_slow_regex_paths_agree() {
        use MatchOp::*;
        let mut p = index();
        p.add(4, &Labels::from_pairs(&[("job", "a\nb")]));
        p.add(5, &Labels::from_pairs(&[("job", "ab")]));
        for pattern in ["a|b", "a", "a.*", "b|ab|zz", ".*", "a|", "a\\nb|c"] {
            for op in [Regex, NotRegex] {
                let m = Matcher::new(op, "job", pattern).unwrap();
                let slow: Vec<SeriesRef> =
                    [1, 2, 3, 4, 5].into_iter().filter(|&r| m.matches(job_of(r))).collect();
                assert_eq!(p.select(std::slice::from_ref(&m)), slow, "{m}");
            }
        }
    }

    fn job_of(r: SeriesRef) -> &'static str {
        match r {
            1 | 2 => "a",
            3 => "b",
            4 => "a\nb",
            _ => "ab",
        }
    }

    #[test]
    fn delete_removes_refs_and_empty_entries() {
        let mut p = index();
        let l3 = Labels::from_pairs(&[("__name__", "up"), ("job", "b"), ("env", "prod")]);
        p.delete([(3, &l3)]);
        assert_eq!(p.all(), &[1, 2]);
        assert!(p.names().all(|n| n != "env"));
        assert_eq!(p.values("job").count(), 1);
    }

    #[test]
    fn set_operations() {
        let big: Vec<u64> = (0..1000).collect();
        assert_eq!(intersect(&[5, 500, 2000], &big), vec![5, 500]);
        assert_eq!(intersect(&[1, 2, 3], &[2, 3, 4]), vec![2, 3]);
        assert_eq!(subtract(&[1, 2, 3, 4], &[0, 2, 4, 9]), vec![1, 3]);
    }
}
