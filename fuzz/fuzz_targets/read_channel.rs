//! The line reader and the typed reads over arbitrary chunking, checked against the reference
//! model in asock/tests/chunk_model (shared with the property test in the normal suite).
#![no_main]

#[path = "../../asock/tests/chunk_model/mod.rs"]
mod chunk_model;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    chunk_model::run(data);
});
