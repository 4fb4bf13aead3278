//! Metric metadata received by remote write, kept so the receiving node's `/api/v1/metadata`
//! lists it beside its own scrapes' (and so its own senders and the globals pulling it pass it
//! on). Remote-Write 1.0 sends metadata per family (`MetricMetadata`); 2.0 attaches it to each
//! series, which is filed under the series' family name ([`crate::model::family_name`]). The
//! latest metadata of a family wins. Kept in memory until the node stops, for at most
//! [`MAX_FAMILIES`] families (metadata of further families is counted as ignored).

use std::collections::HashMap;

use parking_lot::Mutex;

use crate::model::{MetricMetadata, MetricType};

/// Families kept at most: metadata is a few strings per family, so this bounds the store to a
/// few tens of MiB whatever senders send.
pub(super) const MAX_FAMILIES: usize = 100_000;

/// The metadata a node received, by family name.
#[derive(Debug, Default)]
pub struct ReceivedMetadata {
    families: Mutex<HashMap<String, MetricMetadata>>,
}

/// One family's metadata as a request carries it (borrowed from the decoded request).
pub(super) struct Entry<'a> {
    pub(super) family: &'a str,
    pub(super) kind: MetricType,
    pub(super) help: &'a str,
    pub(super) unit: &'a str,
}

impl ReceivedMetadata {
    /// Every family received: `(family, metadata)` pairs, as `/api/v1/metadata` lists them.
    pub fn list(&self) -> Vec<(String, MetricMetadata)> {
        self.families.lock().iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }

    /// Records the entries of one request under one lock, allocating only for what changed;
    /// returns how many were kept and how many were not (the store is full).
    pub(super) fn record<'a>(&self, entries: impl IntoIterator<Item = Entry<'a>>) -> (u64, u64) {
        let (mut kept, mut full) = (0, 0);
        let mut families = self.families.lock();
        for e in entries {
            if e.family.is_empty() {
                continue;
            }
            let room = families.len() < MAX_FAMILIES;
            match families.get_mut(e.family) {
                Some(m) => {
                    if m.kind != e.kind {
                        m.kind = e.kind;
                    }
                    if m.help != e.help {
                        e.help.clone_into(&mut m.help);
                    }
                    if m.unit != e.unit {
                        e.unit.clone_into(&mut m.unit);
                    }
                    kept += 1;
                }
                None if room => {
                    let m =
                        MetricMetadata { kind: e.kind, help: e.help.to_string(), unit: e.unit.to_string() };
                    families.insert(e.family.to_string(), m);
                    kept += 1;
                }
                None => full += 1,
            }
        }
        (kept, full)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_latest_metadata_of_a_family_wins() {
        let store = ReceivedMetadata::default();
        let e = |family, kind, help| Entry { family, kind, help, unit: "" };
        assert_eq!(store.record([e("up", MetricType::Gauge, "Up."), e("", MetricType::Gauge, "x")]), (1, 0));
        assert_eq!(store.record([e("up", MetricType::Gauge, "Up, now.")]), (1, 0));
        let list = store.list();
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].0, "up");
        assert_eq!(list[0].1.help, "Up, now.");
    }
}
