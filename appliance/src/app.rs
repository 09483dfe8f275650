//! The appliance main loop: the management interface, the HTTP server on it,
//! and the routes they serve, driven by the platform's clock and idle.

use alloc::string::String;
use core::fmt;
use core::time::Duration;

use alloc::vec::Vec;

use host_config::{HostConfig, IpMode, StaticIpv4};
use netstack::switch::{HostPort, VifPolicy};
use netstack::{HostInterface, HostNetworks, IpConfig, Nic, Uplink};
use smoltcp::time::Instant;
use smoltcp::wire::{Ipv4Address, Ipv4Cidr};

use crate::platform::Platform;
use crate::routes::Endpoints;
use crate::server::{HttpServer, ServerConfig};
use crate::tls;
use crate::xenapi::{
    HostFacts, ManagementFacts, NetRequest, NetworkLayout, VifTarget, XenApi, network_layout,
};

/// Where the management API listens.
pub const HTTP_PORT: u16 = 80;

/// Longest the run loop sleeps, even with nothing due: a lost interrupt
/// must never stall the host for longer than this.
pub const MAX_IDLE: Duration = Duration::from_millis(50);

mod iscsi_jobs;

/// iSCSI jobs running at once (the image and the hosted service); more wait.
/// Each holds its socket buffers and the SR blocks it fetched (a few MiB).
pub const MAX_ISCSI_JOBS: usize = 4;
mod networks;
pub use networks::NetworkError;
mod uplink;
pub mod vifs;
pub use vifs::{PluggedVif, VifError, guest_mac};

/// The appliance over platform `P` with NICs of type `N`.
pub struct Appliance<P: Platform, N: Nic> {
    platform: P,
    hostname: String,
    /// The management uplink, the switch, and the host interfaces on it:
    /// management first.
    net: HostNetworks<Uplink<N>>,
    http: HttpServer,
    /// HTTPS on 443, once [`Appliance::enable_https`] made the identity.
    https: Option<HttpServer>,
    /// The wall clock TLS reads, set every poll.
    tls_clock: alloc::sync::Arc<tls::Clock>,
    api: XenApi,
    /// The management address the API objects last described.
    described: Option<Ipv4Cidr>,
    /// iSCSI jobs the XenAPI asked for (SR probe, create, VDI create...).
    iscsi: iscsi_jobs::IscsiJobs,
    /// The host's own disks, for local SRs (see [`Appliance::attach_host_disks`]).
    local_disks: crate::local_disks::LocalDisks,
    /// `PIF.reconfigure_ip` changes and when to apply them (time since boot).
    ip_changes: Vec<(Duration, crate::xenapi::IpChange)>,
    /// The switch ports of the XenAPI VIFs plugged now, by VIF ref.
    vif_ports: alloc::collections::BTreeMap<String, netstack::switch::PortId>,
    /// The NICs of the uplink and the spare ones (for `Bond.create`).
    nics: networks::Nics<N>,
    /// Uplink changes `Bond.create`/`destroy`/`set_mode` asked for, and when
    /// to make them (time since boot): after the answer has left.
    uplink_changes: Vec<(Duration, crate::xenapi::UplinkSpec)>,
}

impl<P: Platform, N: Nic> Appliance<P, N> {
    /// Brings up the host's networks over `nics` (in discovery order:
    /// `eth0` first) from `config`: the management uplink (a NIC or a bond),
    /// its VLANs and host interfaces; then serves HTTP on management.
    pub fn new(mut platform: P, nics: Vec<N>, config: HostConfig) -> Result<Self, NetworkError> {
        let mut seed = [0u8; 8];
        platform.fill_random(&mut seed);
        let now = to_instant(platform.now());
        let macs: Vec<Option<[u8; 6]>> = nics.iter().map(|n| Some(n.mac().0)).collect();
        let (mut net, nics) = networks::build(&config, nics, now, u64::from_le_bytes(seed))?;
        let mut http = HttpServer::new(HTTP_PORT);
        http.attach(net.primary_mut().sockets_mut());
        log::info!("http: serving on port {}", http.port());
        let mut facts = host_facts(&config, net.primary(), platform.system_info());
        facts.boot = platform.boot_slots();
        facts.networks = network_layout(&config, &macs, &|name| {
            net.interfaces().any(|i| i.name() == name)
        });
        live_layout(&net, &mut facts.networks);
        let mut api = XenApi::new(&config, facts, &mut platform);
        api.enable_storage_driver();
        api.enable_live_network();
        Ok(Appliance {
            platform,
            hostname: config.hostname,
            described: net.primary().ipv4_cidr(),
            net,
            http,
            https: None,
            tls_clock: alloc::sync::Arc::new(tls::Clock::default()),
            api,
            iscsi: iscsi_jobs::IscsiJobs::default(),
            local_disks: crate::local_disks::LocalDisks::new(),
            ip_changes: Vec::new(),
            vif_ports: alloc::collections::BTreeMap::new(),
            nics,
            uplink_changes: Vec::new(),
        })
    }

