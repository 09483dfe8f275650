//! A DHCP-mode interface against the scripted server.

use smoltcp::time::Duration;
use smoltcp::wire::{DhcpMessageType, Ipv4Cidr};

use super::dhcp_server::{DNS_IP, DhcpServer, OFFERED_IP, SERVER_IP};
use super::{capture_logs, logged};
use crate::testing::{SimClock, Wire, WireNic, run_until};
use crate::{HostInterface, IpConfig, MacAddress};

fn setup(
    client_mac: MacAddress,
    lease_secs: u32,
) -> (SimClock, Wire, HostInterface<WireNic>, DhcpServer) {
    let clock = SimClock::new();
    let wire = Wire::default();
    let (client_nic, server_nic) = wire.pair(client_mac, MacAddress([2, 0xdd, 0, 0, 0, 1]));
    let iface = HostInterface::new("eth0", client_nic, IpConfig::Dhcp, clock.now(), 7);
    (clock, wire, iface, DhcpServer::new(server_nic, lease_secs))
}

#[test]
fn dhcp_lease_configures_address_gateway_and_dns() {
    capture_logs();
    let (clock, _wire, mut iface, mut server) = setup(MacAddress([2, 0, 0, 0xd1, 0, 1]), 3600);
    assert_eq!(iface.ipv4_cidr(), None);
    assert!(run_until(
        &clock,
        Duration::from_millis(10),
        Duration::from_secs(30),
        |now| {
            iface.poll(now);
            server.poll();
            iface.ipv4_cidr().is_some()
        }
    ));
    assert_eq!(iface.ipv4_cidr(), Some(Ipv4Cidr::new(OFFERED_IP, 24)));
    assert_eq!(iface.gateway(), Some(SERVER_IP));
    assert_eq!(iface.dns_servers(), &[DNS_IP]);
    assert_eq!(
        server.seen,
        vec![DhcpMessageType::Discover, DhcpMessageType::Request]
    );
    assert!(logged(
        "net: eth0 02:00:00:d1:00:01 DHCP lease 10.0.2.15/24 gw 10.0.2.2"
    ));
}

#[test]
fn lease_is_renewed_while_the_server_answers() {
    let (clock, _wire, mut iface, mut server) = setup(MacAddress([2, 0, 0, 0xd2, 0, 1]), 60);
    let mut lost = false;
    run_until(
        &clock,
        Duration::from_millis(50),
        Duration::from_secs(300),
        |now| {
            iface.poll(now);
            server.poll();
            // Once configured, the address must never go away.
            if server.seen.len() > 2 && iface.ipv4_cidr().is_none() {
                lost = true;
            }
            false
        },
    );
    assert!(!lost);
    assert_eq!(iface.ipv4_cidr(), Some(Ipv4Cidr::new(OFFERED_IP, 24)));
    let renewals = server
        .seen
        .iter()
        .filter(|t| **t == DhcpMessageType::Request)
        .count()
        - 1;
    assert!(
        renewals >= 4,
        "renewed {renewals} times in 300 s of 60 s leases: {:?}",
        server.seen
    );
}

#[test]
fn silent_server_past_expiry_clears_the_address_and_it_comes_back() {
    capture_logs();
    let (clock, _wire, mut iface, mut server) = setup(MacAddress([2, 0, 0, 0xd3, 0, 1]), 60);
    assert!(run_until(
        &clock,
        Duration::from_millis(10),
        Duration::from_secs(30),
        |now| {
            iface.poll(now);
            server.poll();
            iface.ipv4_cidr().is_some()
        }
    ));
    let acquired = clock.now();

    server.silent = true;
    assert!(run_until(
        &clock,
        Duration::from_millis(100),
        Duration::from_secs(120),
        |now| {
            iface.poll(now);
            server.poll();
            iface.ipv4_cidr().is_none()
        }
    ));
    let held = clock.now() - acquired;
    assert!(
        held >= Duration::from_secs(60) && held < Duration::from_secs(62),
        "lease held for {held}"
    );
    assert_eq!(iface.gateway(), None);
    assert!(iface.dns_servers().is_empty());
    assert!(logged(
        "net: eth0 02:00:00:d3:00:01 DHCP lease 10.0.2.15/24 lost"
    ));

    server.silent = false;
    assert!(run_until(
        &clock,
        Duration::from_millis(100),
        Duration::from_secs(30),
        |now| {
            iface.poll(now);
            server.poll();
            iface.ipv4_cidr().is_some()
        }
    ));
}

