#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| kernel::hv::virtio::fuzz::fuzz_virtqueue(data));
