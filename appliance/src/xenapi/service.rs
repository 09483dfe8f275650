//! The service state and its HTTP entry: sessions, the database, the host
//! objects and the `event.from` calls waiting for a change.

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::time::Duration;

use host_config::HostConfig;

use super::auth::Auth;
use super::db::{Db, NULL_REF, uuid_from};
use super::dispatch::{self, Method, Target};
use super::error::ApiError;
use super::events::{self, Filter};
use super::host::{self, HostFacts, HostRefs};
use super::jsonrpc;
use super::persist::{self, SCHEMA_VERSION, StateStore};
use super::schema::{CLASSES, Op, TASK, Ty};
use super::value::{Value, format_datetime};
use super::xmlrpc;
use crate::http::{Method as HttpMethod, Request, Response, Status};
use crate::platform::Platform;
use crate::server::{Reply, Ticket};

/// A session unused for this long is gone.
pub const SESSION_IDLE_TIMEOUT: Duration = Duration::from_secs(24 * 3600);
/// Sessions kept at most; logging in beyond it ends the least recently used.
pub const MAX_SESSIONS: usize = 500;
/// `event.from` calls waiting at most.
const MAX_WAITING: usize = 64;
/// How often host metrics are refreshed (each change is an event).
const METRICS_PERIOD: Duration = Duration::from_secs(5);

/// An `event.from` waiting for a change or its timeout.
#[derive(Debug)]
struct Waiting {
    wire: Wire,
    session: String,
    filters: Vec<Filter>,
    since: Option<u64>,
    deadline: Duration,
    /// The database generation last looked at: nothing to collect until it moves.
    checked: u64,
}

/// What a call came to.
enum Outcome {
    Done(Result<Value, ApiError>),
    Wait(Waiting),
    /// It needs an iSCSI job; answered when the job ends.
    Storage(alloc::boxed::Box<srs::StorageCall>),
    /// A power call answered when the VM is off: `(vm, what next, timeout)`.
    VmWait(String, vm_power::WaitFor, Duration),
}

/// A call whose iSCSI job is queued or running.
#[derive(Debug)]
struct StorageWait {
    completion: srs::Completion,
    /// The target asked (where discovery was sent).
    asked: String,
    /// The connection awaiting the answer, if it is a plain call.
    ticket: Option<(u64, Wire)>,
    /// The task reporting it, for an `Async.` call.
    task: Option<String>,
}

/// The XenAPI service of this host.
#[derive(Debug)]
pub struct XenApi {
    db: Db,
    auth: Auth,
    /// Session ref → time of its last use.
    sessions: BTreeMap<String, Duration>,
    refs: HostRefs,
    facts: HostFacts,
    metrics_at: Duration,
    waiting: BTreeMap<u64, Waiting>,
    next_ticket: u64,
    /// Where changes are saved; `None`: in memory only.
    store: Option<Store>,
    /// Whether the platform runs iSCSI jobs (see [`XenApi::take_storage_jobs`]).
    storage_driver: bool,
    /// The host's own disks (for local SRs), as the platform found them.
    host_disks: Vec<crate::local_disks::HostDiskInfo>,
    /// Jobs not yet taken by the platform, by id.
    storage_queue: alloc::collections::VecDeque<(u64, crate::iscsi::JobSpec)>,
    /// Calls whose job is queued or running, by job id.
    storage_waits: BTreeMap<u64, StorageWait>,
    /// Answers ready for deferred calls, by ticket.
    storage_answers: BTreeMap<u64, Response>,
    /// The task the upload in progress reports through, if it has one.
    upload: Option<upload::UploadTask>,
    /// The certificate HTTPS presents, if it is served.
    server_certificate: Option<ServerCertificate>,
    /// VMs running now, by VM ref.
    running: BTreeMap<String, vm_power::Running>,
    /// Power calls waiting for their VM to be off.
    vm_waits: Vec<vm_power::VmWait>,
    /// The last domid handed out.
    next_domid: i64,
    /// Whether the VM records were checked since boot (see `poll_vms`).
    vms_checked: bool,
    /// VMs still to start by `auto_poweron`, in order, and when the next may.
    autostart: alloc::collections::VecDeque<String>,
    autostart_at: Duration,
    /// Open console connections, by ticket.
    consoles: BTreeMap<u64, consoles::ConsoleTunnel>,
    /// Raw VDI imports and exports in progress, by ticket.
    imports: BTreeMap<u64, transfer::Import>,
    exports: BTreeMap<u64, transfer::Export>,
    /// The transfer each of their storage jobs belongs to.
    transfer_jobs: transfer::TransferJobs,
    /// Disks attached for running VMs, and their batch jobs (job → disk).
    disks: vbds::Disks,
    /// Jobs of attached disks: the disk, and whether it is its session.
    disk_jobs: BTreeMap<u64, (u64, bool)>,
    /// Address changes `PIF.reconfigure_ip` made, for the network owner to
    /// apply; `None` when nothing applies them (hosted).
    ip_changes: Option<Vec<pif_ip::IpChange>>,
    /// Switch changes for the network owner (see `guest_net`).
    net_requests: Vec<guest_net::NetRequest>,
    /// Whether the VLANs made through the API were carried again since boot.
    net_restored: bool,
    /// When each VM crashed lately (for `actions_after_crash` restarts).
    crashes: BTreeMap<String, Vec<Duration>>,
    /// The host config's management addressing (see `pif_ip::OVERRIDE_KEY`).
    config_addressing: String,
    /// VMs whose disks are being cloned (`VM.clone`/`copy`).
    cloning: alloc::collections::BTreeSet<String>,
}

