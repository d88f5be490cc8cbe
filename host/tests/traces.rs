//! OpenTelemetry traces through the streams: W3C `traceparent` in, a span per delivery
//! with its read, handler call and commit, `traceparent` out on every output; exported
//! over OTLP/HTTP to a receiver in the test that decodes the protobuf it gets.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::{Span, span, status};
use prost::Message;
use sluice::trace_context::SpanContext;
use sluice_testkit::*;

/// A local address nobody listens on (a port just freed).
fn free_addr() -> std::net::SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
}

/// The real binary running `cfg` against `redis`, logging to `log`, with `env` set.
fn run_daemon(
    cfg: &std::path::Path,
    redis: &RedisServer,
    log: &std::path::Path,
    env: &[(&str, &str)],
) -> DaemonProcess {
    DaemonProcess::start_env(
        &[
            "run".as_ref(),
            "-c".as_ref(),
            cfg.as_os_str(),
            "--redis".as_ref(),
            std::ffi::OsStr::new(&redis.url()),
        ],
        log,
        env,
    )
}

/// What the receiver got: each span with its resource's attributes.
type Received = Arc<Mutex<Vec<(Vec<KeyValue>, Span)>>>;

/// An OTLP/HTTP receiver: `POST /v1/traces` with protobuf, as a collector takes it.
struct Collector {
    addr: std::net::SocketAddr,
    /// Every span received, with its resource's attributes.
    spans: Received,
}

