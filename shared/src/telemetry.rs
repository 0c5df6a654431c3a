//! Logging and tracing: a tracing-subscriber (JSON or pretty, `RUST_LOG`
//! filter) and, when `OTEL_EXPORTER_OTLP_ENDPOINT` is set, OTLP/HTTP export
//! of spans through tracing-opentelemetry with the W3C trace-context
//! propagator. JSON log lines carry the current span fields, so the
//! `trace_id` and `span_id` recorded on the request span join logs to traces.
//!
//! Export never blocks a request: finished spans go into a bounded queue
//! that a background thread drains in batches (`OTEL_BSP_*` tune it). When
//! the collector is down or slow, spans are dropped, never waited for, and
//! counted in `otel_spans_dropped_total{reason}`: `queue_full` when the queue
//! is full at the end of a span, `export_failed` for every span of a batch
//! the collector did not take. `otel_spans_exported_total` counts the rest.
//! (The SDK's batch processor only logs its own drops, so a small admission
//! gate in front of it keeps the queue bounded and counts them here.)
//!
//! Only OTLP over HTTP/protobuf is offered: the gRPC exporter needs tonic,
//! which is not worth its weight for one exporter.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use opentelemetry::{global, trace::TracerProvider as _};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::{
    Resource,
    error::OTelSdkResult,
    propagation::TraceContextPropagator,
    trace::{
        BatchConfigBuilder, BatchSpanProcessor, SdkTracer, SdkTracerProvider, Span, SpanData,
        SpanExporter, SpanProcessor,
    },
};
use tracing_subscriber::{
    EnvFilter, Layer, layer::SubscriberExt, registry::LookupSpan, util::SubscriberInitExt,
};

use crate::settings::{CommonSettings, LogFormat};

/// Spans dropped instead of exported, by `reason` (`queue_full`, `export_failed`).
pub const SPANS_DROPPED: &str = "otel_spans_dropped_total";
/// Spans the collector accepted.
pub const SPANS_EXPORTED: &str = "otel_spans_exported_total";

/// Spans a service may hold for export when `OTEL_BSP_MAX_QUEUE_SIZE` is unset (the SDK's default).
const DEFAULT_MAX_QUEUE_SIZE: usize = 2_048;

/// Whether an OpenTelemetry layer is installed in this process.
static EXPORTING: AtomicBool = AtomicBool::new(false);

/// Whether spans are exported (an OpenTelemetry layer is installed).
///
/// Hot paths check this (one relaxed load) before making spans that only
/// matter to a trace, such as the span of each Redis command, so they cost
/// nothing when tracing is off.
pub fn exporting() -> bool {
    EXPORTING.load(Ordering::Relaxed)
}

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
    // Install the Prometheus recorder before a service registers its first
    // metric: a counter made before it (say, at start-up, before the
    // scaffold) would be a no-op handle and never show on `/metrics`.
    crate::metrics::handle();
    global::set_text_map_propagator(TraceContextPropagator::new());
    // Two filters, one per layer: `RUST_LOG` picks the log lines and
    // `OTEL_TRACES_FILTER` the exported spans, so a service that logs only
    // warnings still exports its request spans (ARCHITECTURE.md, "Telemetry").
    let filter = env_filter("RUST_LOG", &settings.rust_log)?;
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
    let endpoint = settings
        .otel_exporter_otlp_endpoint
        .as_deref()
        .filter(|e| !e.is_empty());
    let (otel_layer, provider) = match endpoint {
        Some(endpoint) => {
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_endpoint(format!("{endpoint}/v1/traces"))
                .build()
                .map_err(|e| anyhow_like::Error(format!("OTLP exporter: {e}")))?;
            let provider = tracer_provider(exporter, &service_name);
            global::set_tracer_provider(provider.clone());
            let spans = env_filter("OTEL_TRACES_FILTER", &settings.otel_traces_filter)?;
            (
                Some(layer(&provider, &service_name).with_filter(spans)),
                Some(provider),
            )
        }
        None => (None, None),
    };
    tracing_subscriber::registry()
        .with(fmt_layer.with_filter(filter))
        .with(otel_layer)
        .try_init()
        .map_err(|e| anyhow_like::Error(format!("tracing subscriber: {e}")))?;
    Ok(TelemetryGuard { provider })
}

/// An `EnvFilter` from the setting `name`, or a start-up error naming it.
fn env_filter(name: &str, directives: &str) -> anyhow_like::Result<EnvFilter> {
    EnvFilter::try_new(directives)
        .map_err(|e| anyhow_like::Error(format!("invalid {name} {directives:?}: {e}")))
}

