//! The settings of the long-running roles (`serve`, `command`, `project`, `notify`),
//! said once: each field of [`Settings`] carries its help line (its doc comment), its
//! flag, its `BEHALF_*` variable and its default (clap's attributes), and its key in
//! the settings file (serde's: the section, then the field). They are layered
//! defaults → TOML file → `BEHALF_*` → flags, and checked before anything starts.
//!
//! **Adding a setting** is one edit: a field, with its doc line and its `#[arg]`, in
//! the section it belongs to (a new section is a struct beside these, flattened into
//! [`Settings`], with a `Default` from [`clap_defaults`]). Flag, variable, file key,
//! `--help` and the layering follow from it.
//!
//! The file takes the nested form (`[http]` with `listen = …`) or the flags' names
//! with underscores at the top (`listen = …`, `nats_replicas = …`), the form earlier
//! versions documented (`deploy/behalf.toml`).
//!
//! Clap reads the `BEHALF_*` variables of these settings. Three more are read where
//! they are used: `BEHALF_LOG` (the log filter, `main.rs`), `BEHALF_TOKEN` (a
//! producer's token, `behalf import`'s flag) and `BEHALF_NATS_SERVER` (the
//! nats-server binary that tests and benches start, `behalf_nats::server`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context as _};
use behalf_nats::{Credential, Endpoint};
use clap::parser::ValueSource;
use clap::{ArgMatches, Args, FromArgMatches};
use serde::{Deserialize, Serialize};

/// Where a process keeps its data when told nothing else (every command's default).
pub const DEFAULT_DATA_DIR: &str = "./behalf-data";

/// Where `behalf serve` listens when told nothing else (the roles on NATS serve HTTP
/// only when given an address).
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

/// The largest body `serve --nats` takes: its commit (with the envelope) must fit one
/// NATS message of the server's default 1 MiB `max_payload`.
pub const NATS_MAX_BODY_BYTES: usize = 512 * 1024;

/// Every setting of a long-running role. `Debug` shows no secret.
#[derive(Args, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Where this process keeps its data
    #[arg(id = "data_dir", long = "data-dir", env = "BEHALF_DATA_DIR", value_name = "DIR", default_value = DEFAULT_DATA_DIR)]
    pub data_dir: PathBuf,
    #[command(flatten)]
    pub http: HttpSettings,
    #[command(flatten)]
    pub log: LogSettings,
    #[command(flatten)]
    pub nats: NatsSettings,
    #[command(flatten)]
    pub webhooks: WebhookSettings,
    #[command(flatten)]
    pub retention: RetentionSettings,
}

/// `[retention]`: how long personal data is kept (issue 26).
#[derive(Args, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionSettings {
    /// Redact a closed ticket's texts this long after it closed (as the vendor side,
    /// by the SLA sweep); 0s keeps them
    #[arg(id = "retention.closed_ticket_personal_data", long = "retention-closed-ticket-personal-data", env = "BEHALF_RETENTION_CLOSED_TICKET_PERSONAL_DATA", value_name = "DURATION", default_value = "0s", value_parser = parse_duration)]
    #[serde(with = "duration_text")]
    pub closed_ticket_personal_data: Duration,
}

impl Default for RetentionSettings {
    fn default() -> RetentionSettings {
        clap_defaults()
    }
}

impl RetentionSettings {
    /// The retention of closed tickets' texts, if any.
    pub fn closed_tickets(&self) -> Option<Duration> {
        (!self.closed_ticket_personal_data.is_zero()).then_some(self.closed_ticket_personal_data)
    }
}

