//! Install SpoolExporter in an OpenTelemetry SDK tracer provider.
//!
//! ```sh
//! cargo run --example exporter                                        # no endpoint: spans are spooled
//! OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318 cargo run --example exporter
//! ```
//!
//! When the backend is up, spans go straight to it (and anything spooled earlier goes first);
//! when it is down, not ready or slow, they are kept in the spool and sent by a later run.

use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::trace::{Tracer, TracerProvider as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracespool::delivery::DeliverySettings;
use tracespool::exporter::SpoolExporter;
use tracespool::spool::{Spool, SpoolOptions};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let endpoint = std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT")
        .ok()
        .map(|base| format!("{}/v1/traces", base.trim_end_matches('/')).parse())
        .transpose()?;
    let settings = DeliverySettings {
        endpoint,
        budget: Duration::from_secs(2), // the most a run spends on the network
        ..DeliverySettings::default()
    };
    let spool_dir = std::env::temp_dir().join("tracespool-example-exporter");
    let exporter = SpoolExporter::new(Spool::open(&spool_dir, SpoolOptions::default())?, settings)?;

    let provider = SdkTracerProvider::builder()
        .with_resource(
            Resource::builder()
                .with_service_name("example-hook")
                .build(),
        )
        .with_simple_exporter(exporter) // or .with_batch_exporter(exporter)
        .build();
    provider.tracer("example").in_span("install", |_cx| {
        // … the hook's real work …
    });
    provider.tracer("example").in_span("config-changed", |cx| {
        use opentelemetry::trace::TraceContextExt;
        cx.span().set_attribute(KeyValue::new("unit", "app/0"));
    });
    // Delivers (or spools) what is pending, within the budget.
    provider.shutdown()?;

    let stats = Spool::open(&spool_dir, SpoolOptions::default())?.stats()?;
    println!(
        "spool {}: {} batches ({} spans) waiting",
        spool_dir.display(),
        stats.batches,
        stats.spans
    );
    Ok(())
}
