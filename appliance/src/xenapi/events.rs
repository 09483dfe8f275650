//! `event.from`: what changed since a token, for the classes asked about.
//!
//! Tokens are xapi's `"%020d,%020d"`: the database generation the caller
//! has seen, and a message counter (always 0 here: there are no messages
//! yet). Objects created after the token come as `add`, changed ones as
//! `mod`, deleted ones as `del` (without a snapshot).

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use super::db::{Db, record};
use super::error::ApiError;
use super::schema::{CLASSES, Class, class_ignore_case};
use super::value::Value;

/// Longest `event.from` wait honoured, whatever the caller asks.
pub const MAX_WAIT_SECONDS: f64 = 3600.0;

/// One entry of the `classes` argument.
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    All,
    Class(&'static Class),
    Object(&'static Class, String),
}

impl Filter {
    fn matches(&self, class: &Class, reference: &str) -> bool {
        match self {
            Filter::All => true,
            Filter::Class(c) => c.name == class.name,
            Filter::Object(c, r) => c.name == class.name && r == reference,
        }
    }
}

/// Parses `["*", "vm", "pool/OpaqueRef:..."]`; unknown classes match nothing.
pub fn parse_filters(classes: &Value) -> Vec<Filter> {
    let Value::Array(items) = classes else {
        return Vec::new();
    };
    items
        .iter()
        .filter_map(Value::as_str)
        .filter_map(|item| {
            if item == "*" {
                return Some(Filter::All);
            }
            match item.split_once('/') {
                Some((class, reference)) => {
                    let class = class_ignore_case(class).filter(|c| c.enumerable)?;
                    Some(Filter::Object(class, String::from(reference)))
                }
                None => class_ignore_case(item)
                    .filter(|c| c.enumerable)
                    .map(Filter::Class),
            }
        })
        .collect()
}

/// The generation in a token; `None` for `""` (everything, as `add`).
pub fn parse_token(token: &str) -> Result<Option<u64>, ApiError> {
    if token.is_empty() {
        return Ok(None);
    }
    let bad = || ApiError::event_token(token);
    let (generation, messages) = token.split_once(',').ok_or_else(bad)?;
    let _: u64 = messages.trim().parse().map_err(|_| bad())?;
    generation.trim().parse().map(Some).map_err(|_| bad())
}

pub fn token(generation: u64) -> String {
    format!("{generation:020},{:020}", 0)
}

/// The events after `since` matching `filters`, oldest first.
pub fn collect(db: &Db, filters: &[Filter], since: Option<u64>, timestamp: &str) -> Vec<Value> {
    let mut found: Vec<(u64, Value)> = Vec::new();
    let after = since.unwrap_or(0);
    for class in CLASSES.iter().filter(|c| c.enumerable) {
        for (reference, object) in db.objects(class.name) {
            if object.modified <= after && since.is_some() {
                continue;
            }
            if !filters.iter().any(|f| f.matches(class, reference)) {
                continue;
            }
            let operation = if since.is_none() || object.created > after {
                "add"
            } else {
                "mod"
            };
            let mut event = event(object.modified, class, reference, operation, timestamp);
            event.insert(String::from("snapshot"), record(class, object));
            found.push((object.modified, Value::Struct(event)));
        }
    }
    if since.is_some() {
        for gone in db.deletions_since(after).filter(|d| d.created <= after) {
            let Some(class) = CLASSES.iter().find(|c| c.name == gone.class) else {
                continue;
            };
            if filters.iter().any(|f| f.matches(class, &gone.reference)) {
                let event = event(gone.deleted, class, &gone.reference, "del", timestamp);
                found.push((gone.deleted, Value::Struct(event)));
            }
        }
    }
    found.sort_by_key(|(generation, _)| *generation);
    found.into_iter().map(|(_, e)| e).collect()
}

fn event(
    id: u64,
    class: &Class,
    reference: &str,
    operation: &str,
    timestamp: &str,
) -> BTreeMap<String, Value> {
    let mut e = BTreeMap::new();
    e.insert(String::from("id"), Value::String(id.to_string()));
    e.insert(String::from("timestamp"), Value::str(timestamp));
    e.insert(
        String::from("class"),
        Value::String(class.name.to_ascii_lowercase()),
    );
    e.insert(String::from("operation"), Value::str(operation));
    e.insert(String::from("ref"), Value::str(reference));
    e
}

/// The `event.from` result.
pub fn result(db: &Db, filters: &[Filter], events: Vec<Value>) -> Value {
    let counts = CLASSES
        .iter()
        .filter(|c| {
            c.enumerable
                && filters
                    .iter()
                    .any(|f| matches!(f, Filter::All) || f_class(f) == Some(c.name))
        })
        .map(|c| {
            let count = i32::try_from(db.count(c.name)).unwrap_or(i32::MAX);
            (c.name.to_ascii_lowercase(), Value::I4(count))
        })
        .collect();
    let mut out = BTreeMap::new();
    out.insert(String::from("events"), Value::Array(events));
    out.insert(String::from("valid_ref_counts"), Value::Struct(counts));
    out.insert(String::from("token"), Value::String(token(db.generation())));
    Value::Struct(out)
}

fn f_class(f: &Filter) -> Option<&'static str> {
    match f {
        Filter::All => None,
        Filter::Class(c) | Filter::Object(c, _) => Some(c.name),
    }
}

