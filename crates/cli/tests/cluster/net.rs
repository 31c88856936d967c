//! The nemesis's network. The suite re-runs itself inside a network namespace of its
//! own ([`Suite`]); there a bridge joins one namespace per node and per command service,
//! each with an address the suite assigns on a subnet private to the suite's namespace
//! ([`SUBNET`]). A link is cut with blackhole routes on both ends, and slowed or made
//! lossy with `tc netem`. Needs root (`ip netns`), which `./dev test` and CI have.

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
}

impl Net {
    /// The bridge, in the namespace this process runs in (the suite's).
    pub fn new() -> Net {
        must(ip(&["link", "add", BRIDGE, "type", "bridge"]));
        must(ip(&["addr", "add", &format!("{SUBNET}.254/24"), "dev", BRIDGE]));
        must(ip(&["link", "set", BRIDGE, "up"]));
        must(ip(&["link", "set", "lo", "up"]));
        Net { prefix: format!("behalf-{}", std::process::id()), spaces: Vec::new() }
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

    /// Whether this kernel has `tc netem` (some virtual machines' kernels lack
    /// `sch_netem`): tried on the bridge and taken off again.
    pub fn has_netem(&self) -> bool {
        let tried = ip(&["link", "show", BRIDGE]).is_ok()
            && Command::new("tc")
                .args(["qdisc", "replace", "dev", BRIDGE, "root", "netem", "delay", "1ms"])
                .output()
                .is_ok_and(|o| o.status.success());
        if tried {
            let _ = Command::new("tc").args(["qdisc", "del", "dev", BRIDGE, "root"]).output();
        }
        tried
    }

    /// Everything `s` sends is delayed and partly lost (`tc netem`, e.g. `delay 50ms
    /// loss 20%`); `None` clears it.
    pub fn netem(&self, s: &Space, spec: Option<&str>) {
        let mut args = vec!["netns", "exec", &s.ns, "tc", "qdisc"];
        match spec {
            Some(spec) => {
                args.extend(["replace", "dev", "eth0", "root", "netem"]);
                args.extend(spec.split_whitespace());
            }
            None => args.extend(["del", "dev", "eth0", "root"]),
        }
        let out = Command::new("ip").args(&args).output().expect("ip runs");
        assert!(
            out.status.success() || spec.is_none(),
            "`ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for ns in &self.spaces {
            let _ = ip(&["netns", "del", ns]);
        }
    }
}
