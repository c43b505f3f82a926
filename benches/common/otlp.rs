//! OTLP export requests of every signal, as a busy service's SDK would send them: deterministic
//! (one seed), realistic names, ids and attributes, `n` items (spans, data points, log records)
//! per request.

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs, SeverityNumber};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Gauge, Histogram, HistogramDataPoint, Metric, NumberDataPoint,
    ResourceMetrics, ScopeMetrics, Sum, metric, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    ResourceSpans, ScopeSpans, Span, Status, span, status,
};

/// A small deterministic generator (xorshift64*), for ids and choices.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            out.extend_from_slice(&self.next().to_le_bytes());
        }
        out.truncate(n);
        out
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// Uniform in `0..1`.
    pub fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

pub fn kv(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

pub fn s(v: &str) -> any_value::Value {
    any_value::Value::StringValue(v.to_owned())
}

pub fn i(v: i64) -> any_value::Value {
    any_value::Value::IntValue(v)
}

const ROUTES: [&str; 6] = [
    "/api/users/{id}",
    "/api/orders",
    "/api/orders/{id}/items",
    "/healthz",
    "/api/search",
    "/api/cart/{id}",
];
const TABLES: [&str; 4] = ["users", "orders", "order_items", "carts"];
const METHODS: [&str; 4] = ["GET", "POST", "PUT", "DELETE"];
const STATUSES: [i64; 4] = [200, 201, 404, 500];

/// The service every request comes from; `instance` tells the bodies apart.
fn resource(instance: usize) -> Resource {
    Resource {
        attributes: vec![
            kv("service.name", s("checkout-api")),
            kv("service.version", s("2.14.1")),
            kv("deployment.environment.name", s("bench")),
            kv("host.name", s("bench-host-1")),
            kv("process.pid", i(4242 + instance as i64)),
            kv("telemetry.sdk.name", s("opentelemetry")),
            kv("telemetry.sdk.language", s("rust")),
        ],
        ..Default::default()
    }
}

fn scope(name: &str) -> Option<InstrumentationScope> {
    Some(InstrumentationScope {
        name: name.to_owned(),
        version: "2.14.1".to_owned(),
        ..Default::default()
    })
}

// ---------------------------------------------------------------------------------------------
// Traces.

/// Request `instance` (of a run's distinct bodies): `n` spans, traces of one server span with
/// client/internal children, in one scope.
pub fn traces(rng: &mut Rng, instance: usize, n: usize, base_ns: u64) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(resource(instance)),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "checkout-api".to_owned(),
                    version: "2.14.1".to_owned(),
                    ..Default::default()
                }),
                spans: request_spans(rng, n, base_ns),
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn request_spans(rng: &mut Rng, n: usize, base_ns: u64) -> Vec<Span> {
    let mut spans = Vec::with_capacity(n);
    while spans.len() < n {
        let trace_id = rng.bytes(16);
        let root_id = rng.bytes(8);
        let route = ROUTES[rng.below(ROUTES.len() as u64) as usize];
        let start = base_ns + rng.below(1_000_000_000);
        let dur = 2_000_000 + rng.below(80_000_000);
        let status_code = [200, 200, 200, 201, 404, 500][rng.below(6) as usize];
        spans.push(Span {
            trace_id: trace_id.clone(),
            span_id: root_id.clone(),
            flags: 0x101,
            name: format!("GET {route}"),
            kind: span::SpanKind::Server as i32,
            start_time_unix_nano: start,
            end_time_unix_nano: start + dur,
            attributes: vec![
                kv("http.request.method", s("GET")),
                kv("http.route", s(route)),
                kv(
                    "url.path",
                    s(&route.replace("{id}", &rng.below(100_000).to_string())),
                ),
                kv("http.response.status_code", i(status_code)),
                kv("server.address", s("api.internal.example.com")),
                kv(
                    "user_agent.original",
                    s("Mozilla/5.0 (X11; Linux x86_64) bench/1.0"),
                ),
            ],
            status: Some(Status {
                message: String::new(),
                code: if status_code >= 500 {
                    status::StatusCode::Error as i32
                } else {
                    status::StatusCode::Unset as i32
                },
            }),
            ..Default::default()
        });
        let children = 3 + rng.below(7) as usize;
        for c in 0..children {
            if spans.len() >= n {
                break;
            }
            let cstart = start + (dur / (children as u64 + 1)) * c as u64;
            let cdur = dur / (children as u64 + 2);
            let table = TABLES[rng.below(TABLES.len() as u64) as usize];
            let (name, kind, attributes) = if c % 3 == 2 {
                (
                    "render".to_owned(),
                    span::SpanKind::Internal,
                    vec![
                        kv("template", s("page.html")),
                        kv("cache.hit", any_value::Value::BoolValue(rng.below(2) == 0)),
                    ],
                )
            } else {
                (
                    format!("SELECT {table}"),
                    span::SpanKind::Client,
                    vec![
                        kv("db.system.name", s("postgresql")),
                        kv("db.namespace", s("shop")),
                        kv("db.collection.name", s(table)),
                        kv("db.operation.name", s("SELECT")),
                        kv(
                            "db.query.text",
                            s(&format!("SELECT * FROM {table} WHERE id = $1")),
                        ),
                        kv("server.port", i(5432)),
                    ],
                )
            };
            spans.push(Span {
                trace_id: trace_id.clone(),
                span_id: rng.bytes(8),
                parent_span_id: root_id.clone(),
                flags: 0x101,
                name,
                kind: kind as i32,
                start_time_unix_nano: cstart,
                end_time_unix_nano: cstart + cdur,
                attributes,
                ..Default::default()
            });
        }
    }
    spans
}

