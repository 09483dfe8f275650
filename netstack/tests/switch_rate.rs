//! How many frames per second the switch state machine forwards on this
//! machine: a guest VIF and the trunk uplink exchanging 1514-byte and
//! 64-byte frames (tag push on the way out, pop on the way in), with the VIF
//! unlocked and then locked to the frames' IPv4 addresses (both ways checked).
//! Prints `FIGURE`; asserts only that every frame got through.
//! Meaningful figures come from a release build:
//! `cargo test --release -p netstack --test switch_rate -- --nocapture`.

use std::time::Instant as StdInstant;

use netstack::MacAddress;
use netstack::switch::{Outcome, SCRATCH_LEN, Switch, VifPolicy, VlanMode, VlanSet};
use smoltcp::time::Instant;

const VM: MacAddress = MacAddress([0x02, 0, 0, 0, 0, 0xa]);
const REMOTE: MacAddress = MacAddress([0x00, 0x1b, 0x21, 0, 0, 1]);

fn frame(dst: MacAddress, src: MacAddress, tag: Option<u16>, payload: usize) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&dst.0);
    f.extend_from_slice(&src.0);
    if let Some(vid) = tag {
        f.extend_from_slice(&[0x81, 0x00]);
        f.extend_from_slice(&vid.to_be_bytes());
    }
    f.extend_from_slice(&[0x08, 0x00]);
    f.resize(f.len() + payload, 0x45);
    f
}

#[test]
fn switch_forwarding_rate() {
    let mut sw = Switch::new();
    sw.add_network(30, 1500).unwrap();
    let uplink = sw
        .add_uplink(VlanMode::Trunk {
            native: None,
            allowed: VlanSet::of(&[30]).unwrap(),
        })
        .unwrap();
    let vif = sw.add_vif(30, VM).unwrap();
    let mut scratch = vec![0u8; SCRATCH_LEN];
    // The payload bytes are all 0x45: an IPv4 header from and to 69.69.69.69.
    let locked = VifPolicy::Locked {
        ipv4: vec![std::net::Ipv4Addr::new(69, 69, 69, 69)],
        ipv6: Vec::new(),
    };
    for (mode, policy, payload) in [
        ("unlocked", VifPolicy::Unlocked, 1500usize),
        ("unlocked", VifPolicy::Unlocked, 46),
        ("locked", locked.clone(), 1500),
        ("locked", locked, 46),
    ] {
        sw.set_vif_policy(vif, policy).unwrap();
        let out = frame(REMOTE, VM, None, payload);
        let back = frame(VM, REMOTE, Some(30), payload);
        let rounds = 200_000u32;
        let mut delivered = 0u64;
        let mut bytes = 0u64;
        let start = StdInstant::now();
        for i in 0..rounds {
            let now = Instant::from_micros(i64::from(i));
            for (port, f) in [(vif, &out), (uplink, &back)] {
                let outcome = sw.forward(now, port, f, &mut scratch, &mut |_, copy| {
                    delivered += 1;
                    bytes += copy.len() as u64;
                });
                assert!(matches!(
                    outcome,
                    Outcome::Forwarded(_) | Outcome::Flooded { .. }
                ));
            }
        }
        let secs = start.elapsed().as_secs_f64();
        assert_eq!(delivered, 2 * u64::from(rounds));
        eprintln!(
            "FIGURE switch_rate vif={mode} payload={payload} frames_per_s={:.0} gbit_per_s={:.2}",
            delivered as f64 / secs,
            bytes as f64 * 8.0 / secs / 1e9
        );
    }
}
