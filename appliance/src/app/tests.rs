//! The whole appliance on one end of an in-memory wire, with a simulated
//! clock for a platform, fetched by a smoltcp client.

use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use host_config::Management;
use netstack::MacAddress;
use netstack::testing::{SimClock, Wire, WireNic};

use super::*;
use crate::platform::SystemInfo;
use crate::test_client::TestClient;

mod vif_locking;

const HOST_IP: Ipv4Address = Ipv4Address::new(10, 0, 2, 15);
const CLIENT_IP: Ipv4Address = Ipv4Address::new(10, 0, 2, 2);

/// A platform whose clock is the test's and whose idle just lets time pass.
struct TestPlatform {
    clock: SimClock,
    idles: Vec<Option<Duration>>,
}

impl Platform for TestPlatform {
    fn now(&self) -> Duration {
        to_duration(self.clock.now())
    }

    fn system_info(&self) -> SystemInfo {
        SystemInfo {
            cpus: 4,
            memory_total: 2 << 30,
            memory_free: 1 << 30,
        }
    }

    /// Deterministic, but different on every call (refs must be unique).
    fn fill_random(&mut self, buf: &mut [u8]) {
        static CALLS: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(1);
        let call = CALLS
            .fetch_add(1, core::sync::atomic::Ordering::Relaxed)
            .to_le_bytes();
        buf.iter_mut()
            .enumerate()
            .for_each(|(i, b)| *b = 0x5a ^ i as u8 ^ call[i % 8]);
    }

    fn idle(&mut self, deadline: Option<Duration>) {
        self.idles.push(deadline);
        if let Some(deadline) = deadline {
            self.clock.advance_to(to_instant(deadline));
        }
    }
}

fn static_config() -> HostConfig {
    HostConfig {
        hostname: String::from("keel-test"),
        root_password_hash: None,
        management: Management {
            interface: String::from("eth0"),
            ip: IpMode::Static(StaticIpv4 {
                address: [10, 0, 2, 15],
                prefix_len: 24,
                gateway: Some([10, 0, 2, 2]),
                dns: vec![[10, 0, 2, 3]],
            }),
            ..Management::default()
        },
        ..HostConfig::default()
    }
}

fn setup(config: HostConfig) -> (Appliance<TestPlatform, WireNic>, TestClient) {
    let clock = SimClock::new();
    clock.advance(smoltcp::time::Duration::from_millis(12_345));
    let wire = Wire::default();
    let (host_nic, client_nic) = wire.pair(
        MacAddress([0x52, 0x54, 0, 0x12, 0x34, 0x56]),
        MacAddress([2, 0, 0, 2, 0, 2]),
    );
    let platform = TestPlatform {
        clock: clock.clone(),
        idles: Vec::new(),
    };
    let appliance = Appliance::new(platform, vec![host_nic], config).expect("networks");
    let mut client = TestClient::new(client_nic, CLIENT_IP, &clock);
    client.connect((HOST_IP, HTTP_PORT));
    (appliance, client)
}

#[test]
fn serves_health_over_the_management_interface() {
    let (mut appliance, mut client) = setup(static_config());
    assert_eq!(appliance.management().name(), "eth0");
    assert_eq!(
        appliance.management().ipv4_cidr(),
        Some(Ipv4Cidr::new(HOST_IP, 24))
    );
    assert_eq!(
        appliance.management().gateway(),
        Some(Ipv4Address::new(10, 0, 2, 2))
    );
    let mut side = |_| {
        appliance.poll();
    };

    let response = client.exchange(
        b"GET /health HTTP/1.1\r\nHost: 10.0.2.15\r\n\r\n",
        &mut side,
    );
    assert_eq!(response.status, 200);
    assert_eq!(response.header("content-type"), Some("application/json"));
    let health = response.json();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["version"], "0.1.0");
    assert_eq!(health["hostname"], "keel-test");
    assert_eq!(health["cpus"], 4);
    assert_eq!(health["memory"]["total_bytes"], 2u64 << 30);
    assert_eq!(health["memory"]["free_bytes"], 1u64 << 30);
    assert_eq!(health["management_ip"], "10.0.2.15");
    let uptime = health["uptime_seconds"].as_f64().unwrap();
    assert!((12.345..13.0).contains(&uptime), "{uptime}");

    // Same connection: HEAD, a wrong method and an unknown path.
    let head = client.exchange(b"HEAD /health HTTP/1.1\r\nHost: h\r\n\r\n", &mut side);
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    assert!(
        head.header("content-length")
            .unwrap()
            .parse::<usize>()
            .unwrap()
            > 100
    );
    let post = client.exchange(
        b"POST /health HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n",
        &mut side,
    );
    assert_eq!(
        (post.status, post.header("allow")),
        (405, Some("GET, HEAD"))
    );
    let missing = client.exchange(b"GET /pool HTTP/1.1\r\nHost: h\r\n\r\n", &mut side);
    assert_eq!(missing.status, 404);
    assert_eq!(missing.body, br#"{"error":"not found"}"#);
}