// ---------------------------------------------------------------------------------------------
// Metrics.

#[derive(Clone, Copy)]
enum Kind {
    /// Cumulative explicit-bucket histogram (the SDKs' default bounds for durations or sizes).
    Histogram,
    /// Cumulative monotonic sum (a counter).
    Counter,
    /// Cumulative non-monotonic sum (an up-down counter).
    UpDown,
    Gauge,
}

/// One instrument of a periodic export: its scope, name, unit, kind, and how many of the 512
/// data points of a default request are its series (attribute combinations).
struct Instrument {
    scope: &'static str,
    name: &'static str,
    unit: &'static str,
    kind: Kind,
    series: usize,
}

/// What a web service's SDK exports each period: mostly histograms with attributes, a few
/// counters and gauges, four scopes. The series add up to 512.
const INSTRUMENTS: [Instrument; 11] = [
    Instrument {
        scope: "io.opentelemetry.http.server",
        name: "http.server.request.duration",
        unit: "s",
        kind: Kind::Histogram,
        series: 160,
    },
    Instrument {
        scope: "io.opentelemetry.http.server",
        name: "http.server.active_requests",
        unit: "{request}",
        kind: Kind::UpDown,
        series: 16,
    },
    Instrument {
        scope: "io.opentelemetry.http.server",
        name: "http.server.request.body.size",
        unit: "By",
        kind: Kind::Histogram,
        series: 64,
    },
    Instrument {
        scope: "io.opentelemetry.http.server",
        name: "http.server.response.body.size",
        unit: "By",
        kind: Kind::Histogram,
        series: 64,
    },
    Instrument {
        scope: "io.opentelemetry.db.client",
        name: "db.client.operation.duration",
        unit: "s",
        kind: Kind::Histogram,
        series: 96,
    },
    Instrument {
        scope: "io.opentelemetry.db.client",
        name: "db.client.connection.count",
        unit: "{connection}",
        kind: Kind::UpDown,
        series: 16,
    },
    Instrument {
        scope: "io.opentelemetry.http.client",
        name: "http.client.request.duration",
        unit: "s",
        kind: Kind::Histogram,
        series: 48,
    },
    Instrument {
        scope: "io.opentelemetry.runtime",
        name: "process.cpu.time",
        unit: "s",
        kind: Kind::Counter,
        series: 16,
    },
    Instrument {
        scope: "io.opentelemetry.runtime",
        name: "process.cpu.utilization",
        unit: "1",
        kind: Kind::Gauge,
        series: 16,
    },
    Instrument {
        scope: "io.opentelemetry.runtime",
        name: "process.memory.usage",
        unit: "By",
        kind: Kind::Gauge,
        series: 8,
    },
    Instrument {
        scope: "io.opentelemetry.runtime",
        name: "process.runtime.gc.count",
        unit: "{collection}",
        kind: Kind::Counter,
        series: 8,
    },
];

