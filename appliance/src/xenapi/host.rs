//! The objects that describe this host: one pool, the host and its
//! metrics, the management network and its PIF. They are built from facts
//! (host config, the platform, the management interface) and kept true as
//! those change.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use super::db::{Db, default_record};
use super::layout::NetworkLayout;
use super::schema::{Class, HOST, HOST_METRICS, NETWORK, PIF, POOL};
use super::value::Value;
use crate::health::{BUILD_ID, VERSION};
use crate::platform::{BootSlots, SystemInfo};

/// The XenAPI version this host speaks.
pub const API_VERSION: (i64, i64) = (2, 21);

/// How the management interface is addressed right now.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ManagementFacts {
    /// The NIC's name (`eth0`).
    pub device: String,
    pub mac: Option<[u8; 6]>,
    /// Whether the address comes from DHCP (else it is static).
    pub dhcp: bool,
    /// Address and prefix length, once there is one.
    pub address: Option<([u8; 4], u8)>,
    pub gateway: Option<[u8; 4]>,
    pub dns: Vec<[u8; 4]>,
}

/// Everything the host objects say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostFacts {
    pub hostname: String,
    pub system: SystemInfo,
    pub management: ManagementFacts,
    /// NICs, the bond and the VLAN networks (default: the management NIC alone).
    pub networks: NetworkLayout,
    /// The A/B slots and the last upgrade, when booted from a keel disk.
    pub boot: Option<BootSlots>,
}

/// References of the singleton objects.
#[derive(Debug, Clone)]
pub struct HostRefs {
    pub pool: String,
    pub host: String,
    pub metrics: String,
    pub network: String,
    pub pif: String,
}

fn dotted(ip: [u8; 4]) -> String {
    format!("{}.{}.{}.{}", ip[0], ip[1], ip[2], ip[3])
}

fn netmask(prefix: u8) -> [u8; 4] {
    let bits = u32::MAX
        .checked_shl(32 - u32::from(prefix.min(32)))
        .unwrap_or(0);
    bits.to_be_bytes()
}

fn mac_text(b: [u8; 6]) -> String {
    format!(
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        b[0], b[1], b[2], b[3], b[4], b[5]
    )
}

fn map(pairs: &[(&str, String)]) -> Value {
    Value::Struct(
        pairs
            .iter()
            .map(|(k, v)| (String::from(*k), Value::String(v.clone())))
            .collect(),
    )
}

fn set(db: &mut Db, class: &'static Class, reference: &str, field: &str, value: Value) {
    if let Some((index, _)) = class.field(field) {
        db.set_field(class, reference, index, value);
    }
}

/// Creates the host objects. `new_id` gives a fresh (reference, uuid) pair.
pub fn create(
    db: &mut Db,
    facts: &HostFacts,
    mut new_id: impl FnMut() -> (String, String),
) -> HostRefs {
    let (pool, pool_uuid) = new_id();
    let (host, host_uuid) = new_id();
    let (metrics, metrics_uuid) = new_id();
    let mut refs = HostRefs {
        pool,
        host,
        metrics,
        network: String::new(),
        pif: String::new(),
    };
    db.insert(&POOL, refs.pool.clone(), default_record(&POOL, &pool_uuid));
    db.insert(&HOST, refs.host.clone(), default_record(&HOST, &host_uuid));
    db.insert(
        &HOST_METRICS,
        refs.metrics.clone(),
        default_record(&HOST_METRICS, &metrics_uuid),
    );

    set(
        db,
        &POOL,
        &refs.pool,
        "master",
        Value::String(refs.host.clone()),
    );

    set(
        db,
        &HOST,
        &refs.host,
        "API_version_major",
        Value::Int(API_VERSION.0),
    );
    set(
        db,
        &HOST,
        &refs.host,
        "API_version_minor",
        Value::Int(API_VERSION.1),
    );
    set(
        db,
        &HOST,
        &refs.host,
        "metrics",
        Value::String(refs.metrics.clone()),
    );
    update(db, &mut refs, facts, &mut new_id);
    refs
}

fn get(db: &Db, class: &'static Class, reference: &str, field: &str) -> Option<Value> {
    let (index, _) = class.field(field)?;
    Some(db.get(class, reference)?.field(index).clone())
}