#[test]
fn run_loop_idles_with_a_capped_deadline() {
    let (mut appliance, _client) = setup(static_config());
    let start = appliance.platform().now();
    // Nothing is scheduled on an idle static interface with only listening sockets.
    assert_eq!(appliance.poll(), None);
    let deadline = idle_until(start, None).unwrap();
    assert_eq!(deadline, start + MAX_IDLE);
    appliance.platform_mut().idle(Some(deadline));
    assert_eq!(appliance.platform().now(), start + MAX_IDLE);
    assert_eq!(appliance.platform().idles, vec![Some(start + MAX_IDLE)]);
}

#[test]
fn idle_deadline_rules() {
    let now = Duration::from_secs(10);
    assert_eq!(idle_until(now, None), Some(now + MAX_IDLE));
    assert_eq!(
        idle_until(now, Some(now + Duration::from_millis(5))),
        Some(now + Duration::from_millis(5))
    );
    assert_eq!(
        idle_until(now, Some(now + Duration::from_secs(30))),
        Some(now + MAX_IDLE)
    );
    assert_eq!(
        idle_until(now, Some(now)),
        None,
        "work due now: poll again at once"
    );
    assert_eq!(idle_until(now, Some(Duration::ZERO)), None);
}

#[test]
fn dhcp_config_starts_without_an_address() {
    let (appliance, _client) = setup(HostConfig::default());
    assert_eq!(appliance.management().ipv4_cidr(), None);
    assert_eq!(appliance.hostname(), "keel");
}

#[test]
fn host_config_ip_modes_convert() {
    assert_eq!(ip_config(&IpMode::Dhcp), IpConfig::Dhcp);
    let IpMode::Static(ref s) = static_config().management.ip else {
        unreachable!()
    };
    assert_eq!(
        ip_config(&IpMode::Static(s.clone())),
        IpConfig::Static {
            address: Ipv4Cidr::new(HOST_IP, 24),
            gateway: Some(Ipv4Address::new(10, 0, 2, 2)),
            dns: vec![Ipv4Address::new(10, 0, 2, 3)],
        }
    );
    for bad in [0, 33, 255] {
        let invalid = StaticIpv4 {
            prefix_len: bad,
            ..s.clone()
        };
        assert_eq!(ip_config(&IpMode::Static(invalid)), IpConfig::Dhcp);
    }
}

#[test]
fn clock_conversions_saturate() {
    assert_eq!(
        to_instant(Duration::from_millis(1500)),
        Instant::from_millis(1500)
    );
    assert_eq!(to_instant(Duration::MAX), Instant::from_micros(i64::MAX));
    assert_eq!(to_duration(Instant::from_millis(-5)), Duration::ZERO);
    assert_eq!(
        to_duration(Instant::from_millis(2)),
        Duration::from_millis(2)
    );
}

