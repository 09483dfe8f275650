//! Two LACP systems back to back over simulated links, driven by a
//! simulated clock in 10 ms steps.

use alloc::vec::Vec;

use smoltcp::time::{Duration, Instant};

use super::*;
use crate::MacAddress;
use crate::wire::{
    ETHERNET_HEADER_LEN, EthernetFrame, EthernetRepr, LacpState, LacpduRepr, MarkerKind,
    MarkerRepr, PortInfo, SLOW_PROTOCOLS_MULTICAST, SlowPdu,
};

const SYS_A: MacAddress = MacAddress([2, 0, 0, 0, 0xa, 0]);
const SYS_B: MacAddress = MacAddress([2, 0, 0, 0, 0xb, 0]);
const TICK: Duration = Duration::from_millis(10);

fn port_mac(system: MacAddress, i: usize) -> MacAddress {
    let mut m = system.0;
    m[5] = i as u8 + 1;
    MacAddress(m)
}

fn lacp(system: MacAddress, ports: usize, mode: LacpMode, rate: LacpRate) -> Lacp {
    let mut lacp = Lacp::new(LacpConfig {
        mode,
        rate,
        ..LacpConfig::new(system)
    });
    for i in 0..ports {
        lacp.add_port(PortConfig {
            mac: port_mac(system, i),
            number: i as u16 + 1,
            priority: DEFAULT_PORT_PRIORITY,
        });
    }
    lacp
}

/// A frame sent, with when and where.
#[derive(Debug, Clone)]
struct Sent {
    at: Instant,
    from_a: bool,
    port: usize,
    frame: Vec<u8>,
}

/// Link i joins port i of A to port i of B.
struct Sim {
    now: Instant,
    a: Lacp,
    b: Lacp,
    /// Carrier per link.
    up: Vec<bool>,
    /// Frames from B are lost on link i (a partner that went silent).
    b_silent: Vec<bool>,
    log: Vec<Sent>,
}

impl Sim {
    fn new(a: Lacp, b: Lacp) -> Self {
        let n = a.ports().len();
        let mut sim = Sim {
            now: Instant::from_secs(100),
            a,
            b,
            up: vec![true; n],
            b_silent: vec![false; n],
            log: Vec::new(),
        };
        for i in 0..n {
            sim.a.on_carrier(sim.now, i, true);
            sim.b.on_carrier(sim.now, i, true);
        }
        sim
    }

    fn step(&mut self) {
        let now = self.now;
        let mut sent = Vec::new();
        self.a
            .poll(now, &mut |i, f: &[u8]| sent.push((true, i, f.to_vec())));
        self.b
            .poll(now, &mut |i, f: &[u8]| sent.push((false, i, f.to_vec())));
        for (from_a, port, frame) in sent {
            self.log.push(Sent {
                at: now,
                from_a,
                port,
                frame: frame.clone(),
            });
            if !self.up[port] || (!from_a && self.b_silent[port]) {
                continue;
            }
            let to = if from_a { &mut self.b } else { &mut self.a };
            to.on_slow_protocols(now, port, &frame[ETHERNET_HEADER_LEN..])
                .expect("our own PDUs parse");
        }
    }

    fn run(&mut self, duration: Duration) {
        let end = self.now + duration;
        while self.now < end {
            self.step();
            self.now += TICK;
        }
    }

    /// Runs until `done` holds; returns the simulated time it took.
    fn run_until(&mut self, limit: Duration, done: impl Fn(&Sim) -> bool) -> Option<Duration> {
        let start = self.now;
        while self.now - start <= limit {
            self.step();
            if done(self) {
                return Some(self.now - start);
            }
            self.now += TICK;
        }
        None
    }

    fn set_link(&mut self, i: usize, up: bool) {
        self.up[i] = up;
        self.a.on_carrier(self.now, i, up);
        self.b.on_carrier(self.now, i, up);
    }

    fn all_distributing(&self) -> bool {
        (0..self.up.len()).all(|i| self.a.is_distributing(i) && self.b.is_distributing(i))
    }