    /// Serves HTTPS on [`tls::HTTPS_PORT`] with the host's identity: the one
    /// in `store` (the configuration store), else a new one (kept there when
    /// there is a store). Returns the certificate's SHA-256 fingerprint.
    pub fn enable_https(
        &mut self,
        supplied: Option<&host_config::SuppliedTls>,
        store: Option<&mut dyn crate::xenapi::StateStore>,
    ) -> Result<String, String> {
        let subject = tls::Subject {
            hostname: &self.hostname,
            address: self.net.primary().ipv4_cidr().map(|c| c.address().octets()),
            unix_now: self.platform.unix_time(),
        };
        self.tls_clock
            .set(self.platform.unix_time(), self.platform.now());
        let platform = &mut self.platform;
        let mut random = |buf: &mut [u8]| platform.fill_random(buf);
        let tls::HostTls {
            config,
            certificate,
            source,
            refused,
        } = tls::host_tls(
            supplied,
            store,
            &subject,
            &mut random,
            alloc::sync::Arc::clone(&self.tls_clock),
        )?;
        if let Some(why) = refused {
            log::error!(
                "tls: the certificate supplied in the host config cannot be used: {why}; \
                 serving the host's own certificate instead"
            );
        }
        let mut https = HttpServer::with_config(https_server_config()).with_tls(config);
        https.attach(self.net.primary_mut().sockets_mut());
        let fingerprint = certificate.sha256.clone();
        log::info!(
            "tls: serving https on port {} with the {} certificate, sha256 {fingerprint}",
            tls::HTTPS_PORT,
            source.word()
        );
        self.api.set_server_certificate(certificate);
        self.https = Some(https);
        Ok(fingerprint)
    }

    /// One round of work: network in, requests answered, network out.
    /// Returns when the next round is due (time since boot), if anything is scheduled.
    pub fn poll(&mut self) -> Option<Duration> {
        let uptime = self.platform.now();
        let now = to_instant(uptime);
        while let Some(change) = take_due(&mut self.ip_changes, uptime) {
            self.net
                .primary_mut()
                .reconfigure(Some(ip_change_config(&change)));
        }
        while let Some(spec) = take_due(&mut self.uplink_changes, uptime) {
            self.set_uplink(&spec);
        }
        let uplink_due = self.net.uplink_mut().poll(now);
        let iface_due = self.net.poll(now);
        // A LACPDU that came in may call for an answer straight away.
        if self.net.uplink().poll_at().is_some() {
            self.net.uplink_mut().poll(now);
        }

        let cidr = self.net.primary().ipv4_cidr();
        if cidr != self.described || layout_changed(&self.net, &self.api.facts().networks) {
            // A DHCP lease came or went, a bond member went up or down: the
            // PIF, Bond and host objects follow.
            self.described = cidr;
            let mut facts = self.api.facts().clone();
            // Which uplink carries management is the API's to say (a bond
            // it made is built after the call).
            let device = facts.management.device.clone();
            facts.management = management_facts(self.net.primary(), facts.management.dhcp);
            facts.management.device = device;
            live_layout(&self.net, &mut facts.networks);
            self.api.update_facts(facts, &mut self.platform);
        }
        let boot = self.platform.boot_slots();
        if boot != self.api.facts().boot {
            // A trial committed, an upgrade was written: host.software_version follows.
            let mut facts = self.api.facts().clone();
            facts.boot = boot;
            self.api.update_facts(facts, &mut self.platform);
        }

        self.tls_clock.set(self.platform.unix_time(), uptime);
        let Appliance {
            platform,
            hostname,
            net,
            http,
            https,
            api,
            ..
        } = self;
        let mut endpoints = Endpoints {
            api,
            platform,
            hostname: hostname.as_str(),
            management_ip: cidr.map(|cidr| cidr.address()),
            uptime,
        };
        let http_due = http.poll(net.primary_mut().sockets_mut(), now, &mut endpoints);
        let https_due = https
            .as_mut()
            .and_then(|s| s.poll(net.primary_mut().sockets_mut(), now, &mut endpoints));
        // PIF.reconfigure_ip calls just made: applied RECONFIGURE_DELAY
        // later, so that their answers leave from the old address first.
        let at = uptime + RECONFIGURE_DELAY;
        let changes = self.api.take_ip_changes();
        self.ip_changes.extend(changes.into_iter().map(|c| (at, c)));
        // Storage calls just made queue jobs; jobs that ended answer them
        // (the HTTP server picks the answers up on its next poll).
        let iscsi_due = self
            .iscsi
            .poll(
                &mut self.net,
                &mut self.local_disks,
                &mut self.api,
                &mut self.platform,
            )
            .map(|d| to_instant(d.max(uptime)));
        // Guests that powered off, reset or crashed: the VM records follow.
        self.api.poll_vms(&mut self.platform);
        // VLANs and VIFs those calls and stops added or removed.
        self.apply_net_requests();
        let api_due = self.api.next_deadline().map(to_instant);

        // Send the responses just queued now rather than a round later.
        let flush_due = self.net.poll(now);
        let reconfigure_due = [
            self.ip_changes.first().map(|(at, _)| *at),
            self.uplink_changes.first().map(|(at, _)| *at),
        ]
        .into_iter()
        .flatten()
        .min()
        .map(to_instant);
        [
            uplink_due,
            iface_due,
            http_due,
            https_due,
            flush_due,
            api_due,
            iscsi_due,
            reconfigure_due,
        ]
        .into_iter()
        .flatten()
        .min()
        .map(to_duration)
    }

