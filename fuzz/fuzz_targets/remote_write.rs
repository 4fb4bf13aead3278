//! Remote-write requests (1.0 and 2.0): snappy, protobuf, symbol references, into a head.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(v) = promtier::fuzzing::remote_write(data) {
        panic!("{v}");
    }
});
