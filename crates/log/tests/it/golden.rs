//! Golden byte fixtures: every event type's stored bytes, and a whole commit record,
//! checked in under `tests/golden/`. They must decode forever (Invariant 4), and this
//! build must still write exactly those bytes; a change that breaks either needs a new
//! schema version and an upcaster, not an edited fixture.
//!
//! A new event type's fixture is written by running the tests with `BEHALF_BLESS=1`.

use std::path::PathBuf;

use behalf_domain::event::NoteAdded;
use behalf_domain::{Event, Principal};
use behalf_log::codec::{decode_event, decode_event_with, encode_event, StoredEvent, Upcaster};
use behalf_log::conformance::request;
use behalf_log::samples::{every_event_type, type_index, EVENT_TYPES};
use behalf_log::{record_for, Commit, ExpectedVersion, GENESIS};

fn golden(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden").join(name)
}

fn check_bytes(name: &str, bytes: &[u8]) -> Vec<u8> {
    let path = golden(name);
    if !path.exists() {
        assert!(
            std::env::var_os("BEHALF_BLESS").is_some(),
            "missing fixture {}: run with BEHALF_BLESS=1 once",
            path.display()
        );
        std::fs::write(&path, bytes).unwrap();
    }
    std::fs::read(&path).unwrap()
}

#[test]
fn every_event_type_has_a_sample() {
    let samples = every_event_type();
    assert_eq!(samples.len(), EVENT_TYPES);
    for (i, e) in samples.iter().enumerate() {
        assert_eq!(type_index(e), i, "one sample per type");
    }
}

#[test]
fn every_event_fixture_decodes_and_is_still_written_the_same() {
    for sample in every_event_type() {
        let name = format!("{}.v1.msgpack", sample.type_name());
        let stored = encode_event(&sample).unwrap();
        let fixture = check_bytes(&name, &stored.payload);
        let decoded =
            decode_event(&StoredEvent { event_type: sample.type_name().into(), schema: 1, payload: fixture.clone() })
                .unwrap_or_else(|e| panic!("{name} no longer decodes: {e}"));
        assert_eq!(decoded, sample, "{name} decodes to something else");
        assert_eq!(stored.payload, fixture, "{name}: this build writes different bytes");
    }
}

#[test]
fn stored_events_use_named_fields() {
    // Named fields are what let old bytes survive new fields and reordering.
    let stored = encode_event(&every_event_type()[13]).unwrap();
    let text = String::from_utf8_lossy(&stored.payload);
    for field in ["ticket_id", "customer_id", "csp_priority", "evidence", "directory_position"] {
        assert!(text.contains(field), "{field} is not named in the stored bytes");
    }
}

#[test]
fn commit_record_fixture_decodes() {
    let mut req = request("ticket-golden", ExpectedVersion::Exact(0), "golden-1", 2);
    req.events = every_event_type()[13..15].to_vec();
    let bytes = record_for(&req, 1, 1, &GENESIS).unwrap();
    let fixture = check_bytes("commit.v1.msgpack", &bytes);
    assert_eq!(bytes, fixture, "the commit record layout changed");
    let c = Commit::decode(&fixture).unwrap();
    assert_eq!((c.position, c.first_version, c.events.len()), (1, 1, 2));
    assert_eq!(c.prev_hash, GENESIS);
    let env: Vec<_> = c.envelopes().collect();
    // Written before command ids were per tenant: the tenant is read from the actor.
    assert_eq!(c.key(), behalf_log::conformance::vendor_key("golden-1"));
    assert_eq!(env[1].event_id, "vendor/golden-1:1");
    assert_eq!(env[0].evidence().unwrap().directory_position, 41);
}

#[test]
fn older_schemas_are_upcast_on_read() {
    // Pretend NoteAdded v1 called its text `body`, and v2 renamed it.
    fn rename_body(v: rmpv::Value) -> Result<rmpv::Value, String> {
        let rmpv::Value::Map(entries) = v else { return Err("not a map".into()) };
        Ok(rmpv::Value::Map(
            entries
                .into_iter()
                .map(|(k, v)| if k.as_str() == Some("body") { ("text".into(), v) } else { (k, v) })
                .collect(),
        ))
    }
    let upcasters = [Upcaster { event_type: "NoteAdded", from_schema: 1, upcast: rename_body }];
    let now = every_event_type()[14].clone();
    let Event::NoteAdded(NoteAdded { ticket_id, at, .. }) = &now else { panic!() };
    let old = rmpv::Value::Map(vec![
        ("type".into(), "NoteAdded".into()),
        ("ticket_id".into(), ticket_id.as_str().into()),
        ("author".into(), rmpv::Value::Map(vec![("kind".into(), "vendor".into())])),
        ("body".into(), "written by an older build".into()),
        ("at".into(), at.millis().into()),
    ]);
    let mut payload = Vec::new();
    rmpv::encode::write_value(&mut payload, &old).unwrap();
    let stored = StoredEvent { event_type: "NoteAdded".into(), schema: 1, payload };
    let e = decode_event_with(&stored, &upcasters).unwrap();
    assert!(
        matches!(e, Event::NoteAdded(NoteAdded { ref text, author: Principal::Vendor, .. }) if text == "written by an older build")
    );
    // Without the upcaster the old shape does not decode: the rename is real.
    assert!(decode_event_with(&stored, &[]).is_err());
    // A schema from the future is refused, not guessed at.
    let future = StoredEvent { schema: 9, ..encode_event(&now).unwrap() };
    assert!(decode_event(&future).is_err());
}
