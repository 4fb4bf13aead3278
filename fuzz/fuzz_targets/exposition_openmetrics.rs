//! The OpenMetrics parser, its fast path for known series and the writer.
#![no_main]

use libfuzzer_sys::fuzz_target;
use promtier::exposition::TextFormat;

fuzz_target!(|data: &[u8]| {
    if let Err(v) = promtier::fuzzing::exposition(data, TextFormat::OpenMetrics) {
        panic!("{v}");
    }
});