/// `[webhooks]`: how queue messages are pushed to subscribed URLs (`/v1/webhooks`).
#[derive(Args, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct WebhookSettings {
    /// Allow http:// webhook URLs and loopback, private and link-local addresses (local
    /// use and tests; never in production: a subscriber could reach inside your network)
    #[arg(id = "webhooks.allow_insecure", long = "webhooks-allow-insecure", env = "BEHALF_WEBHOOKS_ALLOW_INSECURE")]
    pub allow_insecure: bool,
    /// The delay before each attempt of a delivery, comma-separated; past the last the
    /// delivery has failed (until replayed)
    #[arg(id = "webhooks.retry_schedule", long = "webhooks-retry-schedule", env = "BEHALF_WEBHOOKS_RETRY_SCHEDULE", value_name = "DURATIONS", value_delimiter = ',', value_parser = parse_duration, default_value = "0s,5s,5m,30m,2h,5h,10h,14h,20h,24h")]
    #[serde(with = "durations_text")]
    pub retry_schedule: Vec<Duration>,
    /// How long one delivery attempt may take
    #[arg(id = "webhooks.timeout", long = "webhooks-timeout", env = "BEHALF_WEBHOOKS_TIMEOUT", value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    #[serde(with = "duration_text")]
    pub timeout: Duration,
    /// How long the previous signing secret still signs after a rotation
    #[arg(id = "webhooks.rotation_grace", long = "webhooks-rotation-grace", env = "BEHALF_WEBHOOKS_ROTATION_GRACE", value_name = "DURATION", default_value = "24h", value_parser = parse_duration)]
    #[serde(with = "duration_text")]
    pub rotation_grace: Duration,
}

impl Default for WebhookSettings {
    fn default() -> WebhookSettings {
        clap_defaults()
    }
}

impl WebhookSettings {
    /// As the sender and the routes take them.
    pub fn service(&self) -> behalf_service::webhooks::Settings {
        behalf_service::webhooks::Settings {
            allow_insecure: self.allow_insecure,
            retry_schedule: self.retry_schedule.clone(),
            timeout: self.timeout,
            rotation_grace: self.rotation_grace,
            ..behalf_service::webhooks::Settings::default()
        }
    }
}

/// `[http]`: the API's listener and its limits.
#[derive(Args, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct HttpSettings {
    /// HOST:PORT to serve HTTP on; port 0 picks a free port [serve's default:
    /// 127.0.0.1:8080; the roles on NATS serve HTTP only when given]
    #[arg(id = "http.listen", long = "listen", env = "BEHALF_LISTEN", value_name = "HOST:PORT")]
    pub listen: Option<SocketAddr>,
    /// Largest accepted request body in bytes, 1 KiB to 64 MiB (512 KiB at most with --nats)
    #[arg(id = "http.max_body_bytes", long = "max-body-bytes", env = "BEHALF_MAX_BODY_BYTES", value_name = "BYTES", default_value_t = 256 * 1024)]
    pub max_body_bytes: usize,
    /// Commands decided at once before answering 429
    #[arg(
        id = "http.max_in_flight",
        long = "max-in-flight",
        env = "BEHALF_MAX_IN_FLIGHT",
        value_name = "N",
        default_value_t = 4096
    )]
    pub max_in_flight: usize,
    /// Serve HTTPS only, with this certificate chain (PEM); reloaded on SIGHUP
    #[arg(id = "http.tls_cert", long = "tls-cert", env = "BEHALF_TLS_CERT", value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// The HTTPS certificate's private key (PEM)
    #[arg(id = "http.tls_key", long = "tls-key", env = "BEHALF_TLS_KEY", value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
}

/// `[log]`: how log lines look (what they say is `BEHALF_LOG`'s filter).
#[derive(Args, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct LogSettings {
    /// Log lines as human or json
    #[arg(id = "log.format", long = "log-format", env = "BEHALF_LOG_FORMAT", value_name = "FORMAT", value_enum, default_value_t = LogFormat::Human)]
    pub format: LogFormat,
    /// Export traces over OTLP/HTTP to this collector (e.g. http://127.0.0.1:4318); off
    /// when neither this nor OTEL_EXPORTER_OTLP_ENDPOINT is set
    #[arg(id = "log.otlp_endpoint", long = "otlp-endpoint", env = "BEHALF_OTLP_ENDPOINT", value_name = "URL")]
    pub otlp_endpoint: Option<String>,
}

/// How log lines look.
#[derive(clap::ValueEnum, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Human,
    Json,
}

/// `[nats]`: the event log, tokens and queues on NATS JetStream instead of the
/// embedded engine (views and the GDAP snapshot stay in the data directory).
#[derive(Args, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct NatsSettings {
    /// NATS server URLs, comma-separated (nats://HOST:PORT, or tls://HOST:PORT to
    /// require TLS): the event log, tokens and queues on JetStream instead of the
    /// embedded engine
    #[arg(id = "nats.url", long = "nats", env = "BEHALF_NATS", value_name = "URL")]
    pub url: Option<String>,
    /// Copies of the streams and buckets when first created, 1 to 5: 1 on one node, 3 on a cluster
    #[arg(
        id = "nats.replicas",
        long = "nats-replicas",
        env = "BEHALF_NATS_REPLICAS",
        value_name = "N",
        default_value_t = 1
    )]
    pub replicas: usize,
    /// JetStream's de-duplication window when the event stream is first created, e.g.
    /// 10m or 1s; idempotency (R26) holds beyond it through the command index
    #[arg(id = "nats.duplicate_window", long = "nats-duplicate-window", env = "BEHALF_NATS_DUPLICATE_WINDOW", value_name = "DURATION", default_value = "10m", value_parser = parse_duration)]
    #[serde(with = "duration_text")]
    pub duplicate_window: Duration,
    #[command(flatten)]
    pub access: NatsAccess,
}

