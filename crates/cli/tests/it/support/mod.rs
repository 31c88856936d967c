//! End-to-end support: the real `behalf` binary on a free port with a temporary data
//! directory, an HTTP client, and the standard world sent through the API.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use behalf_domain::{Principal, Timestamp};
use serde_json::{json, Value};

pub use behalf_test_support::world;

pub mod certs;
pub mod jwt;

/// A running `behalf serve`.
pub struct Server {
    pub child: Child,
    pub base: String,
    pub data_dir: PathBuf,
    pub admin: String,
}

impl Server {
    /// Starts the binary on `data_dir` and waits for its `listening on` line.
    pub fn start(data_dir: &Path) -> Server {
        Server::start_with(data_dir, &[])
    }

    /// As [`Server::start`], with more flags for `behalf serve`.
    pub fn start_with(data_dir: &Path, flags: &[&str]) -> Server {
        Server::start_with_env(data_dir, flags, &[])
    }

    /// As [`Server::start_with`], with more environment variables.
    pub fn start_with_env(data_dir: &Path, flags: &[&str], env: &[(&str, &str)]) -> Server {
        let mut args = vec!["serve", "--listen", "127.0.0.1:0", "--data-dir"];
        let dir = data_dir.to_str().expect("a UTF-8 temporary path");
        args.push(dir);
        args.extend_from_slice(flags);
        let (child, addr) = spawn_until_with(&args, env, "listening on ");
        // A server that joins a cluster whose shared token store already has tokens
        // makes no admin token of its own: use the first server's.
        let admin = std::fs::read_to_string(behalf_sled_store::DataDir::new(data_dir).admin_token())
            .map(|t| t.trim().to_owned())
            .unwrap_or_default();
        Server { child, base: format!("http://{addr}"), data_dir: data_dir.to_path_buf(), admin }
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Starts `behalf <args>` and waits (up to a minute) for a stdout line starting with
/// `ready`; answers the process and the rest of that line. Stdout is drained after.
pub fn spawn_until(args: &[&str], ready: &str) -> (Child, String) {
    spawn_until_with(args, &[], ready)
}

/// As [`spawn_until`], with more environment variables for the process.
pub fn spawn_until_with(args: &[&str], env: &[(&str, &str)], ready: &str) -> (Child, String) {
    spawn_until_in(None, args, env, ready)
}

/// As [`spawn_until_with`], inside a network namespace (`ip netns exec`, which runs the
/// binary in its own place: the child is `behalf` itself).
pub fn spawn_until_in(netns: Option<&str>, args: &[&str], env: &[(&str, &str)], ready: &str) -> (Child, String) {
    let mut command = match netns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns, env!("CARGO_BIN_EXE_behalf")]);
            c
        }
        None => Command::new(env!("CARGO_BIN_EXE_behalf")),
    };
    let mut child = command
        .args(args)
        .envs(env.iter().copied())
        // `BEHALF_TEST_LOG=info` (a `BEHALF_LOG` filter) shows the processes' logs.
        .env("BEHALF_LOG", std::env::var("BEHALF_TEST_LOG").unwrap_or_else(|_| "warn".into()))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("behalf starts");
    // Read on a thread, so a process that never gets ready fails the test after a
    // minute instead of hanging it; the thread then keeps draining stdout.
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let ready = ready.to_owned();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        for line in lines.by_ref() {
            let Ok(line) = line else { break };
            if let Some(rest) = line.strip_prefix(&ready) {
                let _ = tx.send(rest.trim().to_owned());
                break;
            }
        }
        for _ in lines {}
    });
    let rest = rx.recv_timeout(std::time::Duration::from_secs(60)).unwrap_or_else(|_| {
        let _ = child.kill();
        panic!("behalf {args:?} did not print {:?} within a minute", args.first())
    });
    (child, rest)
}

