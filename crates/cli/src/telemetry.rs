//! Log lines and traces. Log lines go to standard error, filtered by `BEHALF_LOG` (an
//! `EnvFilter`, default `info`). Traces are off unless an OTLP endpoint is given
//! (`--otlp-endpoint`, `[log] otlp_endpoint`) or the standard `OTEL_EXPORTER_OTLP_ENDPOINT`
//! / `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is set; then every span of the request's way
//! (the HTTP or NATS request, the command, its stages) is exported over OTLP/HTTP
//! (protobuf) by a batch processor, and the SDK reads the other `OTEL_*` variables
//! (`OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_EXPORTER_OTLP_HEADERS`,
//! `OTEL_BSP_*`, …) as the OpenTelemetry specification says. A request's W3C
//! `traceparent` makes its spans part of the caller's trace (`behalf_http`).

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer as _};

use crate::settings::LogFormat;

/// What the spans exported carry at most: Behalf's own at `debug` (the command's
/// stages), everything else at `info`.
const TRACED: &str = "info,behalf=debug,behalf_http=debug,behalf_service=debug";

/// The trace exporter while the process runs; dropped, it sends what is pending.
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take() {
            if let Err(e) = provider.shutdown() {
                eprintln!("behalf: the last traces were not sent: {e}");
            }
        }
    }
}

/// Sets up log lines (as `format`) and, when an endpoint is set, traces named for
/// `role` (`behalf-serve`, `behalf-command`, …, unless `OTEL_SERVICE_NAME` says).
pub fn init(format: LogFormat, otlp_endpoint: Option<&str>, role: &str) -> Telemetry {
    let filter = EnvFilter::try_from_env("BEHALF_LOG").unwrap_or_else(|_| "info".into());
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let lines = tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_ansi(ansi);
    let lines = match format {
        LogFormat::Human => lines.boxed(),
        LogFormat::Json => lines.json().boxed(),
    };
    let provider = match exporter(otlp_endpoint, role) {
        Ok(provider) => provider,
        Err(e) => {
            eprintln!("behalf: traces are off: {e}");
            None
        }
    };
    let traces = provider
        .as_ref()
        .map(|p| tracing_opentelemetry::layer().with_tracer(p.tracer("behalf")).with_filter(EnvFilter::new(TRACED)));
    opentelemetry::global::set_text_map_propagator(opentelemetry_sdk::propagation::TraceContextPropagator::new());
    tracing_subscriber::registry().with(lines.with_filter(filter)).with(traces).init();
    Telemetry { provider }
}

/// The tracer provider, when an endpoint is set.
fn exporter(flag: Option<&str>, role: &str) -> Result<Option<SdkTracerProvider>, String> {
    use opentelemetry_otlp::WithExportConfig as _;
    let set = |name: &str| std::env::var(name).is_ok_and(|v| !v.trim().is_empty());
    if flag.is_none() && !set("OTEL_EXPORTER_OTLP_ENDPOINT") && !set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") {
        return Ok(None);
    }
    let exporter =
        opentelemetry_otlp::SpanExporter::builder().with_http().with_protocol(opentelemetry_otlp::Protocol::HttpBinary);
    let exporter = match flag {
        Some(base) => exporter.with_endpoint(format!("{}/v1/traces", base.trim_end_matches('/'))),
        None => exporter,
    };
    let exporter = exporter.build().map_err(|e| format!("cannot build the OTLP exporter: {e}"))?;
    let mut resource = opentelemetry_sdk::Resource::builder();
    if !set("OTEL_SERVICE_NAME") {
        resource = resource.with_service_name(format!("behalf-{role}"));
    }
    Ok(Some(SdkTracerProvider::builder().with_batch_exporter(exporter).with_resource(resource.build()).build()))
}
