//! The nemesis's network. The suite re-runs itself inside a network namespace of its
//! own ([`Suite`]); there a bridge joins one namespace per node and per command service,
//! each with an address the suite assigns on a subnet private to the suite's namespace
//! ([`SUBNET`]). A link is cut with blackhole routes on both ends, and slowed or made
//! lossy with `tc netem` or, where the kernel lacks it, nftables ([`Net::lossy`]). Needs root (`ip netns`), which `./dev test` and CI have.

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

    /// How this kernel makes a link lossy: `tc netem` where it has `sch_netem` (delay and
    /// loss); else nftables, built into kernels that lack `sch_netem` (this machine's
    /// virtual machine's), which drops at random but cannot delay. Each tried on the
    /// bridge (netem) or in a namespace of the suite's (nftables) and taken off again.
    pub fn lossy_kind(&self) -> Option<Lossy> {
        let netem = Command::new("tc")
            .args(["qdisc", "replace", "dev", BRIDGE, "root", "netem", "delay", "1ms"])
            .output()
            .is_ok_and(|o| o.status.success());
        if netem {
            let _ = Command::new("tc").args(["qdisc", "del", "dev", BRIDGE, "root"]).output();
            return Some(Lossy::Netem);
        }
        let filters = nft(None, &drops("lo", 0)).is_ok();
        if filters {
            let _ = nft(None, &format!("delete table inet {TABLE}"));
        }
        filters.then_some(Lossy::Nft)
    }

    /// Everything `s` sends is lost at 20 % and, with `tc netem`, delayed 50 ms; `on:
    /// false` clears it.
    pub fn lossy(&self, s: &Space, how: Lossy, on: bool) {
        let done = match (how, on) {
            (Lossy::Netem, true) => {
                tc(&s.ns, &["replace", "dev", "eth0", "root", "netem", "delay", "50ms", "loss", "20%"])
            }
            (Lossy::Netem, false) => tc(&s.ns, &["del", "dev", "eth0", "root"]),
            (Lossy::Nft, true) => nft(Some(&s.ns), &drops("eth0", 20)),
            (Lossy::Nft, false) => nft(Some(&s.ns), &format!("delete table inet {TABLE}")),
        };
        if on {
            must(done);
        }
    }
}

impl Net {
    /// How many packets the nftables rule of [`Net::lossy`] dropped in `s` so far
    /// (`None` without that rule): the suite checks the fault really bit.
    pub fn dropped(&self, s: &Space) -> Option<u64> {
        let out =
            Command::new("ip").args(["netns", "exec", &s.ns, "nft", "list", "table", "inet", TABLE]).output().ok()?;
        let text = String::from_utf8_lossy(&out.stdout);
        let after = text.split("counter packets ").nth(1)?;
        after.split_whitespace().next()?.parse().ok()
    }
}

/// How [`Net::lossy`] makes a link lossy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lossy {
    /// `tc netem`: 50 ms of delay and 20 % loss.
    Netem,
    /// nftables: 20 % loss, no delay.
    Nft,
}

/// The nftables table a lossy link's rule lives in.
const TABLE: &str = "behalf_lossy";

/// A table dropping `percent` of what leaves by `dev`, at random.
fn drops(dev: &str, percent: u8) -> String {
    format!(
        "table inet {TABLE} {{\n chain out {{\n  type filter hook output priority 0; policy accept;\n  \
         oifname \"{dev}\" numgen random mod 100 < {percent} counter drop\n }}\n}}\n"
    )
}

/// Runs `tc qdisc ARGS` in namespace `ns`.
fn tc(ns: &str, args: &[&str]) -> Result<(), String> {
    let mut all = vec!["netns", "exec", ns, "tc", "qdisc"];
    all.extend(args);
    ip(&all)
}

/// Runs an nftables script in namespace `ns` (or in this one).
fn nft(ns: Option<&str>, script: &str) -> Result<(), String> {
    use std::io::Write as _;
    let mut cmd = match ns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns, "nft", "-f", "-"]);
            c
        }
        None => {
            let mut c = Command::new("nft");
            c.args(["-f", "-"]);
            c
        }
    };
    let mut child = cmd
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run `nft`: {e}"))?;
    child.stdin.take().expect("piped").write_all(script.as_bytes()).map_err(|e| format!("cannot feed `nft`: {e}"))?;
    let out = child.wait_with_output().map_err(|e| format!("`nft` did not finish: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("`nft -f -` failed: {}", String::from_utf8_lossy(&out.stderr).trim()))
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for ns in &self.spaces {
            let _ = ip(&["netns", "del", ns]);
        }
    }
}