/// The engine a scenario runs `behalf serve` on: every scenario of [`on_both_engines!`]
/// holds on both (Invariant 6), as `behalf_log::conformance_tests!` does for the log.
#[derive(Clone, Copy, Debug)]
pub enum Engine {
    /// The embedded engine, a fresh data directory.
    Embedded,
    /// `--nats` on a fresh one-node nats-server (and a fresh data directory).
    Nats,
}

/// What a server on an engine needs kept alive while it runs.
pub struct Kept {
    _nats: Option<behalf_nats::server::Cluster>,
    _dir: tempfile::TempDir,
}

impl Kept {
    /// The nats-server's URLs (a server on [`Engine::Nats`]).
    pub fn nats_urls(&self) -> String {
        self._nats.as_ref().expect("a server on NATS").urls()
    }

    /// The nats-server's store directories (none on the embedded engine).
    pub fn nats_dirs(&self) -> Vec<PathBuf> {
        self._nats.iter().flat_map(|n| n.nodes.iter().map(|node| node.dir.clone())).collect()
    }

    /// The flags that put another `behalf` on the same engine (`--nats URL`, or none).
    pub fn engine_flags(&self) -> Vec<String> {
        match &self._nats {
            Some(n) => vec!["--nats".into(), n.urls()],
            None => vec![],
        }
    }
}

impl Engine {
    /// `behalf serve` on this engine.
    pub fn serve(self) -> (Server, Kept) {
        self.serve_with(&[])
    }

    /// `behalf serve` on this engine, with more flags.
    pub fn serve_with(self, flags: &[&str]) -> (Server, Kept) {
        let dir = tempfile::tempdir().unwrap();
        let (nats, server) = match self {
            Engine::Embedded => (None, Server::start_with(dir.path(), flags)),
            Engine::Nats => {
                let nats = behalf_nats::server::Cluster::single().expect("nats-server starts");
                let urls = nats.urls();
                let server = Server::start_with(dir.path(), &[&["--nats", urls.as_str()][..], flags].concat());
                (Some(nats), server)
            }
        };
        (server, Kept { _nats: nats, _dir: dir })
    }
}

/// One test per engine (`<scenario>::embedded`, `<scenario>::nats`) of a scenario, an
/// `async fn <scenario>(server: Server)` in the calling module.
macro_rules! on_both_engines {
    ($scenario:ident) => {
        mod $scenario {
            #[tokio::test(flavor = "multi_thread")]
            async fn embedded() {
                let (server, _kept) = $crate::support::Engine::Embedded.serve();
                super::$scenario(server).await;
            }

            #[tokio::test(flavor = "multi_thread")]
            async fn nats() {
                let (server, _kept) = $crate::support::Engine::Nats.serve();
                super::$scenario(server).await;
            }
        }
    };
}

/// As [`on_both_engines!`], with more flags for `behalf serve`.
macro_rules! on_both_engines_with {
    ($scenario:ident, $flags:expr) => {
        mod $scenario {
            #[tokio::test(flavor = "multi_thread")]
            async fn embedded() {
                let (server, _kept) = $crate::support::Engine::Embedded.serve_with($flags);
                super::$scenario(server).await;
            }

            #[tokio::test(flavor = "multi_thread")]
            async fn nats() {
                let (server, _kept) = $crate::support::Engine::Nats.serve_with($flags);
                super::$scenario(server).await;
            }
        }
    };
}

/// A role process (`behalf command|project|notify`), killed when dropped.
pub struct Role(pub Child);

