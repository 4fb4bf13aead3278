//! The push tier's own pieces: what a push node keeps of the metrics clients push to it. The
//! HTTP handlers, ring routing and forwarding that call into these live with the push role.

pub mod gateway;
