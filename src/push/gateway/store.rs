//! The groups and what changes them: `PUT` (replace a group's families), `POST` (replace the
//! families named in the push), `DELETE` (drop a group), each checked, as Pushgateway checks it,
//! against every group held, and the `push_time_seconds` / `push_failure_time_seconds` of each
//! group. Indexes by family name and by series identity keep a push's checks proportional to the
//! push, not to the store (Pushgateway gathers everything on every push).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;

use super::body::{self, BodyError, PushFormat};
use super::family::{Family, FamilyKind, PUSH_TIME, sanitize};
use super::key::GroupingKey;
use super::snapshot::{self, Snapshot};

/// How a push changes its group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushMethod {
    /// `PUT`: the pushed families replace all of the group's.
    Put,
    /// `POST`: the pushed families replace those of the same names; the others stay.
    Post,
}

/// Why a push was refused. A refused push changes nothing but, for every variant except
/// [`PushError::Body`], the group's `push_failure_time_seconds` (creating the group if needed),
/// as in Pushgateway. The handler answers [`PushError::http_status`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PushError {
    #[error(transparent)]
    Body(#[from] BodyError),
    #[error(
        "pushed metrics are invalid or inconsistent with existing metrics: pushed metrics must not have timestamps"
    )]
    Timestamp,
    #[error(
        "pushed metrics are invalid or inconsistent with existing metrics: metric family {family:?} is a {pushed} here but a {existing} in another group"
    )]
    TypeConflict { family: String, existing: &'static str, pushed: &'static str },
    #[error(
        "pushed metrics are invalid or inconsistent with existing metrics: metric family {family:?} collides with the summary or histogram series of {other:?}"
    )]
    NameCollision { family: String, other: String },
    #[error(
        "pushed metrics are invalid or inconsistent with existing metrics: metric {family:?} with labels {labels} was collected before with the same name and label values"
    )]
    DuplicateSeries { family: String, labels: String },
    #[error(
        "pushed metrics are invalid or inconsistent with existing metrics: metric {family:?} has a label with an invalid name: {label}"
    )]
    ReservedLabelName { family: String, label: String },
}

impl PushError {
    /// The HTTP status Pushgateway answers (415 where it would try protobuf).
    pub fn http_status(&self) -> u16 {
        match self {
            PushError::Body(BodyError::UnsupportedMediaType { .. }) => 415,
            _ => 400,
        }
    }
}

/// The families a push leaves in place and those it brings.
#[derive(Debug, Clone, Copy)]
struct Change<'a> {
    method: PushMethod,
    pushed: &'a [(String, Family)],
}

impl Change<'_> {
    /// Whether the group's family `name` goes away (to be replaced or not).
    fn removes(&self, name: &str) -> bool {
        self.method == PushMethod::Put || self.pushed.iter().any(|(n, _)| n == name)
    }
}

/// The metric families of one group, and its push times.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Group {
    pub(super) families: BTreeMap<String, Family>,
    /// Unix seconds of the last successful push, 0 if none (a group made by a failed push).
    pub(super) push_time: f64,
    /// Unix seconds of the last failed push, 0 if none.
    pub(super) push_failure_time: f64,
}

/// Per family name across all groups.
#[derive(Debug, Clone, Copy)]
struct NameUse {
    kind: FamilyKind,
    /// How many groups hold a family of this name.
    groups: u32,
}

/// What the checks look up instead of gathering every group.
#[derive(Debug, Default)]
pub(super) struct Index {
    names: HashMap<String, NameUse>,
    /// [`super::family::Metric::identity`] of every stored metric, with multiplicity (a
    /// consistent store has 1 each; counts keep removal simple).
    identities: HashMap<u128, u32>,
}

impl Index {
    fn add(&mut self, name: &str, family: &Family) {
        self.names.entry(name.to_string()).or_insert(NameUse { kind: family.kind, groups: 0 }).groups += 1;
        for m in &family.metrics {
            *self.identities.entry(m.identity(name)).or_default() += 1;
        }
    }

