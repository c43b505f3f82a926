#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tracespool::fuzzing::otlp_decode(data));
