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
/// An idle connection whose server stops answering (paused, cut off) gives it up after
/// two missed pings and moves to another node; a busy one never misses a ping (each
/// message sent restarts the timer), which [`leave_a_silent_server`] covers.
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

/// [`connect`], and [`watch`] on the connection for as long as the returned guard
/// (or a clone of it) is kept.
pub async fn connect_kept(to: &Endpoint) -> Result<(async_nats::Client, Kept), LogError> {
    let client = connect(to).await?;
    let task = watch(&client, to);
    Ok((client, Kept { _watch: std::sync::Arc::new(Abort(task)) }))
}

/// Starts [`leave_a_silent_server`] on `client`; abort the task when done with it.
pub(crate) fn watch(client: &async_nats::Client, to: &Endpoint) -> tokio::task::AbortHandle {
    tokio::spawn(leave_a_silent_server(client.clone(), to.clone())).abort_handle()
}

/// Keeps the watch [`connect_kept`] started; the last clone dropped stops it.
#[derive(Clone)]
pub struct Kept {
    _watch: std::sync::Arc<Abort>,
}

pub(crate) struct Abort(tokio::task::AbortHandle);

impl Drop for Abort {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// How often a kept connection looks at what it sent and heard.
const WATCH_EVERY: Duration = Duration::from_millis(500);
/// Messages sent and none heard for this long: is the server still there?
const SILENCE: Duration = Duration::from_secs(1);

/// Moves `client` to another server once its server stops answering at all (a paused
/// or partitioned-off process). The client's own pings do not notice that on a busy
/// connection: every message it sends restarts its ping timer, so a command service
/// that kept retrying against a paused server stayed on it until the node woke (seen:
/// 9.6 s of refusals while JetStream had a new leader at 6.1 s). So: when this
/// connection has sent messages and heard none for a second, every server of `to` is
/// asked on a connection of its own ([`each_server`]); if its own server is not among
/// those that answered, while some server did not, it reconnects (the client draws
/// another server at random). A server that answers but cannot serve — a cluster
/// electing its leaders — is stayed on.
async fn leave_a_silent_server(client: async_nats::Client, to: Endpoint) {
    use std::sync::atomic::Ordering::Relaxed;
    let stats = client.statistics();
    let counts = || (stats.out_messages.load(Relaxed), stats.in_messages.load(Relaxed));
    // What was sent and heard when this connection last heard anything, and since when
    // a message sent after that has gone unanswered.
    let (mut sent_then, mut heard) = counts();
    let mut unanswered_since = None;
    loop {
        tokio::time::sleep(WATCH_EVERY).await;
        let (sent, h) = counts();
        if client.connection_state() != async_nats::connection::State::Connected || h != heard {
            (sent_then, heard, unanswered_since) = (sent, h, None);
            continue;
        }
        if sent == sent_then {
            continue;
        }
        let since = *unanswered_since.get_or_insert_with(tokio::time::Instant::now);
        if since.elapsed() < SILENCE {
            continue;
        }
        let mine = client.server_info().server_id;
        let servers = each_server(&to).await;
        let answered: Vec<String> = servers.iter().flatten().map(|c| c.server_info().server_id).collect();
        if servers.len() > 1 && !answered.contains(&mine) && answered.len() < servers.len() {
            tracing::warn!("the NATS server this process is connected to stopped answering; connecting to another");
            let _ = client.force_reconnect().await;
        }
        (sent_then, heard) = counts();
        unanswered_since = None;
    }
}

/// Each server of `to` on a short-lived connection of its own (the handshake given a
/// second), in the order `to` lists them; `None` for a server that did not complete it.
pub(crate) async fn each_server(to: &Endpoint) -> Vec<Option<async_nats::Client>> {
    let asks = to.url.split(',').map(|url| {
        let one = Endpoint { url: url.trim().to_owned(), ..to.clone() };
        async move { tokio::time::timeout(Duration::from_secs(1), connect(&one)).await.ok()?.ok() }
    });
    futures::future::join_all(asks).await
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
