//! Typed settings, layered: defaults → TOML file → `BEHALF_*` environment → flags,
//! validated before anything starts. The environment is read here and nowhere else.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use behalf_nats::{Credential, Endpoint};
use serde::Deserialize;

/// Where a process keeps its data when told nothing else (every command's default).
pub const DEFAULT_DATA_DIR: &str = "./behalf-data";

/// How log lines look.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Human,
    Json,
}

/// Where `behalf serve` listens when told nothing else.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

/// The settings every long-running role reads (`serve`, `command`, `project`,
/// `notify`). `Debug` shows no secret (the NATS credential hides its password or token).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    pub data_dir: PathBuf,
    /// Where to serve HTTP: `serve` always (at [`DEFAULT_LISTEN`] unless told), the
    /// roles on NATS only when given.
    pub listen: Option<SocketAddr>,
    pub log_format: LogFormat,
    pub max_body_bytes: usize,
    pub max_in_flight: usize,
    /// Start from the last good commit of a broken log (a deliberate recovery; a flag only).
    pub stop_at_last_good: bool,
    /// The event log on NATS JetStream (these servers, with their credential and TLS)
    /// instead of the embedded engine; tokens and queues are the cluster's, views stay
    /// in the data directory.
    pub nats: Option<Endpoint>,
    /// Copies of the JetStream stream when it is created (3 on a cluster).
    pub nats_replicas: usize,
    /// JetStream's de-duplication window, set when the stream is created (R26 holds
    /// beyond it; a shorter one keeps less in the server's memory).
    pub nats_duplicate_window: std::time::Duration,
    /// Serve HTTPS (only) with this certificate chain and key; reloaded on SIGHUP.
    pub tls: Option<behalf_http::TlsFiles>,
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
    pub nats_user: Option<String>,
    pub nats_password: Option<String>,
    pub nats_token: Option<String>,
    pub nats_nkey: Option<PathBuf>,
    pub nats_creds: Option<PathBuf>,
    pub nats_ca: Option<PathBuf>,
    pub nats_cert: Option<PathBuf>,
    pub nats_key: Option<PathBuf>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
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
            nats_user: self.nats_user.or(base.nats_user),
            nats_password: self.nats_password.or(base.nats_password),
            nats_token: self.nats_token.or(base.nats_token),
            nats_nkey: self.nats_nkey.or(base.nats_nkey),
            nats_creds: self.nats_creds.or(base.nats_creds),
            nats_ca: self.nats_ca.or(base.nats_ca),
            nats_cert: self.nats_cert.or(base.nats_cert),
            nats_key: self.nats_key.or(base.nats_key),
            tls_cert: self.tls_cert.or(base.tls_cert),
            tls_key: self.tls_key.or(base.tls_key),
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
            nats_user: var("BEHALF_NATS_USER"),
            nats_password: var("BEHALF_NATS_PASSWORD"),
            nats_token: var("BEHALF_NATS_TOKEN"),
            nats_nkey: var("BEHALF_NATS_NKEY").map(PathBuf::from),
            nats_creds: var("BEHALF_NATS_CREDS").map(PathBuf::from),
            nats_ca: var("BEHALF_NATS_CA").map(PathBuf::from),
            nats_cert: var("BEHALF_NATS_CERT").map(PathBuf::from),
            nats_key: var("BEHALF_NATS_KEY").map(PathBuf::from),
            tls_cert: var("BEHALF_TLS_CERT").map(PathBuf::from),
            tls_key: var("BEHALF_TLS_KEY").map(PathBuf::from),
        })
    }

    /// The NATS endpoint this layer names (its URL with the credential and TLS files),
    /// checked: one credential at most, user with password, certificate with key.
    fn endpoint(&self) -> anyhow::Result<Option<Endpoint>> {
        let given = [
            self.nats_user.is_some() || self.nats_password.is_some(),
            self.nats_token.is_some(),
            self.nats_nkey.is_some(),
            self.nats_creds.is_some(),
        ];
        if given.iter().filter(|g| **g).count() > 1 {
            bail!("give one NATS credential: a user and password, a token, an NKey seed file or a creds file");
        }
        let credential = match (&self.nats_user, &self.nats_password) {
            (Some(user), Some(password)) => Credential::UserPassword { user: user.clone(), password: password.clone() },
            (Some(_), None) => bail!("nats_user needs nats_password (BEHALF_NATS_PASSWORD keeps it out of `ps`)"),
            (None, Some(_)) => bail!("nats_password needs nats_user"),
            (None, None) => match (&self.nats_token, &self.nats_nkey, &self.nats_creds) {
                (Some(t), _, _) => Credential::Token(t.clone()),
                (_, Some(f), _) => Credential::NKey(existing("nats_nkey", f)?),
                (_, _, Some(f)) => Credential::Creds(existing("nats_creds", f)?),
                (None, None, None) => Credential::None,
            },
        };
        let client_cert = match (&self.nats_cert, &self.nats_key) {
            (Some(c), Some(k)) => Some((existing("nats_cert", c)?, existing("nats_key", k)?)),
            (None, None) => None,
            (Some(_), None) | (None, Some(_)) => bail!("nats_cert and nats_key go together (mutual TLS)"),
        };
        let ca = self.nats_ca.as_ref().map(|f| existing("nats_ca", f)).transpose()?;
        let Some(url) = &self.nats else {
            if credential != Credential::None || ca.is_some() || client_cert.is_some() {
                bail!("NATS credentials or TLS files were given without nats (the servers' URLs)");
            }
            return Ok(None);
        };
        if url.split(',').any(|u| u.trim().is_empty()) {
            bail!("the NATS URL {url:?} has an empty part; give nats://HOST:PORT[,nats://HOST:PORT…]");
        }
        Ok(Some(Endpoint { url: url.clone(), credential, ca, client_cert }))
    }

    pub fn from_file(path: &Path) -> anyhow::Result<Layer> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the settings file {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("the settings file {} is not valid", path.display()))
    }
}

