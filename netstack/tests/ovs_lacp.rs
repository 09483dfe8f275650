//! Interop with a real LACP partner: Open vSwitch's userspace datapath.
//!
//! OVS bonds two veth ends in a namespace of the test's own (`lacp=active`,
//! `lacp-time=fast`, `balance-tcp`); our LACP bond, with a smoltcp host
//! interface on top, runs on the other two ends from this process. The test
//! checks what OVS reports and sends, pings the bridge's own port through the
//! bond, cuts the member carrying the pings, and restores it; then makes a
//! member deaf (carrier stays up) so that only the LACP timeout reveals it.
//!
//! Needs root and Open vSwitch (`cargo xtask setup` installs it); without
//! them it says SKIP and passes. See `common` for how processes are bounded
//! and cleaned up.

mod common;

use std::time::{Duration as StdDuration, Instant as StdInstant};

use netstack::Nic;
use netstack::bond::{BondConfig, BondMode, HashPolicy};
use netstack::hosted::PacketNic;
use netstack::lacp::LacpConfig;
use netstack::wire::{
    EtherType, EthernetFrame, LACPDU_LEN, LacpState, LacpduPacket, LacpduRepr,
    SLOW_PROTOCOLS_MULTICAST,
};

use common::*;

/// What `lacp/show` and `bond/show` say about one member.
#[derive(Debug, Default, PartialEq)]
struct MemberView {
    /// `current attached`, `expired detached`, ...
    status: String,
    may_enable: bool,
    partner_sys_id: String,
    /// `enabled` or `disabled` in `bond/show`.
    bond_state: String,
}

fn member_view(ovs: &Ovs, ns: &Netns, member: &str) -> Result<MemberView, String> {
    let lacp = ovs.appctl(ns, &["lacp/show", "bond0"])?;
    let bond = ovs.appctl(ns, &["bond/show", "bond0"])?;
    let mut view = MemberView::default();
    let mut in_member = false;
    for line in lacp.lines() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("member: ") {
            in_member = rest.starts_with(&format!("{member}:"));
            if in_member {
                view.status = rest[member.len() + 1..].trim().to_string();
            }
        } else if in_member {
            if let Some(v) = line.strip_prefix("may_enable: ") {
                view.may_enable = v == "true";
            } else if let Some(v) = line.strip_prefix("partner sys_id: ") {
                view.partner_sys_id = v.to_string();
            }
        }
    }
    for line in bond.lines() {
        if let Some(rest) = line.trim().strip_prefix(&format!("member {member}: ")) {
            view.bond_state = rest.trim().to_string();
        }
    }
    Ok(view)
}

fn enabled_with_us(view: &MemberView) -> bool {
    view.status.starts_with("current attached")
        && view.may_enable
        && view.bond_state == "enabled"
        && view.partner_sys_id == SYSTEM_MAC.to_string()
}

/// A LACPDU from OVS parses, says what `lacp/show` says, and re-emits to
/// the same bytes (so our reserved-byte and TLV layout matches OVS's).
fn check_ovs_lacpdu(frame: &[u8]) {
    let hex: String = frame.iter().map(|b| format!("{b:02x}")).collect();
    eprintln!("FIGURE ovs_lacpdu len={} bytes={hex}", frame.len());
    let eth = EthernetFrame::new_checked(frame).expect("ethernet");
    assert_eq!(eth.dst_addr(), SLOW_PROTOCOLS_MULTICAST);
    let payload = eth.payload();
    assert_eq!(payload.len(), LACPDU_LEN, "OVS sends exactly 110 bytes");
    let packet = LacpduPacket::new_checked(payload).expect("OVS's LACPDU parses");
    assert_eq!(packet.version(), 1);
    let repr = LacpduRepr::parse(&packet);
    assert_eq!(
        repr.partner.system, SYSTEM_MAC,
        "OVS names us as its partner"
    );
    let want = LacpState::ACTIVITY
        | LacpState::TIMEOUT
        | LacpState::AGGREGATION
        | LacpState::SYNCHRONIZATION
        | LacpState::COLLECTING
        | LacpState::DISTRIBUTING;
    assert!(
        repr.actor.state.has(want),
        "OVS actor state {:?}",
        repr.actor.state
    );
    assert!(
        repr.partner.state.has(want),
        "our state as OVS sees it {:?}",
        repr.partner.state
    );
    let mut again = [0u8; LACPDU_LEN];
    repr.emit(&mut again).expect("emit");
    assert_eq!(&again[..], payload, "our emitter writes what OVS writes");
}

