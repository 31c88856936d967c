//! Property-based fuzzing of the stored-bytes codec: any bytes, and any damage to a
//! real record, decode to a value or a named error — never a panic — and every event
//! type round-trips. `PROPTEST_CASES=1000000 cargo test -p behalf-log --test fuzz` is
//! the long form.

use behalf_log::conformance::request;
use behalf_log::samples::every_event_type;
use behalf_log::{record_for, Commit, ExpectedVersion, LogError, GENESIS};
use proptest::prelude::*;

fn named(e: &LogError) -> bool {
    !e.to_string().trim().is_empty()
}

fn a_record(n: usize) -> Vec<u8> {
    let mut req = request("ticket-fuzz", ExpectedVersion::Any, "fuzz-1", 1);
    let all = every_event_type();
    req.events = vec![all[n % all.len()].clone(), all[(n + 7) % all.len()].clone()];
    record_for(&req, 3, 1, &GENESIS).unwrap()
}

proptest! {
    #[test]
    fn any_bytes_decode_or_are_refused(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        if let Err(e) = Commit::decode(&bytes) {
            prop_assert!(named(&e));
        }
    }

    #[test]
    fn damaged_records_decode_or_are_refused(
        n in 0usize..64,
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
        truncate in prop::bool::ANY,
    ) {
        let mut bytes = a_record(n);
        for (at, x) in flips {
            let i = at.index(bytes.len());
            bytes[i] ^= x | 1;
        }
        if truncate {
            bytes.truncate(cut.index(bytes.len()));
        }
        match Commit::decode(&bytes) {
            Ok(c) => prop_assert!(c.event_count >= 1),
            Err(e) => prop_assert!(named(&e)),
        }
    }

    #[test]
    fn every_event_type_round_trips(n in 0usize..64, position in 1u64..u64::MAX / 2, version in 1u64..1_000_000) {
        let all = every_event_type();
        let mut req = request("ticket-rt", ExpectedVersion::Any, "rt-1", 1);
        req.events = vec![all[n % all.len()].clone()];
        let bytes = record_for(&req, position, version, &GENESIS).unwrap();
        let c = Commit::decode(&bytes).unwrap();
        prop_assert_eq!((c.position, c.first_version), (position, version));
        prop_assert_eq!(&c.events, &req.events);
        prop_assert_eq!(c.key(), req.key());
    }
}
