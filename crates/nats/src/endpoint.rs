//! Where and how to reach NATS: the server URLs, the credentials (user and password,
//! a token, an NKey seed file or a creds file) and TLS (`tls://` URLs, a CA, a client
//! certificate for mutual TLS). Every connection Behalf makes goes through
//! [`connect`]. Secrets never reach a log line: `Debug` shows only which kind of
//! credential is set.

use std::path::PathBuf;
use std::time::Duration;

use behalf_log::LogError;

/// How long one connection handshake (TCP, TLS, the server's INFO) may take before the
/// client tries the next server — on the first connection and on every reconnection.
/// The client draws the next server at random, so a reconnection can land on the very
/// node that was paused: its kernel still accepts the TCP connection, and the client's
/// default (5 s) then held a command service away from the cluster for 5 s more after
/// JetStream had a new leader (10.2 s against the raw publisher's 6.1 s). 2 s, the Go
/// client's default, leaves room for TLS across regions.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// A server that stops answering (paused, cut off) is given up after two missed pings,
/// and the client moves to another node of the cluster.
pub(crate) const PING_INTERVAL: Duration = Duration::from_secs(1);

/// How long a publish's acknowledgement may take before it is tried again. Short, so
/// that a lost leader costs the election and little more.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a JetStream API request (a read, a consumer made) may take. A stream
/// without a leader drops them unanswered, so this is how late a process learns that
/// one was elected: the client's own default (10 s) held a reader's consumer, and with
/// it every append waiting for the follower, for 10 s after a cluster restart.
const API_TIMEOUT: Duration = Duration::from_secs(1);

/// The wait before the `attempt`-th reconnection: 100 ms more each time, at most 1 s
/// (the client's default doubles up to 4 s, which after a whole cluster restarted
/// kept a process away for seconds after the servers were back).
fn reconnect_delay(attempt: usize) -> Duration {
    Duration::from_millis(100 * attempt.min(10) as u64)
}

/// The credential a connection presents.
#[derive(Clone, Default, PartialEq, Eq)]
pub enum Credential {
    #[default]
    None,
    UserPassword {
        user: String,
        password: String,
    },
    Token(String),
    /// A file holding an NKey seed (`SU…`).
    NKey(PathBuf),
    /// A `.creds` file (a user JWT and its NKey seed).
    Creds(PathBuf),
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credential::None => f.write_str("None"),
            Credential::UserPassword { user, .. } => write!(f, "UserPassword({user}, password hidden)"),
            Credential::Token(_) => f.write_str("Token(hidden)"),
            Credential::NKey(p) => write!(f, "NKey({})", p.display()),
            Credential::Creds(p) => write!(f, "Creds({})", p.display()),
        }
    }
}

/// One NATS deployment as a client reaches it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Endpoint {
    /// One or more server URLs, comma-separated (`nats://…`, or `tls://…` to require TLS).
    pub url: String,
    pub credential: Credential,
    /// A CA certificate file (PEM) the servers' certificates are checked against; TLS is
    /// required when it is set.
    pub ca: Option<PathBuf>,
    /// A client certificate and its key (PEM), for servers that verify clients (mutual TLS).
    pub client_cert: Option<(PathBuf, PathBuf)>,
}

impl Endpoint {
    /// The servers at `url`, without credentials or TLS files.
    pub fn at(url: impl Into<String>) -> Endpoint {
        Endpoint { url: url.into(), ..Endpoint::default() }
    }

    /// Whether TLS is required (a `tls://` URL, a CA or a client certificate).
    pub fn requires_tls(&self) -> bool {
        self.ca.is_some() || self.client_cert.is_some() || self.url.split(',').any(|u| u.trim().starts_with("tls://"))
    }
}

impl From<&str> for Endpoint {
    fn from(url: &str) -> Endpoint {
        Endpoint::at(url)
    }
}

impl From<String> for Endpoint {
    fn from(url: String) -> Endpoint {
        Endpoint::at(url)
    }
}

impl From<&String> for Endpoint {
    fn from(url: &String) -> Endpoint {
        Endpoint::at(url.as_str())
    }
}

impl From<&Endpoint> for Endpoint {
    fn from(e: &Endpoint) -> Endpoint {
        e.clone()
    }
}

/// Connects to the endpoint's servers with its credential and TLS. A refused login or a
/// failed handshake fails here, at once, with what was refused — the client does not
/// keep retrying a first connection.
pub async fn connect(to: &Endpoint) -> Result<async_nats::Client, LogError> {
    let url = &to.url;
    let addrs = url
        .split(',')
        .map(|u| u.trim().parse::<async_nats::ServerAddr>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| LogError::Storage(format!("NATS URL {url:?} is not valid: {e}")))?;
    let mut options = match &to.credential {
        Credential::None => async_nats::ConnectOptions::new(),
        Credential::UserPassword { user, password } => {
            async_nats::ConnectOptions::with_user_and_password(user.clone(), password.clone())
        }
        Credential::Token(t) => async_nats::ConnectOptions::with_token(t.clone()),
        Credential::NKey(path) => {
            let seed = std::fs::read_to_string(path)
                .map_err(|e| LogError::Storage(format!("cannot read the NKey seed file {}: {e}", path.display())))?;
            async_nats::ConnectOptions::with_nkey(seed.trim().to_owned())
        }
        Credential::Creds(path) => async_nats::ConnectOptions::with_credentials_file(path.clone())
            .await
            .map_err(|e| LogError::Storage(format!("cannot read the creds file {}: {e}", path.display())))?,
    };
    if let Some(ca) = &to.ca {
        options = options.add_root_certificates(ca.clone());
    }
    if let Some((cert, key)) = &to.client_cert {
        options = options.add_client_certificate(cert.clone(), key.clone());
    }
    options
        .name("behalf")
        .require_tls(to.requires_tls())
        .connection_timeout(CONNECT_TIMEOUT)
        .ping_interval(PING_INTERVAL)
        .request_timeout(Some(API_TIMEOUT))
        .reconnect_delay_callback(reconnect_delay)
        .connect(addrs)
        .await
        .map_err(|e| LogError::Storage(refused(url, &e)))
}

/// What a failed first connection says: authorization refusals named as such.
fn refused(url: &str, e: &async_nats::ConnectError) -> String {
    use async_nats::ConnectErrorKind as K;
    match e.kind() {
        K::AuthorizationViolation | K::Authentication => {
            format!("NATS at {url} refused the login (authorization violation): check the credentials ({e})")
        }
        K::Tls => format!("the TLS handshake with NATS at {url} failed: {e}"),
        K::ServerParse | K::Dns | K::Io | K::TimedOut | K::MaxReconnects => {
            format!("cannot connect to NATS at {url}: {e}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_stay_out_of_debug() {
        let e = Endpoint {
            credential: Credential::UserPassword { user: "ops".into(), password: "hunter2".into() },
            ..Endpoint::at("nats://a:4222")
        };
        let shown = format!("{e:?}");
        assert!(shown.contains("ops") && !shown.contains("hunter2"), "{shown}");
        let t = Endpoint { credential: Credential::Token("s3cret".into()), ..Endpoint::at("nats://a:4222") };
        assert!(!format!("{t:?}").contains("s3cret"));
    }

    #[test]
    fn tls_is_required_by_url_or_files() {
        assert!(!Endpoint::at("nats://a:4222").requires_tls());
        assert!(Endpoint::at("nats://a:4222, tls://b:4222").requires_tls());
        assert!(Endpoint { ca: Some("ca.pem".into()), ..Endpoint::at("nats://a:4222") }.requires_tls());
    }
}
