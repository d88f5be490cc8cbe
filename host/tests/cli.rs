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

/// Runs `sluice invoke ARGS` with its own cache directory; returns (exit code, stdout,
/// stderr).
fn invoke(args: &[&str]) -> (i32, String, String) {
    let cache = tempfile::tempdir().expect("tempdir");
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("invoke")
        .args(args)
        .env("XDG_CACHE_HOME", cache.path())
        .output()
        .expect("run sluice invoke");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
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

/// `sluice new NAME --lang L` makes a project that builds with its one command and whose
/// component passes `sluice invoke` as it is: fields copied to the configured target plus
/// `handledBy`, and a reject for a message without fields.
fn scaffold_builds_and_invokes(lang: &str, target_dir: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let name = format!("hello-{lang}");
    let project = dir.path().join(&name);
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["new", &name, "--lang", lang, "--dir"])
        .arg(&project)
        .arg("--sdk")
        .arg(workspace())
        .output()
        .expect("run sluice new");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let made = String::from_utf8_lossy(&out.stdout);
    assert!(made.contains("build.sh"), "{made}");

    let build = Command::new(project.join("build.sh"))
        .env("CARGO_TARGET_DIR", workspace().join(target_dir))
        .output()
        .expect("run build.sh");
    assert!(
        build.status.success(),
        "{lang} build failed:\n{}{}",
        String::from_utf8_lossy(&build.stdout),
        String::from_utf8_lossy(&build.stderr)
    );
    let wasm = project.join(format!("hello_{lang}.wasm"));
    let wasm = wasm.to_str().expect("utf-8 path");

    let (code, out, err) = invoke(&[wasm, "--config", "target=GREETINGS", "greeting=hello"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("→ GREETINGS\n"), "{out}");
    assert!(out.contains("  greeting = hello"), "{out}");
    assert!(out.contains(&format!("  handledBy = {name}")), "{out}");
    // A component with an interpreter inside takes seconds to compile (here, with an
    // empty cache): that is said, not silent; a compiled language's takes milliseconds.
    let interpreted = matches!(lang, "js" | "python");
    assert_eq!(
        err.contains("compiling the component"),
        interpreted,
        "{lang}: {err}"
    );

    let (code, out, err) = invoke(&[wasm, "--id", "7-0"]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(out.contains("message 7-0 has no fields"), "{out}");

    fixtures_pass_and_a_wrong_one_fails(wasm, &project);

    // A second project in the same place is refused, and says why.
    let again = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["new", &name, "--lang", lang, "--dir"])
        .arg(&project)
        .output()
        .expect("run sluice new");
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists and is not empty"));
}

/// `sluice test` on a scaffold: its own fixture passes; a case that expects something
/// else fails with a diff, exit status 1 and a JUnit report that says so.
fn fixtures_pass_and_a_wrong_one_fails(wasm: &str, project: &std::path::Path) {
    let sluice = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(args)
            .output()
            .expect("run sluice test");
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        (out.status.code().unwrap_or(-1), text)
    };
    let (code, out) = sluice(&["test", wasm]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("0 failed"), "{out}");
    let wrong = project.join("wrong.toml");
    let text = std::fs::read_to_string(project.join("fixtures.toml")).expect("fixtures");
    std::fs::write(
        &wrong,
        text.replace(
            "[\"greeting\", \"hello\"], [\"handledBy\"",
            "[\"greeting\", \"bye\"], [\"handledBy\"",
        ),
    )
    .expect("wrong");
    let junit = project.join("report.xml");
    let (code, out) = sluice(&[
        "test",
        wasm,
        "--fixtures",
        wrong.to_str().expect("utf-8"),
        "--junit",
        junit.to_str().expect("utf-8"),
    ]);
    if text.contains("[[case.expect.outputs]]") {
        assert_eq!(code, 1, "{out}");
        assert!(
            out.contains("FAIL  copies every field")
                && out.contains("-   greeting = bye")
                && out.contains("+   greeting = hello"),
            "{out}"
        );
        let report = std::fs::read_to_string(&junit).expect("junit");
        assert!(
            report.contains("failures=\"1\"") && report.contains("<failure"),
            "{report}"
        );
    }
}

