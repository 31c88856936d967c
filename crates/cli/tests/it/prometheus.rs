//! A real Prometheus (Debian's `prometheus`, which `./dev setup` installs) scrapes a
//! running `behalf serve` under load every second; asked the p99 of the HTTP latency
//! and of a command stage from the histograms it scraped, it answers finite numbers
//! above zero. What an operator's Prometheus and the dashboard in `deploy/grafana/`
//! read is what this test reads.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support;
use support::world::*;
use support::{send_world, Client, Server};

/// The Prometheus binary: `BEHALF_PROMETHEUS`, else `prometheus` on the PATH.
fn prometheus_binary() -> String {
    std::env::var("BEHALF_PROMETHEUS").unwrap_or_else(|_| "prometheus".to_owned())
}

struct Prometheus {
    child: Child,
    base: String,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Prometheus scraping `target` (HOST:PORT) every second.
fn start_prometheus(target: &str) -> Prometheus {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: behalf\n    static_configs:\n      - targets: ['{target}']\n"
        ),
    )
    .unwrap();
    let port = free_port();
    let child = Command::new(prometheus_binary())
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {} ({e}); `./dev setup` installs it", prometheus_binary()));
    Prometheus { child, base: format!("http://127.0.0.1:{port}"), _dir: dir }
}

/// One value of an instant query, if the answer holds one.
async fn query(http: &reqwest::Client, prometheus: &str, q: &str) -> Option<f64> {
    let r = http.get(format!("{prometheus}/api/v1/query")).query(&[("query", q)]).send().await.ok()?;
    let v: Value = r.json().await.ok()?;
    v["data"]["result"][0]["value"][1].as_str()?.parse().ok()
}

#[tokio::test(flavor = "multi_thread")]
async fn prometheus_reads_the_latency_histograms() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let c = Client::of(&server);
    send_world(&c, &server.admin).await;
    let agent_token = c.token(&server.admin, &agent()).await;
    let prometheus = start_prometheus(server.base.trim_start_matches("http://"));
    let http = reqwest::Client::new();

    let http_p99 = "histogram_quantile(0.99, sum by (le) (rate(behalf_http_request_duration_seconds_bucket[30s])))";
    let commit_p99 = "histogram_quantile(0.99, sum by (le) (rate(behalf_command_stage_duration_seconds_bucket{stage=\"commit\"}[30s])))";
    let deadline = Instant::now() + Duration::from_secs(60);
    let (mut http_seen, mut commit_seen) = (None, None);
    // Load while Prometheus scrapes, until both quantiles are answered.
    while Instant::now() < deadline && (http_seen.is_none() || commit_seen.is_none()) {
        for _ in 0..20 {
            let (status, answer) = c.post(&agent_token, &open_o365()).await;
            assert_eq!(status, 201, "{answer}");
        }
        http_seen = query(&http, &prometheus.base, http_p99).await.filter(|v| v.is_finite());
        commit_seen = query(&http, &prometheus.base, commit_p99).await.filter(|v| v.is_finite());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let http_p99 = http_seen.expect("Prometheus answers the HTTP p99 within a minute");
    let commit_p99 = commit_seen.expect("Prometheus answers the commit stage's p99 within a minute");
    assert!(http_p99 > 0.0 && http_p99 < 10.0, "the HTTP p99 is a latency in seconds: {http_p99}");
    assert!(commit_p99 > 0.0 && commit_p99 < 10.0, "the commit p99 is a latency in seconds: {commit_p99}");
    // The route is the template, never the raw path.
    let routes = http.get(format!("{}/api/v1/label/route/values", prometheus.base)).send().await.unwrap();
    let routes: Value = routes.json().await.unwrap();
    let routes: Vec<&str> = routes["data"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    assert!(routes.contains(&"/v1/commands"), "{routes:?}");
    assert!(routes.iter().all(|r| !r.contains(CUSTOMER)), "no raw path as a label: {routes:?}");

    // Every series the dashboard in deploy/grafana/ draws is one this server exposes.
    let exposed = http.get(format!("{}/metrics", server.base)).send().await.unwrap().text().await.unwrap();
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/grafana/behalf.json")).unwrap(),
    )
    .unwrap();
    let mut drawn = 0;
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            for name in
                expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).filter(|w| w.starts_with("behalf_"))
            {
                drawn += 1;
                assert!(
                    exposed.lines().any(|l| l.starts_with(name)),
                    "the dashboard draws {name}, which /metrics lacks"
                );
            }
        }
    }
    assert!(drawn >= 12, "the dashboard draws Behalf's series ({drawn})");
    assert!(exposed.contains("behalf_follower_lag_seconds{follower=\"views\"}"), "follower lag in seconds");
    assert!(exposed.contains("behalf_queue_depth{queue=\"commercial.office365\"}"), "queue depth");
}
