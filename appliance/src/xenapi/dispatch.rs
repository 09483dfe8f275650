//! From a method name to what runs: the declared messages and the
//! operations every class gets from its fields, with their signatures.

use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use super::db::NULL_REF;
use super::error::ApiError;
use super::schema::{CLASSES, Class, Default, Message, Param, Ty};
use super::value::Value;

/// An operation derived from a class's fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Generic {
    GetAll,
    GetAllRecords,
    GetRecord,
    GetByUuid,
    GetByNameLabel,
    Get(usize),
    Set(usize),
    AddToMap(usize),
    RemoveFromMap(usize),
    AddToSet(usize),
    RemoveFromSet(usize),
}

/// What a method name resolves to.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Target {
    Generic(Generic),
    Message(&'static Message),
}

/// A resolved method.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Method {
    pub class: &'static Class,
    pub target: Target,
}

impl Method {
    /// Whether the first wire parameter is a session.
    pub fn takes_session(&self) -> bool {
        match self.target {
            Target::Generic(_) => true,
            Target::Message(m) => m.session,
        }
    }

    /// `Class.method`.
    pub fn name(&self) -> String {
        let method = match self.target {
            Target::Message(m) => String::from(m.name),
            Target::Generic(g) => generic_name(self.class, g),
        };
        format!("{}.{}", self.class.name, method)
    }

    /// Parameters after the session.
    pub fn params(&self) -> Vec<Param> {
        let this = Param {
            name: "self",
            ty: Ty::Ref(self.class.name),
            default: None,
        };
        let arg = |name, ty| Param {
            name,
            ty,
            default: None,
        };
        let field = |i: usize| self.class.fields.get(i).map_or(Ty::String, |f| f.ty);
        match self.target {
            Target::Message(m) => m.params.to_vec(),
            Target::Generic(g) => match g {
                Generic::GetAll | Generic::GetAllRecords => vec![],
                Generic::GetRecord | Generic::Get(_) => vec![this],
                Generic::GetByUuid => vec![arg("uuid", Ty::String)],
                Generic::GetByNameLabel => vec![arg("label", Ty::String)],
                Generic::Set(i) => vec![this, arg("value", field(i))],
                Generic::AddToMap(i) => match field(i) {
                    Ty::Map(k, v) => vec![this, arg("key", *k), arg("value", *v)],
                    _ => vec![this],
                },
                Generic::RemoveFromMap(i) => match field(i) {
                    Ty::Map(k, _) => vec![this, arg("key", *k)],
                    _ => vec![this],
                },
                Generic::AddToSet(i) | Generic::RemoveFromSet(i) => match field(i) {
                    Ty::Set(e) => vec![this, arg("value", *e)],
                    _ => vec![this],
                },
            },
        }
    }
}

fn generic_name(class: &Class, g: Generic) -> String {
    let field = |i: usize| class.fields.get(i).map_or("", |f| f.name);
    match g {
        Generic::GetAll => String::from("get_all"),
        Generic::GetAllRecords => String::from("get_all_records"),
        Generic::GetRecord => String::from("get_record"),
        Generic::GetByUuid => String::from("get_by_uuid"),
        Generic::GetByNameLabel => String::from("get_by_name_label"),
        Generic::Get(i) => format!("get_{}", field(i)),
        Generic::Set(i) => format!("set_{}", field(i)),
        Generic::AddToMap(i) => format!("add_to_{}", field(i)),
        Generic::RemoveFromMap(i) => format!("remove_from_{}", field(i)),
        Generic::AddToSet(i) => format!("add_{}", field(i)),
        Generic::RemoveFromSet(i) => format!("remove_{}", field(i)),
    }
}

/// Every generic operation of `class`.
fn generics(class: &Class) -> impl Iterator<Item = Generic> + '_ {
    let has_records = !class.fields.is_empty();
    let listing = class
        .enumerable
        .then_some([Generic::GetAll, Generic::GetAllRecords, Generic::GetByUuid])
        .into_iter()
        .flatten();
    let by_label = (class.enumerable && class.field("name_label").is_some())
        .then_some(Generic::GetByNameLabel);
    let record = has_records.then_some(Generic::GetRecord);
    let per_field = class.fields.iter().enumerate().flat_map(|(i, f)| {
        let set = f.rw.then_some(Generic::Set(i));
        let helpers = match (f.rw, f.ty) {
            (true, Ty::Map(..)) => [Some(Generic::AddToMap(i)), Some(Generic::RemoveFromMap(i))],
            (true, Ty::Set(_)) => [Some(Generic::AddToSet(i)), Some(Generic::RemoveFromSet(i))],
            _ => [None, None],
        };
        [Some(Generic::Get(i)), set]
            .into_iter()
            .chain(helpers)
            .flatten()
    });
    record
        .into_iter()
        .chain(listing)
        .chain(by_label)
        .chain(per_field)
}