#[test]
fn serves_the_xenapi_next_to_health() {
    let mut config = static_config();
    config.root_password_hash = Some(host_config::hash_password("pw", [9; 16], 1_000));
    let (mut appliance, mut client) = setup(config);
    let mut side = |_| {
        appliance.poll();
    };
    let body = br#"{"id":0,"jsonrpc":"2.0","method":"session.login_with_password","params":["root","pw"]}"#;
    let mut request = format!(
        "POST /jsonrpc HTTP/1.1\r\nHost: h\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body);
    let login = client.exchange(&request, &mut side);
    assert_eq!(login.status, 200);
    assert_eq!(login.header("content-type"), Some("application/json"));
    let session = login.json()["result"].as_str().unwrap().to_string();
    assert!(session.starts_with("OpaqueRef:"));

    let call = format!(
        "<?xml version='1.0'?><methodCall><methodName>PIF.get_all_records</methodName><params><param><value><string>{session}</string></value></param></params></methodCall>"
    );
    let request = format!(
        "POST /RPC2 HTTP/1.1\r\nHost: h\r\nContent-Type: text/xml\r\nContent-Length: {}\r\n\r\n{call}",
        call.len()
    );
    let pifs = client.exchange(request.as_bytes(), &mut side);
    assert_eq!(pifs.header("content-type"), Some("text/xml"));
    let text = String::from_utf8(pifs.body).unwrap();
    assert!(
        text.contains("<name>IP</name><value>10.0.2.15</value>"),
        "{text}"
    );
    assert!(
        text.contains("<name>MAC</name><value>52:54:00:12:34:56</value>"),
        "{text}"
    );

    // /health is unchanged on the same connection.
    let health = client.exchange(b"GET /health HTTP/1.1\r\nHost: h\r\n\r\n", &mut side);
    assert_eq!(health.json()["status"], "ok");
}

#[test]
fn without_a_password_no_login_succeeds() {
    let (mut appliance, mut client) = setup(static_config());
    let mut side = |_| {
        appliance.poll();
    };
    let body = br#"{"id":1,"method":"session.login_with_password","params":["root",""]}"#;
    let mut request = format!(
        "POST /jsonrpc HTTP/1.1\r\nHost: h\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body);
    let r = client.exchange(&request, &mut side).json();
    assert_eq!(r["error"][0], "SESSION_AUTHENTICATION_FAILED");
}

fn json_call(method: &str, params: serde_json::Value) -> Vec<u8> {
    let body = serde_json::json!({"id": 1, "jsonrpc": "2.0", "method": method, "params": params})
        .to_string();
    format!(
        "POST /jsonrpc HTTP/1.1\r\nHost: h\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

#[test]
fn event_from_waits_then_times_out_through_the_poll_loop() {
    let mut config = static_config();
    config.root_password_hash = Some(host_config::hash_password("pw", [9; 16], 1_000));
    let (mut appliance, mut client) = setup(config);
    let login = client.exchange(
        &json_call(
            "session.login_with_password",
            serde_json::json!(["root", "pw"]),
        ),
        &mut |_| {
            appliance.poll();
        },
    );
    let session = login.json()["result"].as_str().unwrap().to_string();
    let initial = client.exchange(
        &json_call(
            "event.from",
            serde_json::json!([session, ["pool"], "", 0.0]),
        ),
        &mut |_| {
            appliance.poll();
        },
    );
    let token = initial.json()["result"]["token"]
        .as_str()
        .unwrap()
        .to_string();

    // Nothing changes: the call waits (the loop keeps running) for 3 s.
    let asked = appliance.platform().now();
    client.send(&json_call(
        "event.from",
        serde_json::json!([session, ["pool"], token, 3.0]),
    ));
    client.run_for(smoltcp::time::Duration::from_secs(2), &mut |_| {
        appliance.poll();
    });
    assert!(client.inbox.is_empty(), "answered before anything changed");
    // The loop wakes for the waiter's deadline.
    let due = appliance.api().next_deadline().expect("a waiting call");
    assert!(due >= asked + Duration::from_secs(3) && due < asked + Duration::from_millis(3020));
    assert!(appliance.poll().is_some_and(|next| next <= due));
    let answer = client.response(false, &mut |_| {
        appliance.poll();
    });
    let waited = appliance.platform().now() - asked;
    assert!(
        waited >= Duration::from_secs(3) && waited < Duration::from_millis(3100),
        "{waited:?}"
    );
    assert_eq!(answer.json()["result"]["events"], serde_json::json!([]));
    assert_ne!(answer.json()["result"]["token"], serde_json::json!(null));
}

mod bonded {
    //! The seed scenario end to end on in-memory wires: the appliance's two
    //! NICs in a LACP bond, management native on VLAN 5 and storage on VLAN
    //! 20, against a partner made of netstack's own bond and switch.

    use super::*;
    use host_config::{Bond as BondCfg, BondMode, Network, NetworkPurpose, Vlan};
    use netstack::bond::{Bond, BondConfig, BondMode as NetBondMode, HashPolicy};
    use netstack::lacp::LacpConfig;
    use netstack::switch::{VlanMode, VlanSet};
    use netstack::testing::End;
    use netstack::{HostNetworks, NetworkConfig};
    use smoltcp::phy::ChecksumCapabilities;
    use smoltcp::socket::{icmp, tcp};
    use smoltcp::wire::{Icmpv4Packet, Icmpv4Repr, IpAddress};

    const MGMT: Ipv4Address = Ipv4Address::new(192, 0, 2, 10);
    const STORAGE: Ipv4Address = Ipv4Address::new(198, 51, 100, 10);

    fn static_ip(a: [u8; 4]) -> IpMode {
        IpMode::Static(StaticIpv4 {
            address: a,
            prefix_len: 24,
            gateway: None,
            dns: vec![],
        })
    }

    fn config() -> HostConfig {
        HostConfig {
            hostname: String::from("xen1"),
            management: Management {
                interface: String::from("bond0"),
                ip: static_ip(MGMT.octets()),
                vlan: Some(Vlan {
                    id: 5,
                    native: true,
                }),
                mtu: 1500,
            },
            bonds: vec![BondCfg::new("bond0", &["eth0", "eth1"], BondMode::Lacp)],
            networks: vec![Network {
                name: String::from("storage"),
                purpose: NetworkPurpose::Storage,
                interface: String::from("bond0"),
                vlan: Some(Vlan {
                    id: 20,
                    native: false,
                }),
                mtu: 1500,
                ip: static_ip(STORAGE.octets()),
            }],
            ..HostConfig::default()
        }
    }

    fn peer_ip(a: [u8; 4]) -> IpConfig {
        IpConfig::Static {
            address: Ipv4Cidr::new(Ipv4Address::from(a), 24),
            gateway: None,
            dns: vec![],
        }
    }

    /// A record's field as text.
    fn text(record: &crate::xenapi::Value, field: &str) -> String {
        match record {
            crate::xenapi::Value::Struct(f) => match f.get(field) {
                Some(crate::xenapi::Value::String(s)) => s.clone(),
                Some(crate::xenapi::Value::Int(i)) => format!("{i}"),
                Some(crate::xenapi::Value::Bool(b)) => format!("{b}"),
                Some(other) => format!("{other:?}"),
                None => String::new(),
            },
            _ => String::new(),
        }
    }

    #[test]
    fn the_xenapi_shows_the_bond_and_vlans_brought_up() {
        let clock = SimClock::new();
        let wires = [
            Wire::new(1504, 64),
            Wire::new(1504, 64),
            Wire::new(1504, 64),
        ];
        let nics: Vec<WireNic> = wires
            .iter()
            .enumerate()
            .map(|(i, w)| {
                let i = u8::try_from(i).unwrap();
                w.pair(
                    MacAddress([0x52, 0x54, 0, 0, 0, i + 1]),
                    MacAddress([2, 0, 0, 9, 0, i + 1]),
                )
                .0
            })
            .collect();
        let platform = TestPlatform {
            clock: clock.clone(),
            idles: Vec::new(),
        };
        let appliance = Appliance::new(platform, nics, config()).expect("networks");
        let api = appliance.api();
        let pifs = api.records("PIF");
        let mut layout: Vec<(String, String, String, String)> = pifs
            .values()
            .map(|p| {
                (
                    text(p, "device"),
                    text(p, "VLAN"),
                    text(p, "MAC"),
                    text(p, "management"),
                )
            })
            .collect();
        layout.sort();
        let mac = |i: u8| format!("52:54:00:00:00:{i:02x}");
        let management_mac = {
            let m = appliance.management().mac().0;
            format!(
                "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
                m[0], m[1], m[2], m[3], m[4], m[5]
            )
        };
        let row = |d: &str, v: &str, m: &str, g: bool| {
            (
                String::from(d),
                String::from(v),
                String::from(m),
                format!("{g}"),
            )
        };
        assert_eq!(
            layout,
            [
                row("bond0", "-1", &management_mac, true),
                row("bond0", "20", &management_mac, false),
                row("eth0", "-1", &mac(1), false),
                row("eth1", "-1", &mac(2), false),
                row("eth2", "-1", &mac(3), false),
            ]
        );
        let find = |device: &str, vlan: &str| {
            pifs.iter()
                .find(|(_, p)| text(p, "device") == device && text(p, "VLAN") == vlan)
                .map(|(r, p)| (r.clone(), p.clone()))
                .unwrap()
        };
        let (master, bond_pif) = find("bond0", "-1");
        assert_eq!(text(&bond_pif, "IP"), "192.0.2.10");
        assert_eq!(text(&find("eth2", "-1").1, "currently_attached"), "false");
        let (storage_ref, storage) = find("bond0", "20");
        assert_eq!(text(&storage, "IP"), "198.51.100.10");
        assert_eq!(text(&storage, "ip_configuration_mode"), "Static");

        let bonds = api.records("Bond");
        let (bond_ref, bond) = bonds.iter().next().unwrap();
        assert_eq!(bonds.len(), 1);
        assert_eq!(text(bond, "master"), master);
        assert_eq!(text(bond, "mode"), "lacp");
        assert_eq!(text(bond, "primary_slave"), find("eth0", "-1").0);
        assert_eq!(text(&find("eth1", "-1").1, "bond_slave_of"), *bond_ref);
        let vlans = api.records("VLAN");
        let (vlan_ref, vlan) = vlans.iter().next().unwrap();
        assert_eq!(vlans.len(), 1);
        assert_eq!(text(vlan, "tag"), "20");
        assert_eq!(text(vlan, "tagged_PIF"), master);
        assert_eq!(text(vlan, "untagged_PIF"), storage_ref);
        assert_eq!(text(&storage, "VLAN_master_of"), *vlan_ref);
        assert_eq!(api.records("network").len(), 5);
    }

    #[test]
    fn management_and_storage_over_a_lacp_bond_with_vlans() {
        let clock = SimClock::new();
        // Tagged frames are 4 bytes over the MTU.
        let wires = [Wire::new(1504, 64), Wire::new(1504, 64)];
        for w in &wires {
            w.start_capture();
        }
        let (h0, p0) = wires[0].pair(
            MacAddress([0x52, 0x54, 0, 0, 0, 1]),
            MacAddress([2, 0, 0, 9, 0, 1]),
        );
        let (h1, p1) = wires[1].pair(
            MacAddress([0x52, 0x54, 0, 0, 0, 2]),
            MacAddress([2, 0, 0, 9, 0, 2]),
        );
        let platform = TestPlatform {
            clock: clock.clone(),
            idles: Vec::new(),
        };
        let mut appliance = Appliance::new(platform, vec![h0, h1], config()).expect("networks");
        assert_eq!(appliance.management().name(), "bond0");

        let bond = Bond::new(
            BondConfig::new(NetBondMode::Lacp {
                hash: HashPolicy::TcpUdpPorts,
                lacp: LacpConfig::new(MacAddress([2, 0, 0, 9, 0, 1])),
            }),
            [p0, p1],
            clock.now(),
        )
        .expect("partner bond");
        let trunk = VlanMode::Trunk {
            native: Some(5),
            allowed: VlanSet::of(&[20]).expect("vlans"),
        };
        let nets = [
            NetworkConfig {
                name: "mgmt".into(),
                vlan: 5,
                mtu: 1500,
                ip: peer_ip([192, 0, 2, 1]),
                mac: None,
            },
            NetworkConfig {
                name: "storage".into(),
                vlan: 20,
                mtu: 1500,
                ip: peer_ip([198, 51, 100, 1]),
                mac: None,
            },
        ];
        let mut peer = HostNetworks::new(bond, trunk, &nets, clock.now(), 77).expect("peer");
        let http = peer
            .interface_mut("mgmt")
            .expect("mgmt")
            .add_socket(tcp::Socket::new(
                tcp::SocketBuffer::new(vec![0; 8192]),
                tcp::SocketBuffer::new(vec![0; 8192]),
            ));
        let buffer = || icmp::PacketBuffer::new(vec![icmp::PacketMetadata::EMPTY; 4], vec![0; 512]);
        let mut pinger = icmp::Socket::new(buffer(), buffer());
        pinger.bind(icmp::Endpoint::Ident(0x4b)).expect("bind");
        let pinger = peer
            .interface_mut("storage")
            .expect("storage")
            .add_socket(pinger);

        let step = |appliance: &mut Appliance<TestPlatform, WireNic>,
                    peer: &mut HostNetworks<Bond<WireNic>>| {
            appliance.poll();
            let now = clock.now();
            peer.uplink_mut().poll(now);
            peer.poll(now);
            if peer.uplink().poll_at().is_some() {
                peer.uplink_mut().poll(now);
            }
            clock.advance(smoltcp::time::Duration::from_millis(1));
        };

        // LACP brings both members up on both sides.
        let mut converged = false;
        for _ in 0..10_000 {
            step(&mut appliance, &mut peer);
            let ours = appliance.networks().uplink().bond().expect("a bond");
            if (0..2).all(|i| ours.is_member_usable(i) && peer.uplink().is_member_usable(i)) {
                converged = true;
                break;
            }
        }
        assert!(converged, "LACP converged");

        // GET /health on the management address, native VLAN 5.
        peer.interface_mut("mgmt")
            .expect("mgmt")
            .connect_tcp(http, (MGMT, HTTP_PORT), 49200)
            .expect("connect");
        let mut sent = false;
        let mut response = Vec::new();
        for _ in 0..5_000 {
            step(&mut appliance, &mut peer);
            let socket = peer
                .interface_mut("mgmt")
                .expect("mgmt")
                .sockets_mut()
                .get_mut::<tcp::Socket<'static>>(http);
            if !sent && socket.may_send() {
                socket
                    .send_slice(b"GET /health HTTP/1.0\r\nHost: xen1\r\n\r\n")
                    .expect("send");
                sent = true;
            }
            while socket.can_recv() {
                socket
                    .recv(|d| {
                        response.extend_from_slice(d);
                        (d.len(), ())
                    })
                    .expect("recv");
            }
            if response
                .windows(15)
                .any(|w| w == b"\"status\":\"ok\"}" || w == b"\"status\":\"ok\",")
            {
                break;
            }
        }
        let text = String::from_utf8_lossy(&response).into_owned();
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
        assert!(text.contains("\"management_ip\":\"192.0.2.10\""), "{text}");

        // Ping the storage address on VLAN 20.
        let mut answered = false;
        for i in 0..3_000 {
            step(&mut appliance, &mut peer);
            let socket = peer
                .interface_mut("storage")
                .expect("storage")
                .sockets_mut()
                .get_mut::<icmp::Socket<'static>>(pinger);
            if i % 500 == 0 && socket.can_send() {
                let repr = Icmpv4Repr::EchoRequest {
                    ident: 0x4b,
                    seq_no: i as u16,
                    data: b"keel",
                };
                let buf = socket
                    .send(repr.buffer_len(), IpAddress::Ipv4(STORAGE))
                    .expect("queue");
                repr.emit(
                    &mut Icmpv4Packet::new_unchecked(buf),
                    &ChecksumCapabilities::default(),
                );
            }
            if let Ok((data, from)) = socket.recv() {
                let reply = Icmpv4Packet::new_checked(data)
                    .and_then(|p| Icmpv4Repr::parse(&p, &ChecksumCapabilities::default()));
                if matches!(reply, Ok(Icmpv4Repr::EchoReply { ident: 0x4b, .. }))
                    && from == IpAddress::Ipv4(STORAGE)
                {
                    answered = true;
                    break;
                }
            }
        }
        assert!(answered, "storage answers ping on VLAN 20");

        // On the wires: management untagged, storage tagged 20, both ways;
        // LACPDUs untagged.
        let tag = |f: &[u8]| {
            (f.get(12..14) == Some(&[0x81, 0x00][..]))
                .then(|| u16::from_be_bytes([f[14], f[15]]) & 0xfff)
        };
        let frames: Vec<(End, Vec<u8>)> = wires.iter().flat_map(|w| w.take_captured()).collect();
        let ours_tagged = frames
            .iter()
            .filter(|(end, f)| *end == End::A && tag(f) == Some(20))
            .count();
        assert!(
            ours_tagged > 0,
            "the appliance sent storage frames tagged 20"
        );
        assert!(
            frames
                .iter()
                .all(|(_, f)| matches!(tag(f), None | Some(20))),
            "only VLAN 20 is tagged"
        );
        assert_eq!(appliance.networks().switch().stats().dropped.total(), 0);
    }
}

/// A JSON-RPC caller through the appliance's poll loop.
type Caller<'a> = dyn FnMut(&mut Appliance<TestPlatform, WireNic>, &str, serde_json::Value) -> serde_json::Value
    + 'a;

/// Polls past [`RECONFIGURE_DELAY`]: a reconfiguration just answered applies.
fn settle(appliance: &mut Appliance<TestPlatform, WireNic>) {
    for _ in 0..20 {
        appliance
            .platform()
            .clock
            .advance(smoltcp::time::Duration::from_millis(100));
        appliance.poll();
    }
}

#[test]
fn pif_reconfigure_ip_changes_the_live_management_interface() {
    let mut config = static_config();
    config.root_password_hash = Some(host_config::hash_password("pw", [9; 16], 1_000));
    let (mut appliance, mut client) = setup(config);
    let mut call = |appliance: &mut Appliance<TestPlatform, WireNic>,
                    method: &str,
                    params: serde_json::Value| {
        let mut side = |_| {
            appliance.poll();
        };
        client
            .exchange(&json_call(method, params), &mut side)
            .json()
    };
    let session = call(
        &mut appliance,
        "session.login_with_password",
        serde_json::json!(["root", "pw"]),
    )["result"]
        .as_str()
        .unwrap()
        .to_string();
    let pif = call(&mut appliance, "PIF.get_all", serde_json::json!([session]))["result"][0]
        .as_str()
        .unwrap()
        .to_string();
    let reconfigure = |appliance: &mut Appliance<TestPlatform, WireNic>,
                       call: &mut Caller<'_>,
                       args: [&str; 5]| {
        let [mode, ip, mask, gw, dns] = args;
        call(
            appliance,
            "PIF.reconfigure_ip",
            serde_json::json!([session, pif, mode, ip, mask, gw, dns]),
        )
    };

    // Refused as xapi refuses, nothing changed.
    for (args, error) in [
        (
            ["Static", "10.0.2.300", "255.255.255.0", "", ""],
            ["INVALID_IP_ADDRESS_SPECIFIED", "IP"],
        ),
        (
            ["Static", "10.0.2.15", "255.0.255.0", "", ""],
            ["INVALID_IP_ADDRESS_SPECIFIED", "netmask"],
        ),
        (
            ["Static", "10.0.2.15", "255.255.255.0", "x", ""],
            ["INVALID_IP_ADDRESS_SPECIFIED", "gateway"],
        ),
        (
            ["Static", "10.0.2.15", "255.255.255.0", "", "1.1.1.1,y"],
            ["INVALID_IP_ADDRESS_SPECIFIED", "DNS"],
        ),
        (
            ["None", "", "", "", ""],
            ["PIF_IS_MANAGEMENT_INTERFACE", pif.as_str()],
        ),
    ] {
        let r = reconfigure(&mut appliance, &mut call, args);
        let [code, param] = error;
        assert_eq!(r["error"]["message"], code, "{args:?}: {r}");
        assert_eq!(
            r["error"]["data"],
            serde_json::json!([param]),
            "{args:?}: {r}"
        );
    }
    assert_eq!(
        appliance.management().gateway(),
        Some(Ipv4Address::new(10, 0, 2, 2))
    );

    // Static on the same address with another gateway and DNS: live a
    // moment after the answer, the connection carries on, the record follows.
    let r = reconfigure(
        &mut appliance,
        &mut call,
        [
            "static",
            "10.0.2.15",
            "255.255.255.0",
            "10.0.2.1",
            "10.0.2.4,10.0.2.5",
        ],
    );
    assert_eq!(r["result"], "", "{r}");
    // Not before the answer has left.
    assert_eq!(
        appliance.management().gateway(),
        Some(Ipv4Address::new(10, 0, 2, 2))
    );
    settle(&mut appliance);
    assert_eq!(
        appliance.management().gateway(),
        Some(Ipv4Address::new(10, 0, 2, 1))
    );
    assert_eq!(
        appliance.management().dns_servers(),
        &[Ipv4Address::new(10, 0, 2, 4), Ipv4Address::new(10, 0, 2, 5)]
    );
    let record = call(
        &mut appliance,
        "PIF.get_record",
        serde_json::json!([session, pif]),
    );
    let record = &record["result"];
    assert_eq!(record["ip_configuration_mode"], "Static");
    assert_eq!(record["IP"], "10.0.2.15");
    assert_eq!(record["netmask"], "255.255.255.0");
    assert_eq!(record["gateway"], "10.0.2.1");
    assert_eq!(record["DNS"], "10.0.2.4,10.0.2.5");

    // DHCP: the static address goes, discovery starts (no server here).
    let r = reconfigure(&mut appliance, &mut call, ["DHCP", "", "", "", ""]);
    assert_eq!(r["result"], "", "{r}");
    settle(&mut appliance);
    assert!(appliance.management().uses_dhcp());
    assert_eq!(appliance.management().ipv4_cidr(), None);
    assert_eq!(
        appliance.api().facts().management.address,
        None,
        "the PIF shows no address until a lease comes"
    );
    assert!(appliance.api().facts().management.dhcp);
}

mod uplink;
