//! Logging and tracing: a tracing-subscriber (JSON or pretty, `RUST_LOG`
//! filter) and, when `OTEL_EXPORTER_OTLP_ENDPOINT` is set, OTLP/HTTP export
//! of spans through tracing-opentelemetry with the W3C trace-context
//! propagator. JSON log lines carry the current span fields, so the
//! `trace_id` recorded on the request span joins logs to traces.

use opentelemetry::{global, trace::TracerProvider as _};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::{Resource, propagation::TraceContextPropagator, trace::SdkTracerProvider};
use tracing_subscriber::{EnvFilter, Layer, layer::SubscriberExt, util::SubscriberInitExt};

use crate::settings::{CommonSettings, LogFormat};

/// Keeps the trace exporter alive; dropping it flushes pending spans.
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take() {
            let _ = provider.shutdown();
        }
    }
}

/// Install the global subscriber. Call once, from `main`, before anything logs.
pub fn init(
    settings: &CommonSettings,
    default_service_name: &str,
) -> anyhow_like::Result<TelemetryGuard> {
    global::set_text_map_propagator(TraceContextPropagator::new());
    let filter = EnvFilter::try_new(&settings.rust_log).map_err(|e| {
        anyhow_like::Error(format!("invalid RUST_LOG {:?}: {e}", settings.rust_log))
    })?;
    let fmt_layer = match settings.log_format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .boxed(),
        LogFormat::Pretty => tracing_subscriber::fmt::layer().compact().boxed(),
    };
    let service_name = settings
        .otel_service_name
        .clone()
        .unwrap_or_else(|| default_service_name.to_owned());
    let (otel_layer, provider) = match &settings.otel_exporter_otlp_endpoint {
        Some(endpoint) => {
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_endpoint(format!("{endpoint}/v1/traces"))
                .build()
                .map_err(|e| anyhow_like::Error(format!("OTLP exporter: {e}")))?;
            let provider = SdkTracerProvider::builder()
                .with_batch_exporter(exporter)
                .with_resource(
                    Resource::builder()
                        .with_service_name(service_name.clone())
                        .build(),
                )
                .build();
            global::set_tracer_provider(provider.clone());
            let tracer = provider.tracer(service_name);
            (
                Some(tracing_opentelemetry::layer().with_tracer(tracer)),
                Some(provider),
            )
        }
        None => (None, None),
    };
    tracing_subscriber::registry()
        .with(filter)
        .with(fmt_layer)
        .with(otel_layer)
        .try_init()
        .map_err(|e| anyhow_like::Error(format!("tracing subscriber: {e}")))?;
    Ok(TelemetryGuard { provider })
}

/// A minimal error for start-up (the library avoids `anyhow`).
pub mod anyhow_like {
    /// A start-up failure with its message.
    #[derive(Debug)]
    pub struct Error(pub String);

    impl std::fmt::Display for Error {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(&self.0)
        }
    }

    impl std::error::Error for Error {}

    /// Result of start-up steps.
    pub type Result<T> = std::result::Result<T, Error>;
}
