//! The payments handler that charges a payment provider over HTTP, in every language,
//! against one test provider (`sluice_testkit::HttpServer`): each must produce exactly the
//! outputs, failures and log lines of the Rust reference (`payments_http.wasm`) and send
//! the provider the same request. A new language joins by adding its plugin to
//! `LANGUAGES`.

use std::sync::{Arc, Mutex};

use sluice::invoke::{Invocation, invoke, render_json};
use sluice_testkit::*;
use tracing_subscriber::layer::SubscriberExt;

/// (plugin, language) — the first is the reference.
const LANGUAGES: &[(&str, &str)] = &[
    ("payments-http", "rust"),
    ("payments-http-js", "javascript"),
    ("payments-http-python", "python"),
    ("payments-http-c", "c"),
];

type Fields = Vec<(String, Vec<u8>)>;

/// Where a fixture's `provider_url` points.
#[derive(Clone, Copy)]
enum Provider {
    /// `/pay`: a payment ID per idempotency key.
    Pay,
    /// `/status/{code}`.
    Status(u16),
    /// A granted origin on a port nobody listens on.
    Unreachable,
    /// No `provider_url` at all.
    Unset,
}

fn order(id: &[u8], amount: Option<&[u8]>, user: &[u8]) -> Fields {
    let mut fields = vec![("orderId".to_owned(), id.to_vec())];
    if let Some(amount) = amount {
        fields.push(("orderAmount".to_owned(), amount.to_vec()));
    }
    fields.push(("userId".to_owned(), user.to_vec()));
    fields
}

/// Named fixtures: a representative subset of tests/conformance.rs's (valid and invalid
/// amounts, missing fields, text that JSON must escape), then the provider's answers.
fn fixtures() -> Vec<(&'static str, Fields, Provider)> {
    use Provider::*;
    let valid = |amount: &'static str| order(b"01GTP3K2TZ", Some(amount.as_bytes()), b"USR_1");
    vec![
        ("valid", valid("228.85"), Pay),
        ("spaces", valid(" 12.50\t"), Pay),
        ("exponent", valid("1e3"), Pay),
        ("negative zero", valid("-0"), Pay),
        ("negative", valid("-3"), Pay),
        ("infinity", valid("inf"), Pay),
        ("nan", valid("NaN"), Pay),
        ("words", valid("abc"), Pay),
        ("empty amount", valid(""), Pay),
        ("nul and control", valid("12\u{0}\u{1}"), Pay),
        ("unicode space", valid("\u{3000}8.5\u{a0}"), Pay),
        ("missing amount", order(b"O-2", None, b"USR_2"), Pay),
        (
            "missing user id",
            order(b"O-3", Some(b"1"), b"")[..2].to_vec(),
            Pay,
        ),
        ("no fields", vec![], Pay),
        (
            "quotes, control and unicode",
            order("Ö\"6\\\u{7}".as_bytes(), Some(b"4.20"), "用户\n".as_bytes()),
            Pay,
        ),
        (
            "non-utf-8 order id",
            order(b"\xff\xfeO-4", Some(b"9.99"), b"USR_4"),
            Pay,
        ),
        ("provider unavailable", valid("10"), Status(503)),
        ("provider throttles", valid("10"), Status(429)),
        ("provider refuses", valid("10"), Status(400)),
        ("provider unreachable", valid("10"), Unreachable),
        ("no provider_url", valid("10"), Unset),
        ("invalid and no provider_url", valid("x"), Unset),
    ]
}

/// A port on 127.0.0.1 that nobody listens on (bound, then released).
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

/// One call's result and log lines, and the requests the provider got during it.
struct Outcome {
    text: String,
    failure: Option<(String, String)>,
    requests: Vec<Seen>,
}

