//! Fuzz entry points, one per parser: each takes arbitrary bytes, must never
//! panic, and checks that whatever parses emits and re-parses to the same
//! value. A `cargo fuzz` harness calls these; the unit tests below run them
//! over thousands of deterministic mutations of real frames.

use super::{
    ETHERNET_HEADER_LEN, EthernetFrame, EthernetRepr, LACPDU_LEN, LacpduPacket, LacpduRepr,
    MARKER_PDU_LEN, MarkerPacket, MarkerRepr, SlowPdu, VLAN_TAG_LEN, VlanPacket, VlanRepr,
    remove_tag,
};

use crate::bond::{HashPolicy, flow_hash};

/// Largest input the entry points copy into a stack buffer for in-place tests.
const SCRATCH_LEN: usize = 256;

pub fn fuzz_ethernet(data: &[u8]) {
    let Ok(frame) = EthernetFrame::new_checked(data) else {
        return;
    };
    let repr = EthernetRepr::parse(&frame);
    let mut out = [0u8; ETHERNET_HEADER_LEN];
    if repr.emit(&mut out).is_ok() {
        assert_eq!(out[..], data[..ETHERNET_HEADER_LEN], "ethernet round trip");
    }
}

pub fn fuzz_vlan(data: &[u8]) {
    if let Ok(tag) = VlanPacket::new_checked(data) {
        let repr = VlanRepr::parse(&tag);
        let mut out = [0u8; VLAN_TAG_LEN];
        if repr.emit(&mut out).is_ok() {
            assert_eq!(out[..], data[..VLAN_TAG_LEN], "802.1Q round trip");
        }
    }
    // Tag removal works in place on whole frames.
    let len = data.len().min(SCRATCH_LEN);
    let mut scratch = [0u8; SCRATCH_LEN];
    scratch[..len].copy_from_slice(&data[..len]);
    if let Ok((_, new_len)) = remove_tag(&mut scratch, len) {
        assert_eq!(new_len + VLAN_TAG_LEN, len);
    }
}

pub fn fuzz_lacpdu(data: &[u8]) {
    let Ok(packet) = LacpduPacket::new_checked(data) else {
        return;
    };
    let repr = LacpduRepr::parse(&packet);
    let mut out = [0u8; LACPDU_LEN];
    if repr.emit(&mut out).is_ok() {
        let again = LacpduPacket::new_checked(&out[..]).map(|p| LacpduRepr::parse(&p));
        assert_eq!(again, Ok(repr), "LACPDU round trip");
    }
}

pub fn fuzz_marker(data: &[u8]) {
    let Ok(packet) = MarkerPacket::new_checked(data) else {
        return;
    };
    let repr = MarkerRepr::parse(&packet);
    let mut out = [0u8; MARKER_PDU_LEN];
    if repr.emit(&mut out).is_ok() {
        let again = MarkerPacket::new_checked(&out[..]).map(|p| MarkerRepr::parse(&p));
        assert_eq!(again, Ok(repr), "Marker round trip");
    }
}

/// Whole frames as a bond member receives them: Ethernet, maybe a tag, maybe
/// a slow-protocols PDU.
pub fn fuzz_frame(data: &[u8]) {
    fuzz_ethernet(data);
    let Ok(frame) = EthernetFrame::new_checked(data) else {
        return;
    };
    // Bonds hash every frame they send, whatever it holds.
    for policy in [HashPolicy::SrcMac, HashPolicy::TcpUdpPorts] {
        let _ = flow_hash(policy, data);
    }
    let payload = frame.payload();
    fuzz_vlan(payload);
    if let Ok(pdu) = SlowPdu::parse(payload) {
        let mut out = [0u8; LACPDU_LEN];
        if pdu.emit(&mut out).is_ok() {
            assert_eq!(SlowPdu::parse(&out), Ok(pdu), "slow PDU round trip");
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::wire::{lacpdu, marker};

    /// xorshift64*: deterministic, so a failure reproduces from its iteration.
    pub(crate) struct Rng(u64);

    impl Rng {
        pub(crate) fn new(seed: u64) -> Self {
            Rng(seed.max(1))
        }
        pub(crate) fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        pub(crate) fn below(&mut self, n: usize) -> usize {
            (self.next() % n.max(1) as u64) as usize
        }
    }

    /// One random edit: flip a bit, set a byte, truncate, extend or splice.
    pub(crate) fn mutate(rng: &mut Rng, input: &mut Vec<u8>) {
        match rng.below(6) {
            0 if !input.is_empty() => {
                let at = rng.below(input.len());
                input[at] ^= 1 << rng.below(8);
            }
            1 if !input.is_empty() => {
                let at = rng.below(input.len());
                input[at] = rng.next() as u8;
            }
            2 => input.truncate(rng.below(input.len() + 1)),
            3 => {
                let extra = rng.below(32);
                input.extend((0..extra).map(|_| rng.next() as u8));
            }
            4 if !input.is_empty() => {
                // Interesting values at interesting places: TLV types and lengths.
                let at = rng.below(input.len().min(64));
                input[at] = [0, 1, 2, 3, 0x10, 0x14, 0xff][rng.below(7)];
            }
            _ => {
                let at = rng.below(input.len() + 1);
                input.insert(at, rng.next() as u8);
            }
        }
    }

    fn seeds() -> Vec<Vec<u8>> {
        let mut lacp_frame = vec![1, 0x80, 0xc2, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x88, 0x09];
        lacp_frame.extend_from_slice(&lacpdu::tests::HAND_MADE);
        let mut marker_frame = lacp_frame[..14].to_vec();
        marker_frame.extend_from_slice(&marker::tests::HAND_MADE);
        let mut tagged = vec![0xff; 6];
        tagged.extend_from_slice(&[2, 0, 0, 0, 0, 1, 0x81, 0, 0xa0, 0x14, 0x08, 0x00]);
        tagged.extend_from_slice(&[0x45; 40]);
        vec![
            lacpdu::tests::HAND_MADE.to_vec(),
            marker::tests::HAND_MADE.to_vec(),
            lacp_frame,
            marker_frame,
            tagged,
            Vec::new(),
        ]
    }

    #[test]
    fn mutated_inputs_never_panic() {
        let entry_points: [fn(&[u8]); 5] = [
            fuzz_ethernet,
            fuzz_vlan,
            fuzz_lacpdu,
            fuzz_marker,
            fuzz_frame,
        ];
        let mut rng = Rng::new(0x6b65_656c);
        for seed in seeds() {
            for _ in 0..1500 {
                let mut input = seed.clone();
                for _ in 0..=rng.below(4) {
                    mutate(&mut rng, &mut input);
                }
                for fuzz in &entry_points {
                    fuzz(&input);
                }
            }
        }
        // The seeds themselves, unmutated, take the parse-and-emit paths.
        for seed in seeds() {
            for fuzz in &entry_points {
                fuzz(&seed);
            }
        }
    }
}
