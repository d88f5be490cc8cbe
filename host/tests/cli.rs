//! The `sluice` binary as an operator runs it: a real process, a config file, signals.

use std::process::Command;
use std::time::Duration;

use sluice_testkit::*;

/// `sluice run` processes orders, and on SIGTERM drains and exits 0 with nothing pending.
/// With `--log-format json`, every line a pipeline logs, its handler's included, is in
/// that pipeline's span.
#[tokio::test]
async fn run_processes_and_exits_cleanly_on_sigterm() {
    let TestContext { redis, mut con } = TestContext::new().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = ConfigBuilder::new()
        .redis_url(redis.url())
        .pipeline(payments("payments"))
        .pipeline(echo("echo").max_attempts(1))
        .write(dir.path());
    let log = dir.path().join("sluice.log");
    let mut daemon = DaemonProcess::start(
        &[
            "run".as_ref(),
            "--log-format".as_ref(),
            "json".as_ref(),
            "-c".as_ref(),
            config.as_os_str(),
        ],
        &log,
    );
    // A panic: the guest writes its message to stderr (from a WASI stream task).
    add(&mut con, "IN", &[("action", "trap")]).await;
    // Rejected by the handler (no amount), which logs a warning.
    add(
        &mut con,
        "ORDERS_STREAM",
        &[("orderId", "x"), ("userId", "u")],
    )
    .await;
    for i in 0..50 {
        add(
            &mut con,
            "ORDERS_STREAM",
            &[
                ("orderId", &i.to_string()),
                ("orderAmount", "1.00"),
                ("userId", "u"),
            ],
        )
        .await;
    }
    wait_len(&con, "PAYMENTS_STREAM", 50).await;
    wait_len(&con, "IN:dead", 1).await;
    daemon.signal(libc::SIGTERM);
    let status = daemon.wait(Duration::from_secs(15));
    assert!(status.success(), "exit status {status}");
    assert_eq!(
        pending(&mut con, "ORDERS_STREAM", "ORDERS_CON_GROUP").await,
        0
    );
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&log)
        .expect("log")
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON log line"))
        .collect();
    let with = |message: &str| -> Vec<&serde_json::Value> {
        lines
            .iter()
            .filter(|l| {
                l["fields"]["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with(message))
            })
            .collect()
    };
    for (message, pipeline) in [
        ("pipeline started", "payments"),
        ("rejected entry", "payments"),
        ("pipeline stopped", "payments"),
        ("asked to trap", "echo"),
    ] {
        let found = with(message);
        assert!(!found.is_empty(), "no {message:?} line in {lines:#?}");
        for l in &found {
            assert_eq!(l["span"]["name"], "pipeline", "{l}");
            assert!(l["fields"].get("pipeline").is_none(), "named once: {l}");
        }
        assert!(
            found.iter().any(|l| l["span"]["pipeline"] == pipeline),
            "no {message:?} line of {pipeline}: {found:#?}"
        );
    }
    assert!(
        lines.iter().all(|l| l["fields"]["message"] != ""),
        "no empty lines: {lines:#?}"
    );
}

/// Without a Redis URL, `sluice run` starts a private redis-server and stops it at exit.
#[tokio::test]
async fn run_without_url_uses_a_private_redis_and_stops_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config_file(&dir, &payments("payments").to_string());
    let mut daemon = DaemonProcess::start(
        &["run".as_ref(), "-c".as_ref(), config.as_os_str()],
        &dir.path().join("sluice.log"),
    );
    let pid = daemon.pid() as i32;
    // The private server is a child of the daemon.
    let child_redis = eventually("a redis-server child", Duration::from_secs(15), || {
        let found = children_of(pid)
            .into_iter()
            .find(|(_, name)| name.starts_with("redis-server"));
        async move { found.map(|(pid, _)| pid) }
    })
    .await;
    daemon.signal(libc::SIGTERM);
    let status = daemon.wait(Duration::from_secs(15));
    let stderr = daemon.log();
    assert!(status.success(), "{stderr}");
    assert!(stderr.contains("started a private server"), "{stderr}");
    eventually(
        "the private redis-server to be gone",
        Duration::from_secs(5),
        || {
            let gone = !std::path::Path::new(&format!("/proc/{child_redis}")).exists()
                || std::fs::read_to_string(format!("/proc/{child_redis}/stat"))
                    .is_ok_and(|s| s.contains(") Z "));
            async move { gone.then_some(()) }
        },
    )
    .await;
}

