//! The nemesis's network. The suite re-runs itself inside a network namespace of its
//! own ([`Suite`]); there a bridge joins one namespace per node and per command service,
//! each with an address the suite assigns on a subnet private to the suite's namespace
//! ([`SUBNET`]). A link is cut with blackhole routes on both ends, and slowed or made
//! lossy with `tc netem` or, where the kernel lacks it, through a TUN device and a program
//! that delays and drops (`delay.py`, [`Net::lossy`]). Needs root (`ip netns`), which
//! `./dev test` and CI have.

use std::process::Command;

/// The subnet of the suite's bridge: it exists only inside the suite's namespace.
pub const SUBNET: &str = "10.77.0";
const BRIDGE: &str = "bh0";

/// Runs `ip` with `args`; the error says what failed and why.
fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip").args(args).output().map_err(|e| format!("cannot run `ip`: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("`ip {}` failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()))
    }
}

fn must(r: Result<(), String>) {
    if let Err(e) = r {
        panic!("{e}");
    }
}

/// The suite's own namespace, which the test process is run again inside; deleted when
/// dropped.
pub struct Suite {
    pub name: String,
}

impl Suite {
    /// Makes the namespace, or says why it cannot (not root, no `ip`).
    pub fn create() -> Result<Suite, String> {
        let name = format!("behalf-nemesis-{}", std::process::id());
        ip(&["netns", "add", &name])?;
        let suite = Suite { name };
        ip(&["-n", &suite.name, "link", "set", "lo", "up"])?;
        Ok(suite)
    }
}

impl Drop for Suite {
    fn drop(&mut self) {
        let _ = ip(&["netns", "del", &self.name]);
    }
}

/// One namespace on the bridge: its name and address.
#[derive(Clone, Debug)]
pub struct Space {
    pub ns: String,
    pub addr: String,
}

/// The bridge and the namespaces on it (made inside the suite's namespace); every
/// namespace is deleted when dropped.
pub struct Net {
    prefix: String,
    spaces: Vec<String>,
    delayers: std::sync::Mutex<Vec<Delayer>>,
}

impl Net {
    /// The bridge, in the namespace this process runs in (the suite's).
    pub fn new() -> Net {
        must(ip(&["link", "add", BRIDGE, "type", "bridge"]));
        must(ip(&["addr", "add", &format!("{SUBNET}.254/24"), "dev", BRIDGE]));
        must(ip(&["link", "set", BRIDGE, "up"]));
        must(ip(&["link", "set", "lo", "up"]));
        Net { prefix: format!("behalf-{}", std::process::id()), spaces: Vec::new(), delayers: Default::default() }
    }