#[test]
fn new_rust_plugin_builds_and_passes_invoke() {
    scaffold_builds_and_invokes("rust", "target/plugins/scaffold");
}

#[test]
fn new_js_plugin_builds_and_passes_invoke() {
    scaffold_builds_and_invokes("js", "target/plugins/scaffold");
}

#[test]
fn new_python_plugin_builds_and_passes_invoke() {
    scaffold_builds_and_invokes("python", "target/plugins/scaffold");
}

#[test]
fn new_c_plugin_builds_and_passes_invoke() {
    // The sluice-c tool build.sh needs is the one build-plugins.sh already built.
    plugin_wasm("payments-c");
    scaffold_builds_and_invokes("c", "target/plugins/tools");
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

/// `sluice new NAME --lang L --http` makes a handler that POSTs each entry to a service:
/// it builds with its one command, is refused by `sluice invoke` without a grant (the
/// message says how to grant), and with `--allow-outbound` reaches a real server with
/// the entry's fields as JSON and its idempotency key.
fn http_scaffold_calls_out(lang: &str, target_dir: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let name = format!("caller-{lang}");
    let project = dir.path().join(&name);
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["new", &name, "--lang", lang, "--http", "--dir"])
        .arg(&project)
        .arg("--sdk")
        .arg(workspace())
        .output()
        .expect("run sluice new");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let made = String::from_utf8_lossy(&out.stdout);
    assert!(made.contains("allowed_outbound_hosts"), "{made}");
    let build = Command::new(project.join("build.sh"))
        .env("CARGO_TARGET_DIR", workspace().join(target_dir))
        .output()
        .expect("run build.sh");
    assert!(
        build.status.success(),
        "{lang} build failed:\n{}{}",
        String::from_utf8_lossy(&build.stdout),
        String::from_utf8_lossy(&build.stderr)
    );
    let wasm = project.join(format!("caller_{lang}.wasm"));
    let wasm = wasm.to_str().expect("utf-8 path");
    let server = HttpServer::start();
    let url = format!("url={}", server.url("/echo"));
    let (code, _, err) = invoke(&[wasm, "--config", &url, "greeting=hello"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("--allow-outbound"), "{err}");
    let origin = server.origin();
    let args = [
        wasm,
        "--allow-outbound",
        &origin,
        "--config",
        &url,
        "--id",
        "5-0",
        "greeting=hello",
    ];
    let (code, out, err) = invoke(&args);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("  status = 200"), "{out}");
    let seen = server.seen();
    assert_eq!(seen.len(), 1, "{seen:?}");
    let body: serde_json::Value = serde_json::from_slice(&seen[0].body).expect("JSON");
    assert_eq!(body["greeting"], "hello");
    assert_eq!(seen[0].header("idempotency-key").map(str::len), Some(32));
    // The service failing: 503 is retried, 400 dead-letters.
    for (status, exit, kind) in [(503, 2, "retry"), (400, 2, "reject")] {
        let url = format!("url={}", server.url(&format!("/status/{status}")));
        let (code, out, err) =
            invoke(&[wasm, "--allow-outbound", &origin, "--config", &url, "a=b"]);
        assert_eq!(code, exit, "{out}{err}");
        assert!(out.contains(kind), "{status}: {out}");
    }
}

#[test]
fn new_rust_http_plugin_calls_a_granted_service() {
    http_scaffold_calls_out("rust", "target/plugins/scaffold");
}

#[test]
fn new_js_http_plugin_calls_a_granted_service() {
    http_scaffold_calls_out("js", "target/plugins/scaffold");
}

#[test]
fn new_python_http_plugin_calls_a_granted_service() {
    http_scaffold_calls_out("python", "target/plugins/scaffold");
}

#[test]
fn new_c_http_plugin_calls_a_granted_service() {
    plugin_wasm("payments-c");
    http_scaffold_calls_out("c", "target/plugins/tools");
}