/// `sluice dev` with no Redis URL runs on a private redis-server, watches the plugin and
/// reports a reload with the new version and its compile time.
#[tokio::test]
async fn dev_watches_and_reloads_the_plugin() {
    let dir = tempfile::tempdir().expect("tempdir");
    let plugin = dir.path().join("payments.wasm");
    std::fs::copy(plugin_wasm("payments"), &plugin).expect("copy");
    let config = config_file(
        &dir,
        &ConfigBuilder::new()
            .plugins("cache_dir", dir.path().join("cache").display().to_string())
            .pipeline(payments("payments").plugin("payments.wasm"))
            .to_string(),
    );
    let log = dir.path().join("dev.log");
    let mut daemon =
        DaemonProcess::start(&["dev".as_ref(), "-c".as_ref(), config.as_os_str()], &log);
    let read_log = || std::fs::read_to_string(&log).unwrap_or_default();
    eventually("the watcher to start", Duration::from_secs(15), || {
        let ready = read_log().contains("watching the plugin for changes");
        async move { ready.then_some(()) }
    })
    .await;
    let tagged = workspace().join("target/plugins/payments_tag_b.wasm");
    let tmp = dir.path().join("payments.wasm.new");
    std::fs::copy(&tagged, &tmp).expect("copy");
    std::fs::rename(&tmp, &plugin).expect("rename into place");
    eventually("the reload", Duration::from_secs(15), || {
        let line = read_log()
            .lines()
            .find(|l| l.contains("plugin reloaded"))
            .map(str::to_owned);
        async move { line }
    })
    .await;
    let text = read_log();
    assert!(text.contains("started a private server"), "{text}");
    assert!(text.contains("compile_ms"), "{text}");
    // The reload swapped the version that was loaded for another one.
    let plain = strip_ansi(&text);
    let value = |line: &str, key: &str| {
        line.split_whitespace()
            .find_map(|word| word.strip_prefix(key))
            .map(str::to_owned)
    };
    let loaded = plain
        .lines()
        .find(|l| l.contains("plugin loaded"))
        .and_then(|l| value(l, "plugin="))
        .expect("a plugin loaded line with its digest");
    let reloaded = plain
        .lines()
        .find(|l| l.contains("plugin reloaded"))
        .expect("a plugin reloaded line");
    assert_eq!(
        value(reloaded, "from=").as_deref(),
        Some(loaded.as_str()),
        "{reloaded}"
    );
    let to = value(reloaded, "to=").expect("the new digest");
    assert!(to.starts_with("sha256:") && to != loaded, "{reloaded}");
    daemon.signal(libc::SIGTERM);
    assert!(
        daemon.wait(Duration::from_secs(15)).success(),
        "{}",
        read_log()
    );
}

/// `sluice invoke` runs a handler once with no Redis: outputs (exit 0), the handler's
/// failure with its reason (exit 2), config lookups, JSON in and out, and a clear error
/// (exit 1) for a file that is not a plugin.
#[test]
fn invoke_runs_a_handler_once_without_redis() {
    let payments = plugin_wasm("payments");
    let payments = payments.to_str().expect("utf-8 path");
    let (code, out, err) = invoke(&[payments, "orderId=A1", "orderAmount=12.50", "userId=u7"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("→ PAYMENTS_STREAM\n"), "{out}");
    for line in ["  orderId = A1", "  paidAmount = 12.50", "  userId = u7"] {
        assert!(out.contains(line), "{line:?} missing from {out}");
    }

    let (code, out, _) = invoke(&[
        payments,
        "--config",
        "payments_stream=ELSEWHERE",
        "--output-json",
        "--json",
        r#"{"orderId": "A2", "orderAmount": "abc", "userId": "u"}"#,
    ]);
    assert_eq!(code, 2, "{out}");
    let json: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(json["failure"]["kind"], "reject");
    assert_eq!(
        json["failure"]["reason"],
        "order A2 has an orderAmount that is not a number: \"abc\""
    );

    let (code, out, _) = invoke(&[
        payments,
        "--config",
        "payments_stream=ELSEWHERE",
        "--output-json",
        "orderId=A3",
        "orderAmount=1",
        "userId=u",
    ]);
    assert_eq!(code, 0, "{out}");
    let json: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(json["outputs"][0]["target"], "ELSEWHERE");
    assert_eq!(
        json["outputs"][0]["fields"][0],
        serde_json::json!(["orderId", "A3"])
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let fake = dir.path().join("fake.wasm");
    std::fs::write(&fake, b"not wasm").expect("write");
    let (code, _, err) = invoke(&[fake.to_str().expect("utf-8"), "a=b"]);
    assert_eq!(code, 1);
    assert!(err.contains("not a WebAssembly file"), "{err}");
    let (code, _, err) = invoke(&[payments, "no-equals-sign"]);
    assert_eq!(code, 1);
    assert!(err.contains("is not NAME=VALUE"), "{err}");
}

/// `sluice compile` fills the cache the daemon reads: the first run compiles each
/// pipeline's plugin, the second finds them cached; a plugin that is not a component
/// fails it with the file named.
#[test]
fn compile_precompiles_pipeline_plugins_into_the_cache() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("sluice.toml");
    let pipeline = |name: &str, plugin: &std::path::Path| {
        echo(name)
            .plugin(plugin.display())
            .reading(&format!("IN_{name}"), "g")
            .to_string()
    };
    let cache = dir.path().join("cache");
    let plugins = ConfigBuilder::new()
        .plugins("cache_dir", cache.display().to_string())
        .to_string();
    let good = format!(
        "{plugins}{}{}",
        pipeline("payments", &plugin_wasm("payments")),
        pipeline("c", &plugin_wasm("payments-c"))
    );
    std::fs::write(&config, good).expect("write config");
    let compile = || {
        Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(["compile", "-c"])
            .arg(&config)
            .output()
            .expect("run sluice compile")
    };
    let first = compile();
    let out = String::from_utf8_lossy(&first.stdout);
    assert!(
        first.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert_eq!(out.matches("compiled: ").count(), 2, "{out}");
    assert_eq!(std::fs::read_dir(&cache).expect("cache dir").count(), 2);
    let second = compile();
    let out = String::from_utf8_lossy(&second.stdout);
    assert!(second.status.success());
    assert_eq!(out.matches("already cached: ").count(), 2, "{out}");

    let fake = dir.path().join("fake.wasm");
    std::fs::write(&fake, b"not wasm").expect("write");
    std::fs::write(&config, format!("{plugins}{}", pipeline("fake", &fake))).expect("write");
    let failed = compile();
    assert!(!failed.status.success());
    let err = String::from_utf8_lossy(&failed.stderr);
    assert!(
        err.contains("fake.wasm") && err.contains("not a WebAssembly file"),
        "{err}"
    );
}

/// `text` without terminal colour codes (`ESC [ ... m`).
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}
