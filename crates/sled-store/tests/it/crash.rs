//! Crash test: a child process appends under concurrent load and is killed with
//! SIGKILL at a random moment, many times over one store. After each kill the store
//! reopens with its hash chain intact, every acknowledged commit is present exactly
//! once, and every commit is whole (all of its events or none).
//!
//! The child is this same test binary, re-run with `BEHALF_CRASH_CHILD` set.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use behalf_log::conformance::request;
use behalf_log::{EventLog, ExpectedVersion};
use behalf_sled_store::{OpenOptions, SledLog};

const EVENTS_PER_COMMIT: usize = 3;
const WRITERS: usize = 32;

/// The child's work: append until killed, printing `ACK <command> <position>` after
/// each acknowledgement. Does nothing unless started by `crash_many_times`.
#[test]
fn crash_child_entry() {
    let (Ok(dir), Ok(run)) = (std::env::var("BEHALF_CRASH_CHILD"), std::env::var("BEHALF_CRASH_RUN")) else { return };
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async move {
        let (log, _) = SledLog::open(&dir, OpenOptions::default()).expect("child opens the store");
        let out = Arc::new(Mutex::new(std::io::stdout()));
        let mut tasks = Vec::new();
        for w in 0..WRITERS {
            let (log, out, run) = (log.clone(), Arc::clone(&out), run.clone());
            tasks.push(tokio::spawn(async move {
                for i in 0.. {
                    let id = format!("r{run}-w{w}-{i}");
                    let req = request(&format!("ticket-{w}"), ExpectedVersion::Any, &id, EVENTS_PER_COMMIT);
                    let a = log.append(req).await.expect("append").expect("accepted");
                    let mut o = out.lock().unwrap();
                    writeln!(o, "ACK {id} {}", a.position).unwrap();
                    o.flush().unwrap();
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    });
}

/// A small deterministic generator, so a failing run can be repeated.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 33) % below
    }
}

#[test]
fn crash_many_times() {
    let dir = tempfile::tempdir().unwrap();
    let runs: u64 = std::env::var("BEHALF_CRASH_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(12);
    let mut rng = Lcg(0x5eed);
    let mut acked: HashMap<String, u64> = HashMap::new();
    for run in 0..runs {
        // Kill after a random number of acknowledgements: a random moment, chosen by
        // progress rather than by sleeping.
        let kill_after = 1 + rng.next(1500);
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "crash::crash_child_entry", "--nocapture", "--test-threads=1"])
            .env("BEHALF_CRASH_CHILD", dir.path())
            .env("BEHALF_CRASH_RUN", run.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // A watchdog: a child that stops making progress is killed after a minute, so
        // the test fails instead of hanging.
        let finished = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let watchdog = {
            let (finished, pid) = (Arc::clone(&finished), child.id().to_string());
            std::thread::spawn(move || {
                let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
                while !finished.load(std::sync::atomic::Ordering::SeqCst) {
                    if std::time::Instant::now() > deadline {
                        let _ = Command::new("kill").args(["-9", &pid]).status();
                        return;
                    }
                    std::thread::park_timeout(std::time::Duration::from_millis(100));
                }
            })
        };
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let mut seen = 0;
        for line in stdout.lines() {
            let Ok(line) = line else { break };
            if let Some(rest) = line.strip_prefix("ACK ") {
                let (id, pos) = rest.split_once(' ').unwrap();
                acked.insert(id.to_owned(), pos.parse().unwrap());
                seen += 1;
                if seen == kill_after {
                    child.kill().unwrap(); // SIGKILL
                    break;
                }
            }
        }
        child.wait().unwrap();
        finished.store(true, std::sync::atomic::Ordering::SeqCst);
        watchdog.thread().unpark();
        let _ = watchdog.join();
        assert!(seen >= kill_after, "run {run}: the child stopped acknowledging after {seen}");
        check_store(dir.path(), &acked, run);
    }
    assert!(acked.len() as u64 >= runs, "every run acknowledged something");
}

fn check_store(dir: &std::path::Path, acked: &HashMap<String, u64>, run: u64) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        // Opening walks the whole hash chain; a broken one refuses to open.
        let (log, report) = SledLog::open(dir, OpenOptions::default()).unwrap_or_else(|e| panic!("run {run}: {e}"));
        assert_eq!(report.truncated, None);
        let head = log.head().await.unwrap();
        let mut by_command: HashMap<String, u64> = HashMap::new();
        let mut versions: BTreeMap<String, u64> = BTreeMap::new();
        let mut after = 0;
        loop {
            let page = log.read_all(after, 4096).await.unwrap();
            let Some(last) = page.last() else { break };
            after = last.position;
            for c in &page {
                assert_eq!(c.events.len(), EVENTS_PER_COMMIT, "run {run}: commit {} is not whole", c.position);
                let previous = by_command.insert(c.command_id.to_string(), c.position);
                assert!(previous.is_none(), "run {run}: command {} appears twice", c.command_id);
                let v = versions.entry(c.stream.0.clone()).or_default();
                assert_eq!(c.first_version, *v + 1, "run {run}: stream {} has a gap", c.stream);
                *v = c.last_version();
            }
        }
        assert_eq!(after, head);
        for (id, pos) in acked {
            assert_eq!(by_command.get(id), Some(pos), "run {run}: acknowledged command {id} lost or moved");
        }
    });
}