impl Collector {
    async fn start() -> Collector {
        let spans: Received = Arc::default();
        let store = spans.clone();
        let app = axum::Router::new().route(
            "/v1/traces",
            axum::routing::post(move |body: Bytes| {
                let store = store.clone();
                async move {
                    let request = ExportTraceServiceRequest::decode(body)
                        .expect("the exporter sends an ExportTraceServiceRequest");
                    let mut store = store.lock().expect("spans lock");
                    for resource_spans in request.resource_spans {
                        let resource = resource_spans
                            .resource
                            .map(|r| r.attributes)
                            .unwrap_or_default();
                        for scope in resource_spans.scope_spans {
                            for span in scope.spans {
                                store.push((resource.clone(), span));
                            }
                        }
                    }
                    (
                        [("content-type", "application/x-protobuf")],
                        ExportTraceServiceResponse::default().encode_to_vec(),
                    )
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a free port");
        let addr = listener.local_addr().expect("bound");
        tokio::spawn(async move { axum::serve(listener, app).await });
        Collector { addr, spans }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The spans of the trace `trace_id` received so far.
    fn trace(&self, trace_id: &[u8; 16]) -> Vec<Span> {
        self.spans
            .lock()
            .expect("spans lock")
            .iter()
            .filter(|(_, s)| s.trace_id == trace_id)
            .map(|(_, s)| s.clone())
            .collect()
    }

    fn all(&self) -> Vec<(Vec<KeyValue>, Span)> {
        self.spans.lock().expect("spans lock").clone()
    }
}

fn attr<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a any_value::Value> {
    attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v: &AnyValue| v.value.as_ref())
}

fn text<'a>(span: &'a Span, key: &str) -> &'a str {
    match attr(&span.attributes, key) {
        Some(any_value::Value::StringValue(s)) => s,
        other => panic!(
            "span {:?} has no string attribute {key}: {other:?}",
            span.name
        ),
    }
}

fn int(span: &Span, key: &str) -> i64 {
    match attr(&span.attributes, key) {
        Some(any_value::Value::IntValue(i)) => *i,
        other => panic!("span {:?} has no int attribute {key}: {other:?}", span.name),
    }
}

/// A stream entry as read back: its ID and fields.
type Stored = (String, Vec<(String, Vec<u8>)>);

const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

fn traceparent(fields: &[(String, Vec<u8>)]) -> SpanContext {
    let value = field(fields, "traceparent").expect("the output carries a traceparent");
    SpanContext::parse(value.as_bytes()).expect("a valid traceparent")
}

/// The spans of one delivery: the `process` span whose ID is `id`, and its children by
/// name (not the next pipeline's `process` span, a child too).
fn delivery(spans: &[Span], id: &[u8; 8]) -> (Span, HashMap<String, Span>) {
    let process = spans
        .iter()
        .find(|s| s.span_id == id)
        .unwrap_or_else(|| panic!("no span {}: {spans:#?}", hex(id)))
        .clone();
    let children = spans
        .iter()
        .filter(|s| s.parent_span_id == id && s.kind == span::SpanKind::Internal as i32)
        .map(|s| (s.name.clone(), s.clone()))
        .collect();
    (process, children)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Checks one delivery's spans: a consumer span `process {stream}` child of `parent`,
/// with read, handle and commit inside it; returns the process span.
fn check_delivery(spans: &[Span], id: &[u8; 8], parent: &[u8], stream: &str) -> Span {
    let (process, children) = delivery(spans, id);
    assert_eq!(process.name, format!("process {stream}"));
    assert_eq!(process.kind, span::SpanKind::Consumer as i32);
    assert_eq!(process.parent_span_id, parent, "{process:#?}");
    assert_eq!(text(&process, "messaging.system"), "redis");
    assert_eq!(text(&process, "messaging.destination.name"), stream);
    assert_eq!(int(&process, "sluice.attempt"), 1);
    assert!(!text(&process, "sluice.plugin.digest").is_empty());
    let mut names: Vec<&str> = children.keys().map(String::as_str).collect();
    names.sort();
    assert_eq!(names, ["commit", "handle", "read"], "{children:#?}");
    for child in children.values() {
        assert_eq!(child.trace_id, process.trace_id);
        assert_eq!(child.kind, span::SpanKind::Internal as i32);
        assert!(
            child.start_time_unix_nano >= process.start_time_unix_nano
                && child.end_time_unix_nano <= process.end_time_unix_nano
                && child.start_time_unix_nano <= child.end_time_unix_nano,
            "{child:#?} is not inside {process:#?}"
        );
    }
    let (read, handle, commit) = (&children["read"], &children["handle"], &children["commit"]);
    assert!(read.end_time_unix_nano <= handle.start_time_unix_nano);
    assert!(handle.end_time_unix_nano <= commit.start_time_unix_nano);
    assert_eq!(
        text(handle, "sluice.plugin.digest"),
        text(&process, "sluice.plugin.digest")
    );
    process
}

fn order_status(settings: impl FnOnce(PipelineBuilder) -> PipelineBuilder) -> String {
    settings(echo("order-status"))
        .plugin("{plugin:order-status}")
        .reading("PAYMENTS_STREAM", "PAYMENTS_CON_GROUP")
        .writing(&["ORDER_STATUS_STREAM"])
        .state(&["order:", "user-total:"])
        .to_string()
}

/// The tutorial's chain, traced: an order with a `traceparent` yields one trace through
/// both pipelines with the right parent links; an order without one starts a trace of
/// its own; a rejected order's span says so.
#[tokio::test]
async fn the_payments_to_order_status_chain_is_one_trace() {
    let TestContext { redis, mut con } = TestContext::new().await;
    let collector = Collector::start().await;
    let cfg = ConfigBuilder::new()
        .section("telemetry", "otlp_endpoint", collector.url())
        .section("telemetry", "service_name", "payments-svc")
        .pipeline(payments("payments"))
        .to_string()
        + &order_status(|p| p);
    let host = TestDaemon::start(&redis, config(&cfg)).await;
    let traced = add(
        &mut con,
        "ORDERS_STREAM",
        &[
            ("orderId", "o1"),
            ("orderAmount", "12.50"),
            ("userId", "u"),
            ("traceparent", PARENT),
            ("tracestate", "vendor=opaque"),
        ],
    )
    .await;
    add(
        &mut con,
        "ORDERS_STREAM",
        &[("orderId", "o2"), ("orderAmount", "3"), ("userId", "u")],
    )
    .await;
    let bad_parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    add(
        &mut con,
        "ORDERS_STREAM",
        &[
            ("orderId", "bad"),
            ("orderAmount", "-1"),
            ("userId", "u"),
            ("traceparent", bad_parent),
        ],
    )
    .await;
    wait_len(&con, "ORDER_STATUS_STREAM", 2).await;
    wait_len(&con, "ORDERS_STREAM:dead", 1).await;

    let parent = SpanContext::parse(PARENT.as_bytes()).expect("valid");
    let payments = entries(&mut con, "PAYMENTS_STREAM").await;
    let statuses = entries(&mut con, "ORDER_STATUS_STREAM").await;
    let by_order = |list: &[Stored], order: &str| {
        list.iter()
            .find(|(_, f)| field(f, "orderId") == Some(order))
            .map(|(_, f)| f.clone())
            .unwrap_or_else(|| panic!("no entry for order {order}"))
    };
    // Outputs carry the handling span; the next pipeline's outputs carry its own.
    let payment = by_order(&payments, "o1");
    let s1 = traceparent(&payment);
    assert_eq!(s1.trace_id, parent.trace_id);
    assert_ne!(s1.span_id, parent.span_id);
    assert!(s1.sampled());
    assert_eq!(field(&payment, "tracestate"), Some("vendor=opaque"));
    let status = by_order(&statuses, "o1");
    let s2 = traceparent(&status);
    assert_eq!(s2.trace_id, parent.trace_id);
    assert_ne!(s2.span_id, s1.span_id);
    assert_eq!(field(&status, "tracestate"), Some("vendor=opaque"));
    // An order without a traceparent starts a trace (the default while exporting).
    let fresh = traceparent(&by_order(&payments, "o2"));
    assert_ne!(fresh.trace_id, parent.trace_id);
    let fresh_status = traceparent(&by_order(&statuses, "o2"));
    assert_eq!(fresh_status.trace_id, fresh.trace_id);
    // The dead letter is the original entry, its traceparent included.
    let dead = entries(&mut con, "ORDERS_STREAM:dead").await;
    assert_eq!(field(&dead[0].1, "traceparent"), Some(bad_parent));

    // A drain sends the spans still queued.
    host.stop().await;
    let spans = eventually("the chain's spans", Duration::from_secs(10), || async {
        let spans = collector.trace(&parent.trace_id);
        (spans.len() >= 8).then_some(spans)
    })
    .await;
    assert_eq!(spans.len(), 8, "two deliveries of 4 spans: {spans:#?}");
    let first = check_delivery(&spans, &s1.span_id, &parent.span_id, "ORDERS_STREAM");
    assert_eq!(text(&first, "messaging.message.id"), traced);
    assert_eq!(
        text(&first, "messaging.consumer.group.name"),
        "ORDERS_CON_GROUP"
    );
    assert_eq!(text(&first, "sluice.pipeline"), "payments");
    assert_eq!(text(&first, "sluice.outcome"), "committed");
    assert_eq!(first.trace_state, "vendor=opaque");
    let second = check_delivery(&spans, &s2.span_id, &s1.span_id, "PAYMENTS_STREAM");
    assert_eq!(text(&second, "sluice.pipeline"), "order-status");
    // The new trace: a root span, then its child.
    let fresh_spans = collector.trace(&fresh.trace_id);
    let root = check_delivery(&fresh_spans, &fresh.span_id, &[], "ORDERS_STREAM");
    assert!(root.parent_span_id.is_empty());
    check_delivery(
        &fresh_spans,
        &fresh_status.span_id,
        &fresh.span_id,
        "PAYMENTS_STREAM",
    );
    // The rejected order: an error, on the process span and the handler call.
    let bad = SpanContext::parse(bad_parent.as_bytes()).expect("valid");
    let bad_spans = collector.trace(&bad.trace_id);
    let process = bad_spans
        .iter()
        .find(|s| s.parent_span_id == bad.span_id)
        .expect("the rejected order's span");
    assert_eq!(text(process, "sluice.outcome"), "dead-lettered");
    let code = |s: &Span| s.status.as_ref().map(|s| s.code);
    assert_eq!(code(process), Some(status::StatusCode::Error as i32));
    assert!(
        process
            .status
            .as_ref()
            .expect("a status")
            .message
            .contains("negative"),
        "{process:#?}"
    );
    let (_, children) = delivery(
        &bad_spans,
        &process.span_id.clone().try_into().expect("8 bytes"),
    );
    assert_eq!(
        code(&children["handle"]),
        Some(status::StatusCode::Error as i32)
    );
    // The service is named as configured, once per daemon instance.
    let (resource, _) = &collector.all()[0];
    assert!(matches!(
        attr(resource, "service.name"),
        Some(any_value::Value::StringValue(s)) if s == "payments-svc"
    ));
}

/// `traces = "off"` leaves outputs as the handler made them and records nothing;
/// `"when-present"` traces only entries that carry a `traceparent`.
#[tokio::test]
async fn off_and_when_present_trace_only_what_they_say() {
    let TestContext { redis, mut con } = TestContext::new().await;
    let collector = Collector::start().await;
    let cfg = ConfigBuilder::new()
        .section("telemetry", "otlp_endpoint", collector.url())
        .to_string()
        + &payments("untraced")
            .writing(&["UNTRACED"])
            .set("traces", "off")
            .plugin_config("payments_stream", "UNTRACED")
            // Two groups on one input: each pipeline keeps its own dead letters.
            .dead_letter("UNTRACED:dead")
            .reading("ORDERS_STREAM", "UNTRACED_GROUP")
            .to_string()
        + &payments("present")
            .writing(&["PRESENT"])
            .set("traces", "when-present")
            .plugin_config("payments_stream", "PRESENT")
            .reading("ORDERS_STREAM", "PRESENT_GROUP")
            .to_string();
    let host = TestDaemon::start(&redis, config(&cfg)).await;
    add(
        &mut con,
        "ORDERS_STREAM",
        &[
            ("orderId", "with"),
            ("orderAmount", "1"),
            ("userId", "u"),
            ("traceparent", PARENT),
        ],
    )
    .await;
    add(
        &mut con,
        "ORDERS_STREAM",
        &[
            ("orderId", "without"),
            ("orderAmount", "1"),
            ("userId", "u"),
        ],
    )
    .await;
    wait_len(&con, "UNTRACED", 2).await;
    wait_len(&con, "PRESENT", 2).await;
    let payment_fields = [
        "orderId",
        "paymentId",
        "orderAmount",
        "paidAmount",
        "orderStatusCode",
        "userId",
    ];
    for (_, fields) in entries(&mut con, "UNTRACED").await {
        let names: Vec<&str> = fields.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, payment_fields, "traces = off adds nothing");
    }
    for (_, fields) in entries(&mut con, "PRESENT").await {
        let names: Vec<&str> = fields.iter().map(|(n, _)| n.as_str()).collect();
        if field(&fields, "orderId") == Some("with") {
            assert_eq!(names[..6], payment_fields);
            assert_eq!(names[6..], ["traceparent"]);
        } else {
            assert_eq!(names, payment_fields, "no traceparent in, none out");
        }
    }
    host.stop().await;
    let parent = SpanContext::parse(PARENT.as_bytes()).expect("valid");
    let spans = eventually(
        "the traced entry's spans",
        Duration::from_secs(10),
        || async {
            let spans = collector.trace(&parent.trace_id);
            (spans.len() >= 4).then_some(spans)
        },
    )
    .await;
    // Only the "present" pipeline's delivery of the traced entry: nothing else.
    stays("no other span arrives", Duration::from_millis(300), || {
        let four = collector.all().len() == 4;
        async move { four }
    })
    .await;
    let all = collector.all();
    assert_eq!(all.len(), 4, "{all:#?}");
    assert!(spans.iter().all(|s| s.trace_id == parent.trace_id.to_vec()));
    let process = spans
        .iter()
        .find(|s| s.parent_span_id == parent.span_id)
        .expect("the delivery's span");
    assert_eq!(text(process, "sluice.pipeline"), "present");
}

/// The real binary, exporting where `OTEL_EXPORTER_OTLP_ENDPOINT` says: the handler's
/// log lines carry the trace ID of the entry they are about, and a drain sends the
/// spans still queued.
#[tokio::test]
async fn guest_log_lines_carry_the_trace_id() {
    let TestContext { redis, mut con } = TestContext::new().await;
    let collector = Collector::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    // The file says elsewhere: the environment wins (a deployment points a packaged
    // config at its own collector).
    let nobody = free_addr();
    let cfg = ConfigBuilder::new()
        .section("telemetry", "otlp_endpoint", format!("http://{nobody}"))
        .section("telemetry", "service_name", "from-file")
        .pipeline(payments("payments"))
        .write(dir.path());
    let log = dir.path().join("sluice.log");
    let mut daemon = run_daemon(
        &cfg,
        &redis,
        &log,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", collector.url().as_str()),
            ("OTEL_SERVICE_NAME", "from-env"),
        ],
    );
    add(
        &mut con,
        "ORDERS_STREAM",
        &[
            ("orderId", "bad"),
            ("orderAmount", "-5"),
            ("userId", "u"),
            ("traceparent", PARENT),
        ],
    )
    .await;
    wait_len(&con, "ORDERS_STREAM:dead", 1).await;
    let parent = SpanContext::parse(PARENT.as_bytes()).expect("valid");
    let line = eventually("the handler's warning", Duration::from_secs(10), || async {
        daemon
            .log()
            .lines()
            .find(|l| l.contains("rejected entry"))
            .map(str::to_owned)
    })
    .await;
    assert!(
        line.contains(&format!("trace_id={}", parent.trace_id_hex())),
        "{line}"
    );
    let started = daemon
        .log()
        .lines()
        .find(|l| l.contains("exporting traces"))
        .map(str::to_owned)
        .expect("the start-up line");
    assert!(
        started.contains(&format!("{}/v1/traces", collector.url()))
            && started.contains("OTEL_EXPORTER_OTLP_ENDPOINT"),
        "the start-up line names the URL and where it came from: {started}"
    );
    daemon.signal(libc::SIGTERM);
    assert!(daemon.wait(Duration::from_secs(20)).success());
    let spans = eventually("the spans", Duration::from_secs(10), || async {
        let spans = collector.trace(&parent.trace_id);
        (spans.len() >= 4).then_some(spans)
    })
    .await;
    let process = spans
        .iter()
        .find(|s| s.parent_span_id == parent.span_id)
        .expect("the delivery's span");
    // The span the log line names is the delivery's.
    assert!(
        line.contains(&format!("span_id={}", hex(&process.span_id))),
        "{line}"
    );
    let (resource, _) = &collector.all()[0];
    assert!(matches!(
        attr(resource, "service.name"),
        Some(any_value::Value::StringValue(s)) if s == "from-env"
    ));
}

/// A collector that is down loses no entry and holds up no drain; one that comes back
/// gets the spans from then on.
#[tokio::test]
async fn a_collector_that_is_down_costs_no_entry() {
    let TestContext { redis, mut con } = TestContext::new().await;
    // A port nobody listens on.
    let port = free_addr().port();
    let cfg = ConfigBuilder::new()
        .section(
            "telemetry",
            "otlp_endpoint",
            format!("http://127.0.0.1:{port}"),
        )
        .admin()
        .pipeline(payments("payments"))
        .config();
    let host = TestDaemon::start(&redis, cfg).await;
    add_orders(&mut con, 200, 0).await;
    wait_len(&con, "PAYMENTS_STREAM", 200).await;
    for (_, fields) in entries(&mut con, "PAYMENTS_STREAM").await {
        assert!(field(&fields, "traceparent").is_some());
    }
    // 800 spans: a full batch of 512 is sent at once, and fails, which the metrics say.
    let metrics = format!("http://{}/metrics", host.admin());
    eventually(
        "the failed export counted",
        Duration::from_secs(10),
        || async {
            let text = reqwest::get(&metrics).await.ok()?.text().await.ok()?;
            text.lines()
                .any(|l| l.starts_with("sluice_span_export_failures_total") && !l.ends_with(" 0"))
                .then_some(())
        },
    )
    .await;
    let started = std::time::Instant::now();
    host.stop().await;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the drain waited {:?} for a collector that is down",
        started.elapsed()
    );
}