/// What `host.get_server_certificate` and `/health` say of the HTTPS certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerCertificate {
    pub pem: String,
    /// SHA-256 of the DER, `AB:CD:...`.
    pub sha256: String,
}

pub use consoles::CONSOLE_PATH;
pub use guest_net::{API_ORIGIN, NetRequest, VifTarget, VmNic};
pub use transfer::{EXPORT_RAW_PATH, IMPORT_RAW_PATH};
pub use upload::UploadOutcome;
pub use vbds::{DISK_QUEUE_DEPTH, VmDisk};

/// The attached state store.
struct Store(alloc::boxed::Box<dyn StateStore>);

impl core::fmt::Debug for Store {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("StateStore")
    }
}

/// What attaching a store found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attached {
    /// Objects loaded from the store (0: it was empty and got the current ones).
    pub loaded: usize,
    /// Records that could not be read (unknown class, damaged value).
    pub skipped: usize,
}

/// Keys of the state store's internal records (a changed root password,
/// a host kept disabled): kept beside the objects, never loaded as one.
const INTERNAL_PREFIX: &str = "keel/";

/// A fresh `(OpaqueRef:<uuid>, <uuid>)` pair; refs and uuids are independent.
fn new_id(platform: &mut dyn Platform) -> (String, String) {
    let mut bytes = [0u8; 32];
    platform.fill_random(&mut bytes);
    let mut a = [0u8; 16];
    let mut b = [0u8; 16];
    a.copy_from_slice(&bytes[..16]);
    b.copy_from_slice(&bytes[16..]);
    (format!("OpaqueRef:{}", uuid_from(a)), uuid_from(b))
}

impl XenApi {
    pub fn new(config: &HostConfig, facts: HostFacts, platform: &mut dyn Platform) -> Self {
        let mut key = [0u8; 32];
        platform.fill_random(&mut key);
        let mut db = Db::new();
        let refs = host::create(&mut db, &facts, || new_id(platform));
        let taken = platform
            .unix_time()
            .unwrap_or_else(|| platform.now().as_secs());
        host::metrics_taken(&mut db, &refs, format_datetime(taken));
        XenApi {
            db,
            auth: Auth::new(config.root_password_hash.clone(), key),
            sessions: BTreeMap::new(),
            refs,
            facts,
            metrics_at: platform.now(),
            waiting: BTreeMap::new(),
            next_ticket: 1,
            store: None,
            storage_driver: false,
            host_disks: Vec::new(),
            storage_queue: alloc::collections::VecDeque::new(),
            storage_waits: BTreeMap::new(),
            storage_answers: BTreeMap::new(),
            upload: None,
            server_certificate: None,
            running: BTreeMap::new(),
            vm_waits: Vec::new(),
            next_domid: 0,
            vms_checked: false,
            autostart: alloc::collections::VecDeque::new(),
            autostart_at: Duration::ZERO,
            consoles: BTreeMap::new(),
            imports: BTreeMap::new(),
            exports: BTreeMap::new(),
            transfer_jobs: BTreeMap::new(),
            disks: BTreeMap::new(),
            disk_jobs: BTreeMap::new(),
            ip_changes: None,
            net_requests: Vec::new(),
            net_restored: false,
            crashes: BTreeMap::new(),
            config_addressing: pif_ip::config_addressing(config),
            cloning: alloc::collections::BTreeSet::new(),
        }
    }

