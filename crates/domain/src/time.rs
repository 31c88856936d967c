//! Time as the domain sees it: a UTC instant in milliseconds, RFC 3339 text, and the
//! ISO-8601 durations of GDAP relationships. No clock is read here: `now` always
//! arrives in the [`crate::Context`].

use std::fmt;

use serde::{de, Deserialize, Deserializer, Serialize, Serializer};

/// Milliseconds since the Unix epoch, UTC.
///
/// Serialized as RFC 3339 text in human-readable formats (JSON) and as an integer in
/// binary ones (MessagePack), so stored events stay small and API bodies stay legible.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(pub i64);

pub const MS_PER_SECOND: i64 = 1_000;
pub const MS_PER_HOUR: i64 = 3_600 * MS_PER_SECOND;
pub const MS_PER_DAY: i64 = 24 * MS_PER_HOUR;

/// The first and last instants a timestamp may name: years 0000 to 9999, what RFC 3339
/// can write. Times arriving as integers (MessagePack) are held to the same range, so
/// date arithmetic on them cannot overflow.
pub const MIN_MILLIS: i64 = -62_167_219_200_000;
pub const MAX_MILLIS: i64 = 253_402_300_799_999;

impl Timestamp {
    pub const fn from_millis(ms: i64) -> Self {
        Timestamp(ms)
    }
    pub const fn millis(self) -> i64 {
        self.0
    }
    pub fn plus_millis(self, ms: i64) -> Self {
        Timestamp(self.0.saturating_add(ms))
    }

    /// Parses `YYYY-MM-DDTHH:MM:SS[.fff…](Z|±HH:MM)`.
    pub fn parse_rfc3339(s: &str) -> Option<Self> {
        let b = s.as_bytes();
        if b.len() < 20 {
            return None;
        }
        let num = |r: std::ops::Range<usize>| -> Option<i64> {
            let part = b.get(r)?;
            if part.iter().all(u8::is_ascii_digit) {
                std::str::from_utf8(part).ok()?.parse().ok()
            } else {
                None
            }
        };
        let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
        if b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
            return None;
        }
        let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
        if b[13] != b':' || b[16] != b':' {
            return None;
        }
        if !(1..=12).contains(&mo) || d < 1 || d > days_in_month(y, mo) || h > 23 || mi > 59 || sec > 60 {
            return None;
        }
        let mut i = 19;
        let mut frac_ms = 0i64;
        if b.get(i) == Some(&b'.') {
            i += 1;
            let start = i;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            if i == start {
                return None;
            }
            let digits = &s[start..i.min(start + 3)];
            frac_ms = digits.parse::<i64>().ok()? * 10i64.pow(3 - digits.len() as u32);
        }
        let offset_min = match b.get(i..)? {
            [b'Z' | b'z'] => 0,
            [sign @ (b'+' | b'-'), rest @ ..] if rest.len() == 5 && rest[2] == b':' => {
                let oh = num(i + 1..i + 3)?;
                let om = num(i + 4..i + 6)?;
                if oh > 23 || om > 59 {
                    return None;
                }
                let m = oh * 60 + om;
                if *sign == b'-' {
                    -m
                } else {
                    m
                }
            }
            _ => return None,
        };
        let days = days_from_civil(y, mo, d);
        let secs = days * 86_400 + h * 3_600 + mi * 60 + sec.min(59) - offset_min * 60;
        Some(Timestamp(secs * MS_PER_SECOND + frac_ms))
    }
}

impl fmt::Display for Timestamp {
    /// `YYYY-MM-DDTHH:MM:SS.mmmZ`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let days = self.0.div_euclid(MS_PER_DAY);
        let in_day = self.0.rem_euclid(MS_PER_DAY);
        let (y, m, d) = civil_from_days(days);
        let (h, rest) = (in_day / MS_PER_HOUR, in_day % MS_PER_HOUR);
        let (mi, rest) = (rest / 60_000, rest % 60_000);
        let (s, ms) = (rest / 1_000, rest % 1_000);
        write!(f, "{y:04}-{m:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{ms:03}Z")
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.collect_str(self)
        } else {
            s.serialize_i64(self.0)
        }
    }
}