    /// LACPDUs A sent on `port` at or after `since`.
    fn a_pdus(&self, port: usize, since: Instant) -> Vec<(Instant, LacpduRepr)> {
        self.log
            .iter()
            .filter(|s| s.from_a && s.port == port && s.at >= since)
            .filter_map(|s| match SlowPdu::parse(&s.frame[ETHERNET_HEADER_LEN..]) {
                Ok(SlowPdu::Lacp(pdu)) => Some((s.at, pdu)),
                _ => None,
            })
            .collect()
    }
}

#[test]
fn two_active_systems_negotiate_to_collecting_distributing() {
    let mut sim = Sim::new(
        lacp(SYS_A, 2, LacpMode::Active, LacpRate::Fast),
        lacp(SYS_B, 2, LacpMode::Active, LacpRate::Fast),
    );
    let took = sim
        .run_until(Duration::from_secs(10), Sim::all_distributing)
        .expect("both members negotiate");
    // The aggregate wait holds every member for 2 s, and no longer than that
    // plus a PDU exchange.
    assert!(took >= AGGREGATE_WAIT_TIME, "{took}");
    assert!(took <= Duration::from_millis(2100), "{took}");

    let port = sim.a.port(0).unwrap();
    assert_eq!(port.rx_state(), RxState::Current);
    assert_eq!(port.partner().system, SYS_B);
    assert_eq!(port.partner().port, 1);
    assert_eq!(port.actor().state, LacpState(0x3f));
    assert!(port.partner().state.has(LacpState::SYNCHRONIZATION));
    let lag = sim.a.aggregator().unwrap();
    assert_eq!((lag.partner_system, lag.partner_key), (SYS_B, 1));
    assert_eq!(lag.individual, None);

    // Every frame is a LACPDU from the member's own MAC to the slow-protocols group.
    for sent in &sim.log {
        let frame = EthernetFrame::new_checked(&sent.frame[..]).unwrap();
        let eth = EthernetRepr::parse(&frame);
        assert_eq!(eth.dst, SLOW_PROTOCOLS_MULTICAST);
        let system = if sent.from_a { SYS_A } else { SYS_B };
        assert_eq!(eth.src, port_mac(system, sent.port));
    }

    // Steady state: fast rate, one PDU a second per port, partner kept current.
    let since = sim.now;
    sim.run(Duration::from_secs(10));
    let n = sim.a_pdus(0, since).len();
    assert!((10..=11).contains(&n), "{n} PDUs in 10 s");
    assert!(sim.all_distributing());
    assert_eq!(sim.a.port(0).unwrap().counters().expired, 0);
}

#[test]
fn link_cut_detaches_at_once_and_restore_rejoins_after_the_wait() {
    let mut sim = Sim::new(
        lacp(SYS_A, 2, LacpMode::Active, LacpRate::Fast),
        lacp(SYS_B, 2, LacpMode::Active, LacpRate::Fast),
    );
    sim.run_until(Duration::from_secs(10), Sim::all_distributing)
        .expect("negotiated");
    sim.set_link(1, false);
    assert!(
        !sim.a.is_distributing(1),
        "carrier loss detaches immediately"
    );
    sim.run(Duration::from_secs(10));
    assert!(sim.a.is_distributing(0) && sim.b.is_distributing(0));
    assert!(!sim.a.is_distributing(1));
    assert_eq!(sim.a.port(1).unwrap().rx_state(), RxState::PortDisabled);

    sim.set_link(1, true);
    let took = sim
        .run_until(Duration::from_secs(10), Sim::all_distributing)
        .expect("the member rejoins");
    assert!(
        took >= AGGREGATE_WAIT_TIME && took < Duration::from_secs(3),
        "{took}"
    );
    assert!(sim.a.is_distributing(0), "the other member never stopped");
}