/// Configs Sluice cannot export with are refused at start-up, naming the fix.
#[tokio::test]
async fn a_wrong_exporter_setting_is_refused_with_the_fix() {
    let dir = tempfile::tempdir().expect("tempdir");
    let text = "[telemetry]\notlp_endpoint = \"otel-collector:4317\"\n\n".to_owned()
        + &payments("payments").to_string();
    let path = config_file(&dir, &text);
    let error = format!(
        "{:#}",
        sluice::config::Config::load(&path).expect_err("refused")
    );
    assert!(
        error.contains("otlp_endpoint") && error.contains("http://"),
        "{error}"
    );
    let text = "[telemetry]\nsample_ratio = 2\n\n".to_owned() + &payments("payments").to_string();
    let error = format!(
        "{:#}",
        sluice::config::Config::load(&config_file(&dir, &text)).expect_err("refused")
    );
    assert!(error.contains("sample_ratio"), "{error}");

    // gRPC is not spoken: the daemon says so instead of exporting nowhere.
    let TestContext { redis, .. } = TestContext::new().await;
    let cfg = config_file(&dir, &payments("payments").to_string());
    let log = dir.path().join("sluice.log");
    let mut daemon = run_daemon(
        &cfg,
        &redis,
        &log,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ],
    );
    assert!(!daemon.wait(Duration::from_secs(20)).success());
    let log = daemon.log();
    assert!(
        log.contains("OTEL_EXPORTER_OTLP_PROTOCOL") && log.contains("http/protobuf"),
        "{log}"
    );
}

