//! Benchmark of key layouts in raw sled (not a timed test; no Behalf code): items/s
//! for batches of 64 items of a 1,100-byte record, one `apply_batch` and one `flush`
//! per batch, with the record alone or with index entries beside it — to see what a
//! layout costs before building it. Two rounds, every layout in each, the same disk.
//!
//! `cargo bench -p behalf-sled-store --bench layout` (`BEHALF_BENCH_SECS` per layout,
//! default 5).

use std::time::Instant;

/// Items/s: `item(batches, n)` adds item `n`; batch 0 goes to the default tree, 1 and
/// 2 to the trees `a` and `b`.
fn run(name: &str, secs: f64, mut item: impl FnMut(u64, &mut [sled::Batch; 3])) {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = sled::open(dir.path()).expect("sled opens");
    let trees = [db.open_tree("a").expect("tree"), db.open_tree("b").expect("tree")];
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed().as_secs_f64() < secs {
        let mut batches: [sled::Batch; 3] = Default::default();
        for _ in 0..64 {
            n += 1;
            item(n, &mut batches);
        }
        let [main, a, b] = batches;
        db.apply_batch(main).expect("apply");
        trees[0].apply_batch(a).expect("apply");
        trees[1].apply_batch(b).expect("apply");
        db.flush().expect("flush");
    }
    println!("{name}: {:.0}/s", n as f64 / start.elapsed().as_secs_f64());
}

fn record(n: u64) -> Vec<u8> {
    [b"L".as_slice(), &n.to_be_bytes()].concat()
}

/// Spread over the key space, as GUIDs and random ids are.
fn spread(n: u64) -> u64 {
    n.wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

fn stream_key(n: u64) -> Vec<u8> {
    format!("Sticket-{:026}\0\0\0\0\0\0\0\0\x01", spread(n)).into_bytes()
}

fn command_key(n: u64) -> Vec<u8> {
    format!("Kpartner:c0a1b2c3-0000-4000-8000-000000000001/{:032x}", spread(n)).into_bytes()
}

fn main() {
    let secs: f64 = std::env::var("BEHALF_BENCH_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(5.0);
    let v = vec![0x5au8; 1100];
    let v = v.as_slice();
    for round in 1..=2 {
        println!("round {round}");
        run("1 key (the record)", secs, |n, b| b[0].insert(record(n), v));
        run("3 keys, one tree, index keys spread", secs, |n, b| {
            b[0].insert(record(n), v);
            b[0].insert(stream_key(n), &[0u8; 16][..]);
            b[0].insert(command_key(n), &[0u8; 40][..]);
        });
        run("2 keys, one tree (record + command index)", secs, |n, b| {
            b[0].insert(record(n), v);
            b[0].insert(command_key(n), &[0u8; 40][..]);
        });
        run("record in the default tree, stream and command index in trees of their own", secs, |n, b| {
            b[0].insert(record(n), v);
            b[1].insert(stream_key(n), &[0u8; 16][..]);
            b[2].insert(command_key(n), &[0u8; 40][..]);
        });
        run("3 keys, short (16-byte) spread index keys", secs, |n, b| {
            b[0].insert(record(n), v);
            b[0].insert([b"S".as_slice(), &spread(n).to_be_bytes(), &1u64.to_be_bytes()].concat(), &[0u8; 16][..]);
            b[0].insert([b"K".as_slice(), &spread(n + 7).to_be_bytes(), &n.to_be_bytes()].concat(), &[0u8; 40][..]);
        });
        run("3 keys, sequential index keys", secs, |n, b| {
            b[0].insert(record(n), v);
            b[0].insert([b"S".as_slice(), &n.to_be_bytes()].concat(), &[0u8; 16][..]);
            b[0].insert([b"K".as_slice(), &n.to_be_bytes()].concat(), &[0u8; 40][..]);
        });
        run("1 key + 1 key per batch of 64 (an index kept per group)", secs, |n, b| {
            b[0].insert(record(n), v);
            if n % 64 == 0 {
                b[0].insert([b"G".as_slice(), &n.to_be_bytes()].concat(), vec![0u8; 64 * 56]);
            }
        });
    }
}
