//! The service state and its HTTP entry: sessions, the database, the host
//! objects and the `event.from` calls waiting for a change.

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;
use core::time::Duration;

use host_config::HostConfig;

use super::auth::{Auth, AuthError};
use super::db::{self, Db, NULL_REF, default_record, record, uuid_from};
use super::dispatch::{self, Generic, Method, Target};
use super::error::ApiError;
use super::events::{self, Filter};
use super::host::{self, HostFacts, HostRefs};
use super::jsonrpc;
use super::schema::{CLASSES, Class, Op, SESSION, TASK, Ty};
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

/// How the answer must be written.
#[derive(Debug, Clone, PartialEq)]
enum Wire {
    Xml,
    Json {
        version: jsonrpc::Version,
        id: serde_json::Value,
    },
}

/// An `event.from` waiting for a change or its timeout.
#[derive(Debug)]
struct Waiting {
    wire: Wire,
    session: String,
    filters: Vec<Filter>,
    since: Option<u64>,
    deadline: Duration,
}

/// What a call came to.
enum Outcome {
    Done(Result<Value, ApiError>),
    Wait(Waiting),
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
}

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
        XenApi {
            db,
            auth: Auth::new(config.root_password_hash.clone(), key),
            sessions: BTreeMap::new(),
            refs,
            facts,
            metrics_at: platform.now(),
            waiting: BTreeMap::new(),
            next_ticket: 1,
        }
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
        match self.call(&method, params, platform) {
            Outcome::Done(result) => Reply::Now(respond(&wire, &result, bare)),
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
        let waiting = self.waiting.get(&ticket.0)?;
        let now = platform.now();
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
    pub fn cancel(&mut self, ticket: Ticket) {
        self.waiting.remove(&ticket.0);
    }

    /// When a waiting call times out next.
    pub fn next_deadline(&self) -> Option<Duration> {
        self.waiting.values().map(|w| w.deadline).min()
    }

    /// Updates the host objects when the facts change (a DHCP lease, say).
    pub fn update_facts(&mut self, facts: HostFacts) {
        if facts != self.facts {
            host::update(&mut self.db, &self.refs, &facts);
            self.facts = facts;
        }
    }

    pub fn facts(&self) -> &HostFacts {
        &self.facts
    }

    fn refresh(&mut self, platform: &mut dyn Platform) {
        let now = platform.now();
        if now >= self.metrics_at + METRICS_PERIOD {
            self.metrics_at = now;
            self.facts.system = platform.system_info();
            host::update_metrics(&mut self.db, &self.refs, &self.facts.system);
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

    /// `Async.X`: runs X now and reports it through a finished task.
    fn call_async(
        &mut self,
        name: &str,
        inner: &str,
        params: Vec<Value>,
        platform: &mut dyn Platform,
    ) -> Result<Value, ApiError> {
        let handle = params.first().and_then(Value::as_str).unwrap_or("");
        self.check_session(handle, platform.now())?;
        let method = dispatch::resolve(inner).ok_or_else(|| ApiError::method_unknown(name))?;
        if !method.takes_session()
            || matches!(method.target, Target::Message(m) if m.op == Op::EventFrom)
        {
            return Err(ApiError::method_unknown(name));
        }
        let result = match self.call(inner, params, platform) {
            Outcome::Done(r) => r,
            Outcome::Wait(_) => Err(ApiError::method_unknown(name)),
        };
        let task = self.create_task(&method.name(), "", platform);
        let now = Value::DateTime(format_datetime(self.unix_now(platform)));
        let set = |db: &mut Db, field: &str, value: Value| {
            if let Some((i, _)) = TASK.field(field) {
                db.set_field(&TASK, &task, i, value);
            }
        };
        match result {
            Ok(value) => {
                let mut xml = String::new();
                xmlrpc::write_value(&mut xml, &value);
                set(&mut self.db, "result", Value::String(xml));
                set(&mut self.db, "status", Value::str("success"));
            }
            Err(e) => {
                let info = e.description().into_iter().map(Value::String).collect();
                set(&mut self.db, "error_info", Value::Array(info));
                set(&mut self.db, "status", Value::str("failure"));
            }
        }
        set(&mut self.db, "progress", Value::Double(1.0));
        set(&mut self.db, "finished", now);
        Ok(Value::String(task))
    }

    fn check_session(&mut self, handle: &str, now: Duration) -> Result<(), ApiError> {
        match self.sessions.get_mut(handle) {
            Some(last) if now.saturating_sub(*last) < SESSION_IDLE_TIMEOUT => {
                *last = now;
                Ok(())
            }
            Some(_) => {
                self.end_session(handle);
                Err(ApiError::session_invalid(handle))
            }
            None => Err(ApiError::session_invalid(handle)),
        }
    }

    fn end_session(&mut self, handle: &str) {
        self.sessions.remove(handle);
        self.db.remove(&SESSION, handle);
    }

    /// Every reference argument must name an existing object; the object a
    /// method acts on may not be null either.
    fn check_refs(&self, method: &Method, args: &[Value]) -> Result<(), ApiError> {
        for (i, (param, value)) in method.params().iter().zip(args).enumerate() {
            let Ty::Ref(class) = param.ty else { continue };
            let Some(reference) = value.as_str() else {
                continue;
            };
            if !CLASSES
                .iter()
                .any(|c| c.name == class && !c.fields.is_empty())
            {
                continue;
            }
            if reference == NULL_REF && i > 0 {
                continue;
            }
            if !self.db.contains(class, reference) {
                return Err(ApiError::handle_invalid(class, reference));
            }
        }
        Ok(())
    }

    fn object_ref<'a>(&self, args: &'a [Value]) -> &'a str {
        args.first().and_then(Value::as_str).unwrap_or(NULL_REF)
    }

    fn generic(
        &mut self,
        class: &'static Class,
        g: Generic,
        args: &[Value],
    ) -> Result<Value, ApiError> {
        let this = self.object_ref(args);
        let arg = |i: usize| args.get(i).cloned().unwrap_or(Value::Nil);
        let void = Ok(Value::str(""));
        match g {
            Generic::GetAll => Ok(Value::Array(
                self.db
                    .objects(class.name)
                    .map(|(r, _)| Value::str(r))
                    .collect(),
            )),
            Generic::GetAllRecords => Ok(Value::Struct(
                self.db
                    .objects(class.name)
                    .map(|(r, o)| (r.clone(), record(class, o)))
                    .collect(),
            )),
            Generic::GetRecord => self.with_object(class, this, |o| record(class, o)),
            Generic::GetByUuid => {
                let uuid = arg(0);
                self.db
                    .objects(class.name)
                    .find(|(_, o)| *o.field(0) == uuid)
                    .map(|(r, _)| Value::str(r))
                    .ok_or_else(|| ApiError::uuid_invalid(class.name, uuid.as_str().unwrap_or("")))
            }
            Generic::GetByNameLabel => {
                let label = arg(0);
                let index = class.field("name_label").map_or(usize::MAX, |(i, _)| i);
                Ok(Value::Array(
                    self.db
                        .objects(class.name)
                        .filter(|(_, o)| *o.field(index) == label)
                        .map(|(r, _)| Value::str(r))
                        .collect(),
                ))
            }
            Generic::Get(i) => self.with_object(class, this, |o| o.field(i).clone()),
            Generic::Set(i) => {
                self.db.set_field(class, this, i, arg(1));
                void
            }
            Generic::AddToMap(i) => {
                let key = String::from(arg(1).as_str().unwrap_or(""));
                let value = arg(2);
                let uuid = self.with_object(class, this, |o| o.field(0).clone())?;
                let added = self
                    .db
                    .update(class, this, |fields| match fields.get_mut(i) {
                        Some(Value::Struct(map)) if !map.contains_key(&key) => {
                            map.insert(key.clone(), value);
                            (true, true)
                        }
                        _ => (false, false),
                    });
                if added == Some(true) {
                    return void;
                }
                let field = class.fields.get(i).map_or("", |f| f.name);
                Err(ApiError::map_duplicate_key(
                    class.name,
                    field,
                    uuid.as_str().unwrap_or(""),
                    &key,
                ))
            }
            Generic::RemoveFromMap(i) => {
                let key = String::from(arg(1).as_str().unwrap_or(""));
                self.db
                    .update(class, this, |fields| match fields.get_mut(i) {
                        Some(Value::Struct(map)) => (map.remove(&key).is_some(), ()),
                        _ => (false, ()),
                    });
                void
            }
            Generic::AddToSet(i) => {
                let value = arg(1);
                self.db
                    .update(class, this, |fields| match fields.get_mut(i) {
                        Some(Value::Array(items)) if !items.contains(&value) => {
                            items.push(value);
                            (true, ())
                        }
                        _ => (false, ()),
                    });
                void
            }
            Generic::RemoveFromSet(i) => {
                let value = arg(1);
                self.db
                    .update(class, this, |fields| match fields.get_mut(i) {
                        Some(Value::Array(items)) => {
                            let before = items.len();
                            items.retain(|v| *v != value);
                            (items.len() != before, ())
                        }
                        _ => (false, ()),
                    });
                void
            }
        }
    }

    fn with_object(
        &self,
        class: &Class,
        reference: &str,
        f: impl FnOnce(&db::Object) -> Value,
    ) -> Result<Value, ApiError> {
        self.db
            .get(class, reference)
            .map(f)
            .ok_or_else(|| ApiError::handle_invalid(class.name, reference))
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
        let result = match op {
            Op::LoginWithPassword => self.login(arg(0), arg(1), arg(3), platform),
            Op::Logout => {
                self.end_session(&session);
                Ok(Value::str(""))
            }
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
            Op::NotImplemented => Err(ApiError::not_implemented(&method.name())),
        };
        Outcome::Done(result)
    }

    fn login(
        &mut self,
        user: &str,
        password: &str,
        originator: &str,
        platform: &mut dyn Platform,
    ) -> Result<Value, ApiError> {
        let now = platform.now();
        match self.auth.check(user, password, now) {
            Ok(()) => {}
            Err(AuthError::RateLimited { retry_after }) => {
                let message = format!(
                    "Too many failed logins; try again in {} s",
                    retry_after.as_secs().max(1)
                );
                return Err(ApiError::authentication_failed(user, &message));
            }
            Err(AuthError::NoPassword | AuthError::Rejected) => {
                return Err(ApiError::authentication_failed(
                    user,
                    "Authentication failure",
                ));
            }
        }
        self.expire_sessions(now);
        let (reference, uuid) = new_id(platform);
        let mut fields = default_record(&SESSION, &uuid);
        let started = Value::DateTime(format_datetime(self.unix_now(platform)));
        for (name, value) in [
            ("this_host", Value::String(self.refs.host.clone())),
            ("last_active", started.clone()),
            ("validation_time", started),
            ("originator", Value::str(originator)),
        ] {
            if let Some(slot) = SESSION.field(name).and_then(|(i, _)| fields.get_mut(i)) {
                *slot = value;
            }
        }
        self.db.insert(&SESSION, reference.clone(), fields);
        self.sessions.insert(reference.clone(), now);
        Ok(Value::String(reference))
    }

    /// Drops idle sessions, and the least recently used beyond the limit.
    fn expire_sessions(&mut self, now: Duration) {
        let idle: Vec<String> = self
            .sessions
            .iter()
            .filter(|(_, last)| now.saturating_sub(**last) >= SESSION_IDLE_TIMEOUT)
            .map(|(r, _)| r.clone())
            .collect();
        for r in idle {
            self.end_session(&r);
        }
        while self.sessions.len() >= MAX_SESSIONS {
            let Some(oldest) = self
                .sessions
                .iter()
                .min_by_key(|(_, last)| **last)
                .map(|(r, _)| r.clone())
            else {
                break;
            };
            self.end_session(&oldest);
        }
    }

    fn create_task(
        &mut self,
        label: &str,
        description: &str,
        platform: &mut dyn Platform,
    ) -> String {
        let (reference, uuid) = new_id(platform);
        let mut fields = default_record(&TASK, &uuid);
        let created = Value::DateTime(format_datetime(self.unix_now(platform)));
        for (name, value) in [
            ("name_label", Value::str(label)),
            ("name_description", Value::str(description)),
            ("created", created),
            ("resident_on", Value::String(self.refs.host.clone())),
        ] {
            if let Some(slot) = TASK.field(name).and_then(|(i, _)| fields.get_mut(i)) {
                *slot = value;
            }
        }
        self.db.insert(&TASK, reference.clone(), fields);
        reference
    }

    /// Nothing runs behind a task made by `task.create`, so cancelling it
    /// ends it at once.
    fn cancel_task(&mut self, task: &str, platform: &mut dyn Platform) {
        let finished = Value::DateTime(format_datetime(self.unix_now(platform)));
        let index = |name: &str| TASK.field(name).map_or(usize::MAX, |(i, _)| i);
        let (status, done, info) = (index("status"), index("finished"), index("error_info"));
        let error = vec![Value::str("TASK_CANCELLED"), Value::str(task)];
        self.db.update(&TASK, task, |fields| {
            if fields.get(status) != Some(&Value::str("pending")) {
                return (false, ());
            }
            for (i, v) in [
                (status, Value::str("cancelled")),
                (done, finished),
                (info, Value::Array(error)),
            ] {
                if let Some(slot) = fields.get_mut(i) {
                    *slot = v;
                }
            }
            (true, ())
        });
    }

    fn event_from(
        &mut self,
        session: String,
        args: &[Value],
        platform: &mut dyn Platform,
    ) -> Outcome {
        let filters = events::parse_filters(args.first().unwrap_or(&Value::Nil));
        let token = args.get(1).and_then(Value::as_str).unwrap_or("");
        let since = match events::parse_token(token) {
            Ok(s) => s,
            Err(e) => return Outcome::Done(Err(e)),
        };
        let timeout = match args.get(2) {
            Some(Value::Double(t)) if t.is_finite() && *t > 0.0 => t.min(events::MAX_WAIT_SECONDS),
            _ => 0.0,
        };
        let waiting = Waiting {
            wire: Wire::Xml,
            session,
            filters,
            since,
            deadline: platform.now() + Duration::from_millis((timeout * 1000.0) as u64),
        };
        let timestamp = self.timestamp(platform);
        let found = events::collect(&self.db, &waiting.filters, waiting.since, &timestamp);
        if found.is_empty() && timeout > 0.0 {
            return Outcome::Wait(waiting);
        }
        Outcome::Done(Ok(events::result(&self.db, &waiting.filters, found)))
    }

    fn event_result(&self, waiting: &Waiting, platform: &dyn Platform) -> Value {
        let found = events::collect(
            &self.db,
            &waiting.filters,
            waiting.since,
            &self.timestamp(platform),
        );
        events::result(&self.db, &waiting.filters, found)
    }

    fn event_inject(&mut self, class: &str, reference: &str) -> Result<Value, ApiError> {
        let Some(c) = super::schema::class_ignore_case(class).filter(|c| c.enumerable) else {
            return Err(ApiError::invalid_value("class", class));
        };
        if !self.db.touch(c, reference) {
            return Err(ApiError::handle_invalid(c.name, reference));
        }
        Ok(Value::String(events::token(self.db.generation())))
    }
}

fn cors(response: Response) -> Response {
    response.with_header("Access-Control-Allow-Origin", "*")
}

/// A call's answer in the caller's protocol.
fn respond(wire: &Wire, result: &Result<Value, ApiError>, bare: bool) -> Response {
    match wire {
        Wire::Json { version, id } => cors(
            Response::new(Status::OK)
                .with_body("application/json", jsonrpc::response(*version, id, result)),
        ),
        Wire::Xml => {
            let body = match (result, bare) {
                (Ok(v), true) => xmlrpc::response(v),
                (Ok(v), false) => xmlrpc::success(v),
                (Err(e), _) => xmlrpc::failure(&e.description()),
            };
            cors(Response::new(Status::OK).with_body("text/xml", body.into_bytes()))
        }
    }
}

/// The answer to a body that is not a call.
fn bad_body(message: &str) -> Response {
    cors(Response::json_error(Status::BAD_REQUEST, message))
}

#[cfg(test)]
mod tests;
