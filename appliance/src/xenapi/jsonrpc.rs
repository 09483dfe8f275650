//! JSON-RPC 1.0 and 2.0 envelopes as xapi reads and writes them.

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};
use serde_json::{Value as Json, json};

use super::error::ApiError;
use super::value::Value;

/// A parsed request.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    pub method: String,
    pub params: Vec<Value>,
    /// Echoed back verbatim (a number or a string).
    pub id: Json,
    pub version: Version,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V1,
    V2,
}

/// Arrays and objects nested deeper than this are refused before parsing.
/// XenAPI values nest a few levels (a map of sets in a struct); parsing,
/// converting and dropping a value all recurse once per level, and the
/// image runs on a small stack.
pub const MAX_DEPTH: usize = 32;

/// Why a body is not a JSON-RPC call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JsonRpcError {
    /// Not JSON.
    Syntax,
    /// Arrays and objects nested deeper than [`MAX_DEPTH`].
    TooDeep,
    /// Not an object with a string `method`.
    NoMethod,
    /// `params` is present but not an array.
    ParamsNotArray,
    /// No `id`: notifications are not served.
    NoId,
}

impl fmt::Display for JsonRpcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            JsonRpcError::Syntax => "the body is not JSON",
            JsonRpcError::TooDeep => "the body nests arrays and objects more than 32 deep",
            JsonRpcError::NoMethod => "a JSON-RPC call is an object with a string \"method\"",
            JsonRpcError::ParamsNotArray => "\"params\" must be an array (session first)",
            JsonRpcError::NoId => "a JSON-RPC call needs an \"id\"; notifications are not served",
        })
    }
}

pub fn parse_call(body: &[u8]) -> Result<Call, JsonRpcError> {
    if nesting(body) > MAX_DEPTH {
        return Err(JsonRpcError::TooDeep);
    }
    let json: Json = serde_json::from_slice(body).map_err(|_| JsonRpcError::Syntax)?;
    let Json::Object(mut object) = json else {
        return Err(JsonRpcError::NoMethod);
    };
    let Some(Json::String(method)) = object.remove("method") else {
        return Err(JsonRpcError::NoMethod);
    };
    let params = match object.remove("params") {
        None | Some(Json::Null) => Vec::new(),
        Some(Json::Array(items)) => items.into_iter().map(from_json).collect(),
        Some(_) => return Err(JsonRpcError::ParamsNotArray),
    };
    let id = match object.remove("id") {
        Some(id @ (Json::Number(_) | Json::String(_))) => id,
        _ => return Err(JsonRpcError::NoId),
    };
    let version = match object.get("jsonrpc") {
        Some(Json::String(v)) if v == "2.0" => Version::V2,
        _ => Version::V1,
    };
    Ok(Call {
        method,
        params,
        id,
        version,
    })
}