/// The OpenTelemetry SDKs' default bucket bounds: seconds for durations, bytes for sizes.
const DURATION_BOUNDS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];
const SIZE_BOUNDS: [f64; 15] = [
    0.0, 5.0, 10.0, 25.0, 50.0, 75.0, 100.0, 250.0, 500.0, 750.0, 1000.0, 2500.0, 5000.0, 7500.0,
    10000.0,
];

/// The attributes of series `k` of an instrument: the combinations its semantic conventions name.
fn series_attributes(name: &str, k: usize) -> Vec<KeyValue> {
    let route = ROUTES[k % ROUTES.len()];
    let method = METHODS[(k / ROUTES.len()) % METHODS.len()];
    let status = STATUSES[(k / (ROUTES.len() * METHODS.len())) % STATUSES.len()];
    let table = TABLES[k % TABLES.len()];
    match name {
        n if n.starts_with("http.server.") && n != "http.server.active_requests" => vec![
            kv("http.request.method", s(method)),
            kv("http.route", s(route)),
            kv("http.response.status_code", i(status)),
            kv("url.scheme", s("http")),
            kv(
                "network.protocol.version",
                s(if (k / 96).is_multiple_of(2) {
                    "1.1"
                } else {
                    "2"
                }),
            ),
        ],
        "http.server.active_requests" => vec![
            kv("http.request.method", s(method)),
            kv("url.scheme", s("http")),
            kv("server.address", s("api.internal.example.com")),
            kv("server.port", i(8080 + (k / METHODS.len()) as i64)),
        ],
        "db.client.operation.duration" => vec![
            kv("db.system.name", s("postgresql")),
            kv("db.namespace", s("shop")),
            kv("db.collection.name", s(table)),
            kv(
                "db.operation.name",
                s(["SELECT", "INSERT", "UPDATE", "DELETE"][(k / TABLES.len()) % 4]),
            ),
            kv("server.address", s("db.internal.example.com")),
            kv("server.port", i(5432 + (k / 16) as i64)),
        ],
        "db.client.connection.count" => vec![
            kv(
                "db.client.connection.pool.name",
                s(&format!("pool-{}", k / 2)),
            ),
            kv(
                "db.client.connection.state",
                s(if k.is_multiple_of(2) { "idle" } else { "used" }),
            ),
        ],
        "http.client.request.duration" => vec![
            kv("http.request.method", s(method)),
            kv(
                "server.address",
                s(["payments.example.com", "stock.internal", "auth.internal"][k % 3]),
            ),
            kv("server.port", i(443)),
            kv("http.response.status_code", i(STATUSES[(k / 3) % 4])),
        ],
        "process.cpu.time" | "process.cpu.utilization" => vec![
            kv("cpu.mode", s(["user", "system", "iowait", "idle"][k % 4])),
            kv("cpu.logical_number", i((k / 4) as i64)),
        ],
        "process.memory.usage" => vec![kv(
            "memory.type",
            s(["heap", "stack", "mapped", "shared"][k % 4]),
        )],
        _ => vec![kv(
            "gc.name",
            s(["young", "old", "full", "concurrent"][k % 4]),
        )],
    }
}