/// Every method served, as `Class.method` (for `system.listMethods`).
pub fn all_methods() -> Vec<String> {
    let mut names = Vec::new();
    for class in CLASSES {
        for m in class.messages {
            names.push(format!("{}.{}", class.name, m.name));
        }
        for g in generics(class) {
            names.push(format!("{}.{}", class.name, generic_name(class, g)));
        }
    }
    names
}

/// Resolves `Class.method` or `Class_method`.
pub fn resolve(name: &str) -> Option<Method> {
    if let Some((class, method)) = name.split_once('.') {
        let class = super::schema::class(class)?;
        return find(class, method);
    }
    // `Class_method`: class names contain underscores too (`VM_metrics`),
    // so try every class whose name prefixes the call.
    CLASSES
        .iter()
        .filter_map(|class| {
            let method = name.strip_prefix(class.name)?.strip_prefix('_')?;
            find(class, method)
        })
        .next()
}

fn find(class: &'static Class, method: &str) -> Option<Method> {
    if let Some(m) = class.messages.iter().find(|m| m.name == method) {
        return Some(Method {
            class,
            target: Target::Message(m),
        });
    }
    generics(class)
        .find(|g| generic_name(class, *g) == method)
        .map(|g| Method {
            class,
            target: Target::Generic(g),
        })
}

/// Checks the argument count and converts each argument to its declared
/// type, filling in defaults of omitted trailing parameters.
pub fn bind(method: &Method, name: &str, args: Vec<Value>) -> Result<Vec<Value>, ApiError> {
    check_count(method, name, args.len())?;
    let params = method.params();
    let mut bound = Vec::with_capacity(params.len());
    let mut args = args.into_iter();
    for param in &params {
        let value = match args.next() {
            Some(v) => coerce(v, &param.ty, param.name)?,
            None => default_value(param),
        };
        bound.push(value);
    }
    Ok(bound)
}

/// `MESSAGE_PARAMETER_COUNT_MISMATCH [name, expected, given]` unless
/// `given` arguments (the session aside) fit `method`: trailing parameters
/// with defaults may be left out.
pub fn check_count(method: &Method, name: &str, given: usize) -> Result<(), ApiError> {
    let params = method.params();
    let required = params.iter().take_while(|p| p.default.is_none()).count();
    if given < required || given > params.len() {
        return Err(ApiError::parameter_count_mismatch(
            name,
            params.len(),
            given,
        ));
    }
    Ok(())
}

fn default_value(param: &Param) -> Value {
    match param.default {
        Some(Default::Str(s)) => Value::str(s),
        Some(Default::Int(i)) => Value::Int(i),
        Some(Default::Bool(b)) => Value::Bool(b),
        Some(Default::Float(f)) => Value::Double(f),
        Some(Default::Empty) | None => super::db::empty_value(&param.ty),
    }
}