/// The deepest nesting of arrays and objects in `body`, brackets inside
/// strings aside, without parsing (and so without recursion). Unbalanced
/// input is left for the parser to refuse.
fn nesting(body: &[u8]) -> usize {
    let (mut depth, mut deepest) = (0usize, 0usize);
    let (mut in_string, mut escaped) = (false, false);
    for &byte in body {
        if in_string {
            match (escaped, byte) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

fn from_json(json: Json) -> Value {
    match json {
        Json::Null => Value::Nil,
        Json::Bool(b) => Value::Bool(b),
        Json::Number(n) => match n.as_i64() {
            Some(i) => Value::Int(i),
            None => Value::Double(n.as_f64().unwrap_or(0.0)),
        },
        Json::String(s) => Value::String(s),
        Json::Array(items) => Value::Array(items.into_iter().map(from_json).collect()),
        Json::Object(members) => Value::Struct(
            members
                .into_iter()
                .map(|(k, v)| (k, from_json(v)))
                .collect::<BTreeMap<_, _>>(),
        ),
    }
}

/// A value as JSON: ints are numbers, datetimes strings (the reference
/// [`AsJson`] is checked against).
#[cfg(test)]
pub fn to_json(value: &Value) -> Json {
    use serde_json::{Map, Number};
    match value {
        Value::Nil => Json::Null,
        Value::Bool(b) => Json::Bool(*b),
        Value::Int(i) => Json::Number((*i).into()),
        Value::I4(i) => Json::Number((*i).into()),
        Value::Double(d) => Number::from_f64(*d).map_or(Json::Null, Json::Number),
        Value::String(s) | Value::DateTime(s) => Json::String(s.clone()),
        Value::Array(items) => Json::Array(items.iter().map(to_json).collect()),
        Value::Struct(members) => Json::Object(
            members
                .iter()
                .map(|(k, v)| (k.clone(), to_json(v)))
                .collect::<Map<_, _>>(),
        ),
    }
}

/// A value serialized as [`to_json`] converts it, without building the
/// intermediate JSON tree (large `get_all_records` answers spent most of
/// their time allocating it).
struct AsJson<'a>(&'a Value);

impl Serialize for AsJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Value::Nil => serializer.serialize_unit(),
            Value::Bool(b) => serializer.serialize_bool(*b),
            Value::Int(i) => serializer.serialize_i64(*i),
            Value::I4(i) => serializer.serialize_i32(*i),
            Value::Double(d) if d.is_finite() => serializer.serialize_f64(*d),
            Value::Double(_) => serializer.serialize_unit(),
            Value::String(s) | Value::DateTime(s) => serializer.serialize_str(s),
            Value::Array(items) => {
                let mut seq = serializer.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(&AsJson(item))?;
                }
                seq.end()
            }
            Value::Struct(members) => {
                let mut map = serializer.serialize_map(Some(members.len()))?;
                for (k, v) in members {
                    map.serialize_entry(k, &AsJson(v))?;
                }
                map.end()
            }
        }
    }
}

/// The response body for `call`'s outcome.
pub fn response(version: Version, id: &Json, outcome: &Result<Value, ApiError>) -> Vec<u8> {
    let written = match (version, outcome) {
        (Version::V2, Ok(v)) => serde_json::to_vec(&V2Result {
            jsonrpc: "2.0",
            result: AsJson(v),
            id,
        }),
        (Version::V2, Err(e)) => serde_json::to_vec(&json!({
            "jsonrpc": "2.0",
            "error": {"code": 1, "message": e.code, "data": e.params},
            "id": id,
        })),
        (Version::V1, Ok(v)) => serde_json::to_vec(&V1Result {
            result: AsJson(v),
            error: (),
            id,
        }),
        (Version::V1, Err(e)) => {
            serde_json::to_vec(&json!({"result": null, "error": e.description(), "id": id}))
        }
    };
    // Serializing into a Vec cannot fail: every value has a JSON form.
    written.unwrap_or_default()
}

#[derive(serde::Serialize)]
struct V2Result<'a> {
    jsonrpc: &'static str,
    result: AsJson<'a>,
    id: &'a Json,
}

#[derive(serde::Serialize)]
struct V1Result<'a> {
    result: AsJson<'a>,
    error: (),
    id: &'a Json,
}

#[cfg(test)]
mod tests {
    use alloc::vec;

    use super::*;

