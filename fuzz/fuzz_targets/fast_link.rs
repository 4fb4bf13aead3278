//! The fast-link (`/federate/stream`) page decoder and the global's ingest of a page.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(v) = promtier::fuzzing::fast_link(data) {
        panic!("{v}");
    }
});
