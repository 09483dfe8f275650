//! Unpredictable bytes for seeds and nonces: RDRAND when the CPU has it,
//! mixed with TSC jitter (which alone is weak: emulators make it regular).

use crate::arch::x86_64::cpu;

/// SplitMix64 finaliser: spreads the input bits over the whole word.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Fills `buf` with random bytes.
pub fn fill(buf: &mut [u8]) {
    let mut state = mix(cpu::rdtsc());
    for chunk in buf.chunks_mut(8) {
        let hw = cpu::rdrand().unwrap_or(0);
        state = mix(state ^ hw ^ cpu::rdtsc().rotate_left(17));
        let bytes = state.to_le_bytes();
        chunk.copy_from_slice(&bytes[..chunk.len()]);
    }
}
