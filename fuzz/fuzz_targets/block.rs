//! Block index and chunk-file readers, and queries over a block.
//! Input: flags byte (bit 0: recompute the index CRC), index length (u32 LE), index, chunks.
#![no_main]

use libfuzzer_sys::fuzz_target;
use promtier::fuzzing::{block, split_block_input};

fuzz_target!(|data: &[u8]| {
    let (index, chunks, fix_crc) = split_block_input(data);
    if let Err(v) = block(index, chunks, fix_crc) {
        panic!("{v}");
    }
});