    /// Serves forever: poll, then idle until the next deadline (at most [`MAX_IDLE`]).
    pub fn run(mut self) -> ! {
        loop {
            let next = self.poll();
            if let Some(deadline) = idle_until(self.platform.now(), next) {
                self.platform.idle(Some(deadline));
            }
        }
    }

    /// Plugs VM `vm`'s VIF into host network `network` (`management` or a
    /// host interface name): `link` is the switch side of the guest's
    /// virtio-net, whose device announces the returned MTU; the switch locks
    /// the port to `mac`.
    pub fn plug_vif(
        &mut self,
        vm: &str,
        network: &str,
        mac: [u8; 6],
        link: netstack::switch::VifLink,
    ) -> Result<PluggedVif, VifError> {
        vifs::plug(&mut self.net, vm, network, mac, link)
    }

    /// Applies the switch changes the XenAPI queued. A failure is logged:
    /// the calls were checked against the same limits beforehand.
    fn apply_net_requests(&mut self) {
        for request in self.api.take_net_requests() {
            self.apply_net_request(request);
        }
    }

    /// Applies one switch change the XenAPI queued.
    fn apply_net_request(&mut self, request: NetRequest) {
        match request {
            NetRequest::CarryVlan { tag, mtu } => {
                match self.net.carry_vlan(tag, usize::from(mtu)) {
                    Ok(()) => log::info!("net: VLAN {tag} carried for guests (MTU {mtu})"),
                    Err(e) => log::error!("net: VLAN {tag} cannot be carried: {e}"),
                }
            }
            NetRequest::DropVlan { tag } => match self.net.drop_vlan(tag) {
                Ok(()) => log::info!("net: VLAN {tag} no longer carried"),
                Err(e) => log::error!("net: VLAN {tag} stays: {e}"),
            },
            NetRequest::PlugVif {
                vif,
                vm,
                target,
                mac,
                link,
                policy,
            } => {
                let plugged = match target {
                    VifTarget::HostNetwork(name) => {
                        vifs::plug(&mut self.net, &vm, &name, mac, link)
                    }
                    VifTarget::Vlan(tag) => {
                        let network = alloc::format!("guest VLAN {tag}");
                        vifs::plug_vlan(&mut self.net, &vm, &network, tag, mac, link)
                    }
                };
                match plugged {
                    // Fail closed: a VIF whose locking cannot be applied
                    // does not stay plugged.
                    Ok(p) if self.set_vif_policy(&vif, p.port, policy) => {
                        self.vif_ports.insert(vif, p.port);
                    }
                    Ok(p) => {
                        if let Err(e) = self.net.remove_vif(p.port) {
                            log::error!("vif: {vif}: {e}");
                        }
                    }
                    Err(e) => log::error!("vif: {vif} of vm {vm} not plugged: {e}"),
                }
            }
            NetRequest::SetVifPolicy { vif, policy } => match self.vif_ports.get(&vif) {
                Some(&port) => {
                    self.set_vif_policy(&vif, port, policy);
                }
                None => log::warn!("vif: {vif} is not plugged; its locking applies at plug"),
            },
            // Like an address change: the answer leaves over the old uplink
            // first (an LACP bond carries nothing until its partner answers).
            NetRequest::SetUplink(spec) => {
                let at = self.platform.now() + RECONFIGURE_DELAY;
                self.uplink_changes.push((at, spec));
            }
            NetRequest::MoveVif {
                vif,
                vm,
                target,
                mac,
                policy,
            } => self.move_vif(vif, &vm, target, mac, policy),
            NetRequest::UnplugVif { vif } => {
                if let Some(port) = self.vif_ports.remove(&vif)
                    && let Err(e) = self.net.remove_vif(port)
                {
                    log::error!("vif: {vif}: {e}");
                }
            }
        }
    }