/// A Python project's PyPI dependencies: a pure-Python one is installed into the build
/// and bundled (the handler imports it), one with native code is refused, named.
#[test]
fn python_dependencies_from_pypi_are_bundled_and_native_ones_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let project = dir.path().join("deps");
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["new", "deps", "--lang", "python", "--dir"])
        .arg(&project)
        .arg("--sdk")
        .arg(workspace())
        .output()
        .expect("run sluice new");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let app = project.join("app.py");
    let source = std::fs::read_to_string(&app).expect("app.py");
    let source = source
        .replace("import sluice\n", "import six\n\nimport sluice\n")
        .replace(
            "fields[\"handledBy\"]",
            "fields[\"six\"] = str(six.PY3)\n        fields[\"handledBy\"]",
        );
    std::fs::write(&app, source).expect("app.py");
    let build = |requirements: &str| {
        std::fs::write(project.join("requirements.txt"), requirements).expect("requirements");
        Command::new(project.join("build.sh"))
            .output()
            .expect("run build.sh")
    };
    let built = build("six==1.16.0\n");
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );
    let wasm = project.join("deps.wasm");
    let (code, out, err) = invoke(&[wasm.to_str().expect("utf-8"), "greeting=hello"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("  six = True"), "{out}");
    let refused = build("six==1.16.0\nmarkupsafe==2.1.5\n");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(
        stderr.contains("native code") && stderr.contains("markupsafe"),
        "{stderr}"
    );
}

/// `sluice new --lang ts`: a TypeScript project whose handler imports an npm package
/// (installed with npm into the project) builds — bundled by esbuild, then componentized —
/// runs, and passes its fixtures.
#[test]
fn a_typescript_handler_with_an_npm_dependency_builds_and_passes_its_fixtures() {
    let dir = tempfile::tempdir().expect("tempdir");
    let project = dir.path().join("orders-check");
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["new", "orders-check", "--lang", "ts", "--dir"])
        .arg(&project)
        .arg("--sdk")
        .arg(workspace())
        .output()
        .expect("run sluice new");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for file in [
        "orders-check.ts",
        "package.json",
        "tsconfig.json",
        "sluice.d.ts",
        "fixtures.toml",
    ] {
        assert!(project.join(file).is_file(), "{file}");
    }
    let npm = Command::new("npm")
        .args([
            "install",
            "--no-audit",
            "--no-fund",
            "--silent",
            "zod@3.23.8",
        ])
        .current_dir(&project)
        .output()
        .expect("npm");
    assert!(
        npm.status.success(),
        "{}",
        String::from_utf8_lossy(&npm.stderr)
    );
    let source = project.join("orders-check.ts");
    let text = std::fs::read_to_string(&source).expect("source");
    let text = text
        .replace(
            "import { config,",
            "import { z } from \"zod\";\nconst Greeting = z.object({ greeting: z.string().min(1) });\nimport { config,",
        )
        .replace(
            "  log.debug(",
            "  const checked = Greeting.safeParse(msg.fields());\n  if (!checked.success) throw reject(`not a greeting: ${checked.error.issues[0].message}`);\n  log.debug(",
        );
    std::fs::write(&source, text).expect("source");
    let build = Command::new(project.join("build.sh"))
        .output()
        .expect("build.sh");
    assert!(
        build.status.success(),
        "{}{}",
        String::from_utf8_lossy(&build.stdout),
        String::from_utf8_lossy(&build.stderr)
    );
    let wasm = project.join("orders_check.wasm");
    let wasm = wasm.to_str().expect("utf-8");
    let (code, out, err) = invoke(&[wasm, "greeting=hello"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("  handledBy = orders-check"), "{out}");
    let (code, out, _) = invoke(&[wasm, "other=x"]);
    assert_eq!(code, 2);
    assert!(out.contains("not a greeting"), "zod's check ran: {out}");
    let tested = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["test", wasm])
        .output()
        .expect("sluice test");
    let text = String::from_utf8_lossy(&tested.stdout);
    assert!(tested.status.success(), "{text}");
}