#[test]
fn partner_key_change_reselects_through_waiting() {
    let mut sim = Sim::new(
        lacp(SYS_A, 2, LacpMode::Active, LacpRate::Fast),
        lacp(SYS_B, 2, LacpMode::Active, LacpRate::Fast),
    );
    sim.run_until(Duration::from_secs(10), Sim::all_distributing)
        .expect("negotiated");
    sim.b.set_key(42);
    sim.run_until(Duration::from_millis(1100), |s| !s.a.is_distributing(0))
        .expect("a new partner key detaches within the PDU rate limit");
    let took = sim
        .run_until(Duration::from_secs(10), Sim::all_distributing)
        .expect("renegotiates under the new key");
    assert!(took >= Duration::from_secs(2), "{took}");
    assert_eq!(sim.a.aggregator().unwrap().partner_key, 42);
    assert_eq!(sim.a.port(1).unwrap().partner().key, 42);
}

#[test]
fn silent_partner_expires_after_three_seconds_then_defaults() {
    let mut sim = Sim::new(
        lacp(SYS_A, 2, LacpMode::Active, LacpRate::Fast),
        lacp(SYS_B, 2, LacpMode::Active, LacpRate::Fast),
    );
    sim.run_until(Duration::from_secs(10), Sim::all_distributing)
        .expect("negotiated");
    let last_heard = sim.now;
    sim.b_silent[0] = true;
    let expired_after = sim
        .run_until(Duration::from_secs(5), |s| {
            s.a.port(0).unwrap().rx_state() == RxState::Expired
        })
        .expect("expires");
    // B's last PDU may have been up to a second before we stopped listening.
    assert!(
        expired_after > Duration::from_secs(2) && expired_after <= SHORT_TIMEOUT_TIME,
        "{expired_after}"
    );
    let port = sim.a.port(0).unwrap();
    assert!(!port.is_distributing());
    assert!(port.actor().state.has(LacpState::EXPIRED));
    assert_eq!(port.counters().expired, 1);
    assert!(sim.a.is_distributing(1), "the other member carries on");
    // B still hears A: told that A is out of sync, it stops sending on the
    // link rather than into a direction nobody receives.
    sim.run_until(Duration::from_millis(1100), |s| !s.b.is_distributing(0))
        .expect("the partner stops distributing on the one-way link");
    assert!(sim.b.is_distributing(1));

    let defaulted_after = sim
        .run_until(Duration::from_secs(5), |s| {
            s.a.port(0).unwrap().rx_state() == RxState::Defaulted
        })
        .expect("defaults");
    assert!(defaulted_after <= SHORT_TIMEOUT_TIME, "{defaulted_after}");
    let port = sim.a.port(0).unwrap();
    assert_eq!(port.counters().defaulted, 1);
    assert!(port.actor().state.has(LacpState::DEFAULTED));
    assert!(!port.actor().state.has(LacpState::EXPIRED));
    assert_eq!(port.partner().system, MacAddress([0; 6]));
    assert!(sim.now - last_heard <= Duration::from_secs(7));

    // The partner speaks again: the member comes back.
    sim.b_silent[0] = false;
    sim.run_until(Duration::from_secs(10), Sim::all_distributing)
        .expect("back");
}

#[test]
fn passive_pairs_never_aggregate_but_active_passive_does() {
    let mut sim = Sim::new(
        lacp(SYS_A, 2, LacpMode::Passive, LacpRate::Fast),
        lacp(SYS_B, 2, LacpMode::Passive, LacpRate::Fast),
    );
    sim.run(Duration::from_secs(60));
    assert!(sim.log.is_empty(), "passive systems stay silent");
    assert!(!sim.a.is_distributing(0));
    assert_eq!(sim.a.port(0).unwrap().rx_state(), RxState::Defaulted);

    let mut sim = Sim::new(
        lacp(SYS_A, 2, LacpMode::Active, LacpRate::Fast),
        lacp(SYS_B, 2, LacpMode::Passive, LacpRate::Fast),
    );
    sim.run_until(Duration::from_secs(10), Sim::all_distributing)
        .expect("one active side is enough");
    assert!(
        !sim.b
            .port(0)
            .unwrap()
            .actor()
            .state
            .has(LacpState::ACTIVITY)
    );
}