    /// Moves plugged VIF `vif` to `target`: a new switch port with the
    /// same link (the guest's NIC does not notice), MAC and locking; if
    /// the new port cannot be made the VIF stays unplugged (logged).
    fn move_vif(
        &mut self,
        vif: String,
        vm: &str,
        target: VifTarget,
        mac: [u8; 6],
        policy: VifPolicy,
    ) {
        let Some(port) = self.vif_ports.remove(&vif) else {
            log::warn!("vif: {vif} is not plugged; it moves at its next plug");
            return;
        };
        let Some(link) = self.net.vif_link(port).cloned() else {
            log::error!("vif: {vif} has no link on the switch; not moved");
            return;
        };
        if let Err(e) = self.net.remove_vif(port) {
            log::error!("vif: {vif}: {e}");
        }
        let plugged = match &target {
            VifTarget::HostNetwork(name) => vifs::plug(&mut self.net, vm, name, mac, link),
            VifTarget::Vlan(tag) => {
                let network = alloc::format!("guest VLAN {tag}");
                vifs::plug_vlan(&mut self.net, vm, &network, *tag, mac, link)
            }
        };
        match plugged {
            Ok(p) if self.set_vif_policy(&vif, p.port, policy) => {
                log::info!("vif: {vif} of vm {vm} moved to {target:?}");
                self.vif_ports.insert(vif, p.port);
            }
            Ok(p) => {
                if let Err(e) = self.net.remove_vif(p.port) {
                    log::error!("vif: {vif}: {e}");
                }
            }
            Err(e) => log::error!("vif: {vif} of vm {vm} not moved, left unplugged: {e}"),
        }
    }

    /// Has the switch filter VIF `vif` (on `port`) by `policy` from now on;
    /// false (logged) if it could not.
    fn set_vif_policy(
        &mut self,
        vif: &str,
        port: netstack::switch::PortId,
        policy: VifPolicy,
    ) -> bool {
        let mode = match &policy {
            VifPolicy::Unlocked => String::from("unlocked (MAC locked)"),
            VifPolicy::Disabled => String::from("disabled"),
            VifPolicy::Locked { ipv4, ipv6 } => alloc::format!("locked to {ipv4:?} {ipv6:?}"),
        };
        match self.net.set_vif_policy(port, policy) {
            Ok(()) => {
                log::info!("vif: {vif} at switch {port}: {mode}");
                true
            }
            Err(e) => {
                log::error!("vif: {vif}: locking not applied: {e}");
                false
            }
        }
    }

    /// Makes the management uplink what `Bond.create`/`destroy`/`set_mode`
    /// asked. When it cannot be done the uplink stays, and so do the host
    /// objects' words for it: the API's bond is dropped.
    fn set_uplink(&mut self, spec: &crate::xenapi::UplinkSpec) {
        let now = to_instant(self.platform.now());
        match uplink::set_uplink(&mut self.net, &mut self.nics, spec, now) {
            Ok(()) => log::info!(
                "net: management uplink is now {} ({})",
                self.net.primary().name(),
                match spec {
                    crate::xenapi::UplinkSpec::Nic(nic) => nic.clone(),
                    crate::xenapi::UplinkSpec::Bond(b) => alloc::format!(
                        "{} of {}",
                        crate::xenapi::bond_mode_name(b.mode),
                        b.members.join(", ")
                    ),
                }
            ),
            Err(e) => {
                log::error!(
                    "net: the management uplink stays {}: {e}",
                    self.net.primary().name()
                );
                if let [nic] = self.nics.uplink.as_slice() {
                    let mut facts = self.api.facts().clone();
                    let nic = alloc::format!("eth{nic}");
                    crate::xenapi::unbond_uplink(
                        &mut facts.networks,
                        &mut facts.management.device,
                        &nic,
                    );
                    self.api.update_facts(facts, &mut self.platform);
                }
            }
        }
    }