    fn remove(&mut self, name: &str, family: &Family) {
        if let Some(u) = self.names.get_mut(name) {
            u.groups -= 1;
            if u.groups == 0 {
                self.names.remove(name);
            }
        }
        for m in &family.metrics {
            let id = m.identity(name);
            if let Some(n) = self.identities.get_mut(&id) {
                *n -= 1;
                if *n == 0 {
                    self.identities.remove(&id);
                }
            }
        }
    }
}

#[derive(Debug, Default)]
pub(super) struct Inner {
    pub(super) groups: BTreeMap<GroupingKey, Group>,
    index: Index,
}

impl Inner {
    /// Whether `pushed` may change the group `key` by `method`: the checks Pushgateway's gather
    /// makes over all groups, restricted to what the push can make inconsistent.
    fn check(&self, key: &GroupingKey, change: Change<'_>) -> Result<(), PushError> {
        let group = self.groups.get(key);
        let own = |name: &str| group.is_some_and(|g| g.families.contains_key(name));
        // The type of `name` held by other groups after the change.
        let others = |name: &str| {
            let u = self.index.names.get(name)?;
            let left = u.groups - u32::from(own(name) && change.removes(name));
            (left > 0).then_some(u.kind)
        };
        let pushed_kinds: HashMap<&str, FamilyKind> =
            change.pushed.iter().map(|(n, f)| (n.as_str(), f.kind)).collect();
        let after = |name: &str| pushed_kinds.get(name).copied().or_else(|| others(name));

        if group.is_none()
            && let Some(alias) = self.alias(key)
        {
            return Err(PushError::DuplicateSeries {
                family: PUSH_TIME.to_string(),
                labels: alias.to_string(),
            });
        }
        let mut seen = HashSet::new();
        for (name, family) in change.pushed {
            if let Some(label) =
                family.metrics.iter().flat_map(|m| m.labels.iter()).find(|(n, _)| n.starts_with("__"))
            {
                return Err(PushError::ReservedLabelName { family: name.clone(), label: label.0.clone() });
            }
            if let Some(existing) = others(name)
                && existing != family.kind
            {
                return Err(PushError::TypeConflict {
                    family: name.clone(),
                    existing: existing.as_str(),
                    pushed: family.kind.as_str(),
                });
            }
            check_collisions(name, family.kind, &after)?;
            // This group's family of the same name is replaced, so its series do not count.
            let replaced: HashSet<u128> = group
                .and_then(|g| g.families.get(name))
                .map(|f| f.metrics.iter().map(|m| m.identity(name)).collect())
                .unwrap_or_default();
            for m in &family.metrics {
                let id = m.identity(name);
                let stored = self.index.identities.get(&id).copied().unwrap_or(0);
                if !seen.insert(id) || stored > u32::from(replaced.contains(&id)) {
                    let labels = m.labels.iter().map(|(n, v)| format!("{n}={v:?}")).collect::<Vec<_>>();
                    return Err(PushError::DuplicateSeries {
                        family: name.clone(),
                        labels: format!("{{{}}}", labels.join(", ")),
                    });
                }
            }
        }
        Ok(())
    }

    /// The other key whose series Pushgateway exposes with the same labels as `key`'s, if it is
    /// held: an empty `instance` and no `instance` look the same once pushed metrics get their
    /// `instance=""`, so the push-time gauges of the two groups would be duplicates.
    fn alias(&self, key: &GroupingKey) -> Option<&GroupingKey> {
        let job = key.job();
        let rest: Vec<(&str, &str)> = match key.get("instance") {
            Some("") => key.pairs().filter(|(n, _)| *n != "job" && *n != "instance").collect(),
            Some(_) => return None,
            None => key.pairs().filter(|(n, _)| *n != "job").chain([("instance", "")]).collect(),
        };
        let alias = GroupingKey::new(job, &rest).ok()?;
        self.groups.get_key_value(&alias).map(|(k, _)| k)
    }

