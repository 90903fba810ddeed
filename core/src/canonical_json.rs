//! Canonical JSON as the Matrix appendix defines it: keys sorted by code point, no insignificant
//! whitespace, UTF-8 (not `\u` escapes) for non-ASCII, integers only.
//!
//! serde_json's `Map` is a `BTreeMap` (the `preserve_order` feature is off), whose `String`
//! ordering is byte order, and byte order of UTF-8 equals code point order, so writing a `Value`
//! with serde_json's compact writer is canonical once numbers have been checked. Its string
//! escaping (`\"`, `\\`, `\b \f \n \r \t`, other control characters as lower-case `\u00XX`) is
//! the same as the reference implementation's (Python's `json.dumps(ensure_ascii=False)`).

use std::io::{self, Write};

use serde_json::Value;

use crate::error::{Error, ErrorKind, Result};

/// The largest magnitude the canonical range allows: 2^53 - 1.
pub const MAX_SAFE_INTEGER: i64 = (1 << 53) - 1;

/// Encodes `value` as canonical JSON. Fails on non-integer numbers, which have no canonical form.
pub fn to_canonical_string(value: &Value) -> Result<String> {
    check_numbers(value, "", false)?;
    Ok(serde_json::to_string(value).expect("serialising a serde_json::Value cannot fail"))
}

/// Encodes `value` as canonical JSON bytes.
pub fn to_canonical_bytes(value: &Value) -> Result<Vec<u8>> {
    to_canonical_string(value).map(String::into_bytes)
}

struct ByteCounter(usize);

impl Write for ByteCounter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// An object's members serialised as canonical JSON once, in key order. The PDU's size, content
/// hash and reference hash are each a selection of these members, so ingest walks a PDU's values
/// once instead of once per use. The caller has checked the numbers.
pub struct CanonicalMembers<'a> {
    members: Vec<(&'a str, Vec<u8>)>,
}

impl<'a> CanonicalMembers<'a> {
    pub fn of(object: &'a serde_json::Map<String, Value>) -> Self {
        let members = object
            .iter()
            .map(|(k, v)| (k.as_str(), serde_json::to_vec(v).expect("serialising a serde_json::Value cannot fail")))
            .collect();
        CanonicalMembers { members }
    }

    /// The members, sorted by key, with their values' canonical bytes.
    pub fn iter(&self) -> impl Iterator<Item = (&'a str, &[u8])> + '_ {
        self.members.iter().map(|(k, v)| (*k, v.as_slice()))
    }

    /// The length in bytes of the whole object as canonical JSON.
    pub fn canonical_len(&self) -> usize {
        let mut counter = ByteCounter(0);
        write_members(&mut counter, self.iter()).expect("counting cannot fail");
        counter.0
    }
}

/// Writes the canonical JSON object made of `members` (key, canonical bytes of the value),
/// which must be sorted by key.
pub fn write_members<'m, W: Write>(w: &mut W, members: impl IntoIterator<Item = (&'m str, &'m [u8])>) -> io::Result<()> {
    w.write_all(b"{")?;
    for (i, (k, v)) in members.into_iter().enumerate() {
        if i > 0 {
            w.write_all(b",")?;
        }
        serde_json::to_writer(&mut *w, k)?;
        w.write_all(b":")?;
        w.write_all(v)?;
    }
    w.write_all(b"}")
}

/// Checks that every number in `value` is an integer and, when `strict` (room versions 6 and
/// later), that it lies in [-(2^53)+1, 2^53-1]. The error names the JSON path of the offender,
/// prefixed by `path`.
pub fn check_numbers(value: &Value, path: &str, strict: bool) -> Result<()> {
    let Some((segments, n, integer)) = first_bad_number(value, strict) else { return Ok(()) };
    // Only the error path pays for building the path string.
    let mut field = path.to_owned();
    for seg in segments.iter().rev() {
        match seg {
            Segment::Key(k) if field.is_empty() => field.push_str(k),
            Segment::Key(k) => {
                field.push('.');
                field.push_str(k);
            }
            Segment::Index(i) => field.push_str(&format!("[{i}]")),
        }
    }
    if field.is_empty() {
        field.push_str("(root)");
    }
    let message = if integer {
        format!("\"{field}\" = {n} is outside the canonical JSON range [-(2^53)+1, (2^53)-1]")
    } else {
        format!("\"{field}\" is not an integer ({n}); canonical JSON allows integers only")
    };
    Err(Error::new(ErrorKind::IntegerOutOfRange, Some(&field), message))
}

enum Segment<'a> {
    Key(&'a str),
    Index(usize),
}

