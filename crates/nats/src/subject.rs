//! Subjects and keys: a stream id or a command id is any string; NATS subject tokens and
//! KV keys are not. Characters outside `[A-Za-z0-9-]` are written as `_` and two hex
//! digits per byte, which is injective and keeps ordinary ids readable.

use behalf_domain::{CommandKey, StreamId};

fn escape(raw: &str, out: &mut String) {
    for b in raw.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' {
            out.push(b as char);
        } else {
            out.push('_');
            out.push_str(&format!("{b:02x}"));
        }
    }
}

/// One escaped token.
pub(crate) fn escaped(raw: &str) -> String {
    let mut s = String::with_capacity(raw.len());
    escape(raw, &mut s);
    s
}

/// `behalf.ev.<category>.<stream-id>`, both parts escaped.
pub fn event_subject(stream: &StreamId) -> String {
    let mut s = String::with_capacity(16 + stream.0.len());
    s.push_str("behalf.ev.");
    let category = stream.category();
    if category.is_empty() {
        s.push('_');
    } else {
        escape(category, &mut s);
    }
    s.push('.');
    if stream.0.is_empty() {
        s.push('_');
    } else {
        escape(&stream.0, &mut s);
    }
    s
}

/// The key of a (tenant, command id) in the `BEHALF_COMMANDS` bucket:
/// `k.<tenant>.<command id>`, both escaped. (Keys of the bare command id, `c.<id>`, are
/// from before ids were per tenant.)
pub fn command_key(key: &CommandKey) -> String {
    let id = key.id.as_str();
    let mut s = String::with_capacity(48 + id.len());
    s.push_str("k.");
    escape(&key.tenant.to_string(), &mut s);
    s.push('.');
    if id.is_empty() {
        s.push('_');
    } else {
        escape(id, &mut s);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_are_valid_and_distinct() {
        let ids = ["ticket-01ab", "gdap-p1.c2", "a b", "x*y>z", "ticket-01ab_2e", ""];
        let subjects: Vec<String> = ids.iter().map(|i| event_subject(&StreamId((*i).into()))).collect();
        for s in &subjects {
            let tokens: Vec<&str> = s.split('.').collect();
            assert_eq!(tokens.len(), 4, "{s}");
            assert!(tokens.iter().all(|t| !t.is_empty() && !t.contains([' ', '*', '>'])), "{s}");
        }
        let distinct: std::collections::BTreeSet<_> = subjects.iter().collect();
        assert_eq!(distinct.len(), subjects.len());
        assert_eq!(subjects[0], "behalf.ev.ticket.ticket-01ab");
        let key = behalf_domain::CommandKey::of(&behalf_domain::Principal::Vendor, &"k.1".into());
        assert_eq!(command_key(&key), "k.vendor.k_2e1");
    }
}
