//! XML-RPC: `methodCall` parsing and `methodResponse` writing, in xapi's
//! dialect (ints written as strings, `<nil/>` accepted, bare strings).

use alloc::borrow::Cow;
use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write as _;

use super::value::Value;
use super::xml::{Token, Tokenizer, XmlError, escape_into};

/// A parsed `methodCall`.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    pub method: String,
    pub params: Vec<Value>,
}

/// Parses a `methodCall` document.
pub fn parse_call(body: &[u8]) -> Result<Call, XmlError> {
    let mut p = Parser {
        t: Tokenizer::new(body)?,
    };
    p.open("methodCall")?;
    p.open("methodName")?;
    let method = match p.raw()? {
        Token::Text(name) => {
            let name = String::from(name.trim());
            p.close("methodName")?;
            name
        }
        Token::Close("methodName") => String::new(),
        _ => return Err(p.malformed()),
    };
    let mut params = Vec::new();
    match p.significant()? {
        Token::Close("methodCall") => {}
        Token::Empty("params") => p.close("methodCall")?,
        Token::Open("params") => {
            loop {
                match p.significant()? {
                    Token::Open("param") => {
                        let value = match p.significant()? {
                            Token::Open("value") => p.value_body()?,
                            Token::Empty("value") => Value::String(String::new()),
                            _ => return Err(p.malformed()),
                        };
                        params.push(value);
                        p.close("param")?;
                    }
                    Token::Close("params") => break,
                    _ => return Err(p.malformed()),
                }
            }
            p.close("methodCall")?;
        }
        _ => return Err(p.malformed()),
    }
    match p.t.next_token()? {
        None => Ok(Call { method, params }),
        Some(_) => Err(p.malformed()),
    }
}

struct Parser<'a> {
    t: Tokenizer<'a>,
}

impl<'a> Parser<'a> {
    /// Well-formed XML that is not the XML-RPC expected here, at the
    /// offset of the token that came after the unexpected one.
    fn malformed(&self) -> XmlError {
        XmlError::Malformed {
            at: self.t.position(),
        }
    }

    fn raw(&mut self) -> Result<Token<'a>, XmlError> {
        self.t.next_token()?.ok_or(XmlError::UnexpectedEnd)
    }

    /// The next token that is not whitespace-only text.
    fn significant(&mut self) -> Result<Token<'a>, XmlError> {
        loop {
            match self.raw()? {
                Token::Text(t) if t.trim().is_empty() => {}
                other => return Ok(other),
            }
        }
    }

    fn open(&mut self, name: &str) -> Result<(), XmlError> {
        match self.significant()? {
            Token::Open(n) if n == name => Ok(()),
            _ => Err(self.malformed()),
        }
    }

    fn close(&mut self, name: &str) -> Result<(), XmlError> {
        match self.significant()? {
            Token::Close(n) if n == name => Ok(()),
            _ => Err(self.malformed()),
        }
    }

    /// Text up to the close of `name` (empty when there is none).
    fn text_until(&mut self, name: &str) -> Result<Cow<'a, str>, XmlError> {
        match self.raw()? {
            Token::Close(n) if n == name => Ok(Cow::Borrowed("")),
            Token::Text(t) => {
                self.close(name)?;
                Ok(t)
            }
            _ => Err(self.malformed()),
        }
    }

    /// What follows `<value>`, through `</value>`.
    fn value_body(&mut self) -> Result<Value, XmlError> {
        let first = self.raw()?;
        let typed = match first {
            Token::Close("value") => return Ok(Value::String(String::new())),
            Token::Text(text) => match self.raw()? {
                // A bare string.
                Token::Close("value") => return Ok(Value::String(text.into_owned())),
                // Formatting whitespace before the type element.
                other if text.trim().is_empty() => other,
                _ => return Err(self.malformed()),
            },
            other => other,
        };
        let value = match typed {
            Token::Empty(kind) => match kind {
                "nil" => Value::Nil,
                "string" | "base64" => Value::String(String::new()),
                "array" => Value::Array(Vec::new()),
                "struct" => Value::Struct(BTreeMap::new()),
                _ => return Err(self.malformed()),
            },
            Token::Open(kind) => self.typed(kind)?,
            _ => return Err(self.malformed()),
        };
        self.close("value")?;
        Ok(value)
    }

    fn typed(&mut self, kind: &'a str) -> Result<Value, XmlError> {
        let bad = self.malformed();
        Ok(match kind {
            "string" | "base64" => Value::String(self.text_until(kind)?.into_owned()),
            "int" | "i4" | "i8" => {
                Value::Int(self.text_until(kind)?.trim().parse().map_err(|_| bad)?)
            }
            "boolean" => match self.text_until(kind)?.trim() {
                "1" => Value::Bool(true),
                "0" => Value::Bool(false),
                _ => return Err(bad),
            },
            "double" => {
                let v: f64 = self.text_until(kind)?.trim().parse().map_err(|_| bad)?;
                // XML-RPC has no NaN or infinity.
                if !v.is_finite() {
                    return Err(bad);
                }
                Value::Double(v)
            }
            "dateTime.iso8601" => Value::DateTime(String::from(self.text_until(kind)?.trim())),
            "nil" => {
                self.close("nil")?;
                Value::Nil
            }
            "array" => {
                let mut items = Vec::new();
                match self.significant()? {
                    Token::Empty("data") => {}
                    Token::Open("data") => loop {
                        match self.significant()? {
                            Token::Open("value") => items.push(self.value_body()?),
                            Token::Empty("value") => items.push(Value::String(String::new())),
                            Token::Close("data") => break,
                            _ => return Err(bad),
                        }
                    },
                    _ => return Err(bad),
                }
                self.close("array")?;
                Value::Array(items)
            }
            "struct" => {
                let mut members = BTreeMap::new();
                loop {
                    match self.significant()? {
                        Token::Open("member") => {
                            self.open("name")?;
                            let name = self.text_until("name")?.into_owned();
                            let value = match self.significant()? {
                                Token::Open("value") => self.value_body()?,
                                Token::Empty("value") => Value::String(String::new()),
                                _ => return Err(bad),
                            };
                            self.close("member")?;
                            members.insert(name, value);
                        }
                        Token::Close("struct") => break,
                        _ => return Err(bad),
                    }
                }
                Value::Struct(members)
            }
            _ => return Err(bad),
        })
    }
}