/// Runs every fixture through `plugin`, each with its own entry ID (so its own
/// idempotency key), on a later attempt every third one.
async fn run(
    plugin: &str,
    server: &HttpServer,
    unreachable: &str,
    logs: &GuestLogs,
) -> Vec<Outcome> {
    let cache = tempfile::tempdir().expect("cache dir");
    let path = plugin_wasm(plugin);
    let mut outcomes = Vec::new();
    for (i, (name, fields, provider)) in fixtures().into_iter().enumerate() {
        let url = match provider {
            Provider::Pay => Some(server.url("/pay")),
            Provider::Status(code) => Some(server.url(&format!("/status/{code}"))),
            Provider::Unreachable => Some(format!("{unreachable}/pay")),
            Provider::Unset => None,
        };
        let call = Invocation {
            stream: "ORDERS_STREAM".into(),
            id: format!("1700000000000-{i}"),
            attempt: if i % 3 == 2 { 2 } else { 1 },
            fields,
            allowed_outbound_hosts: vec![server.origin(), unreachable.to_owned()],
            config: url
                .into_iter()
                .map(|u| ("provider_url".to_owned(), u))
                .collect(),
            ..Default::default()
        };
        let before = server.seen().len();
        let invoked = invoke(&path, Some(cache.path()), call)
            .await
            .unwrap_or_else(|e| panic!("{plugin}: {name}: {e:#}"));
        let json = render_json(&invoked.result);
        let failure = json.get("failure").map(|f| {
            let text = |key: &str| f[key].as_str().unwrap_or_default().to_owned();
            (text("kind"), text("reason"))
        });
        outcomes.push(Outcome {
            text: format!("{json} logs={:?}", logs.take()),
            failure,
            requests: server.seen()[before..].to_vec(),
        });
    }
    outcomes
}

/// Every fixture gives the same result, log lines and provider request in every
/// language; the reference gives what the plugin's documentation says.
#[tokio::test]
async fn every_language_charges_the_provider_like_rust() {
    let server = HttpServer::start();
    let unreachable = format!("http://127.0.0.1:{}", closed_port());
    let logs = GuestLogs::default();
    let _capture =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(logs.clone()));
    let mut results = Vec::new();
    for (plugin, _) in LANGUAGES {
        results.push(run(plugin, &server, &unreachable, &logs).await);
    }
    let names: Vec<&str> = fixtures().iter().map(|(name, ..)| *name).collect();
    for (l, (_, language)) in LANGUAGES.iter().enumerate().skip(1) {
        for (f, name) in names.iter().enumerate() {
            let (ours, rust) = (&results[l][f], &results[0][f]);
            if *name == "provider unreachable" {
                assert_unreachable(language, ours);
            } else {
                assert_eq!(
                    ours.text, rust.text,
                    "{language} differs from rust on {name:?}"
                );
            }
            let bodies = |o: &Outcome| {
                o.requests
                    .iter()
                    .map(|r| r.body.clone())
                    .collect::<Vec<_>>()
            };
            let keys = |o: &Outcome| {
                let key = |r: &Seen| r.header("idempotency-key").map(str::to_owned);
                o.requests.iter().map(key).collect::<Vec<_>>()
            };
            assert_eq!(
                bodies(ours),
                bodies(rust),
                "{language}: request body on {name:?}"
            );
            assert_eq!(
                keys(ours),
                keys(rust),
                "{language}: idempotency key on {name:?}"
            );
        }
    }
    check_reference(&names, &results[0]);
    assert_unreachable(
        "rust",
        &results[0][names
            .iter()
            .position(|n| *n == "provider unreachable")
            .expect("fixture")],
    );
    check_requests(&server.seen());
}

/// An unreachable provider: a retry whose reason starts with the plugin's words (the
/// detail is the language's own).
fn assert_unreachable(language: &str, outcome: &Outcome) {
    let (kind, reason) = outcome.failure.clone().unwrap_or_default();
    // componentize-js 0.23's fetch (StarlingMonkey) sometimes traps instead of rejecting
    // when the connection fails while it streams the request body (a race in the engine:
    // a body write to the closed stream hits `unreachable`). The daemon counts a trap as
    // a retry too; any other outcome still fails.
    if language == "javascript" && kind == "trap" {
        assert!(reason.contains("unreachable"), "{language}: {reason}");
        return;
    }
    assert_eq!(kind, "retry", "{language}: {}", outcome.text);
    assert!(
        reason.starts_with("the payment provider could not be reached: "),
        "{language}: {reason}"
    );
}

