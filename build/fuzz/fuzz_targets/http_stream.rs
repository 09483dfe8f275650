#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| appliance::server::fuzz::fuzz_stream(data));
