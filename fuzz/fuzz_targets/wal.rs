//! WAL segments: frames, record decoding, replay into a head.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(v) = promtier::fuzzing::wal_segment(data) {
        panic!("{v}");
    }
});
