//! The data model every other module speaks: label sets, samples, staleness, metric metadata,
//! label matchers and the series-selector syntax. It depends on nothing else in the crate.

mod coverage;
mod duration;
mod hashing;
mod labels;
mod matcher;
mod metadata;
mod sample;
mod selector;

pub use coverage::Coverage;
pub use duration::{DurationError, PromDuration, format_duration, parse_duration};
pub use hashing::SeriesKeyHasher;
pub use labels::{
    Label, LabelRef, Labels, LabelsBuilder, LabelsIter, hash_label_pairs, is_valid_label_name,
    is_valid_metric_name,
};
pub(crate) use matcher::compile_anchored;
pub use matcher::{MatchOp, Matcher, MatcherError};
pub use metadata::{MetricMetadata, family_name, family_of};
pub use sample::{MetricType, STALE_NAN, STALE_NAN_BITS, Sample, is_stale_nan, now_ms};
pub use selector::{SelectorError, parse_selector};

/// The label holding the metric name.
pub const METRIC_NAME: &str = "__name__";
/// Labels starting with this prefix are internal to relabelling and never stored.
pub const RESERVED_PREFIX: &str = "__";
