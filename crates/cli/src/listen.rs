//! How every role serves HTTP and stops: one listener type (plain HTTP, or HTTPS with
//! a certificate reloaded on SIGHUP) and one shutdown signal (SIGTERM or Ctrl-C).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use tokio::net::TcpListener;

/// An HTTP listener, bound (so its address is known before it serves).
pub struct Http {
    listener: TcpListener,
    tls: Option<Arc<behalf_http::Tls>>,
    pub addr: SocketAddr,
}

impl Http {
    /// Binds `addr` (port 0 picks a free port); HTTPS only when `tls` is given.
    pub async fn bind(addr: SocketAddr, tls: Option<&behalf_http::TlsFiles>) -> anyhow::Result<Http> {
        let tls = https(tls)?;
        let listener = TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr}"))?;
        let addr = listener.local_addr()?;
        Ok(Http { listener, tls, addr })
    }

    /// Serves `router` until `shutdown`, then finishes what is in flight.
    pub async fn serve(
        self,
        router: behalf_http::Router,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let served = match self.tls {
            Some(tls) => behalf_http::serve_tls(self.listener, router, tls, shutdown).await,
            None => behalf_http::serve(self.listener, router, shutdown).await,
        };
        served.context("the HTTP server failed")
    }
}

/// The HTTPS certificate, loaded — and loaded again on every SIGHUP
/// (a certificate that does not load then is logged, and the old one stays) — or
/// `None` for plain HTTP.
fn https(files: Option<&behalf_http::TlsFiles>) -> anyhow::Result<Option<Arc<behalf_http::Tls>>> {
    let Some(files) = files else { return Ok(None) };
    let tls = behalf_http::Tls::load(files.clone()).map_err(anyhow::Error::msg)?;
    let reloading = Arc::clone(&tls);
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .context("cannot listen for SIGHUP (the certificate's reload)")?;
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            match reloading.reload() {
                Ok(()) => tracing::info!("SIGHUP: reloaded the TLS certificate"),
                Err(e) => tracing::warn!(error = %e, "SIGHUP: the TLS certificate did not load; keeping the old one"),
            }
        }
    });
    Ok(Some(tls))
}

/// Resolves on SIGTERM or Ctrl-C. The SIGTERM handler is installed when this is
/// called, not when the future is first polled: a server that answers before its
/// stop future is polled must not die of a SIGTERM's default action. Call it inside
/// the runtime.
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    let term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    async move {
        let ctrl_c = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        let term = async move {
            match term {
                Some(mut s) => {
                    s.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            () = ctrl_c => {},
            () = term => {},
        }
        tracing::info!("shutting down");
    }
}
