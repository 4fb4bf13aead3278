//! The push tier: nodes that accept pushed samples (remote write, Pushgateway-style text) and
//! keep each series on the nodes the ring (`ring`) makes its owners; the Pushgateway-compatible
//! group store (`gateway`) holds what text pushes left. `sample` measures a ring over a synthetic
//! key set (its balance, what a resize moves) for `promtier plan` and the bench.

pub mod catchup;
pub mod distribute;
pub mod forward;
pub mod gateway;
pub mod groups;
pub mod hints;
pub mod ring;
pub mod sample;