    fn apply(&mut self, key: &GroupingKey, method: PushMethod, pushed: Vec<(String, Family)>, now: f64) {
        let Inner { groups, index } = self;
        let group = groups.entry(key.clone()).or_insert_with(|| Group {
            families: BTreeMap::new(),
            push_time: 0.0,
            push_failure_time: 0.0,
        });
        let change = Change { method, pushed: &pushed };
        let removed: Vec<String> = group.families.keys().filter(|n| change.removes(n)).cloned().collect();
        for name in removed {
            if let Some(f) = group.families.remove(&name) {
                index.remove(&name, &f);
            }
        }
        for (name, family) in pushed {
            index.add(&name, &family);
            group.families.insert(name, family);
        }
        group.push_time = now;
    }

    /// A refused push: the group's failure time, on a new group if there is none — unless that
    /// group could not exist consistently (see [`Inner::alias`]; Pushgateway creates it and then
    /// refuses every push until it is deleted).
    fn record_failure(&mut self, key: &GroupingKey, now: f64) {
        if let Some(g) = self.groups.get_mut(key) {
            g.push_failure_time = now;
            return;
        }
        if self.alias(key).is_some() {
            return;
        }
        let group = Group { families: BTreeMap::new(), push_time: 0.0, push_failure_time: now };
        self.groups.insert(key.clone(), group);
    }

    /// Adds a whole group (from a persistence file) with the checks of a `PUT`.
    pub(super) fn restore(&mut self, key: &GroupingKey, group: Group) -> Result<(), PushError> {
        let pushed: Vec<(String, Family)> = group.families.into_iter().collect();
        self.check(key, Change { method: PushMethod::Put, pushed: &pushed })?;
        self.apply(key, PushMethod::Put, pushed, group.push_time);
        if let Some(g) = self.groups.get_mut(key) {
            g.push_failure_time = group.push_failure_time;
        }
        Ok(())
    }
}

/// Go's `checkSuffixCollisions`, in both directions: a summary `x` cannot live beside families
/// `x_count` or `x_sum`, a histogram `x` not beside those or `x_bucket`. `after` gives the type a
/// name will have once the push is applied.
fn check_collisions(
    name: &str,
    kind: FamilyKind,
    after: &impl Fn(&str) -> Option<FamilyKind>,
) -> Result<(), PushError> {
    let collision =
        |other: &str| PushError::NameCollision { family: name.to_string(), other: other.to_string() };
    let base =
        ["_count", "_sum", "_bucket"].iter().find_map(|s| name.strip_suffix(s)).filter(|b| !b.is_empty());
    if let Some(base) = base {
        match after(base) {
            Some(FamilyKind::Summary) if !name.ends_with("_bucket") => return Err(collision(base)),
            Some(FamilyKind::Histogram) => return Err(collision(base)),
            _ => {}
        }
    }
    let suffixes: &[&str] = match kind {
        FamilyKind::Summary => &["_count", "_sum"],
        FamilyKind::Histogram => &["_count", "_sum", "_bucket"],
        _ => &[],
    };
    for suffix in suffixes {
        let other = format!("{name}{suffix}");
        if after(&other).is_some() {
            return Err(collision(&other));
        }
    }
    Ok(())
}

/// Unix seconds as Pushgateway writes them (`float64(t.UnixNano()) / 1e9`).
fn unix_seconds(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_nanos() as i64 as f64 / 1e9)
}

/// The groups pushed to a node, with Pushgateway's semantics; shared by the node's handlers
/// (all methods take `&self`). One lock, held for a push's checks and change (never while its
/// body is parsed), a delete, and while a snapshot or a save copies the groups.
#[derive(Debug, Default)]
pub struct GroupStore {
    pub(super) inner: Mutex<Inner>,
}

impl GroupStore {
    /// An empty store.
    pub fn new() -> GroupStore {
        GroupStore::default()
    }

    /// A push to the group `key` now: `body` in the format its `Content-Type` names (none: the
    /// text format). All or nothing; see [`PushError`] for what a refusal leaves behind.
    pub fn push(
        &self,
        key: &GroupingKey,
        method: PushMethod,
        content_type: Option<&str>,
        body: &[u8],
    ) -> Result<(), PushError> {
        self.push_at(key, method, content_type, body, SystemTime::now())
    }