/// A `methodResponse` carrying `value`.
pub fn response(value: &Value) -> String {
    let mut out = String::from("<?xml version=\"1.0\"?><methodResponse><params><param>");
    write_value(&mut out, value);
    out.push_str("</param></params></methodResponse>");
    out
}

/// `{Status: "Success", Value: value}`, members in xapi's order.
pub fn success(value: &Value) -> String {
    let mut out = String::from(
        "<?xml version=\"1.0\"?><methodResponse><params><param><value><struct><member><name>Status</name><value>Success</value></member><member><name>Value</name>",
    );
    write_value(&mut out, value);
    out.push_str("</member></struct></value></param></params></methodResponse>");
    out
}

/// `{Status: "Failure", ErrorDescription: [code, params...]}`.
pub fn failure(description: &[String]) -> String {
    let mut out = String::from(
        "<?xml version=\"1.0\"?><methodResponse><params><param><value><struct><member><name>Status</name><value>Failure</value></member><member><name>ErrorDescription</name>",
    );
    let items = description
        .iter()
        .map(|s| Value::String(s.clone()))
        .collect();
    write_value(&mut out, &Value::Array(items));
    out.push_str("</member></struct></value></param></params></methodResponse>");
    out
}

/// Writes `value` as xapi does: ints as decimal strings, bare strings.
pub fn write_value(out: &mut String, value: &Value) {
    out.push_str("<value>");
    match value {
        Value::Nil => out.push_str("<nil/>"),
        Value::Bool(b) => out.push_str(if *b {
            "<boolean>1</boolean>"
        } else {
            "<boolean>0</boolean>"
        }),
        Value::Int(i) => {
            let _ = write!(out, "{i}");
        }
        Value::I4(i) => {
            let _ = write!(out, "<i4>{i}</i4>");
        }
        Value::Double(d) => {
            let d = if d.is_finite() { *d } else { 0.0 };
            let _ = write!(out, "<double>{d}</double>");
        }
        Value::String(s) => escape_into(out, s),
        Value::DateTime(s) => {
            out.push_str("<dateTime.iso8601>");
            escape_into(out, s);
            out.push_str("</dateTime.iso8601>");
        }
        Value::Array(items) => {
            out.push_str("<array><data>");
            for item in items {
                write_value(out, item);
            }
            out.push_str("</data></array>");
        }
        Value::Struct(members) => {
            out.push_str("<struct>");
            for (name, value) in members {
                out.push_str("<member><name>");
                escape_into(out, name);
                out.push_str("</name>");
                write_value(out, value);
                out.push_str("</member>");
            }
            out.push_str("</struct>");
        }
    }
    out.push_str("</value>");
}

#[cfg(test)]
mod tests {
    use alloc::vec;

