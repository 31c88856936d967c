//! Local `nats-server` processes for tests, benchmarks and try-outs: one node or a
//! cluster, each on free loopback ports with its own store directory, JetStream synced
//! to disk on every write (`sync_interval: always`). A node can be killed (SIGKILL) and
//! started again on the same ports and store.
//!
//! The binary is `$BEHALF_NATS_SERVER`, else `tools/bin/nats-server` of the workspace
//! (what `./dev setup` installs), else `nats-server` on the `PATH`.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The nats-server binary to run.
pub fn binary() -> PathBuf {
    if let Some(p) = std::env::var_os("BEHALF_NATS_SERVER").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let tools = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tools/bin/nats-server");
    if tools.exists() {
        return tools;
    }
    PathBuf::from("nats-server")
}

fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// One node: its ports, its store, its process (while it runs).
pub struct Node {
    pub name: String,
    pub client_port: u16,
    pub cluster_port: u16,
    pub dir: PathBuf,
    /// The address it listens on: loopback, or its own in a network namespace.
    pub host: String,
    /// The network namespace it runs in (`ip netns exec`), if any.
    pub netns: Option<String>,
    /// The other nodes' cluster addresses (`host:port`).
    routes: Vec<String>,
    cluster: bool,
    /// More configuration, appended as given (TLS, authorization…).
    extra: String,
    child: Option<Child>,
}

impl Node {
    /// `nats://<host>:<client port>`.
    pub fn url(&self) -> String {
        format!("nats://{}:{}", self.host, self.client_port)
    }

    fn config(&self) -> String {
        let store = self.dir.join("store");
        let mut c = format!(
            "server_name: {name}\nlisten: {host}:{port}\n\
             jetstream {{\n  store_dir: \"{store}\"\n  sync_interval: always\n}}\n",
            name = self.name,
            host = self.host,
            port = self.client_port,
            store = store.display(),
        );
        c.push_str(&self.extra);
        if self.cluster {
            let routes: Vec<String> = self.routes.iter().map(|a| format!("nats-route://{a}")).collect();
            c.push_str(&format!(
                "cluster {{\n  name: behalf\n  listen: {}:{}\n  routes: [{}]\n}}\n",
                self.host,
                self.cluster_port,
                routes.join(", ")
            ));
        }
        c
    }

