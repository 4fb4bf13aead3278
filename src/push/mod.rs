//! The push tier: nodes that accept pushed samples (remote write, Pushgateway-style text) and
//! keep each series on the nodes the ring (`ring`) makes its owners. `sample` measures a ring
//! over a synthetic key set (its balance, what a resize moves) for `promtier plan` and the bench.

pub mod ring;
pub mod sample;