#[test]
fn slow_partner_gets_a_pdu_every_thirty_seconds() {
    let mut sim = Sim::new(
        lacp(SYS_A, 1, LacpMode::Active, LacpRate::Fast),
        lacp(SYS_B, 1, LacpMode::Active, LacpRate::Slow),
    );
    sim.run_until(Duration::from_secs(10), Sim::all_distributing)
        .expect("negotiated");
    let since = sim.now;
    sim.run(Duration::from_secs(95));
    let n = sim.a_pdus(0, since).len();
    assert!(
        (3..=4).contains(&n),
        "A sent {n} PDUs in 95 s to a slow partner"
    );
    // B asked for the slow rate, A for the fast one: both stay current.
    assert!(sim.all_distributing());
    assert_eq!(sim.b.port(0).unwrap().counters().expired, 0);
}

#[test]
fn never_more_than_three_pdus_in_a_second() {
    let mut a = lacp(SYS_A, 1, LacpMode::Active, LacpRate::Fast);
    let now = Instant::from_secs(1);
    a.on_carrier(now, 0, true);
    let mut times = Vec::new();
    // A partner whose view of us changes every 10 ms asks for a PDU each time.
    let mut t = now;
    for round in 0..300u16 {
        let pdu = LacpduRepr {
            actor: PortInfo {
                system_priority: 1,
                system: SYS_B,
                key: 1,
                port_priority: 1,
                port: 1,
                state: LacpState(LacpState::ACTIVITY | LacpState::AGGREGATION),
            },
            partner: PortInfo {
                key: round,
                ..PortInfo::default()
            },
            collector_max_delay: 0,
        };
        a.on_pdu(t, 0, &pdu);
        a.poll(t, &mut |_, _| times.push(t));
        t += TICK;
    }
    assert!(times.len() >= 9, "NTT is honoured: {}", times.len());
    for w in times.windows(4) {
        assert!(
            w[3] - w[0] >= FAST_PERIODIC_TIME,
            "4 PDUs within {}",
            w[3] - w[0]
        );
    }
}

#[test]
fn markers_are_answered_and_bad_pdus_counted() {
    let mut a = lacp(SYS_A, 1, LacpMode::Passive, LacpRate::Fast);
    let now = Instant::from_secs(1);
    a.on_carrier(now, 0, true);
    let marker = MarkerRepr {
        kind: MarkerKind::Information,
        requester_port: 7,
        requester_system: SYS_B,
        transaction_id: 99,
    };
    let mut pdu = [0u8; 110];
    marker.emit(&mut pdu).unwrap();
    a.on_slow_protocols(now, 0, &pdu).unwrap();
    let mut out = Vec::new();
    a.poll(now, &mut |i, f: &[u8]| out.push((i, f.to_vec())));
    assert_eq!(out.len(), 1, "only the response: passive sends no LACPDU");
    let (port, frame) = &out[0];
    assert_eq!(*port, 0);
    assert_eq!(
        SlowPdu::parse(&frame[ETHERNET_HEADER_LEN..]),
        Ok(SlowPdu::Marker(marker.response()))
    );
    let counters = a.port(0).unwrap().counters();
    assert_eq!((counters.marker_rx, counters.marker_tx), (1, 1));

    assert!(a.on_slow_protocols(now, 0, &pdu[..50]).is_err());
    assert!(a.on_slow_protocols(now, 0, &[9; 110]).is_err());
    assert!(
        a.on_slow_protocols(now, 5, &pdu).is_ok(),
        "unknown port ignored"
    );
    assert_eq!(a.port(0).unwrap().counters().bad, 2);
}

#[test]
fn a_bond_cabled_to_itself_detects_loopback() {
    let mut a = lacp(SYS_A, 2, LacpMode::Active, LacpRate::Fast);
    let mut now = Instant::from_secs(1);
    a.on_carrier(now, 0, true);
    a.on_carrier(now, 1, true);
    for _ in 0..1000 {
        let mut sent = Vec::new();
        a.poll(now, &mut |i, f: &[u8]| sent.push((i, f.to_vec())));
        for (i, f) in sent {
            // Port 0 and port 1 are cabled together.
            a.on_slow_protocols(now, 1 - i, &f[ETHERNET_HEADER_LEN..])
                .unwrap();
        }
        now += TICK;
    }
    for i in 0..2 {
        let port = a.port(i).unwrap();
        assert!(!port.is_distributing());
        assert!(port.looped());
        assert!(port.counters().loopback >= 5);
    }
    assert_eq!(a.aggregator(), None);
}

