//! Tasks: `task.create`/`cancel`, and `Async.` calls reported through a task.

use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use super::{Outcome, XenApi, new_id};
use crate::platform::Platform;
use crate::xenapi::db::{Db, default_record};
use crate::xenapi::dispatch::{self, Target};
use crate::xenapi::error::ApiError;
use crate::xenapi::schema::{Op, TASK};
use crate::xenapi::value::{Value, format_datetime};
use crate::xenapi::xmlrpc;

/// Tasks kept at most.
pub const MAX_TASKS: usize = 1000;

impl XenApi {
    /// `Async.X`: runs X now and reports it through a finished task.
    pub(super) fn call_async(
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
        // As in xapi, a call that cannot be made is refused before any task
        // exists for it.
        dispatch::check_count(&method, name, params.len().saturating_sub(1))?;
        let result = match self.call(inner, params, platform) {
            Outcome::Done(r) => r,
            Outcome::Wait(_) => Err(ApiError::method_unknown(name)),
            Outcome::VmWait(vm, kind, timeout) => {
                // The task stays pending until the VM is off.
                let task = self.create_task(&method.name(), "", platform);
                let now = platform.now();
                self.queue_vm_wait(vm, kind, timeout, None, Some(task.clone()), now);
                return Ok(Value::String(task));
            }
            Outcome::Storage(call) => {
                // The task stays pending until the job ends.
                let task = self.create_task(&method.name(), "", platform);
                let id = self.next_ticket;
                self.next_ticket += 1;
                self.queue_storage(id, *call, None, Some(task.clone()));
                return Ok(Value::String(task));
            }
        };
        let task = self.create_task(&method.name(), "", platform);
        self.finish_task(&task, &result, platform);
        Ok(Value::String(task))
    }

    /// Ends a task with a call's result.
    pub(super) fn finish_task(
        &mut self,
        task: &str,
        result: &Result<Value, ApiError>,
        platform: &mut dyn Platform,
    ) {
        let now = Value::DateTime(format_datetime(self.unix_now(platform)));
        let set = |db: &mut Db, field: &str, value: Value| {
            if let Some((i, _)) = TASK.field(field) {
                db.set_field(&TASK, task, i, value);
            }
        };
        match result {
            Ok(value) => {
                let mut xml = String::new();
                xmlrpc::write_value(&mut xml, value);
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
    }

    pub(super) fn create_task(
        &mut self,
        label: &str,
        description: &str,
        platform: &mut dyn Platform,
    ) -> String {
        self.make_room_for_a_task();
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

    /// Keeps at most [`MAX_TASKS`]: the oldest finished task goes first
    /// (clients destroy their tasks, but not all do), else the oldest.
    fn make_room_for_a_task(&mut self) {
        if self.db.count(TASK.name) < MAX_TASKS {
            return;
        }
        let status = TASK.field("status").map_or(usize::MAX, |(i, _)| i);
        let pending = Value::str("pending");
        let oldest = |finished_only: bool| {
            self.db
                .objects(TASK.name)
                .filter(|(_, o)| !finished_only || *o.field(status) != pending)
                .min_by_key(|(_, o)| o.created)
                .map(|(r, _)| r.clone())
        };
        if let Some(victim) = oldest(true).or_else(|| oldest(false)) {
            self.db.remove(&TASK, &victim);
        }
    }

    /// Nothing runs behind a task made by `task.create`, so cancelling it
    /// ends it at once.
    pub(super) fn cancel_task(&mut self, task: &str, platform: &mut dyn Platform) {
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
}