/// `[nats.access]`: how to reach NATS beyond its URL, the credential and TLS files.
/// Every command that takes `--nats` takes these too (the password and token are
/// better in `BEHALF_NATS_*` or the settings file than on a command line, which `ps`
/// shows).
#[derive(Args, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct NatsAccess {
    /// NATS user name (with --nats-password)
    #[arg(id = "nats.access.user", long = "nats-user", env = "BEHALF_NATS_USER", value_name = "NAME")]
    pub user: Option<String>,
    /// NATS password (prefer BEHALF_NATS_PASSWORD or the settings file)
    #[arg(
        id = "nats.access.password",
        long = "nats-password",
        env = "BEHALF_NATS_PASSWORD",
        hide_env_values = true,
        value_name = "PASSWORD"
    )]
    pub password: Option<Secret>,
    /// NATS token (prefer BEHALF_NATS_TOKEN or the settings file)
    #[arg(
        id = "nats.access.token",
        long = "nats-token",
        env = "BEHALF_NATS_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub token: Option<Secret>,
    /// A file holding the NKey seed to sign NATS's challenge with
    #[arg(id = "nats.access.nkey", long = "nats-nkey", env = "BEHALF_NATS_NKEY", value_name = "FILE")]
    pub nkey: Option<PathBuf>,
    /// A NATS .creds file (user JWT and seed)
    #[arg(id = "nats.access.creds", long = "nats-creds", env = "BEHALF_NATS_CREDS", value_name = "FILE")]
    pub creds: Option<PathBuf>,
    /// CA certificate (PEM) to check the NATS servers against; requires TLS
    #[arg(id = "nats.access.ca", long = "nats-ca", env = "BEHALF_NATS_CA", value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// Client certificate (PEM) for NATS servers that verify clients (with --nats-key)
    #[arg(id = "nats.access.cert", long = "nats-cert", env = "BEHALF_NATS_CERT", value_name = "FILE")]
    pub cert: Option<PathBuf>,
    /// The client certificate's key (PEM)
    #[arg(id = "nats.access.key", long = "nats-key", env = "BEHALF_NATS_KEY", value_name = "FILE")]
    pub key: Option<PathBuf>,
}

/// Where a one-shot command (`audit`, `queue`) finds the stores: a data directory, or
/// a NATS JetStream cluster with its credential and TLS files.
#[derive(Args, Debug, Clone)]
pub struct Source {
    /// The data directory (the embedded engine's log and queues; for `audit replay`,
    /// the views to compare — a projector's on NATS)
    #[arg(long, default_value = DEFAULT_DATA_DIR)]
    pub data_dir: PathBuf,
    /// The log and queues on NATS JetStream at these URLs (comma-separated) instead of
    /// the data directory's
    #[arg(long, value_name = "URL")]
    pub nats: Option<String>,
    #[command(flatten)]
    pub nats_access: NatsAccess,
}

impl Source {
    /// The NATS endpoint, when the stores are on NATS.
    pub fn nats_endpoint(&self) -> anyhow::Result<Option<Endpoint>> {
        self.nats.clone().map(|url| self.nats_access.endpoint(url)).transpose()
    }
}

/// A secret setting: never shown by `Debug` (so never in a log line or an error).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<hidden>")
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Secret, Self::Err> {
        Ok(Secret(s.to_owned()))
    }
}

/// A section's defaults: what clap makes of an empty command line with no
/// environment, so each default is written once, in its `#[arg]`.
pub fn clap_defaults<T: Args + FromArgMatches>() -> T {
    let cmd = T::augment_args(clap::Command::new("defaults")).mut_args(|a| a.env(None::<&str>));
    T::from_arg_matches(&cmd.get_matches_from(["defaults"])).expect("every setting has a default or is optional")
}