/// How to reach NATS beyond its URL: the credential and TLS files. Every command that
/// takes `--nats` takes these too; each also reads `BEHALF_NATS_*` and the settings
/// file's `nats_*` keys (the password and token are better there than on a command
/// line, which `ps` shows).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct NatsFlags {
    /// NATS user name (with --nats-password)
    #[arg(long, value_name = "NAME")]
    pub nats_user: Option<String>,
    /// NATS password (prefer BEHALF_NATS_PASSWORD or the settings file)
    #[arg(long, value_name = "PASSWORD")]
    pub nats_password: Option<String>,
    /// NATS token (prefer BEHALF_NATS_TOKEN or the settings file)
    #[arg(long, value_name = "TOKEN")]
    pub nats_token: Option<String>,
    /// A file holding the NKey seed to sign NATS's challenge with
    #[arg(long, value_name = "FILE")]
    pub nats_nkey: Option<PathBuf>,
    /// A NATS .creds file (user JWT and seed)
    #[arg(long, value_name = "FILE")]
    pub nats_creds: Option<PathBuf>,
    /// CA certificate (PEM) to check the NATS servers against; requires TLS
    #[arg(long, value_name = "FILE")]
    pub nats_ca: Option<PathBuf>,
    /// Client certificate (PEM) for NATS servers that verify clients (with --nats-key)
    #[arg(long, value_name = "FILE")]
    pub nats_cert: Option<PathBuf>,
    /// The client certificate's key (PEM)
    #[arg(long, value_name = "FILE")]
    pub nats_key: Option<PathBuf>,
}