/// Trace context an entry carries that is not valid — malformed, repeated, with
/// characters of more than one byte where the spec's fields are — is ignored and counted,
/// never fatal: the entry is handled, in a trace of its own; and a `tracestate` the
/// handler copied from such an entry does not go on. The count is not reset when the
/// pipeline starts again (as on a config reload; here a second daemon of this process).
#[tokio::test]
async fn trace_context_that_is_not_valid_is_ignored_not_fatal() {
    let TestContext { redis, mut con } = TestContext::new().await;
    let collector = Collector::start().await;
    let cfg = ConfigBuilder::new()
        .section("telemetry", "otlp_endpoint", collector.url())
        .admin()
        .pipeline(echo("trace-invalid"))
        .config();
    let host = TestDaemon::start(&redis, cfg.clone()).await;
    let id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let bad = [
        // 55 bytes with a multi-byte character at the spec's offsets.
        format!("€-{id}-00f067aa0ba902b7-01"),
        format!("00-4é{}-00f067aa0ba902b7-01", &id[..29]),
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01".to_owned(),
        "garbage".to_owned(),
    ];
    for (n, value) in bad.iter().enumerate() {
        add(
            &mut con,
            "IN",
            &[
                ("n", &n.to_string()),
                ("traceparent", value),
                ("tracestate", "congo=t61rcWkgMzE"),
            ],
        )
        .await;
    }
    // Two valid traceparents are one too many (the W3C test suite's
    // test_traceparent_duplicated).
    add(
        &mut con,
        "IN",
        &[("n", "4"), ("traceparent", PARENT), ("traceparent", PARENT)],
    )
    .await;
    // And an entry after them all, with a valid one, is handled too.
    add(&mut con, "IN", &[("n", "5"), ("traceparent", PARENT)]).await;
    wait_len(&con, "OUT", 6).await;
    let parent = SpanContext::parse(PARENT.as_bytes()).expect("valid");
    for (_, fields) in entries(&mut con, "OUT").await {
        let n = field(&fields, "n").expect("n");
        let out = traceparent(&fields);
        let parents = fields.iter().filter(|(n, _)| n == "traceparent").count();
        assert_eq!(parents, 1, "one traceparent on output {n}");
        if n == "5" {
            assert_eq!(out.trace_id, parent.trace_id, "the valid one is followed");
        } else {
            assert_ne!(
                out.trace_id, parent.trace_id,
                "output {n} starts a new trace"
            );
            assert_eq!(
                field(&fields, "tracestate"),
                None,
                "no tracestate without a valid traceparent (output {n})"
            );
        }
    }
    let metrics = format!("http://{}/metrics", host.admin());
    let invalid = || async {
        let text = reqwest::get(&metrics)
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text");
        let line = text
            .lines()
            .find(|l| {
                l.starts_with("sluice_trace_context_invalid_total{pipeline=\"trace-invalid\"}")
            })
            .unwrap_or_default()
            .to_owned();
        (line, text)
    };
    let (line, text) = invalid().await;
    assert!(line.ends_with(" 5"), "{line}\n{text}");
    let again = TestDaemon::start(&redis, cfg).await;
    let (line, text) = invalid().await;
    assert!(
        line.ends_with(" 5"),
        "after the pipeline started again: {line}\n{text}"
    );
    again.stop().await;
    let pipelines: serde_json::Value = reqwest::get(format!(
        "http://{}/v1/pipelines/trace-invalid",
        host.admin()
    ))
    .await
    .expect("pipelines")
    .json()
    .await
    .expect("json");
    assert_eq!(pipelines["state"], "running", "{pipelines}");
    host.stop().await;
}