impl Default for Settings {
    fn default() -> Settings {
        clap_defaults()
    }
}

impl Default for HttpSettings {
    fn default() -> HttpSettings {
        clap_defaults()
    }
}

impl Default for LogSettings {
    fn default() -> LogSettings {
        clap_defaults()
    }
}

impl Default for NatsSettings {
    fn default() -> NatsSettings {
        clap_defaults()
    }
}

/// A duration as `500ms`, `30s`, `10m`, `2h`, `90d`, or whole seconds (`600`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (n, unit) = t.split_at(split);
    let n: u64 = n.parse().map_err(|_| format!("{text:?} is not a duration (e.g. 500ms, 30s, 10m, 2h)"))?;
    Ok(match unit {
        "ms" => Duration::from_millis(n),
        "" | "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n * 60),
        "h" => Duration::from_secs(n * 3600),
        "d" => Duration::from_secs(n * 86_400),
        _ => return Err(format!("{text:?} is not a duration (e.g. 500ms, 30s, 10m, 2h, 90d)")),
    })
}

/// A duration in the settings file: the text [`parse_duration`] reads.
mod duration_text {
    use std::time::Duration;

    use serde::{Deserialize as _, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{}ms", d.as_millis()))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        super::parse_duration(&String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// A list of durations in the settings file: `["0s", "300ms", "1s"]`.
mod durations_text {
    use std::time::Duration;

    use serde::{Deserialize as _, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(ds: &[Duration], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(ds.iter().map(|d| format!("{}ms", d.as_millis())))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Duration>, D::Error> {
        Vec::<String>::deserialize(d)?
            .iter()
            .map(|t| super::parse_duration(t).map_err(serde::de::Error::custom))
            .collect()
    }
}

/// The flags of every long-running role: the settings, and the file to read first.
#[derive(Args, Debug, Clone)]
pub struct SettingsArgs {
    /// A TOML settings file (sections [http], [log], [nats], [webhooks], [retention], or the flags' names with
    /// underscores at the top)
    #[arg(long, env = "BEHALF_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub settings: Settings,
}

impl SettingsArgs {
    /// Layers the defaults, the settings file, `BEHALF_*` and the flags (`matches`:
    /// the command line these arguments were parsed from, which says where each value
    /// came from), and checks the result.
    pub fn load(&self, matches: &ArgMatches) -> anyhow::Result<Settings> {
        let mut table = match &self.config {
            Some(path) => {
                let table = file_table(path)?;
                from_table(&table).with_context(|| format!("the settings file {} is not valid", path.display()))?;
                table
            }
            None => toml::Table::new(),
        };
        let given = toml::Table::try_from(&self.settings).context("cannot read the settings back")?;
        for (id, _) in setting_ids() {
            if matches!(matches.value_source(&id), Some(ValueSource::CommandLine | ValueSource::EnvVariable)) {
                if let Some(value) = get(&given, &id) {
                    set(&mut table, &id, value.clone());
                }
            }
        }
        let settings = from_table(&table)?;
        settings.check()?;
        Ok(settings)
    }
}

/// Every setting's id (its path in the file, e.g. `http.listen`) and its flag's name
/// with underscores (its flat key, e.g. `listen`).
fn setting_ids() -> Vec<(String, String)> {
    Settings::augment_args(clap::Command::new("settings"))
        .get_arguments()
        .filter_map(|a| Some((a.get_id().to_string(), a.get_long()?.replace('-', "_"))))
        .collect()
}

/// A settings file as a nested table (its flat keys moved to their sections).
fn file_table(path: &Path) -> anyhow::Result<toml::Table> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read the settings file {}", path.display()))?;
    let mut table: toml::Table =
        toml::from_str(&text).with_context(|| format!("the settings file {} is not valid", path.display()))?;
    for (id, flat) in setting_ids() {
        if id != flat {
            if let Some(value) = table.remove(&flat) {
                set(&mut table, &id, value);
            }
        }
    }
    Ok(table)
}

/// The settings a table says (toml's error names the key of a bad value).
fn from_table(table: &toml::Table) -> anyhow::Result<Settings> {
    Ok(toml::Value::Table(table.clone()).try_into()?)
}

/// Takes empty `BEHALF_*` variables as not set (as a shell's `BEHALF_NATS=` means);
/// called before the command line is parsed, while the process has one thread.
pub fn unset_empty_variables() {
    for (name, value) in std::env::vars_os() {
        if value.is_empty() && name.to_string_lossy().starts_with("BEHALF_") {
            std::env::remove_var(name);
        }
    }
}

fn get<'t>(table: &'t toml::Table, id: &str) -> Option<&'t toml::Value> {
    let (section, rest) = match id.split_once('.') {
        Some(split) => split,
        None => return table.get(id),
    };
    get(table.get(section)?.as_table()?, rest)
}

fn set(table: &mut toml::Table, id: &str, value: toml::Value) {
    match id.split_once('.') {
        None => {
            table.insert(id.to_owned(), value);
        }
        Some((section, rest)) => {
            let entry = table.entry(section).or_insert_with(|| toml::Value::Table(toml::Table::new()));
            if !entry.is_table() {
                *entry = toml::Value::Table(toml::Table::new());
            }
            if let toml::Value::Table(inner) = entry {
                set(inner, rest, value);
            }
        }
    }
}

impl Settings {
    /// What no single field can say: ranges, pairs, files that must be there.
    fn check(&self) -> anyhow::Result<()> {
        let h = &self.http;
        if !(1024..=64 * 1024 * 1024).contains(&h.max_body_bytes) {
            bail!("max_body_bytes {} must be between 1 KiB and 64 MiB", h.max_body_bytes);
        }
        if h.max_in_flight == 0 {
            bail!("max_in_flight must be at least 1");
        }
        if self.data_dir.as_os_str().is_empty() {
            bail!("the data directory must not be empty");
        }
        if !(1..=5).contains(&self.nats.replicas) {
            bail!("nats_replicas {} must be between 1 and 5 (JetStream's limit)", self.nats.replicas);
        }
        if self.nats.duplicate_window < Duration::from_millis(100) {
            bail!("nats_duplicate_window must be at least 100ms");
        }
        let w = &self.webhooks;
        if w.retry_schedule.is_empty() || w.retry_schedule.len() > 50 {
            bail!("webhooks.retry_schedule must list 1 to 50 durations (the delay before each attempt)");
        }
        if !(Duration::from_millis(100)..=Duration::from_secs(300)).contains(&w.timeout) {
            bail!("webhooks.timeout must be between 100ms and 5m");
        }
        // A commit is one NATS message; nats-server takes at most 1 MiB by default.
        if self.nats.url.is_some() && h.max_body_bytes > NATS_MAX_BODY_BYTES {
            bail!("with nats, max_body_bytes {} must be at most {NATS_MAX_BODY_BYTES} (a commit is one NATS message of at most 1 MiB)", h.max_body_bytes);
        }
        self.tls_files()?;
        match &self.nats.url {
            Some(url) => {
                self.nats.access.endpoint(url.clone())?;
            }
            None if self.nats.access != NatsAccess::default() => {
                bail!("NATS credentials or TLS files were given without nats (the servers' URLs)")
            }
            None => {}
        }
        Ok(())
    }