/// Finds the host objects in a database loaded from the store: the pool,
/// its master, and the master's management PIF and its network. The
/// metrics object is not stored: a fresh one (from `new_id`) is created and
/// linked. `None` if the database has no such host.
pub fn find(db: &mut Db, new_id: impl FnOnce() -> (String, String)) -> Option<HostRefs> {
    let pool = db.objects(POOL.name).next()?.0.clone();
    let host = get(db, &POOL, &pool, "master")?
        .as_str()
        .map(String::from)?;
    db.get(&HOST, &host)?;
    let pif = db
        .objects(PIF.name)
        .find(|(_, o)| {
            let field = |name| PIF.field(name).map(|(i, _)| o.field(i).clone());
            field("management") == Some(Value::Bool(true))
                && field("host").as_ref().and_then(Value::as_str) == Some(host.as_str())
        })?
        .0
        .clone();
    let network = get(db, &PIF, &pif, "network")?.as_str().map(String::from)?;
    db.get(&NETWORK, &network)?;
    let (metrics, metrics_uuid) = new_id();
    db.insert(
        &HOST_METRICS,
        metrics.clone(),
        default_record(&HOST_METRICS, &metrics_uuid),
    );
    set(db, &HOST, &host, "metrics", Value::String(metrics.clone()));
    Some(HostRefs {
        pool,
        host,
        metrics,
        network,
        pif,
    })
}

/// `host.software_version`: the running version the xapi way, and the A/B
/// upgrade state under `keel_` keys (README, "A/B upgrades"): the slot
/// booted and how, the committed slot, each slot's version (empty: no
/// image), the slot a failed upgrade was tried in, and the last upgrade's
/// outcome ([`BootSlots::last_upgrade`]). Without a keel disk (`-kernel`,
/// PXE, hosted) `keel_boot_slot` is empty and `keel_last_upgrade` is `none`.
fn software_version(boot: Option<&BootSlots>) -> Value {
    let version = String::from(VERSION);
    let text = |s: Option<&str>| String::from(s.unwrap_or(""));
    map(&[
        ("product_brand", String::from("keel")),
        ("product_version", version.clone()),
        ("product_version_text", version.clone()),
        ("product_version_text_short", version.clone()),
        ("platform_name", String::from("keel")),
        ("platform_version", version.clone()),
        ("build_number", String::from(BUILD_ID)),
        ("xapi", format!("{}.{}", API_VERSION.0, API_VERSION.1)),
        ("xapi_build", version),
        ("keel_boot_slot", text(boot.map(|b| b.slot))),
        ("keel_boot_slot_state", text(boot.map(|b| b.slot_state))),
        ("keel_committed_slot", text(boot.map(|b| b.committed_slot))),
        (
            "keel_slot_a_version",
            text(boot.and_then(|b| b.slot_a.as_deref())),
        ),
        (
            "keel_slot_b_version",
            text(boot.and_then(|b| b.slot_b.as_deref())),
        ),
        (
            "keel_failed_upgrade_slot",
            text(boot.and_then(|b| b.failed_upgrade_slot)),
        ),
        (
            "keel_pending_upgrade_slot",
            text(boot.and_then(|b| b.pending_trial_slot)),
        ),
        (
            "keel_last_upgrade",
            String::from(boot.map_or("none", BootSlots::last_upgrade)),
        ),
    ])
}

/// Brings the objects in line with `facts`; only real changes make events.
pub fn update(
    db: &mut Db,
    refs: &mut HostRefs,
    facts: &HostFacts,
    new_id: &mut dyn FnMut() -> (String, String),
) {
    let m = &facts.management;
    // Also after loading a stored database: an upgraded host shows its new version.
    set(
        db,
        &HOST,
        &refs.host,
        "software_version",
        software_version(facts.boot.as_ref()),
    );
    set(
        db,
        &HOST,
        &refs.host,
        "name_label",
        Value::String(facts.hostname.clone()),
    );
    set(
        db,
        &HOST,
        &refs.host,
        "hostname",
        Value::String(facts.hostname.clone()),
    );
    let address = m.address.map(|(ip, _)| dotted(ip)).unwrap_or_default();
    set(
        db,
        &HOST,
        &refs.host,
        "address",
        Value::String(address.clone()),
    );
    let cpus = format!("{}", facts.system.cpus);
    set(
        db,
        &HOST,
        &refs.host,
        "cpu_info",
        map(&[("cpu_count", cpus)]),
    );
    update_metrics(db, refs, &facts.system);

    pifs::reconcile(db, refs, facts, new_id);
    set(
        db,
        &PIF,
        &refs.pif,
        "ip_configuration_mode",
        Value::str(if m.dhcp { "DHCP" } else { "Static" }),
    );
    set(db, &PIF, &refs.pif, "IP", Value::String(address));
    let mask = m
        .address
        .map(|(_, prefix)| dotted(netmask(prefix)))
        .unwrap_or_default();
    set(db, &PIF, &refs.pif, "netmask", Value::String(mask));
    set(
        db,
        &PIF,
        &refs.pif,
        "gateway",
        Value::String(m.gateway.map(dotted).unwrap_or_default()),
    );
    let dns: Vec<String> = m.dns.iter().copied().map(dotted).collect();
    set(db, &PIF, &refs.pif, "DNS", Value::String(dns.join(",")));
    set(
        db,
        &PIF,
        &refs.pif,
        "currently_attached",
        Value::Bool(m.address.is_some()),
    );
}