    /// Unplugs the VIF on `port` (the VM stopped, or its NIC went away).
    pub fn unplug_vif(&mut self, port: netstack::switch::PortId) -> Result<(), VifError> {
        self.net
            .remove_vif(port)
            .map_err(|e| VifError::Switch(alloc::format!("{e}")))
    }

    /// Who to wake (the CPU running [`Appliance::run`]) when a guest sends
    /// on a VIF.
    pub fn set_vif_waker(&mut self, waker: alloc::sync::Arc<dyn netstack::switch::Wake>) {
        self.net.set_vif_waker(waker);
    }

    /// Keeps the XenAPI database in `store` from now on (see
    /// [`XenApi::attach_store`]).
    pub fn attach_store(
        &mut self,
        store: alloc::boxed::Box<dyn crate::xenapi::StateStore>,
    ) -> Result<crate::xenapi::Attached, String> {
        self.api.attach_store(store, &mut self.platform)
    }

    /// The host's disks other than its boot medium: SRs of type `lvm`/`ext`
    /// are made on them (those with `reserved` set are listed, never used).
    pub fn attach_host_disks(&mut self, disks: crate::local_disks::LocalDisks) {
        self.api.set_host_disks(disks.infos());
        self.local_disks = disks;
    }

    pub fn platform(&self) -> &P {
        &self.platform
    }

    pub fn platform_mut(&mut self) -> &mut P {
        &mut self.platform
    }

    /// The management interface.
    pub fn management(&self) -> &HostInterface<HostPort> {
        self.net.primary()
    }

    /// The uplink, the switch and every host interface.
    pub fn networks(&self) -> &HostNetworks<Uplink<N>> {
        &self.net
    }

    pub fn http(&self) -> &HttpServer {
        &self.http
    }

    /// The HTTPS server, once enabled.
    pub fn https(&self) -> Option<&HttpServer> {
        self.https.as_ref()
    }

    /// The XenAPI service.
    pub fn api(&self) -> &XenApi {
        &self.api
    }

    pub fn hostname(&self) -> &str {
        &self.hostname
    }
}

impl<P: Platform, N: Nic> fmt::Debug for Appliance<P, N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Appliance")
            .field("hostname", &self.hostname)
            .field("management", self.net.primary())
            .field("http", &self.http)
            .finish_non_exhaustive()
    }
}

/// HTTPS next to plain HTTP: fewer ready listeners and smaller buffers (a
/// TLS record is at most 16 KiB), still room for Xen Orchestra's burst of
/// 20 connections, and its own budgets so the two ports together stay
/// within the heap.
fn https_server_config() -> ServerConfig {
    ServerConfig {
        port: tls::HTTPS_PORT,
        spare_listeners: 20,
        max_sockets: 48,
        rx_buffer: 24 * 1024,
        tx_buffer: 32 * 1024,
        input_budget: 2 * 1024 * 1024,
        output_budget: 4 * 1024 * 1024,
        ..ServerConfig::default()
    }
}

/// What the XenAPI objects say about this host at start.
fn host_facts<N: Nic>(
    config: &HostConfig,
    management: &HostInterface<N>,
    system: crate::platform::SystemInfo,
) -> HostFacts {
    HostFacts {
        hostname: config.hostname.clone(),
        system,
        management: management_facts(management, matches!(config.management.ip, IpMode::Dhcp)),
        networks: NetworkLayout::default(),
        boot: None,
    }
}

fn management_facts<N: Nic>(management: &HostInterface<N>, dhcp: bool) -> ManagementFacts {
    ManagementFacts {
        device: String::from(management.name()),
        mac: Some(management.mac().0),
        dhcp,
        address: management
            .ipv4_cidr()
            .map(|c| (c.address().octets(), c.prefix_len())),
        gateway: management.gateway().map(|g| g.octets()),
        dns: management
            .dns_servers()
            .iter()
            .map(|d| d.octets())
            .collect(),
    }
}

/// Bond members that can carry traffic now (0 without a bond).
fn links_up<N: Nic>(net: &HostNetworks<Uplink<N>>) -> u32 {
    match net.uplink() {
        Uplink::Bond(bond) => {
            let up = (0..bond.member_count())
                .filter(|i| bond.is_member_usable(*i))
                .count();
            u32::try_from(up).unwrap_or(u32::MAX)
        }
        Uplink::Nic(_) | Uplink::Detached => 0,
    }
}

