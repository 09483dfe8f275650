//! Our `active-backup` and `balance-slb` bonds against a plain Open vSwitch
//! bridge: two ordinary ports, no bond and no LACP on the switch side, as
//! these modes need no switch support. Traffic must keep flowing when the
//! member carrying it is cut (the switch relearns our MAC on the other port
//! from our next frame), and broadcasts the bridge floods to both members
//! must go up only once.
//!
//! Needs root and Open vSwitch; without them each test says SKIP and passes.

mod common;

use std::time::Duration as StdDuration;

use netstack::Nic;
use netstack::bond::{BondConfig, BondMode};

use common::*;

/// The bridge port our MAC is learned on, from `fdb/show br0`.
fn learned_port(lab: &Lab, mac: &str) -> Option<String> {
    let fdb = lab.appctl(&["fdb/show", "br0"]).ok()?;
    fdb.lines()
        .find(|l| l.contains(mac))
        .and_then(|l| l.split_whitespace().next().map(str::to_string))
}

/// The OpenFlow port number OVS gave member `i`'s port.
fn ofport(lab: &Lab, i: usize) -> String {
    lab.ovs
        .vsctl(&lab.ns, &["get", "interface", &lab.ovs_end(i), "ofport"])
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

fn cut_and_restore(name: char, mode: BondMode) {
    let label = format!("{mode:?}");
    if let Some(why) = prerequisites_missing() {
        eprintln!("SKIP {label}: {why}");
        return;
    }
    let tag = Lab::tag(name);
    let (o0, o1) = (Lab::ovs_end_of(&tag, 0), Lab::ovs_end_of(&tag, 1));
    let lab = Lab::start(
        name,
        &["add-port", "br0", &o0, "--", "add-port", "br0", &o1],
    )
    .expect("lab with a plain OVS bridge");
    let mut ours = lab.ours(BondConfig::new(mode)).expect("our bond");
    let took = ours.pump_until(StdDuration::from_secs(5), |o| {
        o.members_usable() == [true, true]
    });
    assert!(took.is_some(), "{label}: members come up with carrier");

    assert!(warm_up(&mut ours), "{label}: {}", diagnose(&lab, &ours));
    let (carrying, sent, answered) = ping_member(&mut ours, &lab, BOTH_WAYS);
    assert!(answered + 1 >= sent, "{label}: ping {answered}/{sent}");
    let our_mac = ours.host.nic().mac().to_string();
    assert_eq!(
        learned_port(&lab, &our_mac),
        Some(ofport(&lab, carrying)),
        "{label}: the bridge learned us on the member we send on"
    );
    if mode == BondMode::ActiveBackup {
        assert_eq!(ours.host.nic().active_member(), Some(carrying));
    }
    // The bridge floods broadcasts (our own ARP requests among them) to both
    // ports; whatever came back on the other member was dropped, not passed up.
    assert!(
        ours.host.nic().stats().rx_inactive > 0,
        "{label}: duplicates dropped"
    );

    let (sent, answered) = ping_while(&mut ours, 300, StdDuration::from_millis(1000), |_| {
        lab.set_link(carrying, false).expect("cut");
    });
    eprintln!(
        "FIGURE {label} cut_member={carrying} ping sent={sent} answered={answered} interruption_ms~{}",
        u32::from(sent - answered) * 10
    );
    assert!(
        answered + 50 >= sent,
        "{label}: traffic moves to the other member: {answered}/{sent}"
    );
    assert!(
        !ours.members_usable()[carrying],
        "{label}: the cut member is out"
    );
    assert_eq!(
        learned_port(&lab, &our_mac),
        Some(ofport(&lab, 1 - carrying)),
        "{label}: the bridge relearned us on the surviving member"
    );

    lab.set_link(carrying, true).expect("restore");
    let back = ours.pump_until(StdDuration::from_secs(5), |o| {
        o.members_usable() == [true, true]
    });
    assert!(
        back.is_some(),
        "{label}: the member comes back with carrier"
    );
    if mode == BondMode::ActiveBackup {
        assert_eq!(
            ours.host.nic().active_member(),
            Some(1 - carrying),
            "no failback: a flapping link must not move traffic twice"
        );
    }
    let (sent, answered) = ping_while(&mut ours, 50, StdDuration::ZERO, |_| {});
    assert!(
        answered + 1 >= sent,
        "{label}: ping after restore {answered}/{sent}"
    );
}

#[test]
fn active_backup_against_a_plain_ovs_bridge() {
    cut_and_restore('a', BondMode::ActiveBackup);
}

#[test]
fn balance_slb_against_a_plain_ovs_bridge() {
    cut_and_restore('s', BondMode::BalanceSlb);
}
