#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| appliance::http::fuzz::fuzz_parse(data));