/// Converts a wire value to `ty`, accepting what real clients send: ints
/// as strings (XO, Ansible), `""` or nil as the null ref, nil as empty.
pub fn coerce(value: Value, ty: &Ty, name: &str) -> Result<Value, ApiError> {
    let wrong = || ApiError::field_type(name);
    Ok(match (ty, value) {
        (Ty::String, Value::String(s) | Value::DateTime(s)) => Value::String(s),
        (Ty::String, Value::Int(i)) => Value::String(format!("{i}")),
        (Ty::String, Value::Nil) => Value::str(""),
        (Ty::Int, Value::Int(i)) => Value::Int(i),
        (Ty::Int, Value::String(s)) => Value::Int(s.trim().parse().map_err(|_| wrong())?),
        (Ty::Float, Value::Double(d)) => Value::Double(d),
        (Ty::Float, Value::Int(i)) => Value::Double(i as f64),
        (Ty::Float, Value::String(s)) => Value::Double(s.trim().parse().map_err(|_| wrong())?),
        (Ty::Bool, Value::Bool(b)) => Value::Bool(b),
        (Ty::Bool, Value::String(s)) => match s.as_str() {
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            _ => return Err(wrong()),
        },
        (Ty::DateTime, Value::DateTime(s) | Value::String(s)) => Value::DateTime(s),
        (Ty::Ref(_), Value::Nil) => Value::str(NULL_REF),
        (Ty::Ref(_), Value::String(s)) if s.is_empty() => Value::str(NULL_REF),
        (Ty::Ref(_), Value::String(s)) => Value::String(s),
        (Ty::Enum(values), Value::String(s)) => {
            match values.iter().find(|v| v.eq_ignore_ascii_case(&s)) {
                Some(v) => Value::str(v),
                None => return Err(ApiError::invalid_value(name, &s)),
            }
        }
        (Ty::Set(_), Value::Nil) => Value::Array(Vec::new()),
        (Ty::Set(elem), Value::Array(items)) => Value::Array(
            items
                .into_iter()
                .map(|v| coerce(v, elem, name))
                .collect::<Result<_, _>>()?,
        ),
        (Ty::Map(..) | Ty::Record, Value::Nil) => {
            Value::Struct(alloc::collections::BTreeMap::new())
        }
        (Ty::Map(_, v), Value::Struct(members)) => Value::Struct(
            members
                .into_iter()
                .map(|(k, value)| Ok((k, coerce(value, v, name)?)))
                .collect::<Result<_, ApiError>>()?,
        ),
        (Ty::Record, Value::Struct(members)) => Value::Struct(members),
        _ => return Err(wrong()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_resolve_with_dot_or_underscore() {
        let m = resolve("VM.get_all_records").unwrap();
        assert_eq!(
            (m.class.name, m.target),
            ("VM", Target::Generic(Generic::GetAllRecords))
        );
        assert_eq!(resolve("VM_get_all_records"), Some(m));
        let metrics = resolve("VM_metrics_get_all").unwrap();
        assert_eq!(metrics.class.name, "VM_metrics");
        assert_eq!(resolve("event_from").unwrap().name(), "event.from");
        assert_eq!(
            resolve("pool.add_to_other_config").unwrap().name(),
            "pool.add_to_other_config"
        );
        assert_eq!(resolve("pool.add_tags").unwrap().name(), "pool.add_tags");
        assert!(resolve("VM.nonsense").is_none());
        assert!(resolve("Nope.get_all").is_none());
        assert!(resolve("host.set_uuid").is_none(), "uuid is read-only");
        assert!(
            resolve("session.get_all").is_none(),
            "sessions are not listed"
        );
        assert!(resolve("session.get_this_host").is_some());
    }

    #[test]
    fn listmethods_derives_from_the_table() {
        let all = all_methods();
        for name in [
            "session.login_with_password",
            "system.listMethods",
            "event.from",
            "pool.get_all_records",
            "host.get_software_version",
            "host_metrics.get_memory_free",
            "VM.start",
            "VM.add_to_other_config",
            "task.get_status",
        ] {
            assert!(all.iter().any(|m| m == name), "{name}");
        }
        for name in &all {
            assert!(resolve(name).is_some(), "{name} must resolve");
        }
        let mut sorted = all.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), all.len(), "no duplicates");
    }

    #[test]
    fn binding_counts_and_coerces() {
        let login = resolve("session.login_with_password").unwrap();
        let bound = bind(
            &login,
            "session.login_with_password",
            vec![Value::str("root"), Value::str("pw")],
        )
        .unwrap();
        assert_eq!(bound[2], Value::str("1.1"));
        assert_eq!(bound[3], Value::str(""));
        assert_eq!(
            bind(&login, "x", vec![Value::str("root")]),
            Err(ApiError::parameter_count_mismatch("x", 4, 1))
        );
        let set = resolve("pool.set_ha_allow_overcommit").unwrap();
        assert_eq!(
            bind(&set, "x", vec![Value::str("r"), Value::Int(1)]),
            Err(ApiError::field_type("value"))
        );
        assert_eq!(coerce(Value::str("42"), &Ty::Int, "n"), Ok(Value::Int(42)));
        assert_eq!(
            coerce(Value::str(""), &Ty::Ref("SR"), "sr"),
            Ok(Value::str(NULL_REF))
        );
        assert_eq!(
            coerce(Value::str("halted"), &Ty::Enum(&["Halted"]), "s"),
            Ok(Value::str("Halted"))
        );
        assert_eq!(
            coerce(Value::Int(60), &Ty::Float, "t"),
            Ok(Value::Double(60.0))
        );
    }
}