    #[test]
    fn parses_what_xo_sends() {
        let call = parse_call(
            br#"{"id":0,"jsonrpc":"2.0","method":"session.login_with_password","params":["root","secret"]}"#,
        )
        .unwrap();
        assert_eq!(call.method, "session.login_with_password");
        assert_eq!(call.params, vec![Value::str("root"), Value::str("secret")]);
        assert_eq!(call.id, json!(0));
        assert_eq!(call.version, Version::V2);
        let v1 =
            parse_call(br#"{"id":"a","method":"m","params":[1,1.5,null,{"k":[true]}]}"#).unwrap();
        assert_eq!(v1.version, Version::V1);
        assert_eq!(v1.params[0], Value::Int(1));
        assert_eq!(v1.params[1], Value::Double(1.5));
        assert_eq!(v1.params[2], Value::Nil);
    }

    #[test]
    fn refusals() {
        assert_eq!(parse_call(b"{"), Err(JsonRpcError::Syntax));
        assert_eq!(parse_call(b"[]"), Err(JsonRpcError::NoMethod));
        assert_eq!(
            parse_call(br#"{"method":1,"id":1}"#),
            Err(JsonRpcError::NoMethod)
        );
        assert_eq!(
            parse_call(br#"{"method":"m","params":{},"id":1}"#),
            Err(JsonRpcError::ParamsNotArray)
        );
        assert_eq!(
            parse_call(br#"{"method":"m","params":[]}"#),
            Err(JsonRpcError::NoId)
        );
        let deep = "[".repeat(100_000);
        assert_eq!(parse_call(deep.as_bytes()), Err(JsonRpcError::TooDeep));
    }

    #[test]
    fn nesting_is_bounded_before_parsing() {
        let call = |params: &str| format!(r#"{{"id":1,"method":"m","params":{params}}}"#);
        // The envelope is one level, params a second.
        let at_limit = format!("{}{}", "[".repeat(MAX_DEPTH - 1), "]".repeat(MAX_DEPTH - 1));
        assert!(parse_call(call(&at_limit).as_bytes()).is_ok());
        let over = format!("[{at_limit}]");
        assert_eq!(
            parse_call(call(&over).as_bytes()),
            Err(JsonRpcError::TooDeep)
        );
        // Brackets inside strings, escaped quotes included, do not count.
        let quoted = format!(r#"["\"{}"]"#, "[{".repeat(100));
        assert!(parse_call(call(&quoted).as_bytes()).is_ok());
        assert_eq!(nesting(br#"{"a":[{"b":"]]]"},[]]}"#), 3);
    }

    #[test]
    fn streamed_values_match_the_json_conversion() {
        let mut members = BTreeMap::new();
        members.insert(
            String::from("b"),
            Value::Array(vec![Value::Int(-3), Value::I4(7)]),
        );
        members.insert(
            String::from("a\"q"),
            Value::DateTime(String::from("20250319T04:16:24Z")),
        );
        members.insert(String::from("n"), Value::Double(f64::NAN));
        members.insert(String::from("x"), Value::Double(1.5));
        members.insert(String::from("z"), Value::Nil);
        members.insert(String::from("t"), Value::Bool(true));
        let value = Value::Struct(members);
        for version in [Version::V1, Version::V2] {
            let body = response(version, &json!("id"), &Ok(value.clone()));
            let parsed: Json = serde_json::from_slice(&body).unwrap();
            assert_eq!(parsed["result"], to_json(&value));
            assert_eq!(parsed["id"], "id");
        }
        let v1: Json =
            serde_json::from_slice(&response(Version::V1, &json!(1), &Ok(Value::Nil))).unwrap();
        assert_eq!(v1, json!({"result": null, "error": null, "id": 1}));
    }

    #[test]
    fn envelopes() {
        let err = ApiError::authentication_failed("root", "Authentication failure");
        let id = json!(0);
        let v2: Json =
            serde_json::from_slice(&response(Version::V2, &id, &Err(err.clone()))).unwrap();
        assert_eq!(
            v2,
            json!({"jsonrpc":"2.0","error":{"code":1,"message":"SESSION_AUTHENTICATION_FAILED","data":["root","Authentication failure"]},"id":0})
        );
        let v1: Json = serde_json::from_slice(&response(Version::V1, &id, &Err(err))).unwrap();
        assert_eq!(
            v1,
            json!({"result":null,"error":["SESSION_AUTHENTICATION_FAILED","root","Authentication failure"],"id":0})
        );
        let ok: Json =
            serde_json::from_slice(&response(Version::V1, &id, &Ok(Value::Int(3)))).unwrap();
        assert_eq!(ok, json!({"result":3,"error":null,"id":0}));
    }
}
