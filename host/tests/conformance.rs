//! One set of fixture messages through the payments handler in every language: each must
//! produce exactly the outputs and failures of the Rust reference, in-process (one call
//! per fixture on the `wasm` module) and through a live daemon (one pipeline per
//! language on the same input). A new language joins by adding its plugin to `LANGUAGES`.

use std::collections::BTreeMap;

use sluice::invoke::{Invocation, invoke};
use sluice_testkit::*;
use std::sync::{Arc, Mutex};
use tracing_subscriber::layer::SubscriberExt;

/// (plugin, language) — the first is the reference.
const LANGUAGES: &[(&str, &str)] = &[
    ("payments", "rust"),
    ("payments-js", "javascript"),
    ("payments-ts", "typescript"),
    ("payments-python", "python"),
    ("payments-c", "c"),
];

type Fields = Vec<(String, Vec<u8>)>;

fn order(id: &[u8], amount: Option<&[u8]>, user: &[u8]) -> Fields {
    let mut fields = vec![("orderId".to_owned(), id.to_vec())];
    if let Some(amount) = amount {
        fields.push(("orderAmount".to_owned(), amount.to_vec()));
    }
    fields.push(("userId".to_owned(), user.to_vec()));
    fields
}

/// Named fixture messages: valid orders in every accepted number syntax, invalid and
/// missing amounts, missing fields, non-UTF-8 values, repeated and extra fields.
fn fixtures() -> Vec<(&'static str, Fields)> {
    let valid = |amount: &'static str| order(b"01GTP3K2TZ", Some(amount.as_bytes()), b"USR_1");
    let mut repeated = valid("1.00");
    repeated.push(("orderAmount".into(), b"2.50".to_vec()));
    let mut extra = valid("3.00");
    extra.insert(1, ("note".into(), b"gift".to_vec()));
    vec![
        ("valid", valid("228.85")),
        ("spaces", valid(" 12.50\t")),
        ("exponent", valid("1e3")),
        ("plus sign", valid("+7")),
        ("leading dot", valid(".5")),
        ("trailing dot", valid("5.")),
        ("zero", valid("0")),
        ("negative zero", valid("-0")),
        ("negative", valid("-3")),
        ("infinity", valid("inf")),
        ("nan", valid("NaN")),
        ("overflow", valid("1e400")),
        ("words", valid("abc")),
        ("empty amount", valid("")),
        ("comma", valid("12,50")),
        ("hex", valid("0x10")),
        ("quote and newline", valid("12\"5\n")),
        ("nul and control", valid("12\u{0}\u{1}")),
        ("unicode space", valid("\u{3000}8.5\u{a0}")),
        ("missing amount", order(b"O-2", None, b"USR_2")),
        (
            "missing order id",
            vec![
                ("orderAmount".into(), b"1".to_vec()),
                ("userId".into(), b"U".to_vec()),
            ],
        ),
        (
            "missing user id",
            vec![
                ("orderId".into(), b"O-3".to_vec()),
                ("orderAmount".into(), b"1".to_vec()),
            ],
        ),
        ("no fields", vec![]),
        (
            "non-utf-8 order id",
            order(b"\xff\xfeO-4", Some(b"9.99"), b"USR_4"),
        ),
        ("non-utf-8 amount", order(b"O-5", Some(b"1\xc3"), b"USR_5")),
        (
            "cut and surrogate utf-8",
            order(b"O-7\xf0\x9f\x98", Some(b"2\xed\xa0\x80"), b"\xe2\x82USR_7"),
        ),
        (
            "unicode",
            order("Ö-6 ✓".as_bytes(), Some(b"4.20"), "用户".as_bytes()),
        ),
        (
            "byte order mark",
            order(b"\xef\xbb\xbfO-8", Some(b"5"), b"\xef\xbb\xbfUSR_8"),
        ),
        ("repeated amount", repeated),
        ("extra field", extra),
    ]
}

