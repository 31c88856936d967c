//! New ids: ticket and request ids that sort by creation time (a ULID-like 26
//! characters of Crockford base32: 48 bits of milliseconds, then 80 bits that start
//! at a random value each millisecond and count up within it — monotonic within the
//! process, as ULID's monotonic mode, so the log's stream and command indexes grow at
//! their end instead of all over — and unpredictable across processes), and token
//! secrets from the operating system's random source.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use behalf_domain::Timestamp;

const CROCKFORD: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// Makes sortable ids.
pub struct IdGen {
    seed: u64,
    counter: AtomicU64,
    /// The last id's milliseconds and low 80 bits.
    last: Mutex<(u128, u128)>,
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

impl Default for IdGen {
    fn default() -> Self {
        let mut seed = [0u8; 8];
        // Without OS randomness, ids are still unique within the process (the counter).
        let _ = getrandom::fill(&mut seed);
        IdGen { seed: u64::from_le_bytes(seed), counter: AtomicU64::new(0), last: Mutex::new((0, 0)) }
    }
}

impl IdGen {
    /// A new id for `now`.
    pub fn next(&self, now: Timestamp) -> String {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let ms = (now.millis().max(0) as u128) & ((1 << 48) - 1);
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        let (ms, low) = if ms > last.0 {
            // A new millisecond: a random start, with room below 2^80 to count up.
            let rand_hi = splitmix(self.seed ^ n) & 0x7FFF; // 15 bits
            let rand_lo = splitmix(self.seed.rotate_left(17) ^ n.wrapping_mul(0x2545_F491_4F6C_DD1D)); // 64 bits
            (ms, ((rand_hi as u128) << 64) | rand_lo as u128)
        } else {
            // The same millisecond (or the clock went back): the next value after the last.
            (last.0, (last.1 + 1) & ((1 << 80) - 1))
        };
        *last = (ms, low);
        drop(last);
        let value: u128 = (ms << 80) | low;
        (0..26).map(|i| CROCKFORD[((value >> (125 - i * 5)) & 31) as usize] as char).collect()
    }
}

/// 32 random bytes as lower-case hex, for token secrets.
pub fn secret() -> Result<String, String> {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).map_err(|e| format!("no random source: {e}"))?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

/// 8 random bytes as hex, for token ids.
pub fn short_id() -> Result<String, String> {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).map_err(|e| format!("no random source: {e}"))?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_sort_by_time_and_are_unique() {
        let g = IdGen::default();
        let a = g.next(Timestamp::from_millis(1_000));
        let b = g.next(Timestamp::from_millis(2_000));
        let c = g.next(Timestamp::from_millis(2_000));
        assert_eq!(a.len(), 26);
        assert!(a < b && b < c, "within a millisecond they count up");
        // A clock that steps back does not make an id sort before the last one.
        let d = g.next(Timestamp::from_millis(1_500));
        assert!(c < d);
        let ids: Vec<String> = (0..10_000).map(|i| g.next(Timestamp::from_millis(3_000 + i / 100))).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "strictly increasing within the process");
        // Another process starts each millisecond somewhere else.
        assert_ne!(IdGen::default().next(Timestamp::from_millis(9_000)), g.next(Timestamp::from_millis(9_000)));
    }
}