/// The first offending number, its path (innermost segment first) and whether it is an integer.
fn first_bad_number(value: &Value, strict: bool) -> Option<(Vec<Segment<'_>>, &serde_json::Number, bool)> {
    match value {
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                (strict && !(-MAX_SAFE_INTEGER..=MAX_SAFE_INTEGER).contains(&i)).then(|| (Vec::new(), n, true))
            } else if n.as_u64().is_some() {
                // A u64 above i64::MAX is always above 2^53-1.
                strict.then(|| (Vec::new(), n, true))
            } else {
                Some((Vec::new(), n, false))
            }
        }
        Value::Array(items) => items.iter().enumerate().find_map(|(i, item)| {
            first_bad_number(item, strict).map(|(mut p, n, int)| {
                p.push(Segment::Index(i));
                (p, n, int)
            })
        }),
        Value::Object(map) => map.iter().find_map(|(k, v)| {
            first_bad_number(v, strict).map(|(mut p, n, int)| {
                p.push(Segment::Key(k));
                (p, n, int)
            })
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn canon(v: Value) -> String {
        to_canonical_string(&v).unwrap()
    }

    // The examples of the spec appendix "Canonical JSON".
    #[test]
    fn spec_appendix_examples() {
        assert_eq!(canon(json!({})), "{}");
        assert_eq!(
            canon(json!({"one": 1, "two": "Two"})),
            r#"{"one":1,"two":"Two"}"#
        );
        assert_eq!(canon(json!({"b": "2", "a": "1"})), r#"{"a":"1","b":"2"}"#);
        let v: Value = serde_json::from_str(r#"{"b":"2","a":"1"}"#).unwrap();
        assert_eq!(canon(v), r#"{"a":"1","b":"2"}"#);
        assert_eq!(
            canon(json!({"auth": {"success": true, "mxid": "@john.doe:example.com",
                "profile": {"display_name": "John Doe", "three_pids": [
                    {"medium": "email", "address": "john.doe@example.org"},
                    {"medium": "msisdn", "address": "123456789"}]}}})),
            r#"{"auth":{"mxid":"@john.doe:example.com","profile":{"display_name":"John Doe","three_pids":[{"address":"john.doe@example.org","medium":"email"},{"address":"123456789","medium":"msisdn"}]},"success":true}}"#
        );
        assert_eq!(canon(json!({"a": "日本語"})), r#"{"a":"日本語"}"#);
        assert_eq!(canon(json!({"本": 2, "日": 1})), r#"{"日":1,"本":2}"#);
        let v: Value = serde_json::from_str(r#"{"a": "\u65E5"}"#).unwrap();
        assert_eq!(canon(v), r#"{"a":"日"}"#);
        assert_eq!(canon(json!({"a": null})), r#"{"a":null}"#);
        assert_eq!(canon(json!({"a": -0, "b": 1e2 as i64})), r#"{"a":0,"b":100}"#);
    }

    #[test]
    fn control_characters_are_escaped_like_the_reference() {
        let v = json!({"a": "\u{0}\u{1f}\"\\\n\t\u{7f}\u{2028}"});
        assert_eq!(canon(v), "{\"a\":\"\\u0000\\u001f\\\"\\\\\\n\\t\u{7f}\u{2028}\"}");
    }

    #[test]
    fn floats_are_rejected_naming_the_path() {
        let e = to_canonical_string(&json!({"content": {"x": [1, 2.5]}})).unwrap_err();
        assert_eq!(e.kind, ErrorKind::IntegerOutOfRange);
        assert_eq!(e.field.as_deref(), Some("content.x[1]"));
    }

    #[test]
    fn canonical_members_agree_with_the_string_form() {
        let v = json!({"b": [1, {"y": "é", "x": null}], "a": "\n", "c": {}});
        let s = canon(v.clone());
        let members = CanonicalMembers::of(v.as_object().unwrap());
        assert_eq!(members.canonical_len(), s.len());
        let mut out = Vec::new();
        write_members(&mut out, members.iter()).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), s);
        let mut partial = Vec::new();
        write_members(&mut partial, members.iter().filter(|(k, _)| *k != "b")).unwrap();
        assert_eq!(String::from_utf8(partial).unwrap(), r#"{"a":"\n","c":{}}"#);
        assert_eq!(CanonicalMembers::of(&serde_json::Map::new()).canonical_len(), 2);
    }

    #[test]
    fn error_paths_name_nested_fields() {
        let e = check_numbers(&json!({"a": [{"b": 1}, {"c": [0, 1.5]}]}), "", false).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("a[1].c[1]"));
        let e = check_numbers(&json!(2.5), "", false).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("(root)"));
        let e = check_numbers(&json!({"x": 2.5}), "content", false).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("content.x"));
    }

    #[test]
    fn strict_range_is_enforced_only_when_asked() {
        let big = json!({"depth": 9007199254740992i64});
        assert!(check_numbers(&big, "", false).is_ok());
        let e = check_numbers(&big, "", true).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("depth"));
        assert!(check_numbers(&json!({"d": 9007199254740991i64}), "", true).is_ok());
        assert!(check_numbers(&json!({"d": -9007199254740991i64}), "", true).is_ok());
        assert!(check_numbers(&json!({"d": -9007199254740992i64}), "", true).is_err());
        assert!(check_numbers(&json!({"d": u64::MAX}), "", true).is_err());
    }
}
