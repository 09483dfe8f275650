#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| netstack::switch::fuzz::fuzz_switch(data));