    /// Keeps the database in `store` from now on. An empty store gets the
    /// current objects; otherwise the stored objects replace them (the host
    /// keeps its identity across reboots) and are brought up to date with
    /// the running host. On error nothing is attached and the database
    /// stays in memory only.
    pub fn attach_store(
        &mut self,
        mut store: alloc::boxed::Box<dyn StateStore>,
        platform: &mut dyn Platform,
    ) -> Result<Attached, String> {
        let (version, records) = store.records();
        if records.is_empty() {
            self.db.take_dirty();
            store.commit(persist::snapshot(&self.db), SCHEMA_VERSION)?;
            self.store = Some(Store(store));
            return Ok(Attached {
                loaded: 0,
                skipped: 0,
            });
        }
        let (records, internal): (Vec<_>, Vec<_>) = records
            .into_iter()
            .partition(|(key, _)| !key.starts_with(INTERNAL_PREFIX));
        let internal: BTreeMap<String, Vec<u8>> = internal.into_iter().collect();
        self.restore_password(&internal);
        let count = records.len();
        let (mut db, skipped) = persist::load(version, records).map_err(|e| e.to_string())?;
        let mut refs = host::find(&mut db, || new_id(platform))
            .ok_or_else(|| String::from("the stored database has no host object"))?;
        // A bond made through the API is the uplink again (its objects stay).
        let memory = core::mem::replace(&mut self.db, db);
        self.restore_bond();
        let mut db = core::mem::replace(&mut self.db, memory);
        host::update(&mut db, &mut refs, &self.facts, &mut || new_id(platform));
        host::update_metrics(&mut db, &refs, &self.facts.system);
        let taken = format_datetime(self.unix_now(platform));
        host::metrics_taken(&mut db, &refs, taken);
        let changes = if version < SCHEMA_VERSION {
            // Records of an older schema are rewritten in the current one.
            db.take_dirty();
            persist::snapshot(&db)
        } else {
            let dirty = db.take_dirty();
            persist::changes(&db, dirty)
        };
        store.commit(changes, SCHEMA_VERSION)?;
        self.db = db;
        self.refs = refs;
        self.sessions.clear();
        self.store = Some(Store(store));
        // SRs on iSCSI LUNs are opened again (their PBDs re-plugged).
        self.replug_storage();
        self.restore_addressing(platform);
        self.enable_host_at_boot(&internal);
        if let Err(e) = self.persist() {
            log::error!("db: PBD states could not be saved: {e}");
        }
        Ok(Attached {
            loaded: count - skipped,
            skipped,
        })
    }

    /// The certificate HTTPS presents (for `host.get_server_certificate`).
    pub fn set_server_certificate(&mut self, certificate: ServerCertificate) {
        self.server_certificate = Some(certificate);
    }

    pub fn server_certificate(&self) -> Option<&ServerCertificate> {
        self.server_certificate.as_ref()
    }

    /// Writes (`Some`) or deletes (`None`) the internal record `key` (under
    /// [`INTERNAL_PREFIX`]) at once, if a store is attached; `what` names
    /// it in the error.
    fn save_internal(
        &mut self,
        key: &str,
        value: Option<Vec<u8>>,
        what: &str,
    ) -> Result<(), ApiError> {
        debug_assert!(key.starts_with(INTERNAL_PREFIX));
        let Some(Store(store)) = self.store.as_mut() else {
            return Ok(());
        };
        let key = String::from(key);
        let change = match value {
            Some(value) => persist::Change::Put { key, value },
            None => persist::Change::Delete { key },
        };
        store
            .commit(alloc::vec![change], SCHEMA_VERSION)
            .map_err(|e| ApiError::internal(&format!("{what} was not saved: {e}")))
    }

    /// Writes the changed objects to the store (if one is attached).
    pub fn persist(&mut self) -> Result<(), String> {
        let dirty = self.db.take_dirty();
        let Some(Store(store)) = self.store.as_mut() else {
            return Ok(());
        };
        let changes = persist::changes(&self.db, dirty);
        if changes.is_empty() {
            return Ok(());
        }
        store.commit(changes, SCHEMA_VERSION)
    }

    /// Whether `path` is a XenAPI endpoint.
    pub fn serves(path: &str) -> bool {
        matches!(path, "/" | "/RPC2" | "/xmlrpc" | "/jsonrpc")
    }