#[test]
fn link_coming_back_restarts_discovery_at_once() {
    let (clock, wire, mut iface, mut server) = setup(MacAddress([2, 0, 0, 0xd4, 0, 1]), 3600);
    // The first DISCOVER is lost with the link down; the next would wait for the 10 s retry.
    wire.set_link_up(false);
    iface.poll(clock.now());
    server.poll();
    assert!(!iface.link_up());
    clock.advance(Duration::from_millis(100));
    wire.set_link_up(true);
    assert!(run_until(
        &clock,
        Duration::from_millis(10),
        Duration::from_secs(2),
        |now| {
            iface.poll(now);
            server.poll();
            iface.ipv4_cidr().is_some()
        }
    ));
}

#[test]
fn poll_deadline_follows_the_dhcp_timers() {
    let (clock, _wire, mut iface, mut server) = setup(MacAddress([2, 0, 0, 0xd5, 0, 1]), 3600);
    assert!(run_until(
        &clock,
        Duration::from_millis(10),
        Duration::from_secs(30),
        |now| {
            iface.poll(now);
            server.poll();
            iface.ipv4_cidr().is_some()
        }
    ));
    // Bound: the next thing to do is renewing at half the lease.
    let deadline = iface.poll(clock.now()).expect("renewal deadline");
    let wait = deadline - clock.now();
    assert!(
        wait > Duration::from_secs(1700) && wait <= Duration::from_secs(1800),
        "{wait}"
    );
}

#[test]
fn reconfigure_switches_between_dhcp_static_and_none_live() {
    capture_logs();
    let (clock, _wire, mut iface, mut server) = setup(MacAddress([2, 0, 0, 0xd1, 0, 5]), 3600);
    let leased = |iface: &mut HostInterface<WireNic>, server: &mut DhcpServer| {
        run_until(
            &clock,
            Duration::from_millis(10),
            Duration::from_secs(30),
            |now| {
                iface.poll(now);
                server.poll();
                iface.ipv4_cidr().is_some()
            },
        )
    };
    assert!(leased(&mut iface, &mut server));
    assert!(iface.uses_dhcp());

    let address = Ipv4Cidr::new(smoltcp::wire::Ipv4Address::new(10, 0, 2, 20), 24);
    iface.reconfigure(Some(IpConfig::Static {
        address,
        gateway: Some(SERVER_IP),
        dns: vec![],
    }));
    assert!(!iface.uses_dhcp());
    assert_eq!(iface.ipv4_cidr(), Some(address));
    assert_eq!(iface.gateway(), Some(SERVER_IP));
    assert!(iface.dns_servers().is_empty());
    // No DHCP traffic from a static interface, however long it runs.
    let seen = server.seen.len();
    assert!(!run_until(
        &clock,
        Duration::from_millis(10),
        Duration::from_secs(20),
        |now| {
            iface.poll(now);
            server.poll();
            server.seen.len() != seen
        }
    ));
    assert_eq!(iface.ipv4_cidr(), Some(address));

    iface.reconfigure(None);
    assert_eq!((iface.ipv4_cidr(), iface.gateway()), (None, None));

    // Back to DHCP: a fresh discovery gets a lease again.
    iface.reconfigure(Some(IpConfig::Dhcp));
    assert!(iface.uses_dhcp() && iface.ipv4_cidr().is_none());
    assert!(leased(&mut iface, &mut server));
    assert_eq!(iface.ipv4_cidr(), Some(Ipv4Cidr::new(OFFERED_IP, 24)));
    assert!(logged("net: eth0 02:00:00:d1:00:05 static 10.0.2.20/24"));
    assert!(logged("net: eth0 02:00:00:d1:00:05 no address"));
}