impl NatsFlags {
    fn layer(self, nats: Option<String>) -> Layer {
        Layer {
            nats,
            nats_user: self.nats_user,
            nats_password: self.nats_password,
            nats_token: self.nats_token,
            nats_nkey: self.nats_nkey,
            nats_creds: self.nats_creds,
            nats_ca: self.nats_ca,
            nats_cert: self.nats_cert,
            nats_key: self.nats_key,
            ..Layer::default()
        }
    }

    /// The endpoint for a one-shot command's `--nats URL`, with these flags over the
    /// `BEHALF_NATS_*` variables.
    pub fn endpoint(self, url: String) -> anyhow::Result<Endpoint> {
        let l = self.layer(Some(url)).over(Layer::from_env()?);
        Ok(l.endpoint()?.expect("a URL was given"))
    }
}

/// The flags of every long-running role; with `--config`, the environment and the
/// defaults they make its [`Settings`].
#[derive(clap::Args, Debug, Clone, Default)]
pub struct SettingsArgs {
    /// Where this process keeps its data [default: ./behalf-data]
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// HOST:PORT to serve HTTP on; port 0 picks a free port [serve's default:
    /// 127.0.0.1:8080; the NATS roles serve HTTP only when given]
    #[arg(long, value_name = "HOST:PORT")]
    pub listen: Option<String>,
    /// A TOML settings file (keys as the flags, with underscores) [env: BEHALF_CONFIG]
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Log lines as `human` or `json` [default: human]
    #[arg(long)]
    pub log_format: Option<String>,
    /// Largest accepted request body in bytes [default: 262144]
    #[arg(long)]
    pub max_body_bytes: Option<usize>,
    /// Commands decided at once before answering 429 [default: 4096]
    #[arg(long)]
    pub max_in_flight: Option<usize>,
    /// NATS server URLs, comma-separated (nats://HOST:PORT, or tls://HOST:PORT to
    /// require TLS): the event log, tokens and queues on JetStream instead of the
    /// embedded engine
    #[arg(long, value_name = "URL")]
    pub nats: Option<String>,
    /// Copies of the streams and buckets when first created: 1 on one node, 3 on a
    /// cluster [default: 1]
    #[arg(long)]
    pub nats_replicas: Option<usize>,
    /// JetStream's de-duplication window when the event stream is first created, e.g.
    /// 10m or 1s; idempotency (R26) holds beyond it through the command index
    /// [default: 10m]
    #[arg(long, value_name = "DURATION")]
    pub nats_duplicate_window: Option<String>,
    #[command(flatten)]
    pub nats_flags: NatsFlags,
    /// Serve HTTPS only, with this certificate chain (PEM); reloaded on SIGHUP
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The HTTPS certificate's private key (PEM)
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
}

impl SettingsArgs {
    /// Layers the defaults, the settings file, `BEHALF_*` and these flags.
    pub fn load(self) -> anyhow::Result<Settings> {
        let flags = Layer {
            data_dir: self.data_dir,
            listen: self.listen,
            log_format: self.log_format,
            max_body_bytes: self.max_body_bytes,
            max_in_flight: self.max_in_flight,
            nats_replicas: self.nats_replicas,
            nats_duplicate_window: self.nats_duplicate_window,
            tls_cert: self.tls_cert,
            tls_key: self.tls_key,
            ..self.nats_flags.layer(self.nats)
        };
        load(config_path(self.config).as_deref(), Layer::from_env()?, flags)
    }
}

/// A file a setting names, which must be there.
fn existing(setting: &str, path: &Path) -> anyhow::Result<PathBuf> {
    if path.is_file() {
        Ok(path.to_path_buf())
    } else {
        bail!("{setting}: no file {}", path.display())
    }
}

/// The largest body `serve --nats` takes: its commit (with the envelope) must fit one
/// NATS message of the server's default 1 MiB `max_payload`.
pub const NATS_MAX_BODY_BYTES: usize = 512 * 1024;

