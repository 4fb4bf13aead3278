//! The topology loader from YAML text (what `promtier check` runs).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(v) = promtier::fuzzing::topology(data) {
        panic!("{v}");
    }
});
