//! The contract: every class, field and message this host serves, declared
//! once. Dispatch, records with their defaults, the generated getters,
//! setters and map/set helpers, and `system.listMethods` all derive from
//! [`CLASSES`].

/// A field or parameter type, as the XenAPI datamodel names them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Ty {
    String,
    Int,
    Float,
    Bool,
    DateTime,
    /// A reference to an object of the named class.
    Ref(&'static str),
    /// One of the listed strings.
    Enum(&'static [&'static str]),
    Set(&'static Ty),
    Map(&'static Ty, &'static Ty),
    /// A struct argument of a constructor (`VDI.create({...})`).
    Record,
}

/// A field's value in a new record.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Default {
    /// The type's empty value: `""`, 0, false, the epoch, `OpaqueRef:NULL`,
    /// the first enum value, an empty set or map.
    Empty,
    Str(&'static str),
    Int(i64),
    Bool(bool),
    Float(f64),
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Field {
    pub name: &'static str,
    pub ty: Ty,
    /// Settable through the API (`set_<f>`, and map/set helpers).
    pub rw: bool,
    pub default: Default,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Param {
    pub name: &'static str,
    pub ty: Ty,
    /// Trailing parameters with a default may be left out.
    pub default: Option<Default>,
}

/// What a declared message does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    LoginWithPassword,
    Logout,
    /// `session.change_password` (see `service::password`).
    SessionChangePassword,
    ListMethods,
    EventFrom,
    EventInject,
    TaskCreate,
    TaskCancel,
    TaskDestroy,
    HostGetServertime,
    HostGetServerCertificate,
    HostReboot,
    /// `host.disable`/`enable`/`evacuate`/`shutdown` (see `service::host_admin`).
    HostDisable,
    HostEnable,
    HostEvacuate,
    HostShutdown,
    VmCreate,
    VmDestroy,
    /// `VM.start(vm, start_paused, force)` (see `service::vm_power`).
    VmStart,
    /// `VM.start_on(vm, host, start_paused, force)`: this host is the only one.
    VmStartOn,
    VmCleanShutdown,
    VmHardShutdown,
    VmCleanReboot,
    VmHardReboot,
    VmPause,
    VmUnpause,
    /// `VM.clone(vm, new_name)`; `VM.copy` adds an SR (no disks to place yet).
    VmClone,
    VmCopy,
    VmProvision,
    VmSetMemoryLimits,
    VmSetMemory,
    VmSetVcpusMax,
    VmSetVcpusAtStartup,
    /// `VM.get_allowed_VBD_devices`/`VIF_devices`: the free device numbers.
    VmGetAllowedVbdDevices,
    VmGetAllowedVifDevices,
    MessageCreate,
    MessageDestroy,
    MessageGetSince,
    /// `PIF.plug`/`unplug` (see `service::pif_plug`).
    PifPlug,
    PifUnplug,
    /// `PIF.reconfigure_ip` (see `service::pif_ip`).
    PifReconfigureIp,
    /// `Bond.create` on the management NIC and others (see `service::bonds`).
    BondCreate,
    BondDestroy,
    BondSetMode,
    BondSetProperty,
    /// `VLAN.create(tagged_PIF, tag, network)` on the management uplink
    /// (see `service::guest_net`).
    VlanCreate,
    /// `pool.create_VLAN_from_PIF(pif, network, VLAN)`: as `VlanCreate`,
    /// answering the untagged PIF.
    PoolCreateVlanFromPif,
    /// `pool.create_VLAN(device, network, VLAN)`: as `PoolCreateVlanFromPif`
    /// on this host's physical PIF of that device.
    PoolCreateVlan,
    VlanDestroy,
    NetworkCreate,
    NetworkDestroy,
    /// `network.set_default_locking_mode` (see `service::vif_locking`).
    NetworkSetDefaultLockingMode,
    VifCreate,
    VifDestroy,
    /// `VIF.plug`/`unplug`/`unplug_force`, `VBD.plug`/`unplug`/`unplug_force`:
    /// devices follow their VM's power state; no hot-plug (`service::hotplug`).
    VifPlug,
    VifUnplug,
    /// `VIF.move(self, network)` (see `service::vif_move`).
    VifMove,
    /// `VIF.set_locking_mode` and the `ipv4_allowed`/`ipv6_allowed` setters
    /// (see `service::vif_locking`): applied at once to a plugged VIF.
    VifSetLockingMode,
    VifSetIpv4Allowed,
    VifAddIpv4Allowed,
    VifRemoveIpv4Allowed,
    VifSetIpv6Allowed,
    VifAddIpv6Allowed,
    VifRemoveIpv6Allowed,
    VbdPlug,
    VbdUnplug,
    /// `VBD.insert`/`eject`: media of a CD drive (see `service::cd_media`).
    VbdInsert,
    VbdEject,
    /// `SR.probe` on an iSCSI target (see `service::srs`).
    SrProbe,
    SrCreate,
    SrScan,
    SrForget,
    VdiCreate,
    VdiDestroy,
    VdiSnapshot,
    VdiClone,
    VdiResize,
    VbdCreate,
    VbdDestroy,
    SrIntroduce,
    SrDestroy,
    PbdPlug,
    PbdUnplug,
    PbdCreate,
    PbdDestroy,
    /// `PBD.set_device_config` (see `service::secrets`).
    PbdSetDeviceConfig,
    /// `secret.create`/`introduce`/`destroy` (see `service::secrets`).
    SecretCreate,
    SecretIntroduce,
    SecretDestroy,
    /// A XenAPI call this host cannot carry out yet: `NOT_IMPLEMENTED [name]`
    /// after the arguments are checked (so a wrong ref still gets `HANDLE_INVALID`).
    NotImplemented,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Message {
    pub name: &'static str,
    /// Parameters after the session.
    pub params: &'static [Param],
    /// Whether the first wire parameter is a session reference.
    pub session: bool,
    pub op: Op,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Class {
    pub name: &'static str,
    pub fields: &'static [Field],
    /// Whether objects are listed (`get_all`, `get_all_records`, `get_by_uuid`, events).
    pub enumerable: bool,
    pub messages: &'static [Message],
}

impl Class {
    pub fn field(&self, name: &str) -> Option<(usize, &'static Field)> {
        self.fields.iter().enumerate().find(|(_, f)| f.name == name)
    }
}

const S: Ty = Ty::String;
const I: Ty = Ty::Int;
const F: Ty = Ty::Float;
const B: Ty = Ty::Bool;
const D: Ty = Ty::DateTime;
const SET_S: Ty = Ty::Set(&Ty::String);
const MAP_SS: Ty = Ty::Map(&Ty::String, &Ty::String);
const OPS: Ty = Ty::Map(&Ty::String, &Ty::String);

const fn ro(name: &'static str, ty: Ty) -> Field {
    Field {
        name,
        ty,
        rw: false,
        default: Default::Empty,
    }
}
const fn rw(name: &'static str, ty: Ty) -> Field {
    Field {
        name,
        ty,
        rw: true,
        default: Default::Empty,
    }
}
const fn ro_d(name: &'static str, ty: Ty, default: Default) -> Field {
    Field {
        name,
        ty,
        rw: false,
        default,
    }
}
const fn rw_d(name: &'static str, ty: Ty, default: Default) -> Field {
    Field {
        name,
        ty,
        rw: true,
        default,
    }
}
const fn p(name: &'static str, ty: Ty) -> Param {
    Param {
        name,
        ty,
        default: None,
    }
}
const fn p_d(name: &'static str, ty: Ty, default: Default) -> Param {
    Param {
        name,
        ty,
        default: Some(default),
    }
}
const fn call(name: &'static str, params: &'static [Param], op: Op) -> Message {
    Message {
        name,
        params,
        session: true,
        op,
    }
}
const fn todo_call(name: &'static str, params: &'static [Param]) -> Message {
    Message {
        name,
        params,
        session: true,
        op: Op::NotImplemented,
    }
}

pub const POWER_STATES: &[&str] = &["Halted", "Paused", "Running", "Suspended"];
pub const TASK_STATUS: &[&str] = &["pending", "success", "failure", "cancelling", "cancelled"];
const IP_MODES: &[&str] = &["None", "DHCP", "Static"];
pub const BOND_MODES: &[&str] = &["balance-slb", "active-backup", "lacp"];
/// The classes a `message` may be about (`cls`).
pub const MESSAGE_CLASSES: &[&str] = &[
    "VM",
    "Host",
    "SR",
    "Pool",
    "VMPP",
    "VMSS",
    "PVS_proxy",
    "VDI",
    "Certificate",
];

pub const SESSION: Class = Class {
    name: "session",
    enumerable: false,
    fields: &[
        ro("uuid", S),
        ro("this_host", Ty::Ref("host")),
        ro("this_user", Ty::Ref("user")),
        ro("last_active", D),
        ro("pool", B),
        rw("other_config", MAP_SS),
        ro_d("is_local_superuser", B, Default::Bool(true)),
        ro("subject", Ty::Ref("subject")),
        ro("validation_time", D),
        ro("auth_user_sid", S),
        ro_d("auth_user_name", S, Default::Str("root")),
        ro("rbac_permissions", SET_S),
        ro("tasks", Ty::Set(&Ty::Ref("task"))),
        ro("parent", Ty::Ref("session")),
        ro("originator", S),
        ro("client_certificate", B),
    ],
    messages: &[
        Message {
            name: "login_with_password",
            params: &[
                p("uname", S),
                p("pwd", S),
                p_d("version", S, Default::Str("1.1")),
                p_d("originator", S, Default::Str("")),
            ],
            session: false,
            op: Op::LoginWithPassword,
        },
        call("logout", &[], Op::Logout),
        call(
            "change_password",
            &[p("old_pwd", S), p("new_pwd", S)],
            Op::SessionChangePassword,
        ),
    ],
};

pub const SYSTEM: Class = Class {
    name: "system",
    enumerable: false,
    fields: &[],
    messages: &[Message {
        name: "listMethods",
        params: &[],
        session: false,
        op: Op::ListMethods,
    }],
};

pub const EVENT: Class = Class {
    name: "event",
    enumerable: false,
    fields: &[],
    messages: &[
        call(
            "from",
            &[p("classes", SET_S), p("token", S), p("timeout", F)],
            Op::EventFrom,
        ),
        call("inject", &[p("class", S), p("ref", S)], Op::EventInject),
    ],
};

pub const TASK: Class = Class {
    name: "task",
    enumerable: true,
    fields: &[
        ro("uuid", S),
        ro("name_label", S),
        ro("name_description", S),
        ro("allowed_operations", SET_S),
        ro("current_operations", OPS),
        ro("created", D),
        ro("finished", D),
        ro("status", Ty::Enum(TASK_STATUS)),
        ro("resident_on", Ty::Ref("host")),
        ro("progress", F),
        ro("type", S),
        ro("result", S),
        ro("error_info", SET_S),
        rw("other_config", MAP_SS),
        ro("subtask_of", Ty::Ref("task")),
        ro("subtasks", Ty::Set(&Ty::Ref("task"))),
        ro("backtrace", S),
    ],
    messages: &[
        call(
            "create",
            &[p("label", S), p("description", S)],
            Op::TaskCreate,
        ),
        call("cancel", &[p("task", Ty::Ref("task"))], Op::TaskCancel),
        call("destroy", &[p("self", Ty::Ref("task"))], Op::TaskDestroy),
    ],
};

pub const POOL: Class = Class {
    name: "pool",
    enumerable: true,
    fields: &[
        ro("uuid", S),
        rw("name_label", S),
        rw("name_description", S),
        ro("master", Ty::Ref("host")),
        rw("default_SR", Ty::Ref("SR")),
        rw("suspend_image_SR", Ty::Ref("SR")),
        rw("crash_dump_SR", Ty::Ref("SR")),
        rw("other_config", MAP_SS),
        ro("ha_enabled", B),
        ro("ha_configuration", MAP_SS),
        ro("ha_statefiles", SET_S),
        ro("ha_host_failures_to_tolerate", I),
        ro("ha_plan_exists_for", I),
        rw("ha_allow_overcommit", B),
        ro("ha_overcommitted", B),
        ro("blobs", Ty::Map(&Ty::String, &Ty::Ref("blob"))),
        rw("tags", SET_S),
        rw("gui_config", MAP_SS),
        rw("health_check_config", MAP_SS),
        ro("wlb_url", S),
        ro("wlb_username", S),
        rw("wlb_enabled", B),
        rw("wlb_verify_cert", B),
        ro("redo_log_enabled", B),
        ro("redo_log_vdi", Ty::Ref("VDI")),
        ro("vswitch_controller", S),
        ro("restrictions", MAP_SS),
        ro("metadata_VDIs", Ty::Set(&Ty::Ref("VDI"))),
        ro("ha_cluster_stack", S),
        ro("allowed_operations", SET_S),
        ro("current_operations", OPS),
        rw("guest_agent_config", MAP_SS),
        ro("cpu_info", MAP_SS),
        rw("policy_no_vendor_device", B),
        rw("live_patching_disabled", B),
        rw("igmp_snooping_enabled", B),
        ro("uefi_certificates", S),
        ro_d("tls_verification_enabled", B, Default::Bool(false)),
        ro("repositories", Ty::Set(&Ty::Ref("Repository"))),
        ro("client_certificate_auth_enabled", B),
        ro("client_certificate_auth_name", S),
        ro_d("repository_proxy_url", S, Default::Str("")),
        ro_d("migration_compression", B, Default::Bool(false)),
        ro_d("coordinator_bias", B, Default::Bool(true)),
    ],
    messages: &[
        todo_call(
            "join",
            &[
                p("master_address", S),
                p("master_username", S),
                p("master_password", S),
            ],
        ),
        todo_call("eject", &[p("host", Ty::Ref("host"))]),
        todo_call(
            "enable_ha",
            &[
                p("heartbeat_srs", Ty::Set(&Ty::Ref("SR"))),
                p("configuration", MAP_SS),
            ],
        ),
        todo_call("disable_ha", &[]),
        call(
            "create_VLAN",
            &[
                p("device", S),
                p("network", Ty::Ref("network")),
                p("VLAN", I),
            ],
            Op::PoolCreateVlan,
        ),
        call(
            "create_VLAN_from_PIF",
            &[
                p("pif", Ty::Ref("PIF")),
                p("network", Ty::Ref("network")),
                p("VLAN", I),
            ],
            Op::PoolCreateVlanFromPif,
        ),
    ],
};

pub const HOST: Class = Class {
    name: "host",
    enumerable: true,
    fields: &[
        ro("uuid", S),
        rw("name_label", S),
        rw("name_description", S),
        ro("memory_overhead", I),
        ro("allowed_operations", SET_S),
        ro("current_operations", OPS),
        ro_d("API_version_major", I, Default::Int(2)),
        ro_d("API_version_minor", I, Default::Int(21)),
        ro_d("API_version_vendor", S, Default::Str("XenSource")),
        ro("API_version_vendor_implementation", MAP_SS),
        ro_d("enabled", B, Default::Bool(true)),
        ro("software_version", MAP_SS),
        rw("other_config", MAP_SS),
        ro("capabilities", SET_S),
        ro("cpu_configuration", MAP_SS),
        ro_d("sched_policy", S, Default::Str("credit")),
        ro("supported_bootloaders", SET_S),
        ro("resident_VMs", Ty::Set(&Ty::Ref("VM"))),
        rw("logging", MAP_SS),
        ro("PIFs", Ty::Set(&Ty::Ref("PIF"))),
        rw("suspend_image_sr", Ty::Ref("SR")),
        rw("crash_dump_sr", Ty::Ref("SR")),
        ro("crashdumps", Ty::Set(&Ty::Ref("host_crashdump"))),
        ro("patches", Ty::Set(&Ty::Ref("host_patch"))),
        ro("updates", Ty::Set(&Ty::Ref("pool_update"))),
        ro("PBDs", Ty::Set(&Ty::Ref("PBD"))),
        ro("host_CPUs", Ty::Set(&Ty::Ref("host_cpu"))),
        ro("cpu_info", MAP_SS),
        rw("hostname", S),
        rw("address", S),
        ro("metrics", Ty::Ref("host_metrics")),
        ro("license_params", MAP_SS),
        ro("ha_statefiles", SET_S),
        ro("ha_network_peers", SET_S),
        ro("blobs", Ty::Map(&Ty::String, &Ty::Ref("blob"))),
        rw("tags", SET_S),
        ro("external_auth_type", S),
        ro("external_auth_service_name", S),
        ro("external_auth_configuration", MAP_SS),
        ro_d("edition", S, Default::Str("free")),
        ro("license_server", MAP_SS),
        ro("bios_strings", MAP_SS),
        ro_d("power_on_mode", S, Default::Str("")),
        ro("power_on_config", MAP_SS),
        ro("local_cache_sr", Ty::Ref("SR")),
        ro("chipset_info", MAP_SS),
        ro("PCIs", Ty::Set(&Ty::Ref("PCI"))),
        ro("PGPUs", Ty::Set(&Ty::Ref("PGPU"))),
        ro("PUSBs", Ty::Set(&Ty::Ref("PUSB"))),
        ro("ssl_legacy", B),
        rw("guest_VCPUs_params", MAP_SS),
        rw_d(
            "display",
            Ty::Enum(&[
                "enabled",
                "disable_on_reboot",
                "disabled",
                "enable_on_reboot",
            ]),
            Default::Str("enabled"),
        ),
        ro("virtual_hardware_platform_versions", Ty::Set(&Ty::Int)),
        ro("control_domain", Ty::Ref("VM")),
        ro("updates_requiring_reboot", Ty::Set(&Ty::Ref("pool_update"))),
        ro("features", Ty::Set(&Ty::Ref("Feature"))),
        ro("iscsi_iqn", S),
        ro("multipathing", B),
        ro("uefi_certificates", S),
        ro("certificates", Ty::Set(&Ty::Ref("Certificate"))),
        ro("editions", SET_S),
        ro("pending_guidances", SET_S),
        ro("tls_verification_enabled", B),
    ],
    messages: &[
        call(
            "get_servertime",
            &[p("host", Ty::Ref("host"))],
            Op::HostGetServertime,
        ),
        call(
            "get_server_certificate",
            &[p("host", Ty::Ref("host"))],
            Op::HostGetServerCertificate,
        ),
        call(
            "disable",
            &[
                p("host", Ty::Ref("host")),
                p_d("auto_enable", B, Default::Bool(true)),
            ],
            Op::HostDisable,
        ),
        call("enable", &[p("host", Ty::Ref("host"))], Op::HostEnable),
        call("evacuate", &[p("host", Ty::Ref("host"))], Op::HostEvacuate),
        call("reboot", &[p("host", Ty::Ref("host"))], Op::HostReboot),
        call("shutdown", &[p("host", Ty::Ref("host"))], Op::HostShutdown),
        todo_call(
            "migrate_receive",
            &[
                p("host", Ty::Ref("host")),
                p("network", Ty::Ref("network")),
                p("options", MAP_SS),
            ],
        ),
    ],
};

pub const HOST_METRICS: Class = Class {
    name: "host_metrics",
    enumerable: true,
    fields: &[
        ro("uuid", S),
        ro("memory_total", I),
        ro("memory_free", I),
        ro_d("live", B, Default::Bool(true)),
        ro("last_updated", D),
        rw("other_config", MAP_SS),
    ],
    messages: &[],
};

pub const NETWORK: Class = Class {
    name: "network",
    enumerable: true,
    fields: &[
        ro("uuid", S),
        rw("name_label", S),
        rw("name_description", S),
        ro("allowed_operations", SET_S),
        ro("current_operations", OPS),
        ro("VIFs", Ty::Set(&Ty::Ref("VIF"))),
        ro("PIFs", Ty::Set(&Ty::Ref("PIF"))),
        ro_d("MTU", I, Default::Int(1500)),
        rw("other_config", MAP_SS),
        ro("bridge", S),
        ro_d("managed", B, Default::Bool(true)),
        ro("blobs", Ty::Map(&Ty::String, &Ty::Ref("blob"))),
        rw("tags", SET_S),
        ro_d(
            "default_locking_mode",
            Ty::Enum(NETWORK_LOCKING_MODES),
            Default::Str("unlocked"),
        ),
        ro("assigned_ips", Ty::Map(&Ty::Ref("VIF"), &Ty::String)),
        ro("purpose", SET_S),
    ],
    messages: &[
        call("create", &[p("args", Ty::Record)], Op::NetworkCreate),
        call(
            "destroy",
            &[p("self", Ty::Ref("network"))],
            Op::NetworkDestroy,
        ),
        call(
            "set_default_locking_mode",
            &[
                p("network", Ty::Ref("network")),
                p("value", Ty::Enum(NETWORK_LOCKING_MODES)),
            ],
            Op::NetworkSetDefaultLockingMode,
        ),
    ],
};

/// `VIF.locking_mode` values.
pub const VIF_LOCKING_MODES: &[&str] = &["network_default", "locked", "unlocked", "disabled"];
/// `network.default_locking_mode` values.
pub const NETWORK_LOCKING_MODES: &[&str] = &["unlocked", "disabled"];

pub const PIF: Class = Class {
    name: "PIF",
    enumerable: true,
    fields: &[
        ro("uuid", S),
        ro("device", S),
        ro("network", Ty::Ref("network")),
        ro("host", Ty::Ref("host")),
        ro("MAC", S),
        ro_d("MTU", I, Default::Int(1500)),
        ro_d("VLAN", I, Default::Int(-1)),
        ro("metrics", Ty::Ref("PIF_metrics")),
        ro_d("physical", B, Default::Bool(true)),
        ro("currently_attached", B),
        ro_d(
            "ip_configuration_mode",
            Ty::Enum(IP_MODES),
            Default::Str("None"),
        ),
        ro("IP", S),
        ro("netmask", S),
        ro("gateway", S),
        ro("DNS", S),
        ro("bond_slave_of", Ty::Ref("Bond")),
        ro("bond_master_of", Ty::Set(&Ty::Ref("Bond"))),
        ro("VLAN_master_of", Ty::Ref("VLAN")),
        ro("VLAN_slave_of", Ty::Set(&Ty::Ref("VLAN"))),
        ro("management", B),
        rw("other_config", MAP_SS),
        rw("disallow_unplug", B),
        ro("tunnel_access_PIF_of", Ty::Set(&Ty::Ref("tunnel"))),
        ro("tunnel_transport_PIF_of", Ty::Set(&Ty::Ref("tunnel"))),
        ro_d("ipv6_configuration_mode", S, Default::Str("None")),
        ro("IPv6", SET_S),
        ro("ipv6_gateway", S),
        ro_d("primary_address_type", S, Default::Str("IPv4")),
        ro_d("managed", B, Default::Bool(true)),
        ro("properties", MAP_SS),
        ro("capabilities", SET_S),
        ro_d("igmp_snooping_status", S, Default::Str("unknown")),
        ro("sriov_physical_PIF_of", Ty::Set(&Ty::Ref("network_sriov"))),
        ro("sriov_logical_PIF_of", Ty::Set(&Ty::Ref("network_sriov"))),
        ro("PCI", Ty::Ref("PCI")),
    ],
    messages: &[
        call(
            "reconfigure_ip",
            &[
                p("self", Ty::Ref("PIF")),
                p("mode", S),
                p("IP", S),
                p("netmask", S),
                p("gateway", S),
                p("DNS", S),
            ],
            Op::PifReconfigureIp,
        ),
        call("plug", &[p("self", Ty::Ref("PIF"))], Op::PifPlug),
        call("unplug", &[p("self", Ty::Ref("PIF"))], Op::PifUnplug),
    ],
};

pub const SR: Class = Class {
    name: "SR",
    enumerable: true,
    fields: &[
        ro("uuid", S),
        rw("name_label", S),
        rw("name_description", S),
        ro("allowed_operations", SET_S),
        ro("current_operations", OPS),
        ro("VDIs", Ty::Set(&Ty::Ref("VDI"))),
        ro("PBDs", Ty::Set(&Ty::Ref("PBD"))),
        ro("virtual_allocation", I),
        ro("physical_utilisation", I),
        ro("physical_size", I),
        ro("type", S),
        ro("content_type", S),
        ro("shared", B),
        rw("other_config", MAP_SS),
        rw("tags", SET_S),
        ro("sm_config", MAP_SS),
        ro("blobs", Ty::Map(&Ty::String, &Ty::Ref("blob"))),
        ro("local_cache_enabled", B),
        ro("introduced_by", Ty::Ref("DR_task")),
        ro("clustered", B),
        ro("is_tools_sr", B),
    ],
    messages: &[
        call(
            "create",
            &[
                p("host", Ty::Ref("host")),
                p("device_config", MAP_SS),
                p("physical_size", I),
                p("name_label", S),
                p("name_description", S),
                p("type", S),
                p("content_type", S),
                p("shared", B),
                p_d("sm_config", MAP_SS, Default::Empty),
            ],
            Op::SrCreate,
        ),
        call(
            "probe",
            &[
                p("host", Ty::Ref("host")),
                p("device_config", MAP_SS),
                p("type", S),
                p_d("sm_config", MAP_SS, Default::Empty),
            ],
            Op::SrProbe,
        ),
        call(
            "introduce",
            &[
                p("uuid", S),
                p("name_label", S),
                p("name_description", S),
                p("type", S),
                p("content_type", S),
                p("shared", B),
                p_d("sm_config", MAP_SS, Default::Empty),
            ],
            Op::SrIntroduce,
        ),
        call("forget", &[p("sr", Ty::Ref("SR"))], Op::SrForget),
        call("destroy", &[p("sr", Ty::Ref("SR"))], Op::SrDestroy),
        call("scan", &[p("sr", Ty::Ref("SR"))], Op::SrScan),
    ],
};

pub const VDI: Class = Class {
    name: "VDI",
    enumerable: true,
    fields: &[
        ro("uuid", S),
        rw("name_label", S),
        rw("name_description", S),
        ro("allowed_operations", SET_S),
        ro("current_operations", OPS),
        ro("SR", Ty::Ref("SR")),
        ro("VBDs", Ty::Set(&Ty::Ref("VBD"))),
        ro("crash_dumps", Ty::Set(&Ty::Ref("crashdump"))),
        ro("virtual_size", I),
        ro("physical_utilisation", I),
        ro_d("type", S, Default::Str("user")),
        ro("sharable", B),
        ro("read_only", B),
        rw("other_config", MAP_SS),
        ro("storage_lock", B),
        ro("location", S),
        ro_d("managed", B, Default::Bool(true)),
        ro("missing", B),
        ro("parent", Ty::Ref("VDI")),
        ro("xenstore_data", MAP_SS),
        ro("sm_config", MAP_SS),
        ro("is_a_snapshot", B),
        ro("snapshot_of", Ty::Ref("VDI")),
        ro("snapshots", Ty::Set(&Ty::Ref("VDI"))),
        ro("snapshot_time", D),
        rw("tags", SET_S),
        ro("allow_caching", B),
        ro_d("on_boot", S, Default::Str("persist")),
        ro("metadata_of_pool", Ty::Ref("pool")),
        ro("metadata_latest", B),
        ro("is_tools_iso", B),
        ro("cbt_enabled", B),
    ],
    messages: &[
        call("create", &[p("args", Ty::Record)], Op::VdiCreate),
        call("destroy", &[p("self", Ty::Ref("VDI"))], Op::VdiDestroy),
        call(
            "snapshot",
            &[p("vdi", Ty::Ref("VDI")), p("driver_params", MAP_SS)],
            Op::VdiSnapshot,
        ),
        call(
            "clone",
            &[p("vdi", Ty::Ref("VDI")), p("driver_params", MAP_SS)],
            Op::VdiClone,
        ),
        call(
            "resize",
            &[p("vdi", Ty::Ref("VDI")), p("size", I)],
            Op::VdiResize,
        ),
    ],
};

const VM_REF: Ty = Ty::Ref("VM");

pub const VM: Class = Class {
    name: "VM",
    enumerable: true,
    fields: &[
        ro("uuid", S),
        ro("allowed_operations", SET_S),
        ro("current_operations", OPS),
        ro_d(
            "power_state",
            Ty::Enum(POWER_STATES),
            Default::Str("Halted"),
        ),
        rw("name_label", S),
        rw("name_description", S),
        rw("user_version", I),
        rw("is_a_template", B),
        ro("is_default_template", B),
        ro("suspend_VDI", Ty::Ref("VDI")),
        ro("resident_on", Ty::Ref("host")),
        ro("scheduled_to_be_resident_on", Ty::Ref("host")),
        rw("affinity", Ty::Ref("host")),
        ro("memory_overhead", I),
        ro("memory_target", I),
        ro("memory_static_max", I),
        ro("memory_dynamic_max", I),
        ro("memory_dynamic_min", I),
        ro("memory_static_min", I),
        rw("VCPUs_params", MAP_SS),
        ro("VCPUs_max", I),
        ro("VCPUs_at_startup", I),
        rw_d("actions_after_shutdown", S, Default::Str("destroy")),
        rw_d("actions_after_reboot", S, Default::Str("restart")),
        rw_d("actions_after_crash", S, Default::Str("restart")),
        ro("consoles", Ty::Set(&Ty::Ref("console"))),
        ro("VIFs", Ty::Set(&Ty::Ref("VIF"))),
        ro("VBDs", Ty::Set(&Ty::Ref("VBD"))),
        ro("VUSBs", Ty::Set(&Ty::Ref("VUSB"))),
        ro("crash_dumps", Ty::Set(&Ty::Ref("crashdump"))),
        ro("VTPMs", Ty::Set(&Ty::Ref("VTPM"))),
        rw("PV_bootloader", S),
        rw("PV_kernel", S),
        rw("PV_ramdisk", S),
        rw("PV_args", S),
        rw("PV_bootloader_args", S),
        rw("PV_legacy_args", S),
        rw("HVM_boot_policy", S),
        rw("HVM_boot_params", MAP_SS),
        rw("HVM_shadow_multiplier", F),
        rw("platform", MAP_SS),
        rw("PCI_bus", S),
        rw("other_config", MAP_SS),
        ro("domid", I),
        ro("domarch", S),
        ro("last_boot_CPU_flags", MAP_SS),
        ro("is_control_domain", B),
        ro("metrics", Ty::Ref("VM_metrics")),
        ro("guest_metrics", Ty::Ref("VM_guest_metrics")),
        ro("last_booted_record", S),
        rw("recommendations", S),
        rw("xenstore_data", MAP_SS),
        ro("ha_always_run", B),
        ro("ha_restart_priority", S),
        ro("is_a_snapshot", B),
        ro("snapshot_of", VM_REF),
        ro("snapshots", Ty::Set(&VM_REF)),
        ro("snapshot_time", D),
        ro("transportable_snapshot_id", S),
        ro("blobs", Ty::Map(&Ty::String, &Ty::Ref("blob"))),
        rw("tags", SET_S),
        ro("blocked_operations", MAP_SS),
        ro("snapshot_info", MAP_SS),
        ro("snapshot_metadata", S),
        ro("parent", VM_REF),
        ro("children", Ty::Set(&VM_REF)),
        ro("bios_strings", MAP_SS),
        ro("protection_policy", Ty::Ref("VMPP")),
        ro("is_snapshot_from_vmpp", B),
        ro("snapshot_schedule", Ty::Ref("VMSS")),
        ro("is_vmss_snapshot", B),
        ro("appliance", Ty::Ref("VM_appliance")),
        rw("start_delay", I),
        ro("shutdown_delay", I),
        rw("order", I),
        ro("VGPUs", Ty::Set(&Ty::Ref("VGPU"))),
        ro("attached_PCIs", Ty::Set(&Ty::Ref("PCI"))),
        rw("suspend_SR", Ty::Ref("SR")),
        ro("version", I),
        ro_d("generation_id", S, Default::Str("0:0")),
        ro("hardware_platform_version", I),
        ro("has_vendor_device", B),
        ro("requires_reboot", B),
        ro("reference_label", S),
        ro_d("domain_type", S, Default::Str("hvm")),
        ro("NVRAM", MAP_SS),
        ro("pending_guidances", SET_S),
    ],
    messages: &[
        call("create", &[p("args", Ty::Record)], Op::VmCreate),
        call("destroy", &[p("self", VM_REF)], Op::VmDestroy),
        call("clone", &[p("vm", VM_REF), p("new_name", S)], Op::VmClone),
        call(
            "copy",
            &[p("vm", VM_REF), p("new_name", S), p("sr", Ty::Ref("SR"))],
            Op::VmCopy,
        ),
        call("provision", &[p("vm", VM_REF)], Op::VmProvision),
        call(
            "start",
            &[p("vm", VM_REF), p("start_paused", B), p("force", B)],
            Op::VmStart,
        ),
        call(
            "start_on",
            &[
                p("vm", VM_REF),
                p("host", Ty::Ref("host")),
                p("start_paused", B),
                p("force", B),
            ],
            Op::VmStartOn,
        ),
        call("clean_shutdown", &[p("vm", VM_REF)], Op::VmCleanShutdown),
        call("hard_shutdown", &[p("vm", VM_REF)], Op::VmHardShutdown),
        call("clean_reboot", &[p("vm", VM_REF)], Op::VmCleanReboot),
        call("hard_reboot", &[p("vm", VM_REF)], Op::VmHardReboot),
        todo_call("suspend", &[p("vm", VM_REF)]),
        todo_call(
            "resume",
            &[p("vm", VM_REF), p("start_paused", B), p("force", B)],
        ),
        call("pause", &[p("vm", VM_REF)], Op::VmPause),
        call("unpause", &[p("vm", VM_REF)], Op::VmUnpause),
        call(
            "set_memory_limits",
            &[
                p("self", VM_REF),
                p("static_min", I),
                p("static_max", I),
                p("dynamic_min", I),
                p("dynamic_max", I),
            ],
            Op::VmSetMemoryLimits,
        ),
        call(
            "set_memory",
            &[p("self", VM_REF), p("value", I)],
            Op::VmSetMemory,
        ),
        call(
            "set_VCPUs_max",
            &[p("self", VM_REF), p("value", I)],
            Op::VmSetVcpusMax,
        ),
        call(
            "set_VCPUs_at_startup",
            &[p("self", VM_REF), p("value", I)],
            Op::VmSetVcpusAtStartup,
        ),
        call(
            "get_allowed_VBD_devices",
            &[p("vm", VM_REF)],
            Op::VmGetAllowedVbdDevices,
        ),
        call(
            "get_allowed_VIF_devices",
            &[p("vm", VM_REF)],
            Op::VmGetAllowedVifDevices,
        ),
    ],
};

pub const VM_METRICS: Class = Class {
    name: "VM_metrics",
    enumerable: true,
    fields: &[
        ro("uuid", S),
        ro("memory_actual", I),
        ro("VCPUs_number", I),
        ro("VCPUs_utilisation", Ty::Map(&Ty::Int, &Ty::Float)),
        ro("VCPUs_CPU", Ty::Map(&Ty::Int, &Ty::Int)),
        ro("VCPUs_params", MAP_SS),
        ro("VCPUs_flags", Ty::Map(&Ty::Int, &SET_S)),
        ro("state", SET_S),
        ro("start_time", D),
        ro("install_time", D),
        ro("last_updated", D),
        rw("other_config", MAP_SS),
        ro("hvm", B),
        ro("nested_virt", B),
        ro("nomigrate", B),
        ro_d("current_domain_type", S, Default::Str("unspecified")),
    ],
    messages: &[],
};

const VBD_REF: Ty = Ty::Ref("VBD");

pub const VBD: Class = Class {
    name: "VBD",
    enumerable: true,
    fields: &[
        ro("uuid", S),
        ro("allowed_operations", SET_S),
        ro("current_operations", OPS),
        ro("VM", VM_REF),
        ro("VDI", Ty::Ref("VDI")),
        ro("device", S),
        rw("userdevice", S),
        rw("bootable", B),
        rw_d("mode", Ty::Enum(&["RO", "RW"]), Default::Str("RW")),
        rw_d(
            "type",
            Ty::Enum(&["CD", "Disk", "Floppy"]),
            Default::Str("Disk"),
        ),
        rw_d("unpluggable", B, Default::Bool(true)),
        ro("storage_lock", B),
        ro("empty", B),
        rw("other_config", MAP_SS),
        ro("currently_attached", B),
        ro("status_code", I),
        ro("status_detail", S),
        ro("runtime_properties", MAP_SS),
        rw("qos_algorithm_type", S),
        rw("qos_algorithm_params", MAP_SS),
        ro("qos_supported_algorithms", SET_S),
        ro("metrics", Ty::Ref("VBD_metrics")),
    ],
    messages: &[
        call("create", &[p("args", Ty::Record)], Op::VbdCreate),
        call("destroy", &[p("self", VBD_REF)], Op::VbdDestroy),
        call("plug", &[p("self", VBD_REF)], Op::VbdPlug),
        call("unplug", &[p("self", VBD_REF)], Op::VbdUnplug),
        call("unplug_force", &[p("self", VBD_REF)], Op::VbdUnplug),
        call("eject", &[p("vbd", VBD_REF)], Op::VbdEject),
        call(
            "insert",
            &[p("vbd", VBD_REF), p("vdi", Ty::Ref("VDI"))],
            Op::VbdInsert,
        ),
    ],
};

const VIF_REF: Ty = Ty::Ref("VIF");

pub const VIF: Class = Class {
    name: "VIF",
    enumerable: true,
    fields: &[
        ro("uuid", S),
        ro("allowed_operations", SET_S),
        ro("current_operations", OPS),
        ro("device", S),
        ro("network", Ty::Ref("network")),
        ro("VM", VM_REF),
        ro("MAC", S),
        ro_d("MTU", I, Default::Int(1500)),
        rw("other_config", MAP_SS),
        ro("currently_attached", B),
        ro("status_code", I),
        ro("status_detail", S),
        ro("runtime_properties", MAP_SS),
        rw("qos_algorithm_type", S),
        rw("qos_algorithm_params", MAP_SS),
        ro("qos_supported_algorithms", SET_S),
        ro("metrics", Ty::Ref("VIF_metrics")),
        ro("MAC_autogenerated", B),
        ro_d(
            "locking_mode",
            Ty::Enum(VIF_LOCKING_MODES),
            Default::Str("network_default"),
        ),
        ro("ipv4_allowed", SET_S),
        ro("ipv6_allowed", SET_S),
        ro_d(
            "ipv4_configuration_mode",
            Ty::Enum(&["None", "Static"]),
            Default::Str("None"),
        ),
        ro("ipv4_addresses", SET_S),
        ro("ipv4_gateway", S),
        ro_d(
            "ipv6_configuration_mode",
            Ty::Enum(&["None", "Static"]),
            Default::Str("None"),
        ),
        ro("ipv6_addresses", SET_S),
        ro("ipv6_gateway", S),
        ro("reserved_pci", Ty::Ref("PCI")),
    ],
    messages: &[
        call("create", &[p("args", Ty::Record)], Op::VifCreate),
        call("destroy", &[p("self", VIF_REF)], Op::VifDestroy),
        call("plug", &[p("self", VIF_REF)], Op::VifPlug),
        call("unplug", &[p("self", VIF_REF)], Op::VifUnplug),
        call("unplug_force", &[p("self", VIF_REF)], Op::VifUnplug),
        call(
            "move",
            &[p("self", VIF_REF), p("network", Ty::Ref("network"))],
            Op::VifMove,
        ),
        call(
            "set_locking_mode",
            &[p("self", VIF_REF), p("value", Ty::Enum(VIF_LOCKING_MODES))],
            Op::VifSetLockingMode,
        ),
        call(
            "set_ipv4_allowed",
            &[p("self", VIF_REF), p("value", SET_S)],
            Op::VifSetIpv4Allowed,
        ),
        call(
            "add_ipv4_allowed",
            &[p("self", VIF_REF), p("value", S)],
            Op::VifAddIpv4Allowed,
        ),
        call(
            "remove_ipv4_allowed",
            &[p("self", VIF_REF), p("value", S)],
            Op::VifRemoveIpv4Allowed,
        ),
        call(
            "set_ipv6_allowed",
            &[p("self", VIF_REF), p("value", SET_S)],
            Op::VifSetIpv6Allowed,
        ),
        call(
            "add_ipv6_allowed",
            &[p("self", VIF_REF), p("value", S)],
            Op::VifAddIpv6Allowed,
        ),
        call(
            "remove_ipv6_allowed",
            &[p("self", VIF_REF), p("value", S)],
            Op::VifRemoveIpv6Allowed,
        ),
    ],
};

const PBD_REF: Ty = Ty::Ref("PBD");

pub const PBD: Class = Class {
    name: "PBD",
    enumerable: true,
    fields: &[
        ro("uuid", S),
        ro("host", Ty::Ref("host")),
        ro("SR", Ty::Ref("SR")),
        ro("device_config", MAP_SS),
        ro("currently_attached", B),
        rw("other_config", MAP_SS),
    ],
    messages: &[
        call("create", &[p("args", Ty::Record)], Op::PbdCreate),
        call("destroy", &[p("self", PBD_REF)], Op::PbdDestroy),
        call("plug", &[p("self", PBD_REF)], Op::PbdPlug),
        call("unplug", &[p("self", PBD_REF)], Op::PbdUnplug),
        call(
            "set_device_config",
            &[p("self", PBD_REF), p("value", MAP_SS)],
            Op::PbdSetDeviceConfig,
        ),
    ],
};

const BOND_REF: Ty = Ty::Ref("Bond");

pub const BOND: Class = Class {
    name: "Bond",
    enumerable: true,
    fields: &[
        ro("uuid", S),
        ro("master", Ty::Ref("PIF")),
        ro("slaves", Ty::Set(&Ty::Ref("PIF"))),
        rw("other_config", MAP_SS),
        ro("primary_slave", Ty::Ref("PIF")),
        ro_d("mode", Ty::Enum(BOND_MODES), Default::Str("balance-slb")),
        ro("properties", MAP_SS),
        ro("links_up", I),
        ro_d("auto_update_mac", B, Default::Bool(true)),
    ],
    messages: &[
        call(
            "create",
            &[
                p("network", Ty::Ref("network")),
                p("members", Ty::Set(&Ty::Ref("PIF"))),
                p("MAC", S),
                p_d("mode", Ty::Enum(BOND_MODES), Default::Str("balance-slb")),
                p_d("properties", MAP_SS, Default::Empty),
            ],
            Op::BondCreate,
        ),
        call("destroy", &[p("self", BOND_REF)], Op::BondDestroy),
        call(
            "set_mode",
            &[p("self", BOND_REF), p("value", Ty::Enum(BOND_MODES))],
            Op::BondSetMode,
        ),
        call(
            "set_property",
            &[p("self", BOND_REF), p("name", S), p("value", S)],
            Op::BondSetProperty,
        ),
    ],
};

pub const VLAN: Class = Class {
    name: "VLAN",
    enumerable: true,
    fields: &[
        ro("uuid", S),
        ro("tagged_PIF", Ty::Ref("PIF")),
        ro("untagged_PIF", Ty::Ref("PIF")),
        ro_d("tag", I, Default::Int(-1)),
        rw("other_config", MAP_SS),
    ],
    messages: &[
        call(
            "create",
            &[
                p("tagged_PIF", Ty::Ref("PIF")),
                p("tag", I),
                p("network", Ty::Ref("network")),
            ],
            Op::VlanCreate,
        ),
        call("destroy", &[p("self", Ty::Ref("VLAN"))], Op::VlanDestroy),
    ],
};

pub const CONSOLE: Class = Class {
    name: "console",
    enumerable: true,
    fields: &[
        ro("uuid", S),
        ro_d(
            "protocol",
            Ty::Enum(&["vt100", "rfb", "rdp"]),
            Default::Str("rfb"),
        ),
        ro("location", S),
        ro("VM", VM_REF),
        rw("other_config", MAP_SS),
    ],
    messages: &[
        todo_call("create", &[p("args", Ty::Record)]),
        todo_call("destroy", &[p("self", Ty::Ref("console"))]),
    ],
};

/// Messages (alerts) are pure database objects: created and destroyed for real.
pub const MESSAGE: Class = Class {
    name: "message",
    enumerable: true,
    fields: &[
        ro("uuid", S),
        ro("name", S),
        ro("priority", I),
        ro_d("cls", Ty::Enum(MESSAGE_CLASSES), Default::Str("Host")),
        ro("obj_uuid", S),
        ro("timestamp", D),
        ro("body", S),
    ],
    messages: &[
        call(
            "create",
            &[
                p("name", S),
                p("priority", I),
                p("cls", Ty::Enum(MESSAGE_CLASSES)),
                p("obj_uuid", S),
                p("body", S),
            ],
            Op::MessageCreate,
        ),
        call(
            "destroy",
            &[p("self", Ty::Ref("message"))],
            Op::MessageDestroy,
        ),
        call("get_since", &[p("since", D)], Op::MessageGetSince),
    ],
};

/// A secret value (a CHAP password a PBD's `device_config` names by
/// uuid), readable by the pool's administrators as in xapi.
pub const SECRET: Class = Class {
    name: "secret",
    enumerable: true,
    fields: &[ro("uuid", S), rw("value", S), rw("other_config", MAP_SS)],
    messages: &[
        call("create", &[p("args", Ty::Record)], Op::SecretCreate),
        call(
            "introduce",
            &[
                p("uuid", S),
                p("value", S),
                p_d("other_config", MAP_SS, Default::Empty),
            ],
            Op::SecretIntroduce,
        ),
        call(
            "destroy",
            &[p("self", Ty::Ref("secret"))],
            Op::SecretDestroy,
        ),
    ],
};

/// Every class served, in `system.listMethods` order.
pub const CLASSES: &[&Class] = &[
    &SESSION,
    &SYSTEM,
    &EVENT,
    &TASK,
    &POOL,
    &HOST,
    &HOST_METRICS,
    &NETWORK,
    &PIF,
    &SR,
    &VDI,
    &VM,
    &VM_METRICS,
    &VBD,
    &VIF,
    &PBD,
    &BOND,
    &VLAN,
    &CONSOLE,
    &MESSAGE,
    &SECRET,
];

/// The class called `name` (exact case, as in method names).
pub fn class(name: &str) -> Option<&'static Class> {
    CLASSES.iter().copied().find(|c| c.name == name)
}

/// The class whose name matches `name` ignoring case (event class filters).
pub fn class_ignore_case(name: &str) -> Option<&'static Class> {
    CLASSES
        .iter()
        .copied()
        .find(|c| c.name.eq_ignore_ascii_case(name))
}
