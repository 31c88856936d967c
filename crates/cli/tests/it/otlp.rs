//! Traces over OTLP: the real binary with `--otlp-endpoint` exports its spans to a
//! receiver here, which decodes them with the protocol's own types
//! (`opentelemetry-proto`). A command sent with a W3C `traceparent` — over HTTP to
//! `behalf serve`, and over NATS to a `behalf command` role — becomes one trace: the
//! request's span is a child of the caller's, the command's span (with its command
//! id) a child of the request's, and its stages children of the command's.

#![allow(clippy::wildcard_enum_match_arm)] // reason: an attribute of another type is shown, not matched

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message as _;
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};

use crate::support;
use support::world::*;
use support::{send_world, Client, Engine, Role, Server};

/// Spans received, as the collector got them.
type Received = Arc<Mutex<Vec<Span>>>;

/// A minimal OTLP/HTTP receiver: answers every POST with 200 and keeps the spans of
/// each `/v1/traces` body. Answers its base URL.
async fn receiver() -> (String, Received) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let spans: Received = Arc::default();
    let kept = Arc::clone(&spans);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let kept = Arc::clone(&kept);
            tokio::spawn(async move {
                let (read, mut write) = stream.into_split();
                let mut read = BufReader::new(read);
                loop {
                    let (mut length, mut line, mut path) = (0usize, String::new(), String::new());
                    if read.read_line(&mut line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    if let Some(p) = line.split_whitespace().nth(1) {
                        path = p.to_owned();
                    }
                    loop {
                        line.clear();
                        if read.read_line(&mut line).await.unwrap_or(0) == 0 {
                            return;
                        }
                        if line == "\r\n" {
                            break;
                        }
                        if let Some((k, v)) = line.split_once(':') {
                            if k.eq_ignore_ascii_case("content-length") {
                                length = v.trim().parse().unwrap_or(0);
                            }
                        }
                    }
                    let mut body = vec![0u8; length];
                    if read.read_exact(&mut body).await.is_err() {
                        return;
                    }
                    if path == "/v1/traces" {
                        let request = ExportTraceServiceRequest::decode(body.as_slice()).expect("OTLP protobuf");
                        let mut k = kept.lock().unwrap();
                        for rs in request.resource_spans {
                            for ss in rs.scope_spans {
                                k.extend(ss.spans);
                            }
                        }
                    }
                    let ok = b"HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n";
                    if write.write_all(ok).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (base, spans)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn attribute(span: &Span, key: &str) -> Option<String> {
    span.attributes.iter().find(|a| a.key == key).and_then(|a| match a.value.as_ref()?.value.as_ref()? {
        Any::StringValue(s) => Some(s.clone()),
        other => Some(format!("{other:?}")),
    })
}

/// Waits for the trace `trace` to hold a command span with `command_id` and its three
/// stages, and checks the tree: caller → request → command → stages.
async fn one_trace(spans: &Received, trace: &str, caller_span: &str, command_id: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got: Vec<Span> = spans.lock().unwrap().iter().filter(|s| hex(&s.trace_id) == trace).cloned().collect();
        let by_name = |name: &str| got.iter().find(|s| s.name == name).cloned();
        if let (Some(request), Some(command), Some(load), Some(decide), Some(commit)) =
            (by_name("POST /v1/commands"), by_name("command"), by_name("load"), by_name("decide"), by_name("commit"))
        {
            assert_eq!(hex(&request.parent_span_id), caller_span, "the request's span is the caller's child");
            assert_eq!(request.parent_span_id.len(), 8);
            assert_eq!(command.parent_span_id, request.span_id, "the command's span is the request's child");
            assert_eq!(attribute(&command, "command_id").as_deref(), Some(command_id), "the command id");
            for stage in [&load, &decide, &commit] {
                assert_eq!(stage.parent_span_id, command.span_id, "{} is a stage of the command", stage.name);
            }
            assert_eq!(attribute(&request, "http.route").as_deref(), Some("/v1/commands"));
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no whole trace {trace} within 30 s: {:?}",
            got.iter().map(|s| &s.name).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

const FAST_EXPORT: [(&str, &str); 1] = [("OTEL_BSP_SCHEDULE_DELAY", "200")];

#[tokio::test(flavor = "multi_thread")]
async fn a_command_over_http_is_one_trace() {
    let (collector, spans) = receiver().await;
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with_env(dir.path(), &["--otlp-endpoint", &collector], &FAST_EXPORT);
    let c = Client::of(&server);
    send_world(&c, &server.admin).await;
    let token = c.token(&server.admin, &agent()).await;
    let (trace, caller) = ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7");
    let mut body = open_o365();
    body["command_id"] = "traced-1".into();
    let answer = c
        .http
        .post(format!("{}/v1/commands", c.base))
        .bearer_auth(&token)
        .header("traceparent", format!("00-{trace}-{caller}-01"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 201);
    one_trace(&spans, trace, caller, "traced-1").await;
}

/// Over NATS: `behalf_client` sends its own `traceparent`; the `behalf command` role's
/// spans are under it. (The trace id is the client's; found by the command id.)
#[tokio::test(flavor = "multi_thread")]
async fn a_command_over_nats_is_one_trace_in_the_command_role() {
    let (collector, spans) = receiver().await;
    let (server, kept) = Engine::Nats.serve();
    let c = Client::of(&server);
    send_world(&c, &server.admin).await;
    let token = c.token(&server.admin, &agent()).await;
    let role_dir = tempfile::tempdir().unwrap();
    let urls = kept.nats_urls();
    let (child, _) = support::spawn_until_with(
        &["command", "--nats", &urls, "--data-dir", role_dir.path().to_str().unwrap(), "--otlp-endpoint", &collector],
        &FAST_EXPORT,
        "serving ",
    );
    let _command = Role(child);
    let client = behalf_client::Client::nats(urls, &token).await.unwrap();
    let command: behalf_domain::Command = serde_json::from_value(open_o365()).unwrap();
    client.send_as(&command, "traced-over-nats", None).await.unwrap();
    // The client's trace: the one whose command span carries this command id.
    let deadline = Instant::now() + Duration::from_secs(30);
    let (trace, caller) = loop {
        let found = spans.lock().unwrap().iter().find_map(|s| {
            (s.name == "command" && attribute(s, "command_id").as_deref() == Some("traced-over-nats"))
                .then(|| hex(&s.trace_id))
        });
        if let Some(trace) = found {
            let request = spans
                .lock()
                .unwrap()
                .iter()
                .find(|s| hex(&s.trace_id) == trace && s.name == "POST /v1/commands")
                .cloned();
            if let Some(r) = request {
                break (trace, hex(&r.parent_span_id));
            }
        }
        assert!(Instant::now() < deadline, "no trace of the command from the command role");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(caller.len(), 16, "the request's parent is the client's span (a remote parent)");
    one_trace(&spans, &trace, &caller, "traced-over-nats").await;
}