    /// Answers a request to one of the XenAPI endpoints.
    pub fn handle(&mut self, request: &Request<'_>, platform: &mut dyn Platform) -> Reply {
        let json = request.path() == "/jsonrpc";
        match request.method() {
            HttpMethod::Post => {}
            HttpMethod::Options => {
                return Reply::Now(
                    cors(Response::new(Status::OK))
                        .with_header("Access-Control-Allow-Methods", "POST, OPTIONS")
                        .with_header("Access-Control-Allow-Headers", "Content-Type"),
                );
            }
            _ => {
                return Reply::Now(
                    Response::json_error(Status::METHOD_NOT_ALLOWED, "the XenAPI takes POST")
                        .with_header("Allow", "POST, OPTIONS"),
                );
            }
        }
        self.refresh(platform);
        // A waiter whose connection vanished without a cancel is dropped
        // once well past its deadline.
        let now = platform.now();
        self.waiting
            .retain(|_, w| w.deadline + Duration::from_secs(60) > now);
        let (wire, method, params) = if json {
            match jsonrpc::parse_call(&request.body) {
                Ok(call) => (
                    Wire::Json {
                        version: call.version,
                        id: call.id,
                    },
                    call.method,
                    call.params,
                ),
                Err(e) => return Reply::Now(bad_body(&e.to_string())),
            }
        } else {
            match xmlrpc::parse_call(&request.body) {
                Ok(call) => (Wire::Xml, call.method, call.params),
                Err(e) => return Reply::Now(bad_body(&format!("not an XML-RPC methodCall: {e}"))),
            }
        };
        let bare = method == "system.listMethods" || method == "system_listMethods";
        let outcome = self.call(&method, params, platform);
        // A change is saved before it is acknowledged.
        let outcome = match (self.persist(), outcome) {
            (Err(e), Outcome::Done(Ok(_))) => {
                log::error!("db: a change was made but could not be saved: {e}");
                Outcome::Done(Err(ApiError::internal(&format!(
                    "the change was made but could not be saved: {e}"
                ))))
            }
            (Err(e), other) => {
                log::error!("db: changes could not be saved: {e}");
                other
            }
            (Ok(()), other) => other,
        };
        match outcome {
            Outcome::Done(result) => Reply::Now(respond(&wire, &result, bare)),
            Outcome::Storage(call) => {
                let ticket = self.next_ticket;
                self.next_ticket += 1;
                self.queue_storage(ticket, *call, Some(wire), None);
                Reply::Later(Ticket(ticket))
            }
            Outcome::VmWait(vm, kind, timeout) => {
                let ticket = self.next_ticket;
                self.next_ticket += 1;
                let now = platform.now();
                self.queue_vm_wait(vm, kind, timeout, Some((ticket, wire)), None, now);
                Reply::Later(Ticket(ticket))
            }
            Outcome::Wait(mut waiting) => {
                if self.waiting.len() >= MAX_WAITING {
                    // Too many waiters: answer now, as a timeout would.
                    waiting.deadline = Duration::ZERO;
                    let result = self.event_result(&waiting, platform);
                    return Reply::Now(respond(&wire, &Ok(result), false));
                }
                waiting.wire = wire;
                let ticket = self.next_ticket;
                self.next_ticket += 1;
                self.waiting.insert(ticket, waiting);
                Reply::Later(Ticket(ticket))
            }
        }
    }

    /// The answer to a waiting `event.from`, once there is one.
    pub fn resume(&mut self, ticket: Ticket, platform: &mut dyn Platform) -> Option<Response> {
        if let Some(answer) = self.storage_answers.remove(&ticket.0) {
            return Some(answer);
        }
        let generation = self.db.generation();
        let now = platform.now();
        {
            let waiting = self.waiting.get_mut(&ticket.0)?;
            if waiting.checked == generation && now < waiting.deadline {
                return None;
            }
            waiting.checked = generation;
        }
        let waiting = self.waiting.get(&ticket.0)?;
        if !self.sessions.contains_key(&waiting.session) {
            let waiting = self.waiting.remove(&ticket.0)?;
            return Some(respond(
                &waiting.wire,
                &Err(ApiError::session_invalid(&waiting.session)),
                false,
            ));
        }
        let timestamp = self.timestamp(platform);
        let events = events::collect(&self.db, &waiting.filters, waiting.since, &timestamp);
        if events.is_empty() && now < waiting.deadline {
            return None;
        }
        let waiting = self.waiting.remove(&ticket.0)?;
        let result = events::result(&self.db, &waiting.filters, events);
        Some(respond(&waiting.wire, &Ok(result), false))
    }

    /// Forgets a waiting call whose connection went away.
    pub fn cancel(&mut self, ticket: Ticket, platform: &mut dyn Platform) {
        self.export_cancel(ticket.0, platform);
        self.waiting.remove(&ticket.0);
        self.storage_answers.remove(&ticket.0);
        // The job still runs and its result still reaches the objects.
        if let Some(wait) = self.storage_waits.get_mut(&ticket.0) {
            wait.ticket = None;
        }
        // The VM still goes off; only the answer has nowhere to go.
        for wait in &mut self.vm_waits {
            if wait.ticket.as_ref().is_some_and(|(t, _)| *t == ticket.0) {
                wait.ticket = None;
            }
        }
    }

    /// Declares that the platform runs iSCSI jobs: storage calls queue a
    /// job instead of answering `NOT_IMPLEMENTED`.
    pub fn enable_storage_driver(&mut self) {
        self.storage_driver = true;
    }

    /// The iSCSI jobs queued since the last call, each with the id to
    /// report its end with ([`XenApi::storage_finished`]).
    pub fn take_storage_jobs(&mut self) -> Vec<(u64, crate::iscsi::JobSpec)> {
        self.pump_disks();
        self.storage_queue.drain(..).collect()
    }

    /// Whether jobs wait to be taken with [`XenApi::take_storage_jobs`].
    pub fn storage_jobs_queued(&self) -> bool {
        !self.storage_queue.is_empty()
    }

    fn queue_storage(
        &mut self,
        id: u64,
        call: srs::StorageCall,
        ticket: Option<Wire>,
        task: Option<String>,
    ) {
        let [a, b, c, d] = call.spec.portal.ip;
        self.storage_waits.insert(
            id,
            StorageWait {
                completion: call.completion,
                asked: format!("{a}.{b}.{c}.{d}"),
                ticket: ticket.map(|w| (id, w)),
                task,
            },
        );
        self.storage_queue.push_back((id, call.spec));
    }