/// What the deserializer below reads: an RFC 3339 time or milliseconds since the epoch.
impl schemars::JsonSchema for Timestamp {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Timestamp".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({"anyOf": [
            {"type": "string", "format": "date-time"},
            {"type": "integer", "minimum": MIN_MILLIS, "maximum": MAX_MILLIS, "description": "milliseconds since the epoch"}
        ]})
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl de::Visitor<'_> for V {
            type Value = Timestamp;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an RFC 3339 UTC time or milliseconds since the epoch")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Timestamp, E> {
                if (MIN_MILLIS..=MAX_MILLIS).contains(&v) {
                    Ok(Timestamp(v))
                } else {
                    Err(E::custom("time out of range (years 0000 to 9999)"))
                }
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Timestamp, E> {
                let v = i64::try_from(v).map_err(|_| E::custom("time out of range (years 0000 to 9999)"))?;
                self.visit_i64(v)
            }
            /// A whole number written with a fraction (`5.0`) is an integer to JSON.
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Timestamp, E> {
                if v.fract() == 0.0 && (MIN_MILLIS as f64..=MAX_MILLIS as f64).contains(&v) {
                    self.visit_i64(v as i64)
                } else {
                    Err(E::custom("not a whole number of milliseconds in years 0000 to 9999"))
                }
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Timestamp, E> {
                Timestamp::parse_rfc3339(v).ok_or_else(|| E::custom(format!("not an RFC 3339 time: {v:?}")))
            }
        }
        d.deserialize_any(V)
    }
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { yoe + era * 400 + 1 } else { yoe + era * 400 }, m, d)
}

/// An ISO-8601 duration of whole days, as GDAP relationships use them
/// (`P1D` … `P2Y`, `P180D`, `PT0S`). Years count 365 days, months 30, weeks 7;
/// a time part is accepted only when it is zero (`PT0S`).
pub fn parse_iso_duration_days(s: &str) -> Option<u32> {
    let up = s.trim().to_ascii_uppercase();
    let rest = up.strip_prefix('P')?;
    let (date, time) = match rest.split_once('T') {
        Some((d, t)) => (d, Some(t)),
        None => (rest, None),
    };
    if date.is_empty() && time.is_none_or(str::is_empty) {
        return None;
    }
    let mut days: u64 = 0;
    let mut n = String::new();
    for c in date.chars() {
        if c.is_ascii_digit() {
            n.push(c);
            continue;
        }
        let v: u64 = n.parse().ok()?;
        n.clear();
        days = days.checked_add(v.checked_mul(match c {
            'Y' => 365,
            'M' => 30,
            'W' => 7,
            'D' => 1,
            _ => return None,
        })?)?;
    }
    if !n.is_empty() {
        return None;
    }
    if let Some(t) = time {
        // Only a zero time part: PT0S, PT0H, PT0M.
        let mut saw = false;
        for c in t.chars() {
            if c.is_ascii_digit() {
                if c != '0' {
                    return None;
                }
                saw = true;
            } else if matches!(c, 'H' | 'M' | 'S') && saw {
                saw = false;
            } else {
                return None;
            }
        }
        if saw || t.is_empty() {
            return None;
        }
    }
    u32::try_from(days).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_round_trips() {
        for s in [
            "1970-01-01T00:00:00.000Z",
            "2026-11-29T21:04:05.123Z",
            "2000-02-29T23:59:59.999Z",
            "1969-12-31T23:59:59.000Z",
        ] {
            let t = Timestamp::parse_rfc3339(s).unwrap();
            assert_eq!(t.to_string(), s);
        }
        assert_eq!(
            Timestamp::parse_rfc3339("2026-01-01T01:00:00+01:00"),
            Timestamp::parse_rfc3339("2026-01-01T00:00:00Z")
        );
        assert_eq!(Timestamp::parse_rfc3339("1970-01-01T00:00:01Z"), Some(Timestamp(1000)));
    }

    #[test]
    fn rfc3339_refuses_nonsense() {
        for s in [
            "",
            "2026-13-01T00:00:00Z",
            "2026-02-30T00:00:00Z",
            "2026-01-01 00:00:00",
            "2026-01-01T00:00:00",
            "abcd-01-01T00:00:00Z",
            "2026-01-01T00:00:00.Z",
            "2026-01-01T24:00:00Z",
        ] {
            assert_eq!(Timestamp::parse_rfc3339(s), None, "{s}");
        }
    }

    #[test]
    fn durations_in_days() {
        assert_eq!(parse_iso_duration_days("P1D"), Some(1));
        assert_eq!(parse_iso_duration_days("P2Y"), Some(730));
        assert_eq!(parse_iso_duration_days("p180d"), Some(180));
        assert_eq!(parse_iso_duration_days("PT0S"), Some(0));
        assert_eq!(parse_iso_duration_days("P0D"), Some(0));
        assert_eq!(parse_iso_duration_days("P1W"), Some(7));
        assert_eq!(parse_iso_duration_days("PT1H"), None);
        assert_eq!(parse_iso_duration_days("P"), None);
        assert_eq!(parse_iso_duration_days("1D"), None);
        assert_eq!(parse_iso_duration_days("P99999999999999999999D"), None);
    }
}
