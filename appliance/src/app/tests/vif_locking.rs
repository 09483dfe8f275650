//! VIF locking through the appliance's own path: the NetRequests the
//! XenAPI queues (a plug with its policy, a later change) applied to the
//! switch, and guests on the management network asking the host's ARP.

use netstack::switch::{DropReason, PortId, VifLink, VifPolicy};

use super::*;
use crate::xenapi::{NetRequest, VifTarget};

const GUEST_A: [u8; 6] = [0x00, 0x16, 0x3e, 0, 0, 0x0a];
const GUEST_B: [u8; 6] = [0x00, 0x16, 0x3e, 0, 0, 0x0b];
const A_IP: [u8; 4] = [10, 0, 2, 50];
const B_IP: [u8; 4] = [10, 0, 2, 60];

/// A broadcast ARP request from `mac`/`ip` for the host's address.
fn who_has_host(mac: [u8; 6], ip: [u8; 4]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&[0xff; 6]);
    f.extend_from_slice(&mac);
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0x00, 6, 4, 0, 1]);
    f.extend_from_slice(&mac);
    f.extend_from_slice(&ip);
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&HOST_IP.octets());
    f.resize(60, 0);
    f
}

/// Whether `frame` is the host's ARP reply to `mac`.
fn is_reply_to(frame: &[u8], mac: [u8; 6]) -> bool {
    frame.len() >= 42 && frame[..6] == mac && frame[12..14] == [0x08, 0x06] && frame[21] == 2
}

fn received(link: &VifLink) -> Vec<Vec<u8>> {
    core::iter::from_fn(|| link.guest_receive()).collect()
}

fn plug(
    appliance: &mut Appliance<TestPlatform, WireNic>,
    vif: &str,
    mac: [u8; 6],
    policy: VifPolicy,
) -> (VifLink, PortId) {
    let link = VifLink::new();
    appliance.apply_net_request(NetRequest::PlugVif {
        vif: String::from(vif),
        vm: String::from("guest"),
        target: VifTarget::HostNetwork(String::from("management")),
        mac,
        link: link.clone(),
        policy,
    });
    let port = *appliance.vif_ports.get(vif).expect("plugged");
    (link, port)
}

fn drops(appliance: &Appliance<TestPlatform, WireNic>, port: PortId, reason: DropReason) -> u64 {
    appliance
        .net
        .switch()
        .port_stats(port)
        .map_or(0, |s| s.dropped.get(reason))
}

#[test]
fn a_disabled_vif_is_cut_off_and_a_locked_one_passes_only_its_address() {
    let (mut appliance, _client) = setup(static_config());
    settle(&mut appliance);
    let (a, a_port) = plug(&mut appliance, "vif-a", GUEST_A, VifPolicy::Disabled);
    let (b, _) = plug(&mut appliance, "vif-b", GUEST_B, VifPolicy::Unlocked);

    // Disabled: A's question goes nowhere, B's broadcast never reaches A.
    assert!(a.guest_send(&who_has_host(GUEST_A, A_IP)));
    assert!(b.guest_send(&who_has_host(GUEST_B, B_IP)));
    settle(&mut appliance);
    assert!(received(&a).is_empty());
    let at_b = received(&b);
    assert!(
        at_b.iter().any(|f| is_reply_to(f, GUEST_B)),
        "B is answered"
    );
    assert!(!at_b.iter().any(|f| f[6..12] == GUEST_A), "nothing of A's");
    assert_eq!(drops(&appliance, a_port, DropReason::VifDisabled), 1);

    // Locked to A_IP, at once on the plugged VIF.
    let locked = VifPolicy::Locked {
        ipv4: vec![core::net::Ipv4Addr::from(A_IP)],
        ipv6: Vec::new(),
    };
    appliance.apply_net_request(NetRequest::SetVifPolicy {
        vif: String::from("vif-a"),
        policy: locked.clone(),
    });
    assert_eq!(appliance.net.switch().vif_policy(a_port), Some(&locked));
    assert!(a.guest_send(&who_has_host(GUEST_A, A_IP)));
    settle(&mut appliance);
    assert!(received(&a).iter().any(|f| is_reply_to(f, GUEST_A)));
    assert!(received(&b).iter().any(|f| f[6..12] == GUEST_A));
    // Another address of the same subnet: refused at the switch, so the
    // host never answers.
    assert!(a.guest_send(&who_has_host(GUEST_A, [10, 0, 2, 51])));
    settle(&mut appliance);
    assert!(received(&a).is_empty());
    assert!(received(&b).is_empty());
    assert_eq!(drops(&appliance, a_port, DropReason::LockedSource), 1);

    // A change for a VIF that is not plugged changes nothing.
    appliance.apply_net_request(NetRequest::SetVifPolicy {
        vif: String::from("vif-gone"),
        policy: VifPolicy::Disabled,
    });
    assert_eq!(appliance.net.switch().vif_policy(a_port), Some(&locked));
}

#[test]
fn a_moved_vif_reaches_its_new_network_over_the_same_link() {
    let (mut appliance, _client) = setup(static_config());
    settle(&mut appliance);
    appliance.apply_net_request(NetRequest::CarryVlan { tag: 30, mtu: 1500 });
    let (a, _) = plug(&mut appliance, "vif-a", GUEST_A, VifPolicy::Unlocked);
    let b = VifLink::new();
    appliance.apply_net_request(NetRequest::PlugVif {
        vif: String::from("vif-b"),
        vm: String::from("other"),
        target: VifTarget::Vlan(30),
        mac: GUEST_B,
        link: b.clone(),
        policy: VifPolicy::Unlocked,
    });
    // On the management network: the host answers A; B, on VLAN 30, hears nothing.
    assert!(a.guest_send(&who_has_host(GUEST_A, A_IP)));
    settle(&mut appliance);
    assert!(received(&a).iter().any(|f| is_reply_to(f, GUEST_A)));
    assert!(received(&b).is_empty());

    let locked = VifPolicy::Locked {
        ipv4: vec![core::net::Ipv4Addr::from(A_IP)],
        ipv6: Vec::new(),
    };
    appliance.apply_net_request(NetRequest::MoveVif {
        vif: String::from("vif-a"),
        vm: String::from("guest"),
        target: VifTarget::Vlan(30),
        mac: GUEST_A,
        policy: locked.clone(),
    });
    let port = *appliance.vif_ports.get("vif-a").expect("still plugged");
    assert_eq!(appliance.net.switch().vif_policy(port), Some(&locked));
    // Same link, new network: B hears A's broadcast, the host no longer answers.
    assert!(a.guest_send(&who_has_host(GUEST_A, A_IP)));
    settle(&mut appliance);
    assert!(received(&a).is_empty());
    assert!(received(&b).iter().any(|f| f[6..12] == GUEST_A));

    // A VIF that is not plugged is not moved (it moves at its next plug).
    appliance.apply_net_request(NetRequest::MoveVif {
        vif: String::from("vif-gone"),
        vm: String::from("guest"),
        target: VifTarget::Vlan(30),
        mac: GUEST_B,
        policy: VifPolicy::Unlocked,
    });
    assert!(!appliance.vif_ports.contains_key("vif-gone"));
}
