//! Fuzz entry points (`cargo xtask fuzz`) for the XenAPI request parsers:
//! arbitrary bytes in, invariants checked. They panic only when an
//! invariant breaks.

use alloc::string::String;

use super::{Value, jsonrpc, xmlrpc};

/// XML-RPC: parsing never panics, and a parsed call survives a round trip
/// through the writer.
pub fn fuzz_xmlrpc(data: &[u8]) {
    if let Ok(call) = xmlrpc::parse_call(data) {
        let mut body = String::from("<methodCall><methodName>");
        super::xml::escape_into(&mut body, &call.method);
        body.push_str("</methodName><params>");
        for p in &call.params {
            body.push_str("<param>");
            xmlrpc::write_value(&mut body, p);
            body.push_str("</param>");
        }
        body.push_str("</params></methodCall>");
        let again = xmlrpc::parse_call(body.as_bytes());
        // Doubles are written in Rust's shortest form, which reads back
        // exactly; strings and structure must be identical.
        let expected: alloc::vec::Vec<Value> = call.params.iter().map(ints_as_strings).collect();
        assert_eq!(
            again.as_ref().map(|c| &c.params),
            Ok(&expected),
            "round trip of {body}"
        );
    }
}

/// What a value reads back as after xapi-style writing: ints become strings.
fn ints_as_strings(v: &Value) -> Value {
    match v {
        Value::Int(i) => Value::String(alloc::format!("{i}")),
        Value::Array(items) => Value::Array(items.iter().map(ints_as_strings).collect()),
        Value::Struct(m) => Value::Struct(
            m.iter()
                .map(|(k, v)| (k.clone(), ints_as_strings(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// JSON-RPC: parsing never panics.
pub fn fuzz_jsonrpc(data: &[u8]) {
    if let Ok(call) = jsonrpc::parse_call(data) {
        let _ = jsonrpc::response(call.version, &call.id, &Ok(Value::Array(call.params)));
    }
}

/// Stored database records: decoding never panics, a decoded value
/// survives a round trip through the encoder, and every class reads it as
/// a record (defaults where it does not fit) without panicking.
pub fn fuzz_db_record(data: &[u8]) {
    if let Ok(v) = super::codec::decode(data) {
        let again = super::codec::decode(&super::codec::encode(&v));
        // NaN is the one value not equal to itself.
        if !alloc::format!("{v:?}").contains("NaN") {
            assert_eq!(again.as_ref(), Ok(&v), "round trip");
        }
    }
    for class in super::schema::CLASSES {
        if let Ok(fields) = super::persist::decode(class, data) {
            assert_eq!(fields.len(), class.fields.len());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic xorshift, so a failure reproduces.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n.max(1) as u64) as usize
        }
    }

    const SEEDS: &[&[u8]] = &[
        b"<?xml version='1.0'?>\n<methodCall>\n<methodName>session.login_with_password</methodName>\n<params>\n<param>\n<value><string>root</string></value>\n</param>\n<param><value><nil/></value></param></params>\n</methodCall>\n",
        b"<methodCall><methodName>VM.get_all_records</methodName><params><param><value>OpaqueRef:x</value></param><param><value><array><data><value><i4>1</i4></value><value><boolean>1</boolean></value></data></array></value></param><param><value><struct><member><name>a</name><value><double>1.5</double></value></member></struct></value></param></params></methodCall>",
        br#"{"id":0,"jsonrpc":"2.0","method":"event.from","params":["OpaqueRef:x",["*"],"",60.1]}"#,
    ];

    const TOKENS: &[&[u8]] = &[
        b"<",
        b">",
        b"</",
        b"/>",
        b"&amp;",
        b"&#",
        b"<value>",
        b"</value>",
        b"<array><data>",
        b"<![CDATA[",
        b"]]>",
        b"<!--",
        b"\"",
        b"[",
        b"{",
        b"\xff",
        b"\0",
    ];

    fn mutate(rng: &mut Rng, input: &mut alloc::vec::Vec<u8>) {
        for _ in 0..1 + rng.below(4) {
            let at = rng.below(input.len() + 1);
            match rng.below(4) {
                0 if !input.is_empty() => {
                    let end = (at + rng.below(16)).min(input.len());
                    input.drain(at.min(end)..end);
                }
                1 => {
                    let t = TOKENS[rng.below(TOKENS.len())];
                    input.splice(at..at, t.iter().copied());
                }
                2 if at < input.len() => input[at] = rng.next() as u8,
                _ => {
                    // Duplicate a slice (grows nesting).
                    let end = (at + rng.below(64)).min(input.len());
                    let copy = input[at.min(end)..end].to_vec();
                    input.splice(at..at, copy);
                }
            }
        }
    }

    #[test]
    fn mutated_inputs_never_panic() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for seed in SEEDS {
            fuzz_xmlrpc(seed);
            fuzz_jsonrpc(seed);
            fuzz_db_record(seed);
            for _ in 0..3000 {
                let mut input = seed.to_vec();
                for _ in 0..1 + rng.below(3) {
                    mutate(&mut rng, &mut input);
                }
                fuzz_xmlrpc(&input);
                fuzz_jsonrpc(&input);
                fuzz_db_record(&input);
            }
        }
    }

    #[test]
    fn mutated_db_records_never_panic() {
        use crate::xenapi::db::{Db, default_record};
        use crate::xenapi::schema::HOST;
        let mut db = Db::new();
        db.insert(&HOST, "OpaqueRef:h".into(), default_record(&HOST, "u"));
        let seed = crate::xenapi::persist::encode(&HOST, db.get(&HOST, "OpaqueRef:h").unwrap());
        let mut rng = Rng(0x2545_f491_4f6c_dd1d);
        fuzz_db_record(&seed);
        for _ in 0..3000 {
            let mut input = seed.clone();
            for _ in 0..1 + rng.below(3) {
                mutate(&mut rng, &mut input);
            }
            fuzz_db_record(&input);
        }
    }

    #[test]
    fn deep_nesting_is_refused_not_overflowed() {
        let mut deep = alloc::vec::Vec::new();
        deep.extend_from_slice(b"<methodCall><methodName>m</methodName><params><param>");
        for _ in 0..100_000 {
            deep.extend_from_slice(b"<value><array><data>");
        }
        assert!(xmlrpc::parse_call(&deep).is_err());
        fuzz_xmlrpc(&deep);
    }
}