    use super::*;

    #[test]
    fn parses_what_the_python_sdk_sends() {
        let body = b"<?xml version='1.0'?>\n<methodCall>\n<methodName>session.login_with_password</methodName>\n<params>\n<param>\n<value><string>root</string></value>\n</param>\n<param>\n<value><string>s&lt;cret</string></value>\n</param>\n<param><value><nil/></value></param>\n<param><value><int>7</int></value></param>\n</params>\n</methodCall>\n";
        let call = parse_call(body).unwrap();
        assert_eq!(call.method, "session.login_with_password");
        assert_eq!(
            call.params,
            vec![
                Value::str("root"),
                Value::str("s<cret"),
                Value::Nil,
                Value::Int(7)
            ]
        );
    }

    #[test]
    fn parses_every_value_form() {
        let body = b"<methodCall><methodName>x</methodName><params>\
            <param><value>bare</value></param>\
            <param><value></value></param>\
            <param><value/></param>\
            <param><value> <i8>-9000000000</i8> </value></param>\
            <param><value><boolean>1</boolean></value></param>\
            <param><value><double>1.5</double></value></param>\
            <param><value><dateTime.iso8601>20250319T04:16:24Z</dateTime.iso8601></value></param>\
            <param><value><array><data><value>a</value><value><i4>1</i4></value></data></array></value></param>\
            <param><value><struct><member><name>k</name><value><string>v</string></value></member></struct></value></param>\
            <param><value><string/></value></param>\
            </params></methodCall>";
        let call = parse_call(body).unwrap();
        let mut map = BTreeMap::new();
        map.insert(String::from("k"), Value::str("v"));
        assert_eq!(
            call.params,
            vec![
                Value::str("bare"),
                Value::str(""),
                Value::str(""),
                Value::Int(-9_000_000_000),
                Value::Bool(true),
                Value::Double(1.5),
                Value::DateTime(String::from("20250319T04:16:24Z")),
                Value::Array(vec![Value::str("a"), Value::Int(1)]),
                Value::Struct(map),
                Value::str(""),
            ]
        );
    }

    #[test]
    fn no_params_and_refusals() {
        assert_eq!(
            parse_call(b"<methodCall><methodName>system.listMethods</methodName></methodCall>")
                .unwrap()
                .params,
            vec![]
        );
        assert_eq!(
            parse_call(b"<methodCall><methodName>a</methodName><params/></methodCall>")
                .unwrap()
                .params,
            vec![]
        );
        for bad in [
            &b""[..],
            b"<methodCall/>",
            b"<methodCall><methodName>a</methodName><params><param><value><int>x</int></value></param></params></methodCall>",
            b"<methodCall><methodName>a</methodName><params><param><value><boolean>2</boolean></value></param></params></methodCall>",
            b"<methodCall><methodName>a</methodName><params><param><value><blob>2</blob></value></param></params></methodCall>",
            b"<methodCall><methodName>a</methodName></methodCall><x/>",
            b"<methodResponse/>",
        ] {
            assert!(parse_call(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn writes_like_xapi() {
        let mut map = BTreeMap::new();
        map.insert(String::from("Status"), Value::str("Success"));
        map.insert(
            String::from("Value"),
            Value::Array(vec![
                Value::Int(2),
                Value::Bool(false),
                Value::str("<&>"),
                Value::Nil,
                Value::Double(0.5),
            ]),
        );
        assert_eq!(
            response(&Value::Struct(map)),
            "<?xml version=\"1.0\"?><methodResponse><params><param><value><struct><member><name>Status</name><value>Success</value></member><member><name>Value</name><value><array><data><value>2</value><value><boolean>0</boolean></value><value>&lt;&amp;&gt;</value><value><nil/></value><value><double>0.5</double></value></data></array></value></member></struct></value></param></params></methodResponse>"
        );
    }

    #[test]
    fn event_counts_are_i4() {
        let mut out = String::new();
        write_value(&mut out, &Value::I4(12));
        assert_eq!(out, "<value><i4>12</i4></value>");
    }

    #[test]
    fn round_trip() {
        let mut inner = BTreeMap::new();
        inner.insert(
            String::from("a b"),
            Value::Array(vec![Value::str(" x "), Value::Bool(true)]),
        );
        let value = Value::Struct(inner);
        let mut body = String::from("<methodCall><methodName>m</methodName><params><param>");
        write_value(&mut body, &value);
        body.push_str("</param></params></methodCall>");
        assert_eq!(parse_call(body.as_bytes()).unwrap().params, vec![value]);
    }
}