    /// The NATS endpoint (URL, credential, TLS files), when the log is on NATS.
    pub fn nats_endpoint(&self) -> anyhow::Result<Option<Endpoint>> {
        self.nats.url.clone().map(|url| self.nats.access.endpoint(url)).transpose()
    }

    /// The HTTPS certificate and key, when given (both, or neither).
    pub fn tls_files(&self) -> anyhow::Result<Option<behalf_http::TlsFiles>> {
        match (&self.http.tls_cert, &self.http.tls_key) {
            (Some(c), Some(k)) => {
                Ok(Some(behalf_http::TlsFiles { cert: existing("tls_cert", c)?, key: existing("tls_key", k)? }))
            }
            (None, None) => Ok(None),
            (Some(_), None) | (None, Some(_)) => bail!("tls_cert and tls_key go together (HTTPS)"),
        }
    }

    /// The data directory's layout.
    pub fn data(&self) -> behalf_sled_store::DataDir {
        behalf_sled_store::DataDir::new(&self.data_dir)
    }

    /// The API's limits.
    pub fn limits(&self) -> behalf_http::Limits {
        behalf_http::Limits { max_body_bytes: self.http.max_body_bytes, max_in_flight: self.http.max_in_flight }
    }
}

impl NatsAccess {
    /// The endpoint at `url` with this credential and these TLS files, checked: one
    /// credential at most, user with password, certificate with key, files there.
    pub fn endpoint(&self, url: String) -> anyhow::Result<Endpoint> {
        let given = [
            self.user.is_some() || self.password.is_some(),
            self.token.is_some(),
            self.nkey.is_some(),
            self.creds.is_some(),
        ];
        if given.iter().filter(|g| **g).count() > 1 {
            bail!("give one NATS credential: a user and password, a token, an NKey seed file or a creds file");
        }
        let credential = match (&self.user, &self.password) {
            (Some(user), Some(password)) => {
                Credential::UserPassword { user: user.clone(), password: password.0.clone() }
            }
            (Some(_), None) => bail!("nats_user needs nats_password (BEHALF_NATS_PASSWORD keeps it out of `ps`)"),
            (None, Some(_)) => bail!("nats_password needs nats_user"),
            (None, None) => match (&self.token, &self.nkey, &self.creds) {
                (Some(t), _, _) => Credential::Token(t.0.clone()),
                (_, Some(f), _) => Credential::NKey(existing("nats_nkey", f)?),
                (_, _, Some(f)) => Credential::Creds(existing("nats_creds", f)?),
                (None, None, None) => Credential::None,
            },
        };
        let client_cert = match (&self.cert, &self.key) {
            (Some(c), Some(k)) => Some((existing("nats_cert", c)?, existing("nats_key", k)?)),
            (None, None) => None,
            (Some(_), None) | (None, Some(_)) => bail!("nats_cert and nats_key go together (mutual TLS)"),
        };
        let ca = self.ca.as_ref().map(|f| existing("nats_ca", f)).transpose()?;
        if url.split(',').any(|u| u.trim().is_empty()) {
            bail!("the NATS URL {url:?} has an empty part; give nats://HOST:PORT[,nats://HOST:PORT…]");
        }
        Ok(Endpoint { url, credential, ca, client_cert })
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

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};
    use std::time::Duration;

