//! New ids: ticket and request ids that sort by creation time (a ULID-like 26
//! characters of Crockford base32: 48 bits of milliseconds, then 80 bits that are
//! unique within the process and unpredictable across processes), and token secrets
//! from the operating system's random source.

use std::sync::atomic::{AtomicU64, Ordering};

use behalf_domain::Timestamp;

const CROCKFORD: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// Makes sortable ids.
pub struct IdGen {
    seed: u64,
    counter: AtomicU64,
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
        IdGen { seed: u64::from_le_bytes(seed), counter: AtomicU64::new(0) }
    }
}

impl IdGen {
    /// A new id for `now`.
    pub fn next(&self, now: Timestamp) -> String {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let rand_hi = splitmix(self.seed ^ n) & 0xFFFF; // 16 bits
        let rand_lo = splitmix(self.seed.rotate_left(17) ^ n.wrapping_mul(0x2545_F491_4F6C_DD1D)); // 64 bits
        let ms = (now.millis().max(0) as u128) & ((1 << 48) - 1);
        let value: u128 = (ms << 80) | ((rand_hi as u128) << 64) | rand_lo as u128;
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
        assert!(a < b && b != c);
    }
}