    /// A job ended: its call is answered and the objects follow.
    pub fn storage_finished(
        &mut self,
        id: u64,
        result: Result<crate::iscsi::JobOutput, crate::iscsi::JobError>,
        platform: &mut dyn Platform,
    ) {
        if let Some(disk) = self.disk_jobs.remove(&id) {
            self.disk_finished(disk, result);
            return;
        }
        if let Some(owner) = self.transfer_jobs.remove(&id) {
            self.transfer_finished(owner, result, platform);
            return;
        }
        let Some(wait) = self.storage_waits.remove(&id) else {
            return;
        };
        let answer = self.storage_result(wait.completion, &wait.asked, result, platform);
        if let Some(task) = &wait.task {
            self.finish_task(task, &answer, platform);
        }
        let answer = match (self.persist(), answer) {
            (Err(e), Ok(_)) => {
                log::error!("db: a storage change was made but could not be saved: {e}");
                Err(ApiError::internal(&format!(
                    "the change was made but could not be saved: {e}"
                )))
            }
            (_, answer) => answer,
        };
        if let Some((ticket, wire)) = wait.ticket {
            self.storage_answers
                .insert(ticket, respond(&wire, &answer, false));
        }
    }

    /// When a waiting call times out next.
    pub fn next_deadline(&self) -> Option<Duration> {
        let autostart = (!self.autostart.is_empty()).then_some(self.autostart_at);
        self.waiting
            .values()
            .map(|w| w.deadline)
            .chain(self.vm_deadline())
            .chain(autostart)
            .min()
    }

    /// Updates the host objects when the facts change (a DHCP lease, say).
    pub fn update_facts(&mut self, facts: HostFacts, platform: &mut dyn Platform) {
        if facts != self.facts {
            host::update(&mut self.db, &mut self.refs, &facts, &mut || {
                new_id(platform)
            });
            self.facts = facts;
            if let Err(e) = self.persist() {
                log::error!("db: host changes could not be saved: {e}");
            }
        }
    }

    pub fn facts(&self) -> &HostFacts {
        &self.facts
    }

    /// Every record of `class`, by reference (tests look at the objects).
    #[cfg(test)]
    pub(crate) fn records(&self, class: &str) -> BTreeMap<String, Value> {
        let Some(declared) = CLASSES.iter().find(|c| c.name == class) else {
            return BTreeMap::new();
        };
        self.db
            .objects(class)
            .map(|(r, o)| (r.clone(), super::db::record(declared, o)))
            .collect()
    }

    fn refresh(&mut self, platform: &mut dyn Platform) {
        let now = platform.now();
        if now >= self.metrics_at + METRICS_PERIOD {
            self.metrics_at = now;
            self.facts.system = platform.system_info();
            host::update_metrics(&mut self.db, &self.refs, &self.facts.system);
            let taken = format_datetime(self.unix_now(platform));
            host::metrics_taken(&mut self.db, &self.refs, taken);
        }
    }

    /// Seconds since the epoch, or since boot if the platform has no date.
    fn unix_now(&self, platform: &dyn Platform) -> u64 {
        platform
            .unix_time()
            .unwrap_or_else(|| platform.now().as_secs())
    }

    fn timestamp(&self, platform: &dyn Platform) -> String {
        format!("{}", self.unix_now(platform))
    }

    /// One call, by name.
    fn call(&mut self, name: &str, params: Vec<Value>, platform: &mut dyn Platform) -> Outcome {
        if let Some(inner) = name.strip_prefix("Async.") {
            return Outcome::Done(self.call_async(name, inner, params, platform));
        }
        let method = dispatch::resolve(name);
        let takes_session = method.as_ref().is_none_or(Method::takes_session);
        let mut args = params.into_iter();
        let session = if takes_session {
            let handle = args.next();
            let handle = handle.as_ref().and_then(Value::as_str).unwrap_or("");
            if let Err(e) = self.check_session(handle, platform.now()) {
                return Outcome::Done(Err(e));
            }
            Some(String::from(handle))
        } else {
            None
        };
        let Some(method) = method else {
            return Outcome::Done(Err(ApiError::method_unknown(name)));
        };
        // xapi ignores whatever `system.listMethods` is sent (SDKs add a session).
        if matches!(method.target, Target::Message(m) if m.op == Op::ListMethods) {
            return Outcome::Done(Ok(Value::Array(
                dispatch::all_methods()
                    .into_iter()
                    .map(Value::String)
                    .collect(),
            )));
        }
        let args = match dispatch::bind(&method, name, args.collect()) {
            Ok(a) => a,
            Err(e) => return Outcome::Done(Err(e)),
        };
        if let Err(e) = self.check_refs(&method, &args) {
            return Outcome::Done(Err(e));
        }
        match method.target {
            Target::Generic(g) => Outcome::Done(self.generic(method.class, g, &args)),
            Target::Message(m) => self.message(&method, m.op, session, args, platform),
        }
    }