    use behalf_nats::Credential;
    use clap::{CommandFactory as _, FromArgMatches as _};

    use super::{parse_duration, LogFormat, Settings, SettingsArgs};

    #[derive(clap::Parser, Debug)]
    struct Cli {
        #[command(flatten)]
        args: SettingsArgs,
    }

    /// Loads the settings of a command line (the environment as it is).
    fn load(argv: &[&str]) -> anyhow::Result<Settings> {
        let matches = Cli::command().try_get_matches_from(std::iter::once("behalf").chain(argv.iter().copied()))?;
        Cli::from_arg_matches(&matches)?.args.load(&matches)
    }

    fn file(text: &str) -> (tempfile::TempDir, String) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("behalf.toml");
        std::fs::write(&path, text).unwrap();
        (dir, path.display().to_string())
    }

    #[test]
    fn durations_read_with_their_units() {
        assert_eq!(parse_duration("1s"), Ok(Duration::from_secs(1)));
        assert_eq!(parse_duration("600"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("90d"), Ok(Duration::from_secs(90 * 86_400)));
        assert!(parse_duration("ten").is_err() && parse_duration("5w").is_err() && parse_duration("").is_err());
    }

    #[test]
    fn webhooks_from_the_file_and_the_flags() {
        let (_d, path) =
            file("[webhooks]\nallow_insecure = true\nretry_schedule = [\"0s\", \"300ms\", \"1s\"]\ntimeout = \"2s\"\n");
        let s = load(&["--config", &path]).unwrap();
        assert!(s.webhooks.allow_insecure);
        assert_eq!(s.webhooks.retry_schedule, [Duration::ZERO, Duration::from_millis(300), Duration::from_secs(1)]);
        assert_eq!(s.webhooks.timeout, Duration::from_secs(2));
        let s = load(&["--config", &path, "--webhooks-retry-schedule", "1s,2s"]).unwrap();
        assert_eq!(s.webhooks.retry_schedule, [Duration::from_secs(1), Duration::from_secs(2)], "the flag wins");
        let d = Settings::default().webhooks;
        assert!(
            !d.allow_insecure && d.retry_schedule.len() == 10 && d.retry_schedule[9] == Duration::from_secs(86_400)
        );
        let (_d, bad) = file("[webhooks]\ntimeout = \"0s\"\n");
        assert!(load(&["--config", &bad]).is_err(), "a timeout of 0 is refused");
    }

    #[test]
    fn defaults_are_said_once() {
        let s = Settings::default();
        assert_eq!(s.data_dir, PathBuf::from(super::DEFAULT_DATA_DIR));
        assert_eq!((s.http.listen, s.http.max_body_bytes, s.http.max_in_flight), (None, 256 * 1024, 4096));
        assert_eq!((s.log.format, s.nats.url.as_deref(), s.nats.replicas), (LogFormat::Human, None, 1));
        assert_eq!(s.nats.duplicate_window, behalf_nats::DUPLICATE_WINDOW, "the engine's window is the default");
    }

    /// The one test that sets a variable (tests share the environment): no other
    /// test here reads `max_body_bytes`.
    #[test]
    fn layers_in_order() {
        let (_dir, path) = file("listen = \"127.0.0.1:9000\"\nmax_body_bytes = 4096\n[log]\nformat = \"json\"\n");
        std::env::set_var("BEHALF_MAX_BODY_BYTES", "8192");
        let s = load(&["--config", &path, "--listen", "127.0.0.1:0"]);
        std::env::remove_var("BEHALF_MAX_BODY_BYTES");
        let s = s.unwrap();
        assert_eq!(s.http.listen.map(|a| a.to_string()).as_deref(), Some("127.0.0.1:0"), "flags win");
        assert_eq!(s.http.max_body_bytes, 8192, "environment over file");
        assert_eq!(s.log.format, LogFormat::Json, "file (nested) over defaults");
        assert_eq!(s.data_dir, PathBuf::from("./behalf-data"), "defaults");
    }

    #[test]
    fn bad_settings_are_refused_before_start() {
        let bad = |argv: &[&str]| load(argv).unwrap_err().to_string();
        assert!(bad(&["--listen", "localhost"]).contains("HOST:PORT"));
        assert!(bad(&["--log-format", "xml"]).contains("xml"));
        assert!(bad(&["--max-body-bytes", "1"]).contains("max_body_bytes"));
        assert!(bad(&["--nats", "nats://a:4222,"]).contains("empty part"));
        assert!(bad(&["--nats", "nats://a:4222", "--max-body-bytes", "4194304"]).contains("at most"));
        let ok = load(&["--nats", "nats://a:4222"]).unwrap();
        assert_eq!(ok.nats_endpoint().unwrap().map(|e| e.url), Some("nats://a:4222".to_owned()));
        let (_dir, path) = file("lisen = \"x\"\n");
        assert!(load(&["--config", &path]).is_err(), "unknown keys are refused");
        let (_dir, path) = file("[http]\nmax_in_flight = \"many\"\n");
        let e = format!("{:#}", load(&["--config", &path]).unwrap_err());
        assert!(e.contains("http.max_in_flight") && e.contains(&path), "names the key and the file: {e}");
    }

    #[test]
    fn the_example_settings_file_loads() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/behalf.toml");
        let s = load(&["--config", path.to_str().unwrap()]).unwrap();
        assert_eq!((s.log.format, s.http.max_in_flight), (LogFormat::Json, 4096));
        assert_eq!(s.data_dir, PathBuf::from("/var/lib/behalf"));
    }