    /// [`GroupStore::push`] at the time `now` (the push-time gauges' value).
    pub fn push_at(
        &self,
        key: &GroupingKey,
        method: PushMethod,
        content_type: Option<&str>,
        body: &[u8],
        now: SystemTime,
    ) -> Result<(), PushError> {
        let format = PushFormat::from_content_type(content_type)?;
        let parsed = body::parse(format, body)?;
        let mut families = parsed.families;
        for (_, f) in &mut families {
            for m in &mut f.metrics {
                sanitize(&mut m.labels, key);
            }
        }
        let now = unix_seconds(now);
        let mut inner = self.inner.lock();
        let checked = if parsed.has_timestamp {
            Err(PushError::Timestamp)
        } else {
            inner.check(key, Change { method, pushed: &families })
        };
        match checked {
            Ok(()) => {
                inner.apply(key, method, families, now);
                Ok(())
            }
            Err(e) => {
                inner.record_failure(key, now);
                Err(e)
            }
        }
    }

    /// Deletes the group `key` (`DELETE`); false if there was none. Pushgateway answers 202
    /// either way.
    pub fn delete(&self, key: &GroupingKey) -> bool {
        let mut inner = self.inner.lock();
        let Inner { groups, index } = &mut *inner;
        let Some(group) = groups.remove(key) else {
            return false;
        };
        for (name, f) in &group.families {
            index.remove(name, f);
        }
        true
    }

    /// Every series of every group as a scrape of Pushgateway's `/metrics` would see them now.
    pub fn snapshot(&self) -> Snapshot {
        snapshot::build(&self.inner.lock().groups)
    }