    /// The message block files of a stream on this node's store, in order (a test
    /// damages them while the node is down).
    pub fn stream_blocks(&self, stream: &str) -> Vec<PathBuf> {
        let msgs = self.dir.join("store/jetstream/$G/streams").join(stream).join("msgs");
        let mut blocks: Vec<(u64, PathBuf)> = std::fs::read_dir(msgs)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let p = e.path();
                let n = p.file_name()?.to_str()?.strip_suffix(".blk")?.parse().ok()?;
                Some((n, p))
            })
            .collect();
        blocks.sort();
        blocks.into_iter().map(|(_, p)| p).collect()
    }

    /// Starts the process (again) and waits until it takes connections.
    pub fn start(&mut self) -> std::io::Result<()> {
        if self.child.is_some() {
            return Ok(());
        }
        std::fs::create_dir_all(&self.dir)?;
        let conf = self.dir.join("nats.conf");
        std::fs::write(&conf, self.config())?;
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.dir.join("server.log"))?;
        // What this start writes to the log (it is appended to across restarts).
        let from = log.metadata()?.len() as usize;
        let mut command = match &self.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(binary());
                c
            }
            None => Command::new(binary()),
        };
        let child =
            command.arg("-c").arg(&conf).stdin(Stdio::null()).stdout(log.try_clone()?).stderr(log).spawn().map_err(
                |e| {
                    std::io::Error::new(
                        e.kind(),
                        format!("cannot start {} ({e}); run `./dev setup` to install it", binary().display()),
                    )
                },
            )?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        // Ready when *this* process says so: a port picked free may have been taken by
        // another test's server in the meantime, which would answer a connect while
        // this one exits with "address already in use".
        let ready = |dir: &std::path::Path| {
            std::fs::read(dir.join("server.log")).is_ok_and(|log| {
                String::from_utf8_lossy(log.get(from..).unwrap_or_default()).contains("Server is ready")
            })
        };
        while std::net::TcpStream::connect((self.host.as_str(), self.client_port)).is_err() || !ready(&self.dir) {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                self.child = None;
                let log = std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default();
                return Err(std::io::Error::other(format!("nats-server {} exited ({status}): {log}", self.name)));
            }
            if Instant::now() > deadline {
                return Err(std::io::Error::other(format!("nats-server {} did not start", self.name)));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// Sends a signal by name (`STOP`, `CONT`, …) to the running process; false if it
    /// is not running.
    pub fn signal(&self, name: &str) -> bool {
        let Some(child) = &self.child else { return false };
        Command::new("kill").arg(format!("-{name}")).arg(child.id().to_string()).status().is_ok_and(|s| s.success())
    }

    /// Whether the process runs (it may be paused).
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// SIGKILL: no goodbye, no flush beyond what the server already synced.
    pub fn kill(&mut self) {
        // A paused process takes SIGKILL too; resume it anyway so that nothing waits.
        self.signal("CONT");
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Where a node runs: its address, its network namespace, its ports.
#[derive(Clone, Debug)]
pub struct Place {
    pub host: String,
    pub netns: Option<String>,
    pub client_port: u16,
    pub cluster_port: u16,
}

/// A set of nodes (one, or a cluster) under one temporary directory.
pub struct Cluster {
    pub nodes: Vec<Node>,
    _dir: tempfile::TempDir,
}

impl Cluster {
    /// One node, JetStream on.
    pub fn single() -> std::io::Result<Cluster> {
        Cluster::start(1)
    }

    /// One node with more configuration (a `tls { … }` or `authorization { … }` block).
    pub fn single_with(extra: &str) -> std::io::Result<Cluster> {
        Cluster::start_with(1, extra)
    }

    /// `n` nodes; with more than one they form a cluster named `behalf`.
    pub fn start(n: usize) -> std::io::Result<Cluster> {
        Cluster::start_with(n, "")
    }

    /// `n` nodes, each with more configuration.
    /// Ports are picked free and released before the servers bind them, so another
    /// process may take one in between: then the whole set starts again on new ports
    /// (a few times).
    pub fn start_with(n: usize, extra: &str) -> std::io::Result<Cluster> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match Cluster::try_start(n, extra) {
                Err(e) if attempt < 5 && e.to_string().contains("address already in use") => {
                    std::thread::sleep(Duration::from_millis(50));
                }
                started => return started,
            }
        }
    }

    fn try_start(n: usize, extra: &str) -> std::io::Result<Cluster> {
        let ports: Vec<(u16, u16)> =
            (0..n).map(|_| Ok((free_port()?, free_port()?))).collect::<std::io::Result<_>>()?;
        let places = ports.into_iter().map(|(client, cluster)| Place {
            host: "127.0.0.1".into(),
            netns: None,
            client_port: client,
            cluster_port: cluster,
        });
        Cluster::start_placed(places.collect(), extra)
    }

    /// A cluster whose nodes run where `places` say (an address and a network
    /// namespace each: a fault suite cuts the links between them).
    pub fn start_placed(places: Vec<Place>, extra: &str) -> std::io::Result<Cluster> {
        let dir = tempfile::Builder::new().prefix("behalf-nats-").tempdir()?;
        let n = places.len();
        let route = |p: &Place| format!("{}:{}", p.host, p.cluster_port);
        let mut nodes: Vec<Node> = places
            .iter()
            .enumerate()
            .map(|(i, p)| Node {
                name: format!("n{}", i + 1),
                client_port: p.client_port,
                cluster_port: p.cluster_port,
                dir: dir.path().join(format!("n{}", i + 1)),
                host: p.host.clone(),
                netns: p.netns.clone(),
                routes: places.iter().enumerate().filter(|(j, _)| *j != i).map(|(_, q)| route(q)).collect(),
                cluster: n > 1,
                extra: extra.to_owned(),
                child: None,
            })
            .collect();
        for node in &mut nodes {
            node.start()?;
        }
        Ok(Cluster { nodes, _dir: dir })
    }

    /// Every node's URL, comma-separated (what `--nats` takes).
    pub fn urls(&self) -> String {
        self.nodes.iter().map(Node::url).collect::<Vec<_>>().join(",")
    }

    /// Which node leads `stream` now (from the stream's cluster info, asked of any node
    /// that answers); `None` while there is no leader or no node answers.
    pub async fn leader_of(&self, stream: &str) -> Option<usize> {
        for node in self.nodes.iter().filter(|n| n.is_running()) {
            let Ok(Ok(client)) = tokio::time::timeout(
                Duration::from_secs(2),
                async_nats::ConnectOptions::new().connection_timeout(Duration::from_secs(1)).connect(node.url()),
            )
            .await
            else {
                continue;
            };
            let js = async_nats::jetstream::ContextBuilder::new().timeout(Duration::from_secs(2)).build(client);
            let Ok(Ok(mut s)) = tokio::time::timeout(Duration::from_secs(3), js.get_stream(stream)).await else {
                continue;
            };
            let Ok(Ok(info)) = tokio::time::timeout(Duration::from_secs(3), s.info()).await else { continue };
            let leader = info.cluster.as_ref().and_then(|c| c.leader.clone());
            if let Some(name) = leader {
                return self.nodes.iter().position(|n| n.name == name);
            }
        }
        None
    }

    /// How many copies a stream should have here: 3 on a cluster, else 1.
    pub fn replicas(&self) -> usize {
        self.nodes.len().min(3)
    }
}