    #[test]
    fn nats_credentials_layer_and_are_checked() {
        let (_dir, path) = file("nats_password = \"from-file\"\n");
        let s = load(&["--config", &path, "--nats", "tls://a:4222", "--nats-user", "ops"]).unwrap();
        let e = s.nats_endpoint().unwrap().unwrap();
        assert_eq!(e.credential, Credential::UserPassword { user: "ops".into(), password: "from-file".into() });
        assert!(e.requires_tls());
        let bad = |argv: &[&str]| format!("{:#}", load(argv).unwrap_err());
        let url = ["--nats", "tls://a:4222"];
        assert!(bad(&[&url[..], &["--nats-token", "t", "--nats-user", "u"]].concat()).contains("one NATS credential"));
        assert!(bad(&[&url[..], &["--nats-user", "u"]].concat()).contains("nats_password"));
        assert!(bad(&["--nats-token", "t"]).contains("without nats"));
        assert!(bad(&[&url[..], &["--nats-ca", "/nowhere/ca.pem"]].concat()).contains("no file"));
        assert!(bad(&[&url[..], &["--nats-cert", "/etc/hostname"]].concat()).contains("go together"));
        let shown = format!("{:?}", load(&[&url[..], &["--nats-token", "s3cret"]].concat()).unwrap());
        assert!(!shown.contains("s3cret"), "settings never show a secret: {shown}");
    }
}