/// Spans that do not fit the export queue are dropped a delivery at a time and counted;
/// with the collector down, every span is either a failed export or a drop.
#[tokio::test]
async fn spans_over_the_queue_are_dropped_and_counted() {
    let TestContext { redis, mut con } = TestContext::new().await;
    let collector = Collector::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let admin = free_addr();
    let cfg = ConfigBuilder::new()
        .admin_set("listen", admin.to_string())
        .pipeline(payments("payments").batch(50))
        .write(dir.path());
    let log = dir.path().join("sluice.log");
    let mut daemon = run_daemon(
        &cfg,
        &redis,
        &log,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", collector.url().as_str()),
            ("OTEL_BSP_MAX_QUEUE_SIZE", "8"),
            // Exports only when the queue holds a full batch (8): never on a timer.
            ("OTEL_BSP_SCHEDULE_DELAY", "600000"),
        ],
    );
    add_orders(&mut con, 200, 0).await;
    wait_len(&con, "PAYMENTS_STREAM", 200).await;
    let metrics = format!("http://{admin}/metrics");
    let value = |text: &str, name: &str| -> u64 {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    // 200 deliveries of 4 spans: what is not exported is dropped, and counted.
    let (exported, dropped) = eventually(
        "every span exported or dropped",
        Duration::from_secs(20),
        || async {
            let text = reqwest::get(&metrics).await.ok()?.text().await.ok()?;
            let exported = value(&text, "sluice_spans_exported_total");
            let dropped = value(&text, "sluice_spans_dropped_total");
            (exported + dropped + 8 >= 800).then_some((exported, dropped))
        },
    )
    .await;
    assert!(dropped > 0, "a queue of 8 drops spans: {exported} exported");
    assert_eq!(dropped % 4, 0, "a delivery's spans are dropped together");
    daemon.signal(libc::SIGTERM);
    assert!(daemon.wait(Duration::from_secs(20)).success());
    let received = collector.all().len() as u64;
    assert!(
        received >= exported,
        "{received} received, {exported} exported"
    );
}