#[test]
fn partner_that_never_syncs_is_reported_as_churned() {
    let mut a = lacp(SYS_A, 1, LacpMode::Active, LacpRate::Fast);
    let mut now = Instant::from_secs(1);
    a.on_carrier(now, 0, true);
    // The partner claims to be in sync but describes some other system as
    // its partner, so we never consider it in sync with us.
    let pdu = LacpduRepr {
        actor: PortInfo {
            system_priority: 1,
            system: SYS_B,
            key: 1,
            port_priority: 1,
            port: 1,
            state: LacpState(
                LacpState::ACTIVITY | LacpState::AGGREGATION | LacpState::SYNCHRONIZATION,
            ),
        },
        partner: PortInfo {
            system: MacAddress([2, 9, 9, 9, 9, 9]),
            ..PortInfo::default()
        },
        collector_max_delay: 0,
    };
    for _ in 0..70 {
        a.on_pdu(now, 0, &pdu);
        a.poll(now, &mut |_, _| {});
        now += Duration::from_secs(1);
    }
    let port = a.port(0).unwrap();
    assert_eq!(port.counters().partner_churn, 1);
    assert_eq!(port.partner_churn(), ChurnState::Churn);
    assert_eq!(port.mux_state(), MuxState::Attached);
    assert_eq!(port.actor_churn(), ChurnState::NoChurn);
}

#[test]
fn poll_reports_the_next_deadline() {
    let mut a = lacp(SYS_A, 1, LacpMode::Active, LacpRate::Fast);
    let now = Instant::from_secs(1);
    assert_eq!(
        a.poll(now, &mut |_, _| {}),
        None,
        "no carrier, nothing to do"
    );
    a.on_carrier(now, 0, true);
    let mut sent = 0;
    let next = a.poll(now, &mut |_, _| sent += 1).unwrap();
    assert_eq!(sent, 1, "a PDU goes out as soon as carrier comes");
    assert!(next > now && next <= now + FAST_PERIODIC_TIME, "{next}");
}

#[test]
fn random_pdus_carrier_flaps_and_time_jumps_never_break_invariants() {
    use crate::wire::fuzz::tests::{Rng, mutate};
    let mut rng = Rng::new(0x1ac9);
    let mut a = lacp(SYS_A, 2, LacpMode::Active, LacpRate::Fast);
    let mut now = Instant::from_secs(5);
    let mut seed = [0u8; 110];
    SlowPdu::Lacp(LacpduRepr {
        actor: PortInfo {
            system_priority: 1,
            system: SYS_B,
            key: 1,
            port_priority: 1,
            port: 1,
            state: LacpState(0x3f),
        },
        partner: *a.port(0).unwrap().actor(),
        collector_max_delay: 0,
    })
    .emit(&mut seed)
    .unwrap();
    for _ in 0..20_000 {
        let port = rng.below(3); // 2 is no such port
        match rng.below(10) {
            0 => a.on_carrier(now, port, rng.below(2) == 0),
            1..=6 => {
                let mut input = seed.to_vec();
                for _ in 0..rng.below(3) {
                    mutate(&mut rng, &mut input);
                }
                let _ = a.on_slow_protocols(now, port, &input);
            }
            _ => {}
        }
        let mut sent = 0;
        a.poll(now, &mut |_, frame| {
            assert!(SlowPdu::parse(&frame[ETHERNET_HEADER_LEN..]).is_ok());
            sent += 1;
        });
        assert!(
            sent <= 2 * 2,
            "at most a LACPDU and a marker reply per port"
        );
        for p in a.ports() {
            let s = p.actor().state;
            if p.is_distributing() {
                assert!(p.enabled() && p.partner().state.has(LacpState::SYNCHRONIZATION));
                assert!(s.has(LacpState::SYNCHRONIZATION | LacpState::DISTRIBUTING));
            } else {
                assert!(!s.has(LacpState::DISTRIBUTING));
            }
        }
        now += Duration::from_millis(rng.below(1500) as u64);
    }
}
