//! Fuzz entry points of the crate's parsers (what a boot loader, a disk or
//! an upload hands the appliance), with seed inputs for a `cargo fuzz`
//! harness. Each takes arbitrary bytes and must never panic.

use alloc::string::String;
use alloc::vec::Vec;

use crate::esp::Geometry;
use crate::grubenv::{BLOCK_BYTES, EnvBlock};
use crate::signed::{self, Header, PayloadCheck};
use crate::upgrade::Booted;

/// A GRUB environment block: parse, and what parses renders back the same.
pub fn fuzz_env_block(data: &[u8]) {
    if let Ok(env) = EnvBlock::parse(data)
        && let Ok(block) = env.render()
    {
        let again = EnvBlock::parse(&block);
        assert!(again.is_ok(), "a rendered block parses");
    }
}

/// A signed-image header and payload: parse, verify against its own
/// signer and another key, hash the rest as a streamed payload.
pub fn fuzz_signed_image(data: &[u8]) {
    let Ok(header) = Header::parse(data) else {
        return;
    };
    let signer = header.manifest().signer;
    let _ = header.verify(&[[0x42; 32]]);
    if let Ok(manifest) = header.verify(&[signer]) {
        let mut check = PayloadCheck::new(manifest);
        let payload = data.get(signed::HEADER_BYTES..).unwrap_or_default();
        for chunk in payload.chunks(97) {
            if check.update(chunk).is_err() {
                return;
            }
        }
        let _ = check.finish();
    }
    let _ = signed::verify(data, &[signer]);
}

/// An ESP boot sector followed by its root directory.
pub fn fuzz_esp(data: &[u8]) {
    if let Ok(geometry) = Geometry::parse(data) {
        let _ = geometry.env_sector(data.get(512..).unwrap_or_default());
    }
}

/// A kernel command line.
pub fn fuzz_cmdline(data: &[u8]) {
    let _ = Booted::from_cmdline(&String::from_utf8_lossy(data));
}

/// Seeds: a valid env block, a signed image, a command line.
pub fn seeds() -> Vec<Vec<u8>> {
    let mut env = EnvBlock::new();
    let _ = env.set("keel_active", "a");
    let _ = env.set("keel_trial", "b");
    let block = env.render().map(|b| b.to_vec()).unwrap_or_default();
    let payload = b"\x7fELF seed payload".to_vec();
    let mut image = signed::sign(&payload, "0.1.0+seed", &[1; 32])
        .map(|h| h.to_vec())
        .unwrap_or_default();
    image.extend_from_slice(&payload);
    let cmdline = b"keel.boot=disk keel.slot=b keel.slot_state=trial".to_vec();
    let mut short = block.clone();
    short.truncate(BLOCK_BYTES / 2);
    alloc::vec![block, image, cmdline, short]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every entry point on every seed and on many mutations of them.
    #[test]
    fn entry_points_never_panic() {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for seed in seeds() {
            for round in 0..600 {
                let mut data = seed.clone();
                let flips = if round == 0 { 0 } else { 1 + next() % 8 };
                for _ in 0..flips {
                    if data.is_empty() {
                        break;
                    }
                    let at = (next() % data.len() as u64) as usize;
                    data[at] = next() as u8;
                }
                if round % 50 == 49 {
                    data.truncate((next() % (data.len() as u64 + 1)) as usize);
                }
                fuzz_env_block(&data);
                fuzz_signed_image(&data);
                fuzz_esp(&data);
                fuzz_cmdline(&data);
            }
        }
    }
}
