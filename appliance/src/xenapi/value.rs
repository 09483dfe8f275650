//! The values XenAPI calls carry, independent of the wire (XML-RPC or JSON-RPC).

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write as _;

/// A XenAPI value. Maps keep their keys sorted, which is as good as any
/// order: neither protocol gives struct members an order.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `<nil/>` or JSON `null`.
    Nil,
    Bool(bool),
    Int(i64),
    /// An int xapi writes as `<i4>` in XML-RPC rather than as a string
    /// (`event.from`'s `valid_ref_counts`, which XO compares as numbers).
    I4(i32),
    Double(f64),
    String(String),
    /// ISO 8601 basic form, `20250319T04:16:24Z`, as xapi writes it.
    DateTime(String),
    Array(Vec<Value>),
    Struct(BTreeMap<String, Value>),
}

impl Value {
    pub fn str(s: &str) -> Value {
        Value::String(String::from(s))
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) | Value::DateTime(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            Value::I4(i) => Some(i64::from(*i)),
            _ => None,
        }
    }

    /// A short name of the value's kind, for error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Nil => "nil",
            Value::Bool(_) => "bool",
            Value::Int(_) | Value::I4(_) => "int",
            Value::Double(_) => "double",
            Value::String(_) => "string",
            Value::DateTime(_) => "datetime",
            Value::Array(_) => "array",
            Value::Struct(_) => "struct",
        }
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Value {
        Value::str(s)
    }
}

impl From<String> for Value {
    fn from(s: String) -> Value {
        Value::String(s)
    }
}

/// Seconds since the Unix epoch in xapi's datetime form (`%Y%m%dT%H:%M:%SZ`).
pub fn format_datetime(unix_seconds: u64) -> String {
    let days = unix_seconds / 86_400;
    let secs = unix_seconds % 86_400;
    let (year, month, day) = civil_from_days(days);
    let mut out = String::with_capacity(18);
    let _ = write!(
        out,
        "{year:04}{month:02}{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    );
    out
}

/// Days since 1970-01-01 to a proleptic Gregorian (year, month, day)
/// (Howard Hinnant's `civil_from_days`, for non-negative day counts).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// The datetime xapi uses for "never".
pub const EPOCH: &str = "19700101T00:00:00Z";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datetimes_in_xapi_form() {
        assert_eq!(format_datetime(0), EPOCH);
        assert_eq!(format_datetime(1_742_357_784), "20250319T04:16:24Z");
        assert_eq!(format_datetime(951_782_400), "20000229T00:00:00Z");
        assert_eq!(format_datetime(4_102_444_799), "20991231T23:59:59Z");
    }
}
