//! Property-based fuzzing of the domain's parsers and date arithmetic: any input is
//! answered (a value or a named refusal), never a panic, and valid input round-trips.
//! `PROPTEST_CASES=1000000 cargo test -p behalf-domain --test fuzz` is the long form.

use behalf_domain::directory::Relationship;
use behalf_domain::time::{parse_iso_duration_days, Timestamp, MAX_MILLIS, MIN_MILLIS};
use proptest::prelude::*;

proptest! {
    #[test]
    fn rfc3339_text_never_panics(s in "\\PC{0,40}") {
        if let Some(t) = Timestamp::parse_rfc3339(&s) {
            prop_assert!((MIN_MILLIS..=MAX_MILLIS).contains(&t.millis()), "{s:?} parsed out of range");
        }
    }

    #[test]
    fn rfc3339_like_text_never_panics(
        y in 0u32..10_000, mo in 0u32..14, d in 0u32..33, h in 0u32..26, mi in 0u32..62, sec in 0u32..62,
        frac in "(\\.[0-9]{0,12})?", zone in "(Z|z|[+-][0-9]{2}:[0-9]{2}|[+-]99:99|)",
    ) {
        let s = format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{sec:02}{frac}{zone}");
        let _ = Timestamp::parse_rfc3339(&s);
    }

    #[test]
    fn timestamps_round_trip_through_text(ms in MIN_MILLIS..=MAX_MILLIS) {
        let t = Timestamp::from_millis(ms);
        prop_assert_eq!(Timestamp::parse_rfc3339(&t.to_string()), Some(t));
        let json = serde_json::to_string(&t).unwrap();
        prop_assert_eq!(serde_json::from_str::<Timestamp>(&json).unwrap(), t);
        let packed = rmp_serde::to_vec(&t).unwrap();
        prop_assert_eq!(rmp_serde::from_slice::<Timestamp>(&packed).unwrap(), t);
    }

    #[test]
    fn integer_times_outside_the_years_are_refused(ms in any::<i64>()) {
        let packed = rmp_serde::to_vec(&ms).unwrap();
        let got = rmp_serde::from_slice::<Timestamp>(&packed);
        prop_assert_eq!(got.is_ok(), (MIN_MILLIS..=MAX_MILLIS).contains(&ms));
    }

    #[test]
    fn durations_never_panic(s in "\\PC{0,24}") {
        let _ = parse_iso_duration_days(&s);
    }

    #[test]
    fn day_durations_round_trip(days in 0u32..100_000) {
        prop_assert_eq!(parse_iso_duration_days(&format!("P{days}D")), Some(days));
    }

    /// R5's date arithmetic on any activation and any now (the relationship's times
    /// arrive range-checked, but the arithmetic must not trust that).
    #[test]
    fn relationship_end_never_panics(start in any::<i64>(), now in any::<i64>(), auto in prop::bool::ANY) {
        let r: Relationship = serde_json::from_value(serde_json::json!({
            "relationship_id": "rel-f", "partner_id": "11111111-0000-4000-8000-000000000001",
            "customer_id": "22222222-0000-4000-8000-000000000001", "status": "active",
            "roles": [], "activated_at": "2026-01-01T00:00:00Z", "duration": "P730D",
            "auto_extend": if auto { "P180D" } else { "PT0S" },
        })).unwrap();
        let r = Relationship { activated_at: Some(Timestamp::from_millis(start)), ..r };
        let _ = r.end_at(Timestamp::from_millis(now));
    }
}
