use std::time::Instant;
fn run(name: &str, batch: usize, secs: f64, mut f: impl FnMut(&sled::Db, &[sled::Tree], u64, &mut Vec<sled::Batch>)) {
    let dir = tempfile::tempdir().unwrap();
    let db = sled::open(dir.path()).unwrap();
    let trees = vec![db.open_tree("a").unwrap(), db.open_tree("b").unwrap()];
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed().as_secs_f64() < secs {
        let mut bs = vec![sled::Batch::default(), sled::Batch::default(), sled::Batch::default()];
        for _ in 0..batch {
            n += 1;
            f(&db, &trees, n, &mut bs);
        }
        let mut it = bs.into_iter();
        db.apply_batch(it.next().unwrap()).unwrap();
        trees[0].apply_batch(it.next().unwrap()).unwrap();
        trees[1].apply_batch(it.next().unwrap()).unwrap();
        db.flush().unwrap();
    }
    println!("{name}: {:.0}/s", n as f64 / start.elapsed().as_secs_f64());
}
fn main() {
    let v = vec![0x5au8; 1100];
    let secs = 5.0;
    let rec = |n: u64| { let mut k = vec![b'L']; k.extend_from_slice(&n.to_be_bytes()); k };
    let spread = |n: u64| n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let skey = |n: u64| format!("Sticket-{:026}\0\0\0\0\0\0\0\0\x01", spread(n));
    let kkey = |n: u64| format!("Kpartner:c0a1b2c3-0000-4000-8000-000000000001/{:032x}", spread(n));
    for round in 0..2 {
        println!("round {round}");
        run("1 key", 64, secs, |_, _, n, b| b[0].insert(rec(n), v.as_slice()));
        run("3 keys one tree", 64, secs, |_, _, n, b| { b[0].insert(rec(n), v.as_slice()); b[0].insert(skey(n).as_bytes(), &[0u8;16][..]); b[0].insert(kkey(n).as_bytes(), &[0u8;40][..]); });
        run("2 keys one tree (rec+K)", 64, secs, |_, _, n, b| { b[0].insert(rec(n), v.as_slice()); b[0].insert(kkey(n).as_bytes(), &[0u8;40][..]); });
        run("rec in main, S in a, K in b", 64, secs, |_, _, n, b| { b[0].insert(rec(n), v.as_slice()); b[1].insert(skey(n).as_bytes(), &[0u8;16][..]); b[2].insert(kkey(n).as_bytes(), &[0u8;40][..]); });
        run("3 keys, short hashed keys", 64, secs, |_, _, n, b| { b[0].insert(rec(n), v.as_slice()); let mut s=vec![b'S']; s.extend_from_slice(&spread(n).to_be_bytes()); s.extend_from_slice(&1u64.to_be_bytes()); b[0].insert(s, &[0u8;16][..]); let mut k=vec![b'K']; k.extend_from_slice(&spread(n+7).to_be_bytes()); k.extend_from_slice(&n.to_be_bytes()); b[0].insert(k, &[0u8;40][..]); });
        run("3 keys, S+K sequential-ish keys", 64, secs, |_, _, n, b| { b[0].insert(rec(n), v.as_slice()); let mut s=vec![b'S']; s.extend_from_slice(&n.to_be_bytes()); b[0].insert(s, &[0u8;16][..]); let mut k=vec![b'K']; k.extend_from_slice(&n.to_be_bytes()); b[0].insert(k, &[0u8;40][..]); });
        run("1 key + 1 per-group key", 64, secs, |_, _, n, b| { b[0].insert(rec(n), v.as_slice()); if n % 64 == 0 { let mut g=vec![b'G']; g.extend_from_slice(&n.to_be_bytes()); b[0].insert(g, vec![0u8; 64*56]); } });
    }
}
