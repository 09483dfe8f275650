#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| appliance::xenapi::fuzz::fuzz_xmlrpc(data));