    /// A namespace with address `SUBNET.host` on the bridge.
    pub fn space(&mut self, name: &str, host: u8) -> Space {
        let ns = format!("{}-{name}", self.prefix);
        let addr = format!("{SUBNET}.{host}");
        let veth = format!("vh{host}");
        must(ip(&["netns", "add", &ns]));
        self.spaces.push(ns.clone());
        must(ip(&["link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &ns]));
        must(ip(&["link", "set", &veth, "master", BRIDGE, "up"]));
        must(ip(&["-n", &ns, "addr", "add", &format!("{addr}/24"), "dev", "eth0"]));
        must(ip(&["-n", &ns, "link", "set", "eth0", "up"]));
        must(ip(&["-n", &ns, "link", "set", "lo", "up"]));
        Space { ns, addr }
    }

    /// Cuts the link between `a` and `b`, both ways.
    pub fn cut(&self, a: &Space, b: &Space) {
        must(ip(&["-n", &a.ns, "route", "add", "blackhole", &format!("{}/32", b.addr)]));
        must(ip(&["-n", &b.ns, "route", "add", "blackhole", &format!("{}/32", a.addr)]));
    }

    /// Mends what [`Net::cut`] cut.
    pub fn heal(&self, a: &Space, b: &Space) {
        let _ = ip(&["-n", &a.ns, "route", "del", "blackhole", &format!("{}/32", b.addr)]);
        let _ = ip(&["-n", &b.ns, "route", "del", "blackhole", &format!("{}/32", a.addr)]);
    }

    /// How this kernel makes a link lossy: `tc netem` where it has `sch_netem`; else a
    /// TUN device and a small program that holds and drops packets (`delay.py`), where
    /// the kernel has TUN and `python3` runs. netem is tried on the bridge and taken off
    /// again.
    pub fn lossy_kind(&self) -> Option<Lossy> {
        let netem = Command::new("tc")
            .args(["qdisc", "replace", "dev", BRIDGE, "root", "netem", "delay", "1ms"])
            .output()
            .is_ok_and(|o| o.status.success());
        if netem {
            let _ = Command::new("tc").args(["qdisc", "del", "dev", BRIDGE, "root"]).output();
            return Some(Lossy::Netem);
        }
        let python = Command::new("python3").arg("--version").output().is_ok_and(|o| o.status.success());
        (python && std::path::Path::new("/dev/net/tun").exists()).then_some(Lossy::Tun)
    }

    /// Everything `s` sends on the bridge is delayed 50 ms and 20 % of it lost, until
    /// [`Net::mend`]. With a TUN device: what `s` sends to the subnet is routed into
    /// `dly0`, where [`DELAYER`] holds it and writes it back; the kernel forwards it out
    /// of `eth0` (routing from `dly0` uses the main table).
    pub fn lossy(&self, s: &Space, how: Lossy, seed: u64) {
        if how == Lossy::Netem {
            return must(tc(&s.ns, &["replace", "dev", "eth0", "root", "netem", "delay", "50ms", "loss", "20%"]));
        }
        must(ip(&["-n", &s.ns, "tuntap", "add", "dev", "dly0", "mode", "tun"]));
        must(ip(&["-n", &s.ns, "link", "set", "dly0", "up"]));
        must(sysctl(
            &s.ns,
            &[
                "net.ipv4.ip_forward=1",
                "net.ipv4.conf.all.rp_filter=0",
                "net.ipv4.conf.dly0.rp_filter=0",
                // What comes back out of `dly0` has this namespace's own address as source.
                "net.ipv4.conf.dly0.accept_local=1",
            ],
        ));
        let mut child = Command::new("ip")
            .args(["netns", "exec", &s.ns, "python3", DELAYER, "dly0", "50", "20", &seed.to_string()])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("python3 runs");
        let mut out = std::io::BufReader::new(child.stdout.take().expect("piped"));
        let mut line = String::new();
        std::io::BufRead::read_line(&mut out, &mut line).expect("the delayer speaks");
        assert_eq!(line.trim(), "ready", "the delayer did not attach to dly0");
        must(ip(&["-n", &s.ns, "route", "add", &format!("{SUBNET}.0/24"), "dev", "dly0", "table", "100"]));
        must(ip(&["-n", &s.ns, "rule", "add", "iif", "dly0", "lookup", "main", "pref", "100"]));
        must(ip(&["-n", &s.ns, "rule", "add", "to", &format!("{SUBNET}.0/24"), "lookup", "100", "pref", "200"]));
        self.delayers.lock().unwrap().push((s.ns.clone(), child, out));
    }

    /// Takes off what [`Net::lossy`] put on `s`; with a TUN device, how many packets the
    /// delayer held and dropped (the suite checks the fault really bit).
    pub fn mend(&self, s: &Space, how: Lossy) -> Option<(u64, u64)> {
        if how == Lossy::Netem {
            let _ = tc(&s.ns, &["del", "dev", "eth0", "root"]);
            return None;
        }
        let _ = ip(&["-n", &s.ns, "rule", "del", "pref", "200"]);
        let _ = ip(&["-n", &s.ns, "rule", "del", "pref", "100"]);
        let found = {
            let mut delayers = self.delayers.lock().unwrap();
            let at = delayers.iter().position(|(ns, ..)| *ns == s.ns)?;
            delayers.remove(at)
        };
        let (_, mut child, mut out) = found;
        let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
        let mut report = String::new();
        let _ = std::io::Read::read_to_string(&mut out, &mut report);
        let _ = child.wait();
        let _ = ip(&["-n", &s.ns, "link", "del", "dly0"]);
        let mut words = report.split_whitespace();
        match (words.next(), words.next(), words.next(), words.next()) {
            (Some("held"), Some(held), Some("dropped"), Some(dropped)) => {
                Some((held.parse().unwrap_or(0), dropped.parse().unwrap_or(0)))
            }
            _ => panic!("the delayer of {} did not report: {report:?}", s.ns),
        }
    }
}

/// The program that holds and drops packets where `tc netem` is missing.
const DELAYER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/cluster/delay.py");

/// A delayer of [`Net::lossy`]: its namespace, its process and its output.
type Delayer = (String, std::process::Child, std::io::BufReader<std::process::ChildStdout>);

/// How [`Net::lossy`] makes a link lossy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lossy {
    /// `tc netem` on the namespace's `eth0`.
    Netem,
    /// A TUN device the namespace's sends are routed through, and `delay.py`.
    Tun,
}

/// Sets kernel parameters in namespace `ns`.
fn sysctl(ns: &str, settings: &[&str]) -> Result<(), String> {
    let mut all = vec!["netns", "exec", ns, "sysctl", "-q", "-w"];
    all.extend(settings);
    ip(&all)
}

/// Runs `tc qdisc ARGS` in namespace `ns`.
fn tc(ns: &str, args: &[&str]) -> Result<(), String> {
    let mut all = vec!["netns", "exec", ns, "tc", "qdisc"];
    all.extend(args);
    ip(&all)
}

impl Drop for Net {
    fn drop(&mut self) {
        for (_, child, _) in self.delayers.get_mut().map(std::mem::take).unwrap_or_default().iter_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
        for ns in &self.spaces {
            let _ = ip(&["netns", "del", ns]);
        }
    }
}