#[cfg(test)]
mod tests {
    use alloc::vec;

    use super::*;
    use crate::xenapi::db::default_record;
    use crate::xenapi::schema::{POOL, TASK};

    #[test]
    fn tokens() {
        assert_eq!(parse_token(""), Ok(None));
        assert_eq!(parse_token(&token(1234)), Ok(Some(1234)));
        assert_eq!(token(1234), "00000000000000001234,00000000000000000000");
        assert_eq!(parse_token("12,0"), Ok(Some(12)));
        assert_eq!(parse_token("junk"), Err(ApiError::event_token("junk")));
        assert_eq!(parse_token("1,x"), Err(ApiError::event_token("1,x")));
    }

    #[test]
    fn filters() {
        let f = parse_filters(&Value::Array(vec![
            Value::str("*"),
            Value::str("VM"),
            Value::str("pool/OpaqueRef:x"),
            Value::str("nope"),
            Value::str("session"),
        ]));
        assert_eq!(f.len(), 3);
        assert_eq!(f[1], Filter::Class(&crate::xenapi::schema::VM));
    }

    #[test]
    fn add_mod_del() {
        let mut db = Db::new();
        db.insert(&POOL, String::from("p"), default_record(&POOL, "u"));
        let all = [Filter::All];
        let first = collect(&db, &all, None, "0");
        assert_eq!(first.len(), 1);
        let t = db.generation();
        assert!(collect(&db, &all, Some(t), "0").is_empty());
        db.set_field(&POOL, "p", 1, Value::str("name"));
        db.insert(&TASK, String::from("t"), default_record(&TASK, "v"));
        let changes = collect(&db, &all, Some(t), "0");
        let ops: Vec<_> = changes
            .iter()
            .map(|e| match e {
                Value::Struct(m) => (m["class"].clone(), m["operation"].clone()),
                _ => unreachable!(),
            })
            .collect();
        assert_eq!(
            ops,
            vec![
                (Value::str("pool"), Value::str("mod")),
                (Value::str("task"), Value::str("add"))
            ]
        );
        let only_tasks = [Filter::Class(&TASK)];
        assert_eq!(collect(&db, &only_tasks, Some(t), "0").len(), 1);
        let t2 = db.generation();
        db.remove(&TASK, "t");
        let del = collect(&db, &all, Some(t2), "0");
        assert_eq!(del.len(), 1);
        let Value::Struct(m) = &del[0] else {
            unreachable!()
        };
        assert_eq!(m["operation"], Value::str("del"));
        assert!(!m.contains_key("snapshot"));
        // Created and deleted after the token: nothing to report.
        assert!(
            collect(&db, &all, Some(t), "0")
                .iter()
                .all(|e| matches!(e, Value::Struct(m) if m["class"] != Value::str("task")))
        );
        let Value::Struct(r) = result(&db, &only_tasks, vec![]) else {
            unreachable!()
        };
        assert_eq!(
            r["valid_ref_counts"],
            Value::Struct([(String::from("task"), Value::I4(0))].into_iter().collect())
        );
    }
}