#[test]
fn lacp_bond_interoperates_with_open_vswitch() {
    if let Some(why) = prerequisites_missing() {
        eprintln!("SKIP lacp_bond_interoperates_with_open_vswitch: {why}");
        return;
    }
    let test_start = StdInstant::now();
    let tag = Lab::tag('l');
    let (o0, o1) = (Lab::ovs_end_of(&tag, 0), Lab::ovs_end_of(&tag, 1));
    let lab = Lab::start(
        'l',
        &[
            "add-bond",
            "br0",
            "bond0",
            &o0,
            &o1,
            "lacp=active",
            "other_config:lacp-time=fast",
            "--",
            "set",
            "port",
            "bond0",
            "bond_mode=balance-tcp",
        ],
    )
    .expect("lab with an OVS LACP bond");
    let view = |i: usize| member_view(&lab.ovs, &lab.ns, &lab.ovs_end(i));
    let mut ours = lab
        .ours(BondConfig::new(BondMode::Lacp {
            hash: HashPolicy::TcpUdpPorts,
            lacp: LacpConfig::new(SYSTEM_MAC),
        }))
        .expect("our bond");

    // 1. Negotiation: OVS sees us as its partner on both members.
    let took = ours.pump_until(StdDuration::from_secs(15), |ours| {
        ours.members_usable() == [true, true]
            && (0..2).all(|i| view(i).is_ok_and(|v| enabled_with_us(&v)))
    });
    let lacp_show = lab.appctl(&["lacp/show", "bond0"]).unwrap_or_default();
    let Some(took) = took else {
        panic!(
            "not negotiated in 15 s; ours {:?}\n{lacp_show}\n{}",
            ours.members_usable(),
            lab.appctl(&["bond/show", "bond0"]).unwrap_or_default()
        );
    };
    eprintln!(
        "FIGURE ovs_both_members_enabled_after={:.2}s",
        took.as_secs_f64()
    );
    assert!(
        lacp_show.contains("status: active negotiated"),
        "{lacp_show}"
    );
    let lacp = ours.host.nic().lacp().expect("lacp mode");
    for port in lacp.ports() {
        assert_eq!(port.counters().bad, 0, "every OVS LACPDU parses");
        assert!(port.counters().rx > 0);
        assert_eq!(
            port.partner().system_priority,
            65534,
            "OVS's default priority"
        );
    }

    // What OVS sends, byte for byte: a second socket on member 0 sees a copy.
    let our_mac = ours.host.nic().member(0).map(|m| m.mac());
    let mut tap = PacketNic::open(&lab.our_end(0)).expect("second socket");
    let mut frame = [0u8; 1514];
    let mut ovs_pdu = None;
    let deadline = StdInstant::now() + StdDuration::from_secs(3);
    while ovs_pdu.is_none() && StdInstant::now() < deadline {
        ours.pump();
        while let Ok(Some(len)) = tap.receive(&mut frame) {
            let eth = EthernetFrame::new_checked(&frame[..len]).expect("frame");
            if eth.ethertype() == EtherType::SLOW_PROTOCOLS && Some(eth.src_addr()) != our_mac {
                ovs_pdu = Some(frame[..len].to_vec());
            }
        }
        std::thread::sleep(StdDuration::from_millis(1));
    }
    check_ovs_lacpdu(&ovs_pdu.expect("OVS sends a LACPDU every second"));
    drop(tap);

    // 2. Traffic through the bond.
    assert!(warm_up(&mut ours), "{}", diagnose(&lab, &ours));
    let (carrying, sent, answered) = ping_member(&mut ours, &lab, BOTH_WAYS);
    assert!(
        answered + 1 >= sent,
        "ping through the bond: {answered}/{sent}"
    );

    // 3. Cut the member carrying the pings, in the middle of a 100 Hz ping.
    let (sent, answered) = ping_while(&mut ours, 300, StdDuration::from_millis(1000), |_| {
        lab.set_link(carrying, false).expect("cut");
    });
    let lost = sent - answered;
    eprintln!(
        "FIGURE cut_member={carrying} ping sent={sent} answered={answered} interruption_ms~{}",
        u32::from(lost) * 10
    );
    assert!(
        answered + 50 >= sent,
        "traffic keeps flowing on the other member: {answered}/{sent}"
    );
    assert!(
        !ours.members_usable()[carrying],
        "we dropped the cut member"
    );
    assert!(ours.members_usable()[1 - carrying], "and kept the other");
    let cut = view(carrying).expect("lacp/show");
    assert_eq!(
        cut.bond_state, "disabled",
        "OVS reports the cut member down: {cut:?}"
    );
    let other = view(1 - carrying).expect("lacp/show");
    assert!(
        enabled_with_us(&other),
        "the other member stays enabled: {other:?}"
    );

    // 4. Restore: both members enabled again on both sides.
    lab.set_link(carrying, true).expect("restore");
    let back = ours
        .pump_until(StdDuration::from_secs(15), |ours| {
            ours.members_usable() == [true, true]
                && view(carrying).is_ok_and(|v| enabled_with_us(&v))
        })
        .unwrap_or_else(|| panic!("member not back in 15 s: {:?}", view(carrying)));
    eprintln!(
        "FIGURE restored_member_enabled_after={:.2}s",
        back.as_secs_f64()
    );
    let (sent, answered) = ping_while(&mut ours, 50, StdDuration::ZERO, |_| {});
    assert!(
        answered + 1 >= sent,
        "ping after restore: {answered}/{sent}"
    );

    // 5. A failure carrier does not show: member `carrying` goes deaf (we
    // still send, OVS's frames are lost). Only the LACP timeout reveals it:
    // fast rate, 3 s after OVS's last LACPDU got through.
    let (carrying, _, _) = ping_member(&mut ours, &lab, RECEIVED);
    let deaf = ours.deaf[carrying].clone();
    let (sent, answered) = ping_while(&mut ours, 600, StdDuration::from_millis(1000), |_| {
        deaf.store(true, std::sync::atomic::Ordering::Relaxed);
    });
    let port = ours
        .host
        .nic()
        .lacp()
        .and_then(|l| l.port(carrying))
        .expect("port");
    assert_eq!(
        port.counters().expired,
        1,
        "the partner's information expired"
    );
    assert!(!ours.members_usable()[carrying]);
    let lost = u32::from(sent - answered);
    eprintln!(
        "FIGURE deaf_member={carrying} ping sent={sent} answered={answered} interruption_ms~{}",
        lost * 10
    );
    assert!(
        lost * 10 <= 3500,
        "LACP-timeout failover under 3.5 s: {} ms",
        lost * 10
    );
    let seen = view(carrying).expect("lacp/show");
    assert!(
        !seen.may_enable,
        "OVS stops using the member we left: {seen:?}"
    );
    deaf.store(false, std::sync::atomic::Ordering::Relaxed);
    let back = ours
        .pump_until(StdDuration::from_secs(15), |ours| {
            ours.members_usable() == [true, true]
                && view(carrying).is_ok_and(|v| enabled_with_us(&v))
        })
        .unwrap_or_else(|| panic!("member not back in 15 s: {:?}", view(carrying)));
    eprintln!(
        "FIGURE undeafened_member_enabled_after={:.2}s",
        back.as_secs_f64()
    );
    eprintln!(
        "FIGURE test_wall_time={:.1}s",
        test_start.elapsed().as_secs_f64()
    );
}