impl Role {
    pub fn kill9(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Role {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A client of one server.
#[derive(Clone)]
pub struct Client {
    pub http: reqwest::Client,
    pub base: String,
}

impl Client {
    pub fn of(server: &Server) -> Client {
        Client::at(&server.base)
    }

    /// A client of whatever listens at `base` (a role with `--listen`).
    pub fn at(base: &str) -> Client {
        // A bounded wait: a request that hangs fails its test instead of the whole run.
        let http =
            reqwest::Client::builder().timeout(std::time::Duration::from_secs(60)).build().expect("an HTTP client");
        Client { http, base: base.to_owned() }
    }

    pub async fn post(&self, token: &str, body: &Value) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{}/v1/commands", self.base))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .expect("request");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn get(&self, token: &str, path: &str) -> (u16, Value) {
        let r = self.http.get(format!("{}{path}", self.base)).bearer_auth(token).send().await.expect("request");
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    pub async fn token(&self, admin: &str, principal: &Principal) -> String {
        let spec = match principal {
            Principal::PartnerAgent { partner_id, user_id } => {
                json!({"kind":"partner_agent","partner_id":partner_id,"user_id":user_id})
            }
            Principal::PartnerSync { partner_id } => json!({"kind":"partner_sync","partner_id":partner_id}),
            Principal::Customer { customer_id, user_id } => {
                json!({"kind":"customer","customer_id":customer_id,"user_id":user_id})
            }
            Principal::Vendor => json!({"kind":"vendor"}),
            Principal::Auditor => json!({"kind":"auditor"}),
            Principal::Admin => json!({"kind":"admin"}),
        };
        let r = self
            .http
            .post(format!("{}/v1/tokens", self.base))
            .bearer_auth(admin)
            .json(&spec)
            .send()
            .await
            .expect("token request");
        assert_eq!(r.status().as_u16(), 201);
        let v: Value = r.json().await.unwrap();
        v["token"].as_str().unwrap().to_owned()
    }

    pub async fn metric(&self, name: &str) -> u64 {
        let text = self.http.get(format!("{}/metrics", self.base)).send().await.unwrap().text().await.unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no metric {name}"))
    }
}

/// Now, as the server's clock sees it.
pub fn now() -> Timestamp {
    let ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    Timestamp::from_millis(ms)
}

/// The standard world's commands with times relative to now.
pub fn standard_world() -> Vec<(Principal, Value)> {
    let day = 86_400_000;
    let (a, p, i) = (
        now().plus_millis(-30 * day).to_string(),
        now().plus_millis(365 * day).to_string(),
        now().plus_millis(-day).to_string(),
    );
    world::standard_world(&[("{{ACTIVATED}}", &a), ("{{PLAN_VALID_UNTIL}}", &p), ("{{ISSUE_START}}", &i)])
}

/// Sends the standard world through the API; panics on any refusal.
pub async fn send_world(c: &Client, admin: &str) {
    let mut tokens = Tokens::new(c.clone(), admin);
    for (who, cmd) in standard_world() {
        tokens.must(&who, &cmd).await;
    }
}

/// Tokens of a server, one per principal, issued with the admin token on first use.
pub struct Tokens {
    pub c: Client,
    admin: String,
    known: std::collections::HashMap<String, String>,
}

impl Tokens {
    pub fn new(c: Client, admin: &str) -> Tokens {
        Tokens { c, admin: admin.to_owned(), known: Default::default() }
    }

    pub async fn of(&mut self, who: &Principal) -> String {
        let key = serde_json::to_string(who).unwrap();
        if !self.known.contains_key(&key) {
            let t = self.c.token(&self.admin, who).await;
            self.known.insert(key.clone(), t);
        }
        self.known[&key].clone()
    }

    /// Sends `cmd` as `who`; anything but an accepted answer fails the test.
    pub async fn must(&mut self, who: &Principal, cmd: &Value) -> Value {
        let token = self.of(who).await;
        let (status, answer) = self.c.post(&token, cmd).await;
        assert_eq!(answer["outcome"], "accepted", "{cmd} answered {status} {answer}");
        answer
    }
}

/// Panics once `deadline` has passed: for loops that wait on progress.
pub fn before(deadline: std::time::Instant, what: &str) {
    assert!(std::time::Instant::now() < deadline, "gave up waiting: {what}");
}