/// The tracing layer that turns spans into OpenTelemetry spans of `provider`.
///
/// Installing it (in [`init`], or in a test's own subscriber) also turns on
/// the spans only traces need (see [`exporting`]).
pub fn layer<S>(
    provider: &SdkTracerProvider,
    service_name: &str,
) -> tracing_opentelemetry::OpenTelemetryLayer<S, SdkTracer>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
{
    EXPORTING.store(true, Ordering::Relaxed);
    tracing_opentelemetry::layer()
        .with_tracer(provider.tracer(service_name.to_owned()))
        // Busy/idle time costs two clock reads per poll of every span, and the
        // thread is noise for async code: keep spans cheap (the code location stays).
        .with_tracked_inactivity(false)
        .with_threads(false)
}

/// A tracer provider for `service_name` that exports through `exporter` in
/// batches, off the request path, dropping and counting spans it cannot
/// export (see the module docs). The queue holds `OTEL_BSP_MAX_QUEUE_SIZE`
/// spans (2,048 by default).
pub fn tracer_provider<E>(exporter: E, service_name: &str) -> SdkTracerProvider
where
    E: SpanExporter + 'static,
{
    let max_queue_size = std::env::var("OTEL_BSP_MAX_QUEUE_SIZE")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&size| size > 0)
        .unwrap_or(DEFAULT_MAX_QUEUE_SIZE);
    tracer_provider_with_queue(exporter, service_name, max_queue_size)
}

/// [`tracer_provider`] with an explicit queue bound (tests use a small one).
pub fn tracer_provider_with_queue<E>(
    exporter: E,
    service_name: &str,
    max_queue_size: usize,
) -> SdkTracerProvider
where
    E: SpanExporter + 'static,
{
    // The counters must come from the Prometheus recorder, so install it first.
    crate::metrics::handle();
    let max_queue_size = max_queue_size.max(1);
    let pending = Arc::new(AtomicUsize::new(0));
    let dropped = |reason: &'static str| {
        let counter = metrics::counter!(SPANS_DROPPED, "reason" => reason);
        // Present from the start, so a dashboard shows 0 rather than nothing.
        counter.increment(0);
        counter
    };
    let exported = metrics::counter!(SPANS_EXPORTED);
    exported.increment(0);
    let exporter = CountingExporter {
        inner: exporter,
        pending: pending.clone(),
        exported,
        failed: dropped("export_failed"),
    };
    // BatchConfigBuilder::default() reads the other OTEL_BSP_* variables.
    let config = BatchConfigBuilder::default()
        .with_max_queue_size(max_queue_size)
        .build();
    let batch = BatchSpanProcessor::builder(exporter)
        .with_batch_config(config)
        .build();
    SdkTracerProvider::builder()
        .with_span_processor(AdmissionGate {
            inner: batch,
            pending,
            capacity: max_queue_size,
            dropped: dropped("queue_full"),
        })
        .with_resource(
            Resource::builder()
                .with_service_name(service_name.to_owned())
                .build(),
        )
        .build()
}

/// In front of the batch processor: lets a finished span in only while
/// fewer than `capacity` spans wait for export, and counts the others.
///
/// `pending` goes up here and down when the exporter takes a batch, so it
/// bounds what sits in the processor's queue and batch: the processor never
/// has to drop a span silently. One atomic add per span; no lock.
#[derive(Debug)]
struct AdmissionGate<P> {
    inner: P,
    pending: Arc<AtomicUsize>,
    capacity: usize,
    dropped: metrics::Counter,
}

impl<P: SpanProcessor> SpanProcessor for AdmissionGate<P> {
    fn on_start(&self, span: &mut Span, cx: &opentelemetry::Context) {
        self.inner.on_start(span, cx);
    }

    fn on_end(&self, span: SpanData) {
        if self.pending.fetch_add(1, Ordering::AcqRel) >= self.capacity {
            self.pending.fetch_sub(1, Ordering::AcqRel);
            self.dropped.increment(1);
            return;
        }
        self.inner.on_end(span);
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// The exporter the batch processor calls (on its own thread): releases the
/// batch from [`AdmissionGate`]'s count and counts what became of it.
#[derive(Debug)]
struct CountingExporter<E> {
    inner: E,
    pending: Arc<AtomicUsize>,
    exported: metrics::Counter,
    failed: metrics::Counter,
}

impl<E: SpanExporter> SpanExporter for CountingExporter<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let spans = batch.len();
        // Saturating: spans the processor took in before a shutdown may never come back.
        let _ = self
            .pending
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |pending| {
                Some(pending.saturating_sub(spans))
            });
        let result = self.inner.export(batch).await;
        let counter = if result.is_ok() {
            &self.exported
        } else {
            &self.failed
        };
        counter.increment(spans as u64);
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
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
