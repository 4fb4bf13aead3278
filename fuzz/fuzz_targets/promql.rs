//! PromQL parsing and evaluation (instant and range) over a small fixed dataset.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use promtier::fuzzing::{PromqlFixture, promql, promql_fixture};

static FIXTURE: OnceLock<PromqlFixture> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let fixture = FIXTURE.get_or_init(|| match promql_fixture() {
        Ok(f) => f,
        Err(e) => panic!("fixture: {e}"),
    });
    if let Err(v) = promql(fixture, data) {
        panic!("{v}");
    }
});
