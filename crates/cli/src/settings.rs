//! Typed settings, layered: defaults → TOML file → `BEHALF_*` environment → flags,
//! validated before anything starts. The environment is read here and nowhere else.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use serde::Deserialize;

/// Where a process keeps its data when told nothing else (every command's default).
pub const DEFAULT_DATA_DIR: &str = "./behalf-data";

/// How log lines look.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Human,
    Json,
}

/// The settings of `behalf serve`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub log_format: LogFormat,
    pub max_body_bytes: usize,
    pub max_in_flight: usize,
    /// Start from the last good commit of a broken log (a deliberate recovery; a flag only).
    pub stop_at_last_good: bool,
    /// The event log on NATS JetStream at these URLs (comma-separated) instead of the
    /// embedded engine; tokens are shared in its `BEHALF_TOKENS` bucket, views and
    /// queues stay in the data directory.
    pub nats: Option<String>,
    /// Copies of the JetStream stream when it is created (3 on a cluster).
    pub nats_replicas: usize,
    /// JetStream's de-duplication window, set when the stream is created (R26 holds
    /// beyond it; a shorter one keeps less in the server's memory).
    pub nats_duplicate_window: std::time::Duration,
}

/// A duration as `500ms`, `30s`, `10m`, `2h`, or whole seconds (`600`).
pub fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    use std::time::Duration;
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (n, unit) = t.split_at(split);
    let n: u64 = n.parse().map_err(|_| format!("{text:?} is not a duration (e.g. 500ms, 30s, 10m, 2h)"))?;
    Ok(match unit {
        "ms" => Duration::from_millis(n),
        "" | "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n * 60),
        "h" => Duration::from_secs(n * 3600),
        _ => return Err(format!("{text:?} is not a duration (e.g. 500ms, 30s, 10m, 2h)")),
    })
}

/// One layer: what a file, the environment or the flags say (each may say nothing).
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Layer {
    pub data_dir: Option<PathBuf>,
    pub listen: Option<String>,
    pub log_format: Option<String>,
    pub max_body_bytes: Option<usize>,
    pub max_in_flight: Option<usize>,
    pub nats: Option<String>,
    pub nats_replicas: Option<usize>,
    pub nats_duplicate_window: Option<String>,
}

impl Layer {
    fn over(self, base: Layer) -> Layer {
        Layer {
            data_dir: self.data_dir.or(base.data_dir),
            listen: self.listen.or(base.listen),
            log_format: self.log_format.or(base.log_format),
            max_body_bytes: self.max_body_bytes.or(base.max_body_bytes),
            max_in_flight: self.max_in_flight.or(base.max_in_flight),
            nats: self.nats.or(base.nats),
            nats_replicas: self.nats_replicas.or(base.nats_replicas),
            nats_duplicate_window: self.nats_duplicate_window.or(base.nats_duplicate_window),
        }
    }

    /// The `BEHALF_*` variables.
    pub fn from_env() -> anyhow::Result<Layer> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let num = |name: &str| -> anyhow::Result<Option<usize>> {
            var(name)
                .map(|v| v.parse::<usize>().with_context(|| format!("{name}={v:?} is not a whole number")))
                .transpose()
        };
        Ok(Layer {
            data_dir: var("BEHALF_DATA_DIR").map(PathBuf::from),
            listen: var("BEHALF_LISTEN"),
            log_format: var("BEHALF_LOG_FORMAT"),
            max_body_bytes: num("BEHALF_MAX_BODY_BYTES")?,
            max_in_flight: num("BEHALF_MAX_IN_FLIGHT")?,
            nats: var("BEHALF_NATS"),
            nats_replicas: num("BEHALF_NATS_REPLICAS")?,
            nats_duplicate_window: var("BEHALF_NATS_DUPLICATE_WINDOW"),
        })
    }

    pub fn from_file(path: &Path) -> anyhow::Result<Layer> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the settings file {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("the settings file {} is not valid", path.display()))
    }
}

/// The largest body `serve --nats` takes: its commit (with the envelope) must fit one
/// NATS message of the server's default 1 MiB `max_payload`.
pub const NATS_MAX_BODY_BYTES: usize = 512 * 1024;

/// The config file named by the flag, else by `BEHALF_CONFIG`.
pub fn config_path(flag: Option<PathBuf>) -> Option<PathBuf> {
    flag.or_else(|| std::env::var("BEHALF_CONFIG").ok().filter(|v| !v.is_empty()).map(PathBuf::from))
}