    /// The grouping keys held, in order.
    pub fn keys(&self) -> Vec<GroupingKey> {
        self.inner.lock().groups.keys().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::model::Labels;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn key(path: &str) -> GroupingKey {
        GroupingKey::parse(path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    fn push(store: &GroupStore, path: &str, method: PushMethod, body: &str) -> Result<(), PushError> {
        store.push_at(&key(path), method, None, body.as_bytes(), at(1000))
    }

    fn ok(store: &GroupStore, path: &str, method: PushMethod, body: &str) {
        if let Err(e) = push(store, path, method, body) {
            panic!("{path} {body:?}: {e}");
        }
    }

    /// (labels, value) of every series but the push-time gauges, as `{…}` strings.
    fn series(store: &GroupStore) -> Vec<(String, f64)> {
        store
            .snapshot()
            .series()
            .iter()
            .filter(|s| !s.labels.metric_name().is_some_and(|n| n.starts_with("push_")))
            .map(|s| (s.labels.to_string(), s.value))
            .collect()
    }

    fn times(store: &GroupStore, path: &str) -> (f64, f64) {
        let labels = key(path).labels();
        let snap = store.snapshot();
        let get = |name: &str| {
            let mut b = labels.builder();
            b.set("__name__", name);
            snap.get(&b.labels()).map(|s| s.value).unwrap_or(-1.0)
        };
        (get("push_time_seconds"), get("push_failure_time_seconds"))
    }

    fn s(labels: &str, v: f64) -> (String, f64) {
        (labels.to_string(), v)
    }

    #[test]
    fn put_replaces_post_merges_delete_drops() {
        let store = GroupStore::new();
        ok(&store, "job/a", PushMethod::Put, "x 1\ny 2\n");
        ok(&store, "job/a", PushMethod::Post, "y 3\nz{k=\"v\"} 4\n");
        assert_eq!(
            series(&store),
            vec![
                s(r#"{__name__="x", job="a"}"#, 1.0),
                s(r#"{__name__="y", job="a"}"#, 3.0),
                s(r#"{__name__="z", job="a", k="v"}"#, 4.0)
            ]
        );
        ok(&store, "job/a", PushMethod::Put, "w 5\n");
        assert_eq!(series(&store), vec![s(r#"{__name__="w", job="a"}"#, 5.0)]);
        // An empty PUT keeps the group with its push times only.
        ok(&store, "job/a", PushMethod::Put, "");
        assert!(series(&store).is_empty());
        assert_eq!(times(&store, "job/a"), (1000.0, 0.0));
        assert!(store.delete(&key("job/a")));
        assert!(!store.delete(&key("job/a")));
        assert!(store.snapshot().is_empty());
    }

    #[test]
    fn grouping_labels_win_over_pushed_ones() {
        let store = GroupStore::new();
        ok(&store, "job/b/instance/i1", PushMethod::Put, "q{job=\"other\",instance=\"zz\",y=\"1\"} 1\n");
        assert_eq!(series(&store), vec![s(r#"{__name__="q", instance="i1", job="b", y="1"}"#, 1.0)]);
        // Two lines that become the same series once the grouping labels are set.
        let e = push(&store, "job/c", PushMethod::Put, "m{job=\"x\"} 1\nm 2\n");
        assert!(matches!(e, Err(PushError::DuplicateSeries { .. })), "{e:?}");
    }

    #[test]
    fn refusals_record_the_failure_time() {
        let store = GroupStore::new();
        ok(&store, "job/a", PushMethod::Put, "# TYPE m counter\nm 1\n");
        // A parse error changes nothing at all.
        assert!(matches!(push(&store, "job/a", PushMethod::Put, "m{"), Err(PushError::Body(_))));
        assert_eq!(times(&store, "job/a"), (1000.0, 0.0));
        let later = |path: &str, body: &str| {
            store.push_at(&key(path), PushMethod::Post, None, body.as_bytes(), at(2000))
        };
        assert_eq!(later("job/a", "m 1 1000\n"), Err(PushError::Timestamp));
        assert_eq!(times(&store, "job/a"), (1000.0, 2000.0));
        assert_eq!(series(&store), vec![s(r#"{__name__="m", job="a"}"#, 1.0)]);
        // A refused push to a new group creates it, with push_time_seconds 0.
        let e = later("job/g", "# TYPE m gauge\nm 1\n");
        assert!(matches!(e, Err(PushError::TypeConflict { .. })), "{e:?}");
        assert_eq!(times(&store, "job/g"), (0.0, 2000.0));
        assert_eq!(store.keys().len(), 2);
        let e = later("job/r", "q{__x=\"1\"} 1\n");
        assert!(matches!(e, Err(PushError::ReservedLabelName { .. })), "{e:?}");
    }

    #[test]
    fn types_must_agree_across_groups_until_the_holder_changes() {
        let store = GroupStore::new();
        ok(&store, "job/a", PushMethod::Put, "# TYPE m counter\nm 1\n");
        assert!(push(&store, "job/b", PushMethod::Put, "m 1\n").is_err());
        // The only holder may change the type of its own family.
        ok(&store, "job/a", PushMethod::Put, "# TYPE m gauge\nm 1\n");
        ok(&store, "job/b", PushMethod::Put, "# TYPE m gauge\nm 2\n");
        // Help may differ between groups.
        ok(&store, "job/c", PushMethod::Put, "# TYPE m gauge\n# HELP m other\nm 3\n");
        ok(&store, "job/a", PushMethod::Post, "n 1\n");
        assert!(store.delete(&key("job/a")));
        assert!(store.delete(&key("job/b")));
        assert!(store.delete(&key("job/c")));
        ok(&store, "job/d", PushMethod::Put, "m 1\n");
    }

    #[test]
    fn summary_and_histogram_names_collide_with_their_series() {
        let store = GroupStore::new();
        ok(&store, "job/a", PushMethod::Put, "# TYPE s summary\ns_sum 1\n# TYPE h histogram\nh_sum 1\n");
        for body in
            ["s_count 1\n", "s_sum 1\n", "h_bucket 1\n", "h_count 1\n", "# TYPE s_count gauge\ns_count 1\n"]
        {
            let e = push(&store, "job/b", PushMethod::Put, body);
            assert!(matches!(e, Err(PushError::NameCollision { .. })), "{body:?}: {e:?}");
        }
        ok(&store, "job/b", PushMethod::Put, "s_bucket 1\nh_total 1\nk_count 1\n");
        let e = push(&store, "job/c", PushMethod::Put, "# TYPE k summary\nk_sum 1\n");
        assert!(matches!(e, Err(PushError::NameCollision { .. })), "{e:?}");
        // Within one push too, whatever the order.
        let e = push(&store, "job/d", PushMethod::Put, "x_count 1\n# TYPE x summary\nx_sum 2\n");
        assert!(matches!(e, Err(PushError::NameCollision { .. })), "{e:?}");
        // A PUT that drops the summary frees the names.
        ok(&store, "job/a", PushMethod::Put, "s_count 1\n");
    }

    #[test]
    fn duplicates_across_groups() {
        let store = GroupStore::new();
        ok(&store, "job/e/x/1", PushMethod::Put, "m 1\n");
        let e = push(&store, "job/e", PushMethod::Put, "m{x=\"1\"} 2\n");
        assert!(matches!(e, Err(PushError::DuplicateSeries { .. })), "{e:?}");
        // Replacing one's own series is no duplicate.
        ok(&store, "job/e/x/1", PushMethod::Post, "m 3\n");
        ok(&store, "job/e", PushMethod::Put, "m{x=\"2\"} 2\n");
        // An empty value is a label of its own for the check, though not in the snapshot.
        ok(&store, "job/f", PushMethod::Put, "m{a=\"\"} 1\nm 2\n");
        assert!(series(&store).contains(&s(r#"{__name__="m", job="f"}"#, 2.0)));
    }

    #[test]
    fn empty_instance_and_no_instance_are_one_group_too_many() {
        let store = GroupStore::new();
        ok(&store, "job/dd", PushMethod::Put, "m 1\n");
        let e = push(&store, "job/dd/instance@base64/=", PushMethod::Put, "n 1\n");
        assert!(matches!(e, Err(PushError::DuplicateSeries { .. })), "{e:?}");
        // Not created by the failure (Pushgateway would, and then refuse every push).
        assert_eq!(store.keys(), vec![key("job/dd")]);
        ok(&store, "job/ee", PushMethod::Put, "m 1\n");
        assert!(store.delete(&key("job/dd")));
        ok(&store, "job/dd/instance@base64/=", PushMethod::Put, "n 1\n");
        assert!(push(&store, "job/dd", PushMethod::Put, "m 1\n").is_err());
    }

    #[test]
    fn push_time_is_the_last_success() {
        let store = GroupStore::new();
        let k = key("job/t/instance/i");
        store.push_at(&k, PushMethod::Put, None, b"m 1\n", at(10)).unwrap();
        store.push_at(&k, PushMethod::Post, None, b"m 1 5\n", at(20)).unwrap_err();
        store.push_at(&k, PushMethod::Post, None, b"n 1\n", at(30)).unwrap();
        assert_eq!(times(&store, "job/t/instance/i"), (30.0, 20.0));
        let snap = store.snapshot();
        let pt = snap.series().iter().find(|s| s.labels.metric_name() == Some("push_time_seconds")).unwrap();
        let (name, meta) = snap.family_of(pt);
        assert_eq!((name, meta.kind), ("push_time_seconds", crate::model::MetricType::Gauge));
        assert_eq!(meta.help, super::super::family::PUSH_TIME_HELP);
        let labels: Vec<Labels> = snap.series().iter().map(|s| s.labels.clone()).collect();
        assert!(labels.contains(&Labels::from_pairs(&[
            ("__name__", "push_failure_time_seconds"),
            ("instance", "i"),
            ("job", "t")
        ])));
    }

    #[test]
    fn openmetrics_and_protobuf() {
        let store = GroupStore::new();
        let om = Some("application/openmetrics-text; version=1.0.0; charset=utf-8");
        let body = b"# TYPE c counter\nc_total 3\nc_created 1\n# EOF\n";
        store.push_at(&key("job/o"), PushMethod::Put, om, body, at(1)).unwrap();
        assert_eq!(series(&store), vec![s(r#"{__name__="c_total", job="o"}"#, 3.0)]);
        let snap = store.snapshot();
        let c = snap.series().iter().find(|s| s.labels.metric_name() == Some("c_total")).unwrap();
        assert_eq!(snap.family_of(c).1.kind, crate::model::MetricType::Counter);
        let pb = Some(
            "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited",
        );
        let e = store.push_at(&key("job/o"), PushMethod::Put, pb, b"", at(2)).unwrap_err();
        assert_eq!(e.http_status(), 415);
        assert_eq!(PushError::Timestamp.http_status(), 400);
    }
}
