#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| host_config::fuzz::fuzz_cmdline(data));
