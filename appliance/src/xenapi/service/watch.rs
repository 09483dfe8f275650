//! `event.from` and `event.inject` on the service state.

use alloc::string::String;
use core::time::Duration;

use super::{Outcome, Waiting, Wire, XenApi};
use crate::platform::Platform;
use crate::xenapi::error::ApiError;
use crate::xenapi::events::{self};
use crate::xenapi::value::Value;

impl XenApi {
    pub(super) fn event_from(
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
            checked: self.db.generation(),
        };
        let timestamp = self.timestamp(platform);
        let found = events::collect(&self.db, &waiting.filters, waiting.since, &timestamp);
        if found.is_empty() && timeout > 0.0 {
            return Outcome::Wait(waiting);
        }
        Outcome::Done(Ok(events::result(&self.db, &waiting.filters, found)))
    }

    pub(super) fn event_result(&self, waiting: &Waiting, platform: &dyn Platform) -> Value {
        let found = events::collect(
            &self.db,
            &waiting.filters,
            waiting.since,
            &self.timestamp(platform),
        );
        events::result(&self.db, &waiting.filters, found)
    }

    pub(super) fn event_inject(&mut self, class: &str, reference: &str) -> Result<Value, ApiError> {
        let Some(c) = crate::xenapi::schema::class_ignore_case(class).filter(|c| c.enumerable)
        else {
            return Err(ApiError::invalid_value("class", class));
        };
        if !self.db.touch(c, reference) {
            return Err(ApiError::handle_invalid(c.name, reference));
        }
        Ok(Value::String(events::token(self.db.generation())))
    }
}