/// A handler's HTTP request is a client span under its entry's `handle` span, with the
/// HTTP semantic conventions' attributes, and the request carries `traceparent` naming
/// that span, so the called service continues the trace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outgoing_request_is_a_client_span_under_handle_and_carries_traceparent() {
    let TestContext { redis, mut con } = TestContext::new().await;
    let collector = Collector::start().await;
    let server = HttpServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = ConfigBuilder::new()
        .section("telemetry", "otlp_endpoint", collector.url())
        .pipeline(
            PipelineBuilder::new(
                "payments",
                &plugin_wasm("payments-http").display().to_string(),
                "ORDERS_STREAM",
                "ORDERS_CON_GROUP",
            )
            .writing(&["PAYMENTS_STREAM"])
            .plugin_config("provider_url", server.url("/pay"))
            .set(
                "allowed_outbound_hosts",
                toml::Value::Array(vec![toml::Value::String(server.origin())]),
            ),
        )
        .write(dir.path());
    let mut daemon = run_daemon(&cfg, &redis, &dir.path().join("sluice.log"), &[]);
    let fields = [
        ("orderId", "o1"),
        ("orderAmount", "5.00"),
        ("userId", "u"),
        ("traceparent", PARENT),
    ];
    add(&mut con, "ORDERS_STREAM", &fields).await;
    wait_len(&con, "PAYMENTS_STREAM", 1).await;
    daemon.signal(libc::SIGTERM);
    assert!(daemon.wait(Duration::from_secs(20)).success());
    let parent = SpanContext::parse(PARENT.as_bytes()).expect("valid");
    let spans = eventually("the spans", Duration::from_secs(10), || async {
        let spans = collector.trace(&parent.trace_id);
        spans
            .iter()
            .any(|s| s.kind == span::SpanKind::Client as i32)
            .then_some(spans)
    })
    .await;
    let client = spans
        .iter()
        .find(|s| s.kind == span::SpanKind::Client as i32)
        .expect("a client span");
    let handle = spans
        .iter()
        .find(|s| s.name == "handle")
        .expect("the handle span");
    assert_eq!(client.parent_span_id, handle.span_id);
    assert_eq!(client.name, "POST");
    assert_eq!(text(client, "http.request.method"), "POST");
    assert_eq!(text(client, "url.full"), server.url("/pay"));
    assert_eq!(text(client, "server.address"), "127.0.0.1");
    assert_eq!(int(client, "server.port"), i64::from(server.port));
    assert_eq!(int(client, "http.response.status_code"), 200);
    assert!(
        client.start_time_unix_nano >= handle.start_time_unix_nano
            && client.end_time_unix_nano <= handle.end_time_unix_nano,
        "{client:#?} inside {handle:#?}"
    );
    let seen = server.seen();
    let sent = seen[0].header("traceparent").expect("traceparent sent");
    assert_eq!(
        sent,
        format!("00-{}-{}-01", hex(&parent.trace_id), hex(&client.span_id))
    );
}
