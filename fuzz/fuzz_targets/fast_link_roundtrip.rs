//! The fast link end to end: a head built from the input, pulled page by page, must arrive whole.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(v) = promtier::fuzzing::fast_link_roundtrip(data) {
        panic!("{v}");
    }
});
