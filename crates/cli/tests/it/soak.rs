//! `behalf bench soak`, short form: a day of two minutes (one on a 3-node NATS cluster)
//! over HTTP against the binary's own server, every answer predicted by the model, and
//! the end checks (queues delivered once, every ticket as acknowledged, the chain, the
//! views against a rebuild). `BEHALF_SOAK_MINUTES` runs both longer (RSS and p99 bounds
//! are asserted from 10 minutes on).

fn soak(default_minutes: &str, more: &[&str]) {
    let minutes = std::env::var("BEHALF_SOAK_MINUTES").unwrap_or_else(|_| default_minutes.into());
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_behalf"))
        .args(["bench", "soak", "--minutes", &minutes, "--partners", "8", "--customers", "80"])
        .args(["--rate", "100", "--workers", "4", "--seed", "29", "--report-seconds", "30"])
        .args(more)
        .env("BEHALF_LOG", "error")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.lines().any(|l| l == "soak: ok"), "{text}");
    // The day predicted refusals by the GDAP rules, and saw them.
    let predicted = text.lines().find_map(|l| l.strip_prefix("predicted refusals: ")).unwrap_or_default();
    for code in ["partner.not_admin_agent", "gdap.no_relationship", "gdap.relationship_inactive", "gdap.no_access"] {
        assert!(predicted.contains(code), "{predicted}");
    }
    assert!(text.contains("0 not as acknowledged") && text.contains(", 0 delivered twice"), "{text}");
}

#[test]
fn a_short_day_is_answered_as_the_model_predicts() {
    soak("2", &[]);
}

#[test]
fn a_short_day_on_a_nats_cluster_is_answered_as_the_model_predicts() {
    soak("1", &["--nats-nodes", "3"]);
}
