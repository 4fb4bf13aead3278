//! Roles: each wires the library's parts into one kind of process — `leaf` (scrape + store +
//! serve), `demo` (a synthetic exporter), and `up` (a supervisor running a whole topology on one
//! host). This is the only layer besides `cli` that uses `anyhow`.

pub mod demo;
pub mod global;
pub mod leaf;
mod server;
pub mod shutdown;
mod telemetry;
pub mod up;
