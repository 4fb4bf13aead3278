//! Chunk decoders (XOR and packed). Input: the encoding byte, then the chunk.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some((&encoding, bytes)) = data.split_first()
        && let Err(v) = promtier::fuzzing::chunk(encoding, bytes)
    {
        panic!("{v}");
    }
});
