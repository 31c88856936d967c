//! A command request as producers send it: one JSON (or MessagePack) object whose
//! `type` selects the command, with `command_id` and `expected_version` beside the
//! command's own fields. Parsing answers `request.malformed` for anything that is not
//! such an object.

use behalf_domain::Command;
use behalf_domain::{Code, CommandId, Principal, Rejection};
use serde::Deserialize as _;
use serde_json::Value;

/// A parsed request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub command_id: Option<CommandId>,
    pub expected_version: Option<u64>,
    pub command: Command,
}

/// How the body is encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    Json,
    MsgPack,
}

fn malformed(why: impl std::fmt::Display) -> Rejection {
    Rejection::without_rule(Code::RequestMalformed, why.to_string())
}

/// Parses a body. `idempotency_key` (the `Idempotency-Key` header) is used when the
/// body names no `command_id`; when both are given they must agree.
pub fn parse(body: &[u8], encoding: Encoding, idempotency_key: Option<&str>) -> Result<Request, Rejection> {
    let value: Value = match encoding {
        Encoding::Json => serde_json::from_slice(body).map_err(|e| malformed(format!("not a JSON object: {e}")))?,
        Encoding::MsgPack => {
            // One document and nothing after it, as JSON is read.
            let mut read = std::io::Cursor::new(body);
            let value = Value::deserialize(&mut rmp_serde::Deserializer::new(&mut read))
                .map_err(|e| malformed(format!("not a MessagePack map: {e}")))?;
            if read.position() != body.len() as u64 {
                return Err(malformed("bytes after the MessagePack document"));
            }
            value
        }
    };
    from_value(value, idempotency_key)
}

/// As [`parse`], from an already decoded value.
pub fn from_value(mut value: Value, idempotency_key: Option<&str>) -> Result<Request, Rejection> {
    let obj = value.as_object_mut().ok_or_else(|| malformed("the body must be one object"))?;
    let body_id = match obj.remove("command_id") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s),
        Some(_) => return Err(malformed("command_id must be a string")),
    };
    let command_id = match (body_id, idempotency_key) {
        (Some(a), Some(b)) if a != b => return Err(malformed("command_id and the Idempotency-Key header differ")),
        (Some(a), _) => Some(a),
        (None, Some(b)) => Some(b.to_owned()),
        (None, None) => None,
    };
    let command_id = command_id.map(CommandId::new);
    if let Some(id) = &command_id {
        id.check().map_err(|why| malformed(format!("command_id {why}")))?;
    }
    let expected_version = match obj.remove("expected_version") {
        None | Some(Value::Null) => None,
        // A JSON integer, also when written with a zero fraction (`3.0` is an integer to
        // JSON Schema and to most JSON writers).
        Some(v) => Some(
            v.as_u64()
                .or_else(|| {
                    v.as_f64().filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f < u64::MAX as f64).map(|f| f as u64)
                })
                .ok_or_else(|| malformed("expected_version must be a non-negative integer"))?,
        ),
    };
    match obj.get("type") {
        // Sent by the server for /v1/webhooks, which keeps their secrets out of the log.
        Some(Value::String(t)) if t.starts_with("webhook.") => {
            return Err(malformed("webhook commands are sent through /v1/webhooks"))
        }
        Some(Value::String(_)) => {}
        Some(_) => return Err(malformed("type must be a string")),
        None => return Err(malformed("the body has no type")),
    }
    let command: Command = serde_json::from_value(value).map_err(|e| malformed(e.to_string()))?;
    Ok(Request { command_id, expected_version, command })
}

/// The digest R26 compares: who sent what, with which expectation. Where personal
/// data is sealed, `keyed` hashes it under the key store's hash key (HMAC), so the
/// digest the log keeps cannot be checked against a guessed name or address.
pub fn digest(principal: &Principal, req: &Request, keyed: Option<&crate::seal::Keyring>) -> behalf_log::Hash {
    let bytes = rmp_serde::to_vec_named(&(principal, req.expected_version, &req.command)).unwrap_or_default();
    match keyed {
        Some(ring) => ring.mac(&bytes),
        None => behalf_log::codec::sha256(&bytes),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_json_and_msgpack_alike() {
        let json = br#"{"type":"ticket.note","ticket_id":"T1","text":"hi","command_id":"c-1","expected_version":3}"#;
        let a = parse(json, Encoding::Json, None).unwrap();
        assert_eq!(a.command_id.as_ref().map(|c| c.as_str()), Some("c-1"));
        assert_eq!(a.expected_version, Some(3));
        let v: Value = serde_json::from_slice(json).unwrap();
        let mp = rmp_serde::to_vec_named(&v).unwrap();
        assert_eq!(parse(&mp, Encoding::MsgPack, None).unwrap(), a);
    }

    #[test]
    fn malformed_bodies_are_refused() {
        for body in [
            &b"nope"[..],
            b"[]",
            br#"{"type":"ticket.fly"}"#,
            br#"{"ticket_id":"x"}"#,
            br#"{"type":7}"#,
            br#"{"type":"ticket.note","ticket_id":5,"text":"x"}"#,
            br#"{"type":"ticket.note","ticket_id":"T","text":"x","expected_version":-1}"#,
            br#"{"type":"webhook.subscribe","webhook_id":"w","queue":"a.b","url_redacted":"x"}"#,
        ] {
            let r = parse(body, Encoding::Json, None).unwrap_err();
            assert_eq!(r.code, Code::RequestMalformed, "{}", String::from_utf8_lossy(body));
        }
        let r =
            parse(br#"{"type":"ticket.note","ticket_id":"T","text":"x","command_id":"a"}"#, Encoding::Json, Some("b"))
                .unwrap_err();
        assert_eq!(r.code, Code::RequestMalformed);
    }
}