/// Layers defaults, the file, the environment and the flags, and validates the result.
pub fn load(config: Option<&Path>, env: Layer, flags: Layer) -> anyhow::Result<Settings> {
    let file = match config {
        Some(p) => Layer::from_file(p)?,
        None => Layer::default(),
    };
    let l = flags.over(env.over(file));
    let listen_text = l.listen.unwrap_or_else(|| "127.0.0.1:8080".into());
    let listen: SocketAddr = listen_text
        .parse()
        .with_context(|| format!("listen address {listen_text:?} is not HOST:PORT (e.g. 127.0.0.1:8080)"))?;
    let log_format = match l.log_format.as_deref().unwrap_or("human") {
        "human" => LogFormat::Human,
        "json" => LogFormat::Json,
        other => bail!("log format {other:?} is not human or json"),
    };
    let max_body_bytes = l.max_body_bytes.unwrap_or(256 * 1024);
    if !(1024..=64 * 1024 * 1024).contains(&max_body_bytes) {
        bail!("max_body_bytes {max_body_bytes} must be between 1 KiB and 64 MiB");
    }
    let max_in_flight = l.max_in_flight.unwrap_or(4096);
    if max_in_flight == 0 {
        bail!("max_in_flight must be at least 1");
    }
    let data_dir = l.data_dir.unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
    if data_dir.as_os_str().is_empty() {
        bail!("the data directory must not be empty");
    }
    let nats_replicas = l.nats_replicas.unwrap_or(1);
    if !(1..=5).contains(&nats_replicas) {
        bail!("nats_replicas {nats_replicas} must be between 1 and 5 (JetStream's limit)");
    }
    let nats_duplicate_window = match l.nats_duplicate_window.as_deref() {
        Some(w) => parse_duration(w).map_err(|e| anyhow::anyhow!("nats_duplicate_window: {e}"))?,
        None => behalf_nats::DUPLICATE_WINDOW,
    };
    if nats_duplicate_window < std::time::Duration::from_millis(100) {
        bail!("nats_duplicate_window must be at least 100ms");
    }
    if let Some(url) = &l.nats {
        if url.split(',').any(|u| u.trim().is_empty()) {
            bail!("the NATS URL {url:?} has an empty part; give nats://HOST:PORT[,nats://HOST:PORT…]");
        }
        // A commit is one NATS message; nats-server takes at most 1 MiB by default.
        if max_body_bytes > NATS_MAX_BODY_BYTES {
            bail!("with nats, max_body_bytes {max_body_bytes} must be at most {NATS_MAX_BODY_BYTES} (a commit is one NATS message of at most 1 MiB)");
        }
    }
    Ok(Settings {
        data_dir,
        listen,
        log_format,
        max_body_bytes,
        max_in_flight,
        stop_at_last_good: false,
        nats: l.nats,
        nats_replicas,
        nats_duplicate_window,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_with_their_units() {
        use std::time::Duration;
        assert_eq!(parse_duration("1s"), Ok(Duration::from_secs(1)));
        assert_eq!(parse_duration("600"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert!(parse_duration("ten").is_err() && parse_duration("5d").is_err() && parse_duration("").is_err());
    }

    #[test]
    fn layers_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("behalf.toml");
        std::fs::write(&file, "listen = \"127.0.0.1:9000\"\nmax_in_flight = 10\nlog_format = \"json\"\n").unwrap();
        let env = Layer { max_in_flight: Some(20), ..Layer::default() };
        let flags = Layer { listen: Some("127.0.0.1:0".into()), ..Layer::default() };
        let s = load(Some(&file), env, flags).unwrap();
        assert_eq!(s.listen.to_string(), "127.0.0.1:0", "flags win");
        assert_eq!(s.max_in_flight, 20, "environment over file");
        assert_eq!(s.log_format, LogFormat::Json, "file over defaults");
        assert_eq!(s.data_dir, PathBuf::from("./behalf-data"), "defaults");
    }

    #[test]
    fn bad_settings_are_refused_before_start() {
        let bad = |l: Layer| load(None, Layer::default(), l).unwrap_err().to_string();
        assert!(bad(Layer { listen: Some("localhost".into()), ..Layer::default() }).contains("HOST:PORT"));
        assert!(bad(Layer { log_format: Some("xml".into()), ..Layer::default() }).contains("xml"));
        assert!(bad(Layer { max_body_bytes: Some(1), ..Layer::default() }).contains("max_body_bytes"));
        let nats =
            |url: &str, body: Option<usize>| Layer { nats: Some(url.into()), max_body_bytes: body, ..Layer::default() };
        assert!(bad(nats("nats://a:4222,", None)).contains("empty part"));
        assert!(bad(nats("nats://a:4222", Some(4 << 20))).contains("at most"));
        let ok = load(None, Layer::default(), nats("nats://a:4222", None)).unwrap();
        assert_eq!((ok.nats.as_deref(), ok.nats_replicas), (Some("nats://a:4222"), 1));
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("b.toml");
        std::fs::write(&file, "lisen = \"x\"\n").unwrap();
        assert!(load(Some(&file), Layer::default(), Layer::default()).is_err(), "unknown keys are refused");
    }
}
