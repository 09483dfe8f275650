#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| netstack::wire::fuzz::fuzz_vlan(data));
