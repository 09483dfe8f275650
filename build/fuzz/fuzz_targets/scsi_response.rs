#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| storage::fuzz::fuzz_scsi(data));