/// What the reference gives for the fixtures the tests above compare against it.
fn check_reference(names: &[&str], rust: &[Outcome]) {
    let at = |name: &str| &rust[names.iter().position(|n| *n == name).expect(name)].text;
    assert!(
        at("valid").contains(r#"["paymentId","pay_"#),
        "{}",
        at("valid")
    );
    assert!(at("valid").contains(r#"["orderAmount","228.85"]"#));
    assert!(at("negative").contains(r#"has a negative orderAmount \"-3\""#));
    assert!(
        at("words").contains(
            r#""WARN rejected entry 1700000000000-7: order 01GTP3K2TZ has an orderAmount"#
        )
    );
    assert!(at("missing user id").contains("missing field `userId`"));
    assert!(
        at("provider unavailable")
            .contains(r#"{"kind":"retry","reason":"the payment provider answered 503"}"#)
    );
    assert!(at("provider throttles").contains(r#""the payment provider answered 429""#));
    assert!(
        at("provider refuses").contains(
            r#"{"kind":"reject","reason":"the payment provider refused the charge (400)"}"#
        )
    );
    assert!(
        at("no provider_url")
            .contains(r#"{"kind":"reject","reason":"config provider_url is not set"}"#)
    );
    assert!(at("invalid and no provider_url").contains("not a number"));
    let paid: Vec<&String> = rust
        .iter()
        .map(|o| &o.text)
        .filter(|t| t.contains("\"outputs\""))
        .collect();
    assert_eq!(paid.len(), 7, "fixtures paid by the reference: {paid:#?}");
}

/// Every request the provider got carried the entry's idempotency key, JSON's content
/// type and the order as JSON, and only valid orders were sent.
fn check_requests(seen: &[Seen]) {
    assert!(!seen.is_empty());
    for request in seen {
        assert_eq!(request.method, "POST", "{request:?}");
        let key = request.header("idempotency-key").unwrap_or_default();
        assert!(
            key.len() == 32 && key.bytes().all(|b| b.is_ascii_hexdigit()),
            "{request:?}"
        );
        assert_eq!(
            request.header("content-type"),
            Some("application/json"),
            "{request:?}"
        );
        let body: serde_json::Value = serde_json::from_slice(&request.body).expect("a JSON body");
        let object = body.as_object().expect("a JSON object");
        let mut names: Vec<&str> = object.keys().map(String::as_str).collect();
        // Sorted: serde_json keeps the order only where a crate of the build turns on
        // `preserve_order` (the workspace does, a lone `-p sluice` does not); the bodies'
        // bytes are compared across languages above.
        names.sort_unstable();
        assert_eq!(names, ["amount", "orderId", "userId"], "{request:?}");
        assert!(object.values().all(|v| v.is_string()), "{request:?}");
    }
    // Per language: the 7 valid orders and the 3 that the provider answers with a status
    // (the unreachable one never arrives), and nothing for a rejected order.
    assert_eq!(seen.len(), LANGUAGES.len() * (7 + 3));
}

/// Guest log lines, captured per call.
#[derive(Clone, Default)]
struct GuestLogs(Arc<Mutex<Vec<String>>>);

impl GuestLogs {
    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().expect("log lock"))
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for GuestLogs {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        if !event.metadata().target().ends_with("guest_log") {
            return;
        }
        struct Text(String);
        impl tracing::field::Visit for Text {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                if field.name() == "message" {
                    self.0 = format!("{value:?}");
                }
            }
        }
        let mut text = Text(String::new());
        event.record(&mut text);
        let line = format!("{} {}", event.metadata().level(), text.0);
        self.0.lock().expect("log lock").push(line);
    }
}