/// Every fixture, with and without a config override and on a later attempt, gives the
/// same result in every language; and the reference gives what the tutorial says.
#[tokio::test]
async fn every_language_handles_every_fixture_like_rust() {
    let cache = tempfile::tempdir().expect("cache dir");
    let calls: Vec<(String, Invocation)> = fixtures()
        .into_iter()
        .flat_map(|(name, fields)| {
            let plain = Invocation {
                stream: "ORDERS_STREAM".into(),
                id: "1700000000000-0".into(),
                fields,
                ..Default::default()
            };
            let mut configured = plain.clone();
            configured.config = BTreeMap::from([("payments_stream".into(), "ALT".into())]);
            let mut later = plain.clone();
            later.attempt = 3;
            [
                (name.to_owned(), plain),
                (format!("{name} (config)"), configured),
                (format!("{name} (attempt 3)"), later),
            ]
        })
        .collect();
    // Guest log lines, captured per call: they must agree too.
    let logs = GuestLogs::default();
    let _capture =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(logs.clone()));
    let mut results: Vec<Vec<String>> = Vec::new();
    for (plugin, language) in LANGUAGES {
        let path = plugin_wasm(plugin);
        let mut row = Vec::new();
        for (name, call) in &calls {
            let invoked = invoke(&path, Some(cache.path()), call.clone())
                .await
                .unwrap_or_else(|e| panic!("{language}: {name}: {e:#}"));
            let lines = logs.take();
            row.push(format!(
                "{} logs={lines:?}",
                sluice::invoke::render_json(&invoked.result)
            ));
        }
        results.push(row);
    }
    for (l, (_, language)) in LANGUAGES.iter().enumerate().skip(1) {
        for (c, (name, _)) in calls.iter().enumerate() {
            assert_eq!(
                results[l][c], results[0][c],
                "{language} differs from rust on fixture {name:?}"
            );
        }
    }
    // The reference itself.
    let at = |name: &str| &results[0][calls.iter().position(|(n, _)| n == name).expect(name)];
    assert!(at("valid").contains("PAYMENTS_STREAM") && at("valid").contains("228.85"));
    assert!(at("valid (config)").contains("\"ALT\""));
    assert!(at("negative zero").starts_with("{\"outputs\""));
    assert!(at("negative").contains("has a negative orderAmount \\\"-3\\\""));
    assert!(at("words").contains("not a number: \\\"abc\\\""));
    assert!(at("missing amount").contains("order O-2 has no orderAmount"));
    assert!(at("missing user id").contains("missing field `userId`"));
    assert!(at("no fields").contains("missing field `orderId`"));
    assert!(at("non-utf-8 order id").contains("\u{fffd}\u{fffd}O-4"));
    let rejects = results[0]
        .iter()
        .filter(|r| r.contains("\"reject\""))
        .count();
    assert!(at("valid").ends_with("logs=[]"), "{}", at("valid"));
    assert!(
        at("valid (attempt 3)")
            .ends_with(r#"logs=["INFO entry 1700000000000-0 is on delivery attempt 3"]"#)
    );
    assert!(at("negative (attempt 3)").contains(
        r#""WARN rejected entry 1700000000000-0: order 01GTP3K2TZ has a negative orderAmount \"-3\"""#
    ));
    assert!(at("nul and control").contains(r#"not a number: \"12\\0\\u{1}\""#));
    assert!(at("unicode space").starts_with("{\"outputs\""));
    // A leading U+FEFF is text like any other (Rust's from_utf8_lossy keeps it).
    assert!(at("byte order mark").contains("\u{feff}O-8"));
    assert!(at("cut and surrogate utf-8").contains("order O-7\u{fffd} has an orderAmount"));
    assert!(at("cut and surrogate utf-8").contains("2\u{fffd}\u{fffd}\u{fffd}"));
    assert_eq!(rejects, 3 * 16, "fixtures rejected by the reference");
}

/// The same fixtures through a live daemon, one pipeline per language on one input
/// stream: the payments and the dead letters' reasons agree across languages.
#[tokio::test]
async fn every_language_agrees_through_a_live_daemon() {
    let TestContext { redis, mut con } = TestContext::new().await;
    let mut text = String::new();
    for (plugin, language) in LANGUAGES {
        let pipeline = payments(language)
            .plugin(format!("{{plugin:{plugin}}}"))
            .reading("ORDERS", language)
            .writing(&[&format!("PAY_{language}")])
            .dead_letter(&format!("DEAD_{language}"))
            .plugin_config("payments_stream", format!("PAY_{language}"));
        text.push_str(&pipeline.to_string());
    }
    let host = TestDaemon::start(&redis, config(&text)).await;
    let fixtures = fixtures();
    for (_, fields) in &fixtures {
        let mut cmd = redis::cmd("XADD");
        cmd.arg("ORDERS").arg("*");
        if fields.is_empty() {
            cmd.arg("empty").arg("");
        }
        for (name, value) in fields {
            cmd.arg(name).arg(value);
        }
        let _: String = cmd.query_async(&mut con).await.expect("XADD");
    }
    let total = fixtures.len();
    let mut seen: Vec<(Vec<Fields>, Vec<String>)> = Vec::new();
    for (_, language) in LANGUAGES {
        let dead = format!("DEAD_{language}");
        let payments = format!("PAY_{language}");
        eventually(
            &format!("{language} handled every fixture"),
            std::time::Duration::from_secs(60),
            || {
                let mut con = con.clone();
                let (payments, dead) = (payments.clone(), dead.clone());
                async move {
                    let done = len(&mut con, &payments).await + len(&mut con, &dead).await;
                    (done == total).then_some(())
                }
            },
        )
        .await;
        let outputs: Vec<Fields> = entries(&mut con, &payments)
            .await
            .into_iter()
            .map(|(_, fields)| fields)
            .collect();
        let reasons: Vec<String> = entries(&mut con, &dead)
            .await
            .into_iter()
            .map(|(_, fields)| {
                field(&fields, "sluice.error")
                    .unwrap_or_default()
                    .to_owned()
            })
            .collect();
        seen.push((outputs, reasons));
    }
    host.stop().await;
    assert_eq!(seen[0].0.len(), 14, "payments from the reference");
    for (l, (_, language)) in LANGUAGES.iter().enumerate().skip(1) {
        assert_eq!(
            seen[l].0, seen[0].0,
            "{language}'s payments differ from rust's"
        );
        assert_eq!(
            seen[l].1, seen[0].1,
            "{language}'s dead letters differ from rust's"
        );
    }
}

/// A tracing layer keeping the guests' log lines ("LEVEL text"), for comparison.
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

/// The order-status handler with its handler state in every language that has state
/// helpers: the same outputs, the same failures and the same state writes for the same
/// payments, from the same initial state.
#[tokio::test]
async fn every_language_writes_the_same_state() {
    const STATEFUL: [(&str, &str); 4] = [
        ("order-status", "rust"),
        ("order-status-js", "javascript"),
        ("order-status-python", "python"),
        ("order-status-c", "c"),
    ];
    let cache = tempfile::tempdir().expect("cache dir");
    let payment = |order: &str, user: &str, paid: &str| -> Fields {
        [
            ("orderId", order),
            ("paymentId", "65f0c0ffee0000000000beef"),
            ("orderStatusCode", "3"),
            ("userId", user),
            ("paidAmount", paid),
        ]
        .iter()
        .map(|(n, v)| ((*n).to_owned(), v.as_bytes().to_vec()))
        .collect()
    };
    let initial = sluice::state::MemoryStore::from_json(
        r#"{"user-total:U1": "1000", "order:O-3": "not a hash"}"#,
    )
    .expect("state");
    let fixtures: Vec<(&str, Fields, Vec<String>)> = vec![
        ("cents", payment("O-1", "U1", "12.34"), vec![]),
        ("whole", payment("O-2", "U2", "5"), vec![]),
        ("one decimal", payment("O-1", "U1", "9.9"), vec![]),
        ("too many decimals", payment("O-1", "U1", "1.234"), vec![]),
        ("negative", payment("O-1", "U1", "-1.00"), vec![]),
        (
            "a record that is a string",
            payment("O-3", "U1", "1.00"),
            vec![],
        ),
        (
            "outside the prefixes",
            payment("O-1", "U1", "1.00"),
            vec!["order:".into()],
        ),
        (
            "missing field",
            payment("O-1", "U1", "1.00")[..3].to_vec(),
            vec![],
        ),
    ];
    let mut results: Vec<Vec<String>> = Vec::new();
    for (plugin, language) in STATEFUL {
        let path = plugin_wasm(plugin);
        let mut row = Vec::new();
        for (name, fields, prefixes) in &fixtures {
            let call = Invocation {
                stream: "PAYMENTS_STREAM".into(),
                fields: fields.clone(),
                state: Some(initial.clone()),
                state_prefixes: prefixes.clone(),
                ..Default::default()
            };
            let invoked = invoke(&path, Some(cache.path()), call)
                .await
                .unwrap_or_else(|e| panic!("{language}: {name}: {e:#}"));
            row.push(format!(
                "{} state={}",
                sluice::invoke::render_json(&invoked.result),
                sluice::invoke::render_state_json(&invoked.state)
            ));
        }
        results.push(row);
    }
    for (l, (_, language)) in STATEFUL.iter().enumerate().skip(1) {
        for (f, (name, ..)) in fixtures.iter().enumerate() {
            assert_eq!(
                results[l][f], results[0][f],
                "{language} differs from rust on fixture {name:?}"
            );
        }
    }
    let at = |name: &str| &results[0][fixtures.iter().position(|(n, ..)| *n == name).expect(name)];
    assert!(
        // serde_json may keep keys in insertion order or sort them (feature unification).
        at("cents").contains(r#""delta":1234"#) && at("cents").contains(r#""op":"incrby""#),
        "{}",
        at("cents")
    );
    assert!(
        at("one decimal").contains(r#""delta":990"#),
        "{}",
        at("one decimal")
    );
    assert!(
        at("too many decimals").contains("\"reject\"")
            && at("too many decimals").ends_with("state=[]")
    );
    // HSET is a blind write: the daemon refuses it at the commit; `invoke` says so.
    assert!(at("a record that is a string").contains("would be refused at the commit"));
    assert!(
        at("outside the prefixes").contains("starts with none of the pipeline's state prefixes")
    );
}

/// Plugins that embed an interpreter are told apart by their `producers` sections, and
/// get an instance per core by default (up to 4); compiled ones keep one (outputs in
/// input order). Rust and C have no interpreter; the JavaScript and Python builds do.
#[tokio::test]
async fn interpreted_plugins_get_an_instance_per_core_by_default() {
    let runtime = sluice::wasm::Runtime::new(false, None).expect("runtime");
    let cores = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, 4);
    for (plugin, language) in LANGUAGES {
        let path = plugin_wasm(plugin);
        let loaded = tokio::task::spawn_blocking({
            let runtime = runtime.clone();
            move || sluice::wasm::Plugin::load(&runtime, &path)
        })
        .await
        .expect("load task")
        .expect("plugin loads");
        let expected = match *language {
            "javascript" | "typescript" => Some("JavaScript"),
            "python" => Some("Python"),
            _ => None,
        };
        assert_eq!(loaded.interpreter(), expected, "{plugin}");
        let config = payments("p")
            .plugin(format!("{{plugin:{plugin}}}"))
            .config();
        let pipeline = &config.pipelines[0];
        let instances = pipeline.resolve_concurrency(loaded.interpreter().is_some());
        assert_eq!(
            instances,
            if expected.is_some() { cores } else { 1 },
            "{plugin}"
        );
        // Set, it wins.
        let set = payments("p")
            .plugin(format!("{{plugin:{plugin}}}"))
            .concurrency(1)
            .config();
        assert_eq!(set.pipelines[0].resolve_concurrency(true), 1);
    }
}

/// A JavaScript handler that throws an Error (a bug, not a `reject`) traps, and the trap
/// carries no message: the SDK logs the error with its text first, once, attributed to
/// the entry — the dead letter's "trapped" is then explained in the logs.
#[tokio::test]
async fn a_thrown_error_is_logged_with_its_text_before_the_trap() {
    let logs = GuestLogs::default();
    let _capture =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(logs.clone()));
    let call = Invocation {
        stream: "IN".into(),
        id: "1700000000000-7".into(),
        fields: vec![("action".into(), b"trap".to_vec())],
        ..Default::default()
    };
    let invoked = invoke(&plugin_wasm("echo-js"), None, call)
        .await
        .expect("invoke");
    let error = invoked.result.expect_err("a thrown Error traps");
    assert!(error.to_string().contains("trap"), "{error}");
    let lines = logs.take();
    let thrown: Vec<_> = lines
        .iter()
        .filter(|l| l.contains("the handler threw on entry 1700000000000-7"))
        .collect();
    assert_eq!(thrown.len(), 1, "one line for the error: {lines:?}");
    assert!(
        thrown[0].starts_with("ERROR")
            && thrown[0].contains("Error: trap on entry 1700000000000-7"),
        "{lines:?}"
    );
}

/// Results a JavaScript handler may shape oddly are taken by `handle` as `handle-packed`
/// takes them (the daemon falls back from one to the other, and `sluice invoke` calls
/// `handle`): an output without its list fails the call instead of losing the output, a
/// frozen list and a thenable that is not a Promise are outputs, and a hand-built reject
/// with a number for its reason rejects with that number as text.
#[tokio::test]
async fn odd_javascript_results_are_taken_alike_by_every_export() {
    let cache = tempfile::tempdir().expect("cache dir");
    let call = |action: &str| Invocation {
        stream: "IN".into(),
        id: "1700000000000-8".into(),
        fields: vec![("action".into(), action.as_bytes().to_vec())],
        ..Default::default()
    };
    let result = async |action: &str| {
        let invoked = invoke(&plugin_wasm("echo-js"), Some(cache.path()), call(action))
            .await
            .expect("invoke");
        sluice::invoke::render_json(&invoked.result).to_string()
    };
    let lost = result("not-a-list").await;
    assert!(lost.contains("trap"), "not-a-list: {lost}");
    for action in ["frozen", "thenable"] {
        let out = result(action).await;
        assert!(
            out.contains("\"outputs\"") && out.contains(action) && out.contains("\"OUT\""),
            "{action}: {out}"
        );
    }
    let reason = result("reason-number").await;
    assert!(
        reason.contains("\"reject\"") && reason.contains("42"),
        "{reason}"
    );
}