    /// Every reference argument must name an existing object; the object a
    /// method acts on may not be null either.
    fn check_refs(&self, method: &Method, args: &[Value]) -> Result<(), ApiError> {
        let stored = |class: &str| {
            CLASSES
                .iter()
                .any(|c| c.name == class && !c.fields.is_empty())
        };
        for (i, (param, value)) in method.params().iter().zip(args).enumerate() {
            match (param.ty, value) {
                (Ty::Ref(class), value) if stored(class) => {
                    let Some(reference) = value.as_str() else {
                        continue;
                    };
                    if reference == NULL_REF && i > 0 {
                        continue;
                    }
                    if !self.db.contains(class, reference) {
                        return Err(ApiError::handle_invalid(class, reference));
                    }
                }
                // A set of references (`Bond.create`'s members): every one must exist.
                (Ty::Set(Ty::Ref(class)), Value::Array(items)) if stored(class) => {
                    for reference in items.iter().filter_map(Value::as_str) {
                        if !self.db.contains(class, reference) {
                            return Err(ApiError::handle_invalid(class, reference));
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn message(
        &mut self,
        method: &Method,
        op: Op,
        session: Option<String>,
        args: Vec<Value>,
        platform: &mut dyn Platform,
    ) -> Outcome {
        let arg = |i: usize| args.get(i).and_then(Value::as_str).unwrap_or("");
        let session = session.unwrap_or_default();
        let needs_driver = matches!(
            op,
            Op::SrProbe
                | Op::SrCreate
                | Op::SrScan
                | Op::VdiCreate
                | Op::VdiDestroy
                | Op::VdiSnapshot
                | Op::VdiClone
                | Op::VdiResize
                | Op::SrDestroy
                | Op::PbdPlug
        );
        if needs_driver && !self.storage_driver {
            // The hosted service has no iSCSI driver; the image has.
            return Outcome::Done(Err(ApiError::not_implemented(&method.name())));
        }
        let result = match op {
            Op::LoginWithPassword => self.login(arg(0), arg(1), arg(3), platform),
            Op::Logout => {
                self.end_session(&session);
                Ok(Value::str(""))
            }
            Op::SessionChangePassword => self.change_password(arg(0), arg(1), platform),
            Op::ListMethods => Ok(Value::Array(
                dispatch::all_methods()
                    .into_iter()
                    .map(Value::String)
                    .collect(),
            )),
            Op::EventFrom => return self.event_from(session, &args, platform),
            Op::EventInject => self.event_inject(arg(0), arg(1)),
            Op::TaskCreate => {
                let task = self.create_task(arg(0), arg(1), platform);
                Ok(Value::String(task))
            }
            Op::TaskCancel => {
                self.cancel_task(arg(0), platform);
                Ok(Value::str(""))
            }
            Op::TaskDestroy => {
                self.db.remove(&TASK, arg(0));
                Ok(Value::str(""))
            }
            Op::HostGetServertime => Ok(Value::DateTime(format_datetime(self.unix_now(platform)))),
            Op::HostGetServerCertificate => match &self.server_certificate {
                Some(cert) => Ok(Value::str(&cert.pem)),
                None => Err(ApiError::new(
                    "NOT_IMPLEMENTED",
                    &["host.get_server_certificate", "this host serves no HTTPS"],
                )),
            },
            // Reboots at once, without `host.disable` first: this host runs
            // no pool and migrates nothing, so there is nothing to evacuate.
            Op::HostReboot => platform
                .reboot()
                .map(|()| Value::str(""))
                .map_err(|e| ApiError::new("NOT_IMPLEMENTED", &["host.reboot", &e])),
            Op::HostDisable => {
                let auto_enable = !matches!(args.get(1), Some(Value::Bool(false)));
                self.host_set_enabled(arg(0), false, auto_enable)
            }
            Op::HostEnable => self.host_set_enabled(arg(0), true, true),
            Op::HostEvacuate => self.host_evacuate(arg(0)),
            Op::HostShutdown => self.host_shutdown(arg(0), platform),
            Op::VmCreate => match args.first() {
                Some(record) => self.create_vm(record, platform),
                None => Err(ApiError::field_type("args")),
            },
            Op::VmDestroy => {
                if self.running.contains_key(arg(0)) {
                    Err(ApiError::new(
                        "VM_BAD_POWER_STATE",
                        &[arg(0), "halted", "running"],
                    ))
                } else {
                    self.destroy_vm(arg(0))
                }
            }
            Op::VmStart => {
                let paused = args.get(1) == Some(&Value::Bool(true));
                self.vm_start(arg(0), paused, platform)
            }
            // The host ref was checked to exist; this host is the only one.
            Op::VmStartOn => {
                let paused = args.get(2) == Some(&Value::Bool(true));
                self.vm_start(arg(0), paused, platform)
            }
            Op::VmCleanShutdown
            | Op::VmHardShutdown
            | Op::VmCleanReboot
            | Op::VmHardReboot
            | Op::VmPause
            | Op::VmUnpause => {
                let name = match op {
                    Op::VmCleanShutdown => "clean_shutdown",
                    Op::VmHardShutdown => "hard_shutdown",
                    Op::VmCleanReboot => "clean_reboot",
                    Op::VmHardReboot => "hard_reboot",
                    Op::VmPause => "pause",
                    _ => "unpause",
                };
                match self.vm_power(name, arg(0), platform) {
                    vm_power::Power::Done(r) => r,
                    vm_power::Power::Wait(vm, kind, timeout) => {
                        return Outcome::VmWait(vm, kind, timeout);
                    }
                }
            }
            Op::VmClone => return self.clone_vm(arg(0), arg(1), None, platform),
            Op::VmCopy => return self.clone_vm(arg(0), arg(1), Some(arg(2)), platform),
            Op::VmProvision => self.provision_vm(arg(0)),
            Op::VmSetMemoryLimits => {
                let int = |i: usize| args.get(i).and_then(Value::as_int).unwrap_or(-1);
                self.set_memory_limits(arg(0), [int(1), int(2), int(3), int(4)])
            }
            Op::VmSetMemory => {
                let v = args.get(1).and_then(Value::as_int).unwrap_or(-1);
                self.set_memory(arg(0), v)
            }
            Op::VmSetVcpusMax | Op::VmSetVcpusAtStartup => {
                let v = args.get(1).and_then(Value::as_int).unwrap_or(0);
                self.set_vcpus(arg(0), op == Op::VmSetVcpusMax, v)
            }
            Op::VmGetAllowedVbdDevices => self.allowed_devices(arg(0), "VBDs"),
            Op::VmGetAllowedVifDevices => self.allowed_devices(arg(0), "VIFs"),
            Op::MessageCreate => {
                let priority = args.get(1).and_then(Value::as_int).unwrap_or(0);
                self.create_message(arg(0), priority, arg(2), arg(3), arg(4), platform)
            }
            Op::MessageDestroy => self.destroy_message(arg(0)),
            Op::MessageGetSince => Ok(self.messages_since(arg(0))),
            Op::PifReconfigureIp => {
                self.reconfigure_ip(arg(0), [arg(1), arg(2), arg(3), arg(4), arg(5)], platform)
            }
            Op::BondCreate => {
                self.bond_create(arg(0), args.get(1), arg(2), arg(3), args.get(4), platform)
            }
            Op::BondDestroy => self.bond_destroy(arg(0), platform),
            Op::BondSetMode => self.bond_change(arg(0), Some(arg(1)), None, platform),
            Op::BondSetProperty => self.bond_change(arg(0), None, Some((arg(1), arg(2))), platform),
            Op::VlanCreate => {
                let tag = args.get(1).and_then(Value::as_int).unwrap_or(-1);
                self.vlan_create(arg(0), tag, arg(2), platform)
                    .map(|(vlan, _)| Value::String(vlan))
            }
            Op::PoolCreateVlanFromPif => {
                let tag = args.get(2).and_then(Value::as_int).unwrap_or(-1);
                self.vlan_create(arg(0), tag, arg(1), platform)
                    .map(|(_, pif)| Value::Array(alloc::vec![Value::String(pif)]))
            }
            Op::PoolCreateVlan => {
                let tag = args.get(2).and_then(Value::as_int).unwrap_or(-1);
                self.pool_create_vlan(arg(0), tag, arg(1), platform)
            }
            Op::VlanDestroy => self.vlan_destroy(arg(0)),
            Op::NetworkCreate => {
                let record = args.first().cloned().unwrap_or(Value::Nil);
                self.network_create(&record, platform)
            }
            Op::NetworkDestroy => self.network_destroy(arg(0)),
            Op::VifCreate => {
                let record = args.first().cloned().unwrap_or(Value::Nil);
                self.vif_create(&record, platform)
            }
            Op::VifDestroy => self.vif_destroy(arg(0)),
            Op::VifPlug => self.plug_device(hotplug::Device::Vif, arg(0), true),
            Op::VifUnplug => self.plug_device(hotplug::Device::Vif, arg(0), false),
            Op::VifSetLockingMode => self.vif_set_locking_mode(arg(0), arg(1)),
            Op::NetworkSetDefaultLockingMode => {
                self.network_set_default_locking_mode(arg(0), arg(1))
            }
            Op::VifSetIpv4Allowed
            | Op::VifAddIpv4Allowed
            | Op::VifRemoveIpv4Allowed
            | Op::VifSetIpv6Allowed
            | Op::VifAddIpv6Allowed
            | Op::VifRemoveIpv6Allowed => {
                use vif_locking::{AllowedChange, IpFamily};
                let (family, change) = match op {
                    Op::VifSetIpv4Allowed => (IpFamily::V4, AllowedChange::Set),
                    Op::VifAddIpv4Allowed => (IpFamily::V4, AllowedChange::Add),
                    Op::VifRemoveIpv4Allowed => (IpFamily::V4, AllowedChange::Remove),
                    Op::VifSetIpv6Allowed => (IpFamily::V6, AllowedChange::Set),
                    Op::VifAddIpv6Allowed => (IpFamily::V6, AllowedChange::Add),
                    _ => (IpFamily::V6, AllowedChange::Remove),
                };
                self.vif_change_allowed(arg(0), family, change, args.get(1))
            }
            Op::VbdPlug => self.plug_device(hotplug::Device::Vbd, arg(0), true),
            Op::VbdUnplug => self.plug_device(hotplug::Device::Vbd, arg(0), false),
            Op::SrProbe => {
                let config = args.get(1).cloned().unwrap_or(Value::Nil);
                return storage(self.sr_probe(&config, arg(2)));
            }
            Op::SrCreate => {
                let config = args.get(1).cloned().unwrap_or(Value::Nil);
                let shared = matches!(args.get(7), Some(Value::Bool(true)));
                let sm_config = args.get(8).cloned().unwrap_or(Value::Nil);
                return storage(self.sr_create(
                    arg(0),
                    &config,
                    arg(3),
                    arg(4),
                    arg(5),
                    arg(6),
                    shared,
                    sm_config,
                    platform,
                ));
            }
            Op::SrScan => return storage(self.sr_scan(arg(0))),
            Op::SrForget => self.sr_forget(arg(0)),
            Op::VdiCreate => match args.first() {
                Some(record) => return storage(self.vdi_create(record, platform)),
                None => Err(ApiError::field_type("args")),
            },
            Op::VdiDestroy => return storage(self.vdi_destroy(arg(0))),
            Op::VbdCreate => match args.first() {
                Some(record) => self.vbd_create(record, platform),
                None => Err(ApiError::field_type("args")),
            },
            Op::VbdDestroy => self.vbd_destroy(arg(0)),
            Op::VdiSnapshot => return storage(self.vdi_copy(arg(0), true, platform)),
            Op::VdiClone => return storage(self.vdi_copy(arg(0), false, platform)),
            Op::VdiResize => return storage(self.vdi_resize(arg(0), args.get(1))),
            Op::SrIntroduce => {
                let shared = matches!(args.get(5), Some(Value::Bool(true)));
                let sm_config = args.get(6).cloned().unwrap_or(Value::Nil);
                self.sr_introduce(
                    arg(0),
                    arg(1),
                    arg(2),
                    arg(3),
                    arg(4),
                    shared,
                    sm_config,
                    platform,
                )
            }
            Op::SrDestroy => return storage(self.sr_destroy(arg(0))),
            Op::PbdCreate => match args.first() {
                Some(record) => self.pbd_create(record, platform),
                None => Err(ApiError::field_type("args")),
            },
            Op::PbdDestroy => self.pbd_destroy(arg(0)),
            Op::VifMove => self.vif_move(arg(0), arg(1)),
            Op::PifPlug => self.pif_plug(arg(0)),
            Op::PifUnplug => self.pif_unplug(arg(0)),
            Op::VbdInsert => self.vbd_insert(arg(0), arg(1)),
            Op::VbdEject => self.vbd_eject(arg(0)),
            Op::PbdSetDeviceConfig => {
                let value = args.get(1).cloned().unwrap_or(Value::Nil);
                self.pbd_set_device_config(arg(0), value, platform)
            }
            Op::SecretCreate => match args.first() {
                Some(record) => self.secret_create(record, platform),
                None => Err(ApiError::field_type("args")),
            },
            Op::SecretIntroduce => {
                let other_config = args.get(2).cloned().unwrap_or(Value::Nil);
                self.secret_introduce(arg(0), arg(1), &other_config, platform)
            }
            Op::SecretDestroy => self.secret_destroy(arg(0)),
            Op::PbdPlug => return storage(self.pbd_plug(arg(0))),
            Op::PbdUnplug => self.pbd_unplug(arg(0)),
            Op::NotImplemented => Err(ApiError::not_implemented(&method.name())),
        };
        Outcome::Done(result)
    }
}

mod allowed_devices;
mod bonds;
pub use bonds::UplinkSpec;
mod cd_media;
mod consoles;
mod generic;
mod iso_library;
mod local_srs;
mod messages;
mod network_checks;
mod password;
mod pif_ip;
mod pif_plug;
pub use pif_ip::IpChange;
pub(crate) mod guest_net;
mod host_admin;
mod hotplug;
mod secrets;
mod sessions;
mod srs;
mod tasks;
mod transfer;
mod upload;
mod vbds;
mod vif_locking;
mod vif_move;
mod vm_clone;
mod vm_power;
mod vm_templates;
mod vms;
mod watch;
mod wire;

use wire::{Wire, bad_body, cors, respond};

fn storage(call: Result<srs::StorageCall, ApiError>) -> Outcome {
    match call {
        Ok(call) => Outcome::Storage(alloc::boxed::Box::new(call)),
        Err(e) => Outcome::Done(Err(e)),
    }
}

#[cfg(test)]
mod tests;