/// The address of the host interface `name`.
fn address_of<N: Nic>(net: &HostNetworks<Uplink<N>>, name: &str) -> Option<([u8; 4], u8)> {
    net.interfaces()
        .find(|i| i.name() == name)
        .and_then(|i| i.ipv4_cidr())
        .map(|c| (c.address().octets(), c.prefix_len()))
}

/// Whether the bond links or a VLAN network's address moved since `layout` was taken.
fn layout_changed<N: Nic>(net: &HostNetworks<Uplink<N>>, layout: &NetworkLayout) -> bool {
    layout.bonds.iter().any(|b| b.links_up != links_up(net))
        || layout
            .vlans
            .iter()
            .filter(|v| v.name != crate::xenapi::MANAGEMENT_NETWORK)
            .any(|v| v.address != address_of(net, &v.name))
}

/// Fills in what only the running networks know: bond links, VLAN addresses.
fn live_layout<N: Nic>(net: &HostNetworks<Uplink<N>>, layout: &mut NetworkLayout) {
    let up = links_up(net);
    for bond in &mut layout.bonds {
        bond.links_up = up;
    }
    for vlan in &mut layout.vlans {
        if vlan.name != crate::xenapi::MANAGEMENT_NETWORK {
            vlan.address = address_of(net, &vlan.name);
        }
    }
}

/// When to wake up, given the time now and the next deadline: `None` means
/// work is already due, so poll again without idling.
fn idle_until(now: Duration, next: Option<Duration>) -> Option<Duration> {
    let cap = now.saturating_add(MAX_IDLE);
    let deadline = next.map_or(cap, |next| next.min(cap));
    (deadline > now).then_some(deadline)
}

/// A host interface's IP configuration from the host config. An
/// invalid static prefix (the host tool rejects it, but the boot module is
/// data) falls back to DHCP: a reachable host beats one that refuses to boot.
/// How long after `PIF.reconfigure_ip` answers the interface changes: the
/// answer must leave from the address the client called (xapi's clients
/// lose the connection when the management address changes under them).
pub const RECONFIGURE_DELAY: Duration = Duration::from_secs(1);

/// The first change of `queue` if it is due at `now` (the queue is in
/// time order), taken out of the queue.
fn take_due<T>(queue: &mut Vec<(Duration, T)>, now: Duration) -> Option<T> {
    let due = queue.first().is_some_and(|(at, _)| *at <= now);
    due.then(|| queue.remove(0).1)
}

/// The interface configuration `PIF.reconfigure_ip` asked for.
fn ip_change_config(change: &crate::xenapi::IpChange) -> IpConfig {
    match change {
        crate::xenapi::IpChange::Dhcp => IpConfig::Dhcp,
        crate::xenapi::IpChange::Static {
            address,
            prefix_len,
            gateway,
            dns,
        } => IpConfig::Static {
            address: Ipv4Cidr::new(Ipv4Address::from(*address), *prefix_len),
            gateway: gateway.map(Ipv4Address::from),
            dns: dns.iter().copied().map(Ipv4Address::from).collect(),
        },
    }
}

pub(crate) fn ip_config(mode: &IpMode) -> IpConfig {
    match mode {
        IpMode::Dhcp => IpConfig::Dhcp,
        IpMode::Static(StaticIpv4 {
            address,
            prefix_len,
            gateway,
            dns,
        }) => {
            if !(1..=32).contains(prefix_len) {
                log::error!(
                    "config: management prefix length {prefix_len} is outside 1..=32; falling back to DHCP (fix the host config)"
                );
                return IpConfig::Dhcp;
            }
            IpConfig::Static {
                address: Ipv4Cidr::new(Ipv4Address::from(*address), *prefix_len),
                gateway: gateway.map(Ipv4Address::from),
                dns: dns.iter().copied().map(Ipv4Address::from).collect(),
            }
        }
    }
}

/// Time since boot as a smoltcp instant (saturating: 292 000 years of uptime).
fn to_instant(since_boot: Duration) -> Instant {
    Instant::from_micros(i64::try_from(since_boot.as_micros()).unwrap_or(i64::MAX))
}

/// A smoltcp instant as time since boot; "now" (instant zero or earlier) is zero.
fn to_duration(instant: Instant) -> Duration {
    Duration::from_micros(u64::try_from(instant.total_micros()).unwrap_or(0))
}

#[cfg(test)]
mod tests;