mod pifs;

/// When the metrics were last taken (xapi datetime form).
pub fn metrics_taken(db: &mut Db, refs: &HostRefs, when: String) {
    set(
        db,
        &HOST_METRICS,
        &refs.metrics,
        "last_updated",
        Value::DateTime(when),
    );
}

/// Memory figures; the caller decides how often (each change is an event).
pub fn update_metrics(db: &mut Db, refs: &HostRefs, system: &SystemInfo) {
    let total = i64::try_from(system.memory_total).unwrap_or(i64::MAX);
    let free = i64::try_from(system.memory_free).unwrap_or(i64::MAX);
    set(
        db,
        &HOST_METRICS,
        &refs.metrics,
        "memory_total",
        Value::Int(total),
    );
    set(
        db,
        &HOST_METRICS,
        &refs.metrics,
        "memory_free",
        Value::Int(free),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn netmasks() {
        assert_eq!(netmask(24), [255, 255, 255, 0]);
        assert_eq!(netmask(32), [255; 4]);
        assert_eq!(netmask(0), [0; 4]);
        assert_eq!(netmask(1), [128, 0, 0, 0]);
    }

    fn key(v: &Value, k: &str) -> String {
        match v {
            Value::Struct(m) => m
                .get(k)
                .and_then(Value::as_str)
                .map(String::from)
                .unwrap_or_else(|| panic!("no {k} in {v:?}")),
            other => panic!("not a map: {other:?}"),
        }
    }

    #[test]
    fn software_version_shows_the_slots_and_the_last_upgrade() {
        let none = software_version(None);
        assert_eq!(key(&none, "product_version"), VERSION);
        assert_eq!(key(&none, "keel_boot_slot"), "");
        assert_eq!(key(&none, "keel_last_upgrade"), "none");

        let fell_back = BootSlots {
            slot: "a",
            slot_state: "fallback",
            committed_slot: "a",
            slot_a: Some(String::from("1.0")),
            slot_b: Some(String::from("2.0")),
            failed_upgrade_slot: Some("b"),
            pending_trial_slot: None,
        };
        let v = software_version(Some(&fell_back));
        assert_eq!(key(&v, "keel_boot_slot"), "a");
        assert_eq!(key(&v, "keel_boot_slot_state"), "fallback");
        assert_eq!(key(&v, "keel_slot_a_version"), "1.0");
        assert_eq!(key(&v, "keel_slot_b_version"), "2.0");
        assert_eq!(key(&v, "keel_failed_upgrade_slot"), "b");
        assert_eq!(key(&v, "keel_last_upgrade"), "failed");

        let retried = BootSlots {
            pending_trial_slot: Some("b"),
            ..fell_back.clone()
        };
        assert_eq!(retried.last_upgrade(), "pending");
        let on_trial = BootSlots {
            slot: "b",
            slot_state: "trial",
            failed_upgrade_slot: None,
            ..fell_back.clone()
        };
        assert_eq!(on_trial.last_upgrade(), "trial");
        let committed = BootSlots {
            committed_slot: "b",
            ..on_trial.clone()
        };
        assert_eq!(committed.last_upgrade(), "committed");
        let empty_b = BootSlots {
            slot_b: None,
            failed_upgrade_slot: None,
            slot_state: "committed",
            ..fell_back
        };
        assert_eq!(
            key(&software_version(Some(&empty_b)), "keel_slot_b_version"),
            ""
        );
        assert_eq!(empty_b.last_upgrade(), "none");
    }
}