/// A producer's bearer token from `BEHALF_TOKEN` (kept out of command lines).
pub fn token_from_env() -> Option<String> {
    std::env::var("BEHALF_TOKEN").ok().filter(|v| !v.is_empty())
}

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
    let nats = l.endpoint()?;
    let listen = match &l.listen {
        Some(text) => Some(
            text.parse::<SocketAddr>()
                .with_context(|| format!("listen address {text:?} is not HOST:PORT (e.g. 127.0.0.1:8080)"))?,
        ),
        None => None,
    };
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
    if nats.is_some() {
        // A commit is one NATS message; nats-server takes at most 1 MiB by default.
        if max_body_bytes > NATS_MAX_BODY_BYTES {
            bail!("with nats, max_body_bytes {max_body_bytes} must be at most {NATS_MAX_BODY_BYTES} (a commit is one NATS message of at most 1 MiB)");
        }
    }
    let tls = match (&l.tls_cert, &l.tls_key) {
        (Some(c), Some(k)) => {
            Some(behalf_http::TlsFiles { cert: existing("tls_cert", c)?, key: existing("tls_key", k)? })
        }
        (None, None) => None,
        (Some(_), None) | (None, Some(_)) => bail!("tls_cert and tls_key go together (HTTPS)"),
    };
    Ok(Settings {
        tls,
        data_dir,
        listen,
        log_format,
        max_body_bytes,
        max_in_flight,
        stop_at_last_good: false,
        nats,
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
        assert_eq!(s.listen.map(|a| a.to_string()).as_deref(), Some("127.0.0.1:0"), "flags win");
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
        assert_eq!((ok.nats.as_ref().map(|e| e.url.as_str()), ok.nats_replicas), (Some("nats://a:4222"), 1));
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("b.toml");
        std::fs::write(&file, "lisen = \"x\"\n").unwrap();
        assert!(load(Some(&file), Layer::default(), Layer::default()).is_err(), "unknown keys are refused");
    }

    #[test]
    fn the_example_settings_file_loads() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/behalf.toml");
        let s = load(Some(&path), Layer::default(), Layer::default()).unwrap();
        assert_eq!((s.log_format, s.max_in_flight), (LogFormat::Json, 4096));
        assert_eq!(s.data_dir, PathBuf::from("/var/lib/behalf"));
    }

    #[test]
    fn nats_credentials_layer_and_are_checked() {
        let url = || Some("tls://a:4222".to_owned());
        let env = Layer { nats_password: Some("from-env".into()), ..Layer::default() };
        let flags = Layer { nats: url(), nats_user: Some("ops".into()), ..Layer::default() };
        let s = load(None, env, flags).unwrap();
        let e = s.nats.unwrap();
        assert_eq!(e.credential, Credential::UserPassword { user: "ops".into(), password: "from-env".into() });
        assert!(e.requires_tls());
        let bad = |l: Layer| load(None, Layer::default(), l).unwrap_err().to_string();
        let two = Layer { nats: url(), nats_token: Some("t".into()), nats_user: Some("u".into()), ..Layer::default() };
        assert!(bad(two).contains("one NATS credential"));
        assert!(bad(Layer { nats: url(), nats_user: Some("u".into()), ..Layer::default() }).contains("nats_password"));
        assert!(bad(Layer { nats_token: Some("t".into()), ..Layer::default() }).contains("without nats"));
        assert!(
            bad(Layer { nats: url(), nats_ca: Some("/nowhere/ca.pem".into()), ..Layer::default() }).contains("no file")
        );
        let half = Layer { nats: url(), nats_cert: Some("/etc/hostname".into()), ..Layer::default() };
        assert!(bad(half).contains("go together"));
        let shown = format!(
            "{:?}",
            load(None, Layer::default(), Layer { nats: url(), nats_token: Some("s3cret".into()), ..Layer::default() })
                .unwrap()
        );
        assert!(!shown.contains("s3cret"), "settings never show a secret: {shown}");
    }
}