/// Request `instance`: `n` data points over [`INSTRUMENTS`] (each one's share of `n` in
/// proportion to its series), grouped by scope.
pub fn metrics(
    rng: &mut Rng,
    instance: usize,
    n: usize,
    base_ns: u64,
) -> ExportMetricsServiceRequest {
    let total: usize = INSTRUMENTS.iter().map(|m| m.series).sum();
    let mut counts: Vec<usize> = INSTRUMENTS.iter().map(|m| m.series * n / total).collect();
    counts[0] += n - counts.iter().sum::<usize>();
    let start = base_ns - 3_600_000_000_000;
    let time = base_ns;
    let mut scopes: Vec<ScopeMetrics> = Vec::new();
    for (inst, &count) in INSTRUMENTS.iter().zip(&counts) {
        if count == 0 {
            continue;
        }
        let number = |rng: &mut Rng, k: usize| {
            let value = match inst.kind {
                Kind::Counter if inst.unit == "s" => {
                    number_data_point::Value::AsDouble(3600.0 * rng.unit())
                }
                Kind::Counter => number_data_point::Value::AsInt(rng.below(50_000) as i64),
                Kind::UpDown => number_data_point::Value::AsInt(rng.below(64) as i64),
                Kind::Gauge if inst.unit == "1" => number_data_point::Value::AsDouble(rng.unit()),
                _ => number_data_point::Value::AsInt(rng.below(1 << 30) as i64),
            };
            NumberDataPoint {
                attributes: series_attributes(inst.name, k),
                start_time_unix_nano: if matches!(inst.kind, Kind::Gauge) {
                    0
                } else {
                    start
                },
                time_unix_nano: time,
                value: Some(value),
                ..Default::default()
            }
        };
        let cumulative = AggregationTemporality::Cumulative as i32;
        let data = match inst.kind {
            Kind::Histogram => {
                let bounds: &[f64] = if inst.unit == "s" {
                    &DURATION_BOUNDS
                } else {
                    &SIZE_BOUNDS
                };
                metric::Data::Histogram(Histogram {
                    data_points: (0..count)
                        .map(|k| histogram_point(rng, inst.name, k, bounds, start, time))
                        .collect(),
                    aggregation_temporality: cumulative,
                })
            }
            Kind::Counter | Kind::UpDown => metric::Data::Sum(Sum {
                data_points: (0..count).map(|k| number(rng, k)).collect(),
                aggregation_temporality: cumulative,
                is_monotonic: matches!(inst.kind, Kind::Counter),
            }),
            Kind::Gauge => metric::Data::Gauge(Gauge {
                data_points: (0..count).map(|k| number(rng, k)).collect(),
            }),
        };
        let metric = Metric {
            name: inst.name.to_owned(),
            description: String::new(),
            unit: inst.unit.to_owned(),
            data: Some(data),
            ..Default::default()
        };
        match scopes.last_mut() {
            Some(last) if last.scope.as_ref().is_some_and(|sc| sc.name == inst.scope) => {
                last.metrics.push(metric);
            }
            _ => scopes.push(ScopeMetrics {
                scope: scope(inst.scope),
                metrics: vec![metric],
                schema_url: "https://opentelemetry.io/schemas/1.26.0".to_owned(),
            }),
        }
    }
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(resource(instance)),
            scope_metrics: scopes,
            ..Default::default()
        }],
    }
}

fn histogram_point(
    rng: &mut Rng,
    name: &str,
    k: usize,
    bounds: &[f64],
    start: u64,
    time: u64,
) -> HistogramDataPoint {
    // A skewed spread over the buckets: most observations in the first third.
    let mut bucket_counts = vec![0u64; bounds.len() + 1];
    let observations = 1 + rng.below(5_000);
    for b in bucket_counts.iter_mut() {
        *b = rng.below(observations / 4 + 1);
    }
    bucket_counts[bounds.len() / 4] += observations;
    let count = bucket_counts.iter().sum::<u64>();
    let scale = bounds[bounds.len() / 3].max(1e-3);
    let min = scale * 0.05 * rng.unit();
    let max = bounds[bounds.len() - 1] * (0.5 + rng.unit());
    HistogramDataPoint {
        attributes: series_attributes(name, k),
        start_time_unix_nano: start,
        time_unix_nano: time,
        count,
        sum: Some(count as f64 * scale * (0.5 + rng.unit())),
        bucket_counts,
        explicit_bounds: bounds.to_vec(),
        min: Some(min),
        max: Some(max),
        ..Default::default()
    }
}

// ---------------------------------------------------------------------------------------------
// Logs.

/// Request `instance`: `n` log records of a web service in three scopes (its own code, the SQL
/// layer, the access log), with bodies, severities, attributes and, for most, the trace context
/// of the request they were written in.
pub fn logs(rng: &mut Rng, instance: usize, n: usize, base_ns: u64) -> ExportLogsServiceRequest {
    const SCOPES: [&str; 3] = ["checkout_api.orders", "sqlalchemy.engine", "uvicorn.access"];
    let mut scopes: Vec<ScopeLogs> = SCOPES
        .iter()
        .map(|name| ScopeLogs {
            scope: scope(name),
            ..Default::default()
        })
        .collect();
    let mut trace_id = rng.bytes(16);
    let mut span_id = rng.bytes(8);
    for k in 0..n {
        // A request writes a handful of records, then the next one starts.
        if k % 6 == 0 {
            trace_id = rng.bytes(16);
            span_id = rng.bytes(8);
        }
        let time = base_ns + rng.below(1_000_000_000);
        let route = ROUTES[rng.below(ROUTES.len() as u64) as usize];
        let order = rng.below(1_000_000);
        let which = rng.below(20);
        let (scope, severity, body, mut attributes) = match k % 3 {
            0 => {
                let (severity, body) = match which {
                    0 => (
                        SeverityNumber::Error,
                        format!(
                            "payment declined for order {order}: card expired (provider code 54)"
                        ),
                    ),
                    1 | 2 => (
                        SeverityNumber::Warn,
                        format!(
                            "stock reservation for order {order} took {} ms, retrying",
                            200 + rng.below(800)
                        ),
                    ),
                    3 => (
                        SeverityNumber::Debug,
                        format!(
                            "cart {order} recomputed: {} items, promotions applied",
                            1 + rng.below(12)
                        ),
                    ),
                    _ => (
                        SeverityNumber::Info,
                        format!(
                            "order {order} placed by user {}: {} items, total {}.{:02} EUR",
                            rng.below(100_000),
                            1 + rng.below(9),
                            rng.below(500),
                            rng.below(100)
                        ),
                    ),
                };
                let mut attributes = vec![
                    kv("order.id", i(order as i64)),
                    kv("user.id", s(&format!("u-{}", rng.below(100_000)))),
                    kv("code.function.name", s("checkout_api.orders.place_order")),
                    kv("code.file.path", s("/app/checkout_api/orders.py")),
                    kv("code.line.number", i(100 + rng.below(400) as i64)),
                ];
                if severity == SeverityNumber::Error {
                    attributes.push(kv("exception.type", s("PaymentDeclined")));
                    attributes.push(kv(
                        "exception.message",
                        s("card expired (provider code 54)"),
                    ));
                }
                (0, severity, body, attributes)
            }
            1 => {
                let table = TABLES[rng.below(TABLES.len() as u64) as usize];
                (
                    1,
                    if which == 0 {
                        SeverityNumber::Warn
                    } else {
                        SeverityNumber::Debug
                    },
                    format!(
                        "SELECT {table}.id, {table}.created_at, {table}.payload FROM {table} WHERE {table}.id = %(id)s [cached since {}s ago]",
                        rng.below(600)
                    ),
                    vec![
                        kv("db.system.name", s("postgresql")),
                        kv("db.collection.name", s(table)),
                        kv("db.operation.name", s("SELECT")),
                    ],
                )
            }
            _ => {
                let status = [200, 200, 200, 201, 404, 500][rng.below(6) as usize];
                let path = route.replace("{id}", &rng.below(100_000).to_string());
                (
                    2,
                    if status >= 500 {
                        SeverityNumber::Error
                    } else {
                        SeverityNumber::Info
                    },
                    format!(
                        "10.0.{}.{}:{} - \"GET {path} HTTP/1.1\" {status}",
                        rng.below(256),
                        rng.below(256),
                        30_000 + rng.below(30_000)
                    ),
                    vec![
                        kv("http.request.method", s("GET")),
                        kv("http.route", s(route)),
                        kv("url.path", s(&path)),
                        kv("http.response.status_code", i(status)),
                        kv("client.address", s("10.0.3.7")),
                    ],
                )
            }
        };
        attributes.push(kv("thread.name", s(&format!("worker-{}", rng.below(8)))));
        // Records written outside a request (about one in ten) carry no trace context.
        let in_request = rng.below(10) != 0;
        scopes[scope].log_records.push(LogRecord {
            time_unix_nano: time,
            observed_time_unix_nano: time + rng.below(2_000_000),
            severity_number: severity as i32,
            severity_text: match severity {
                SeverityNumber::Error => "ERROR",
                SeverityNumber::Warn => "WARNING",
                SeverityNumber::Debug => "DEBUG",
                _ => "INFO",
            }
            .to_owned(),
            body: Some(AnyValue {
                value: Some(s(&body)),
            }),
            attributes,
            flags: if in_request { 1 } else { 0 },
            trace_id: if in_request {
                trace_id.clone()
            } else {
                Vec::new()
            },
            span_id: if in_request {
                span_id.clone()
            } else {
                Vec::new()
            },
            ..Default::default()
        });
    }
    scopes.retain(|sc| !sc.log_records.is_empty());
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(resource(instance)),
            scope_logs: scopes,
            ..Default::default()
        }],
    }
}
