//! `sluice dev` and `sluice run` as a newcomer runs them: on the private redis-server
//! they start, for longer than the timers inside the daemon, with the tools (`send`)
//! finding that server, and the operator's view of what goes wrong: a private server
//! that dies, a bad plugin file dropped under `watch`, dead letters, the command line.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use sluice_testkit::*;

/// A `sluice dev` child on a private server, and that server's URL.
struct Dev {
    daemon: DaemonProcess,
    url: String,
    config: PathBuf,
}

/// Starts `sluice dev -c CONFIG` (no Redis URL: a private server) for `pipelines`, with
/// the plugin files copied into `dir`; waits until it runs and reads the server's URL
/// from the log.
async fn dev(dir: &tempfile::TempDir, toml: &str) -> Dev {
    let config = config_file(dir, toml);
    let log = dir.path().join("dev.log");
    let daemon = DaemonProcess::start(&["dev".as_ref(), "-c".as_ref(), config.as_os_str()], &log);
    let url = eventually("the private server's URL", Duration::from_secs(30), || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let url = text
            .lines()
            .filter(|l| l.contains("started a private server"))
            .find_map(|l| l.split_whitespace().find_map(|w| w.strip_prefix("url=")))
            .map(str::to_owned);
        let watching = text.contains("watching the plugin for changes");
        async move { url.filter(|_| watching) }
    })
    .await;
    Dev {
        daemon,
        url,
        config,
    }
}

/// `sluice ARGS` to completion: (exit code, stdout, stderr).
fn sluice(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(args)
        .env_remove("SLUICE_REDIS_URL")
        .env("SLUICE_LOG", "info")
        .output()
        .expect("run sluice");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The private redis-server outlives every timer inside the daemon: `sluice dev` handles
/// entries for 70 s (tokio retires idle blocking threads after 10 s, and the server was
/// once killed with the thread that started it), and `sluice send` finds that server
/// from the config alone.
#[tokio::test]
async fn dev_keeps_its_private_redis_for_longer_than_a_minute() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut dev = dev(&dir, &echo("echo").to_string()).await;
    let log = dev.daemon.log();
    assert!(
        log.contains(&format!("sluice send echo -c {}", dev.config.display())),
        "dev says how to send to its server:\n{log}"
    );
    let client = redis::Client::open(dev.url.as_str()).expect("url");
    let con = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect to the private server");
    let started = Instant::now();
    let mut sent = 0;
    while started.elapsed() < Duration::from_secs(70) {
        let config = dev.config.to_str().expect("utf-8 path").to_owned();
        let n = sent.to_string();
        let (code, out, err) = tokio::task::spawn_blocking(move || {
            sluice(&["send", "echo", "-c", &config, &format!("n={n}")])
        })
        .await
        .expect("send");
        assert_eq!(
            code,
            0,
            "sluice send at {:?}: {out}{err}",
            started.elapsed()
        );
        assert!(err.contains("using the private redis-server"), "{err}");
        sent += 1;
        wait_len(&con, "OUT", sent).await;
        assert!(
            dev.daemon.is_running(),
            "the daemon ended at {:?}:\n{}",
            started.elapsed(),
            dev.daemon.log()
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let pong: String = redis::cmd("PING")
        .query_async(&mut con.clone())
        .await
        .expect("the private server still answers");
    assert_eq!(pong, "PONG");
    dev.daemon.signal(libc::SIGTERM);
    let status = dev.daemon.wait(Duration::from_secs(20));
    assert!(status.success(), "{}", dev.daemon.log());
    // Once the daemon is gone, `send` no longer finds a server for that config.
    let config = dev.config.to_str().expect("utf-8 path");
    let (code, _, err) = sluice(&["send", "echo", "-c", config, "n=late"]);
    assert_ne!(code, 0);
    assert!(err.contains("start `sluice dev -c"), "{err}");
}

/// A private server that ends on its own ends the daemon: an ERROR that says so with the
/// server's last log lines, and a non-zero exit, instead of retrying for ever.
#[tokio::test]
async fn a_private_redis_that_dies_stops_the_daemon_with_its_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut dev = dev(&dir, &echo("echo").to_string()).await;
    let server = children_of(dev.daemon.pid() as i32)
        .into_iter()
        .find(|(_, name)| name.starts_with("redis-server"))
        .map(|(pid, _)| pid)
        .expect("the private server is the daemon's child");
    // SAFETY: kill(2) on the test's grandchild.
    assert_eq!(unsafe { libc::kill(server, libc::SIGKILL) }, 0);
    let status = dev.daemon.wait(Duration::from_secs(20));
    let log = dev.daemon.log();
    assert!(!status.success(), "{log}");
    assert!(log.contains("ERROR"), "{log}");
    assert!(
        log.contains("the private redis-server ended on its own"),
        "{log}"
    );
    assert!(
        log.contains("Ready to accept connections"),
        "the server's own log lines: {log}"
    );
    // No half-dead server is left: the daemon named the URL; nothing answers there.
    assert!(
        redis::Client::open(dev.url.as_str())
            .expect("url")
            .get_connection_with_timeout(Duration::from_millis(500))
            .is_err()
    );
}

/// A bad file dropped under `watch` is refused once per version, in words: one WARN and
/// one count for each distinct bad version, not one every 200 ms for as long as it lies
/// there; putting the running version back clears the error.
#[tokio::test]
async fn a_refused_plugin_version_is_reported_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let plugin = dir.path().join("echo.wasm");
    std::fs::copy(plugin_wasm("echo"), &plugin).expect("copy");
    let toml = ConfigBuilder::new()
        .admin()
        .plugins("cache_dir", dir.path().join("cache").display().to_string())
        .pipeline(echo("echo").plugin("echo.wasm"))
        .to_string();
    let mut dev = dev(&dir, &toml).await;
    let refusals = |log: &str| log.matches("new plugin version refused").count();
    for (n, bad) in [&b"hello, not wasm\n"[..], &b"\0asm\x01\0\0\0"[..]]
        .into_iter()
        .enumerate()
    {
        drop_file(&plugin, bad);
        eventually("the refusal", Duration::from_secs(10), || {
            let seen = refusals(&dev.daemon.log()) > n;
            async move { seen.then_some(()) }
        })
        .await;
        // Several debounce periods later, still one line for this version.
        stays(
            "one refusal line for this version",
            Duration::from_secs(2),
            || {
                let one = refusals(&dev.daemon.log()) == n + 1;
                async move { one }
            },
        )
        .await;
    }
    // Flapping back to the first bad version: known, so no new line or count.
    drop_file(&plugin, b"hello, not wasm\n");
    stays(
        "no new refusal line for a known version",
        Duration::from_secs(2),
        || {
            let two = refusals(&dev.daemon.log()) == 2;
            async move { two }
        },
    )
    .await;
    // The serving version back in place clears the refusal, and says so.
    drop_file(&plugin, &std::fs::read(plugin_wasm("echo")).expect("read"));
    eventually("the refusal cleared", Duration::from_secs(10), || {
        let seen = dev
            .daemon
            .log()
            .contains("the plugin is the serving version again");
        async move { seen.then_some(()) }
    })
    .await;
    let log = dev.daemon.log();
    assert!(log.contains("not a WebAssembly file"), "{log}");
    assert!(
        log.contains("a core WebAssembly module, not a component"),
        "{log}"
    );
    assert!(!log.contains("expected=["), "no debug dump of bytes: {log}");
    let admin = admin_addr(&log);
    let metrics = reqwest::get(format!("http://{admin}/metrics"))
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("body");
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("sluice_plugin_load_failures_total")
                && l.trim_end().ends_with(" 2")),
        "one count per refused version:\n{metrics}"
    );
    assert!(dev.daemon.is_running());
}

/// Writes `bytes` to `path` the way a build does: a new file renamed into place.
fn drop_file(path: &Path, bytes: &[u8]) {
    let tmp = path.with_extension("partial");
    std::fs::write(&tmp, bytes).expect("write");
    std::fs::rename(&tmp, path).expect("rename");
}

/// The admin API's address, from the daemon's log.
fn admin_addr(log: &str) -> String {
    log.lines()
        .filter(|l| l.contains("admin API listening"))
        .find_map(|l| l.split_whitespace().find_map(|w| w.strip_prefix("addr=")))
        .expect("the admin API's address in the log")
        .to_owned()
}

/// The daemon says when it dead-letters an entry: a WARN with the entry, the reason and
/// the fix (for an undeclared output: the stream to add to which pipeline's `outputs`).
#[tokio::test]
async fn a_dead_letter_is_logged_with_its_reason_and_fix() {
    let ctx = TestContext::new().await;
    let mut con = ctx.con.clone();
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config_file(&dir, &echo("echo").to_string());
    let mut daemon = DaemonProcess::spawn(&config, &ctx.redis, "c1");
    let id = add(&mut con, "IN", &[("action", "undeclared"), ("k", "v")]).await;
    wait_len(&con, "IN:dead", 1).await;
    let line = eventually("the dead-letter line", Duration::from_secs(10), || {
        let line = daemon
            .log()
            .lines()
            .find(|l| l.contains("entry dead-lettered"))
            .map(str::to_owned);
        async move { line }
    })
    .await;
    assert!(line.contains("WARN"), "{line}");
    assert!(line.contains(&id), "{line}");
    assert!(
        line.contains(r#"add \"NOT_DECLARED\" to `outputs` of pipeline \"echo\""#)
            || line.contains(r#"add "NOT_DECLARED" to `outputs` of pipeline "echo""#),
        "{line}"
    );
    assert!(line.contains("sluice dlq replay echo"), "{line}");
    daemon.kill9();
}

/// The command line says what applies: `--worker-threads` only where a daemon runs,
/// `new` names the file it builds, an empty consumer name is refused, and `send` to an
/// unknown pipeline lists the names without connecting anywhere.
#[test]
fn the_command_line_says_what_applies() {
    for sub in ["new", "invoke", "partition", "dlq", "send", "compile"] {
        let (_, help, _) = sluice(&[sub, "--help"]);
        assert!(!help.contains("--worker-threads"), "{sub} --help:\n{help}");
    }
    for sub in ["run", "dev"] {
        let (_, help, _) = sluice(&[sub, "--help"]);
        assert!(help.contains("--worker-threads"), "{sub} --help:\n{help}");
    }
    let (_, help, _) = sluice(&["new", "--help"]);
    let (_, top, _) = sluice(&["--help"]);
    assert!(top.contains("'-' in NAME written '_'"), "{top}");
    assert!(help.contains("NAME"), "{help}");

    let (code, _, err) = sluice(&["run", "--consumer", "", "-c", "missing.toml"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("consumer name is empty"), "{err}");

    let dir = tempfile::tempdir().expect("tempdir");
    let config = config_file(&dir, &format!("{}{}", echo("echo"), payments("payments")));
    let closed = format!("redis://127.0.0.1:{}", free_port());
    let started = Instant::now();
    let (code, _, err) = sluice(&[
        "send",
        "nope",
        "-c",
        config.to_str().expect("utf-8"),
        "--redis",
        &closed,
        "k=v",
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("no pipeline named \"nope\"") && err.contains("echo, payments"),
        "{err}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "it did not connect first"
    );
}

/// A free loopback port.
fn free_port() -> u16 {
    sluice::redis_server::free_port().expect("a free port")
}

/// Pipelines that share a plugin file all reload when it changes, and a path that is
/// not a regular file (a FIFO, whose read would block for ever) is refused without
/// blocking the watcher or the shutdown.
#[tokio::test]
async fn a_shared_plugin_file_reloads_every_pipeline_and_a_fifo_blocks_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let plugin = dir.path().join("shared.wasm");
    std::fs::copy(plugin_wasm("echo"), &plugin).expect("copy");
    let toml = format!(
        "{}{}",
        echo("one").plugin("shared.wasm"),
        echo("two")
            .plugin("shared.wasm")
            .reading("IN2", "G2")
            .writing(&["OUT2"])
    );
    let mut dev = dev(&dir, &toml).await;
    let reloaded = |log: &str, pipeline: &str| {
        log.lines()
            .any(|l| l.contains("plugin reloaded") && l.contains(&format!("pipeline={pipeline}")))
    };
    let other = std::fs::read(workspace().join("target/plugins/payments_tag_b.wasm"))
        .expect("another component");
    drop_file(&plugin, &other);
    eventually("both pipelines to reload", Duration::from_secs(15), || {
        let log = dev.daemon.log();
        let both = reloaded(&log, "one") && reloaded(&log, "two");
        async move { both.then_some(()) }
    })
    .await;

    std::fs::remove_file(&plugin).expect("rm");
    let made = Command::new("mkfifo")
        .arg(&plugin)
        .status()
        .expect("mkfifo");
    assert!(made.success());
    eventually("the FIFO refused", Duration::from_secs(15), || {
        let seen = dev.daemon.log().contains("is not a regular file");
        async move { seen.then_some(()) }
    })
    .await;
    dev.daemon.signal(libc::SIGTERM);
    let status = dev.daemon.wait(Duration::from_secs(20));
    assert!(status.success(), "{}", dev.daemon.log());
}

/// Two daemons on one config: the second says it takes the first's place for the tools;
/// when it stops, the tools find the first again (it puts its announcement back).
#[tokio::test]
async fn the_tools_find_the_daemon_that_still_runs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut first = dev(&dir, &echo("echo").to_string()).await;
    let second_log = dir.path().join("second.log");
    let mut second = DaemonProcess::start(
        &["dev".as_ref(), "-c".as_ref(), first.config.as_os_str()],
        &second_log,
    );
    eventually(
        "the second to say it takes over",
        Duration::from_secs(30),
        || {
            let said = second.log().contains("another daemon (pid");
            async move { said.then_some(()) }
        },
    )
    .await;
    second.signal(libc::SIGTERM);
    assert!(second.wait(Duration::from_secs(20)).success());
    let config = first.config.to_str().expect("utf-8").to_owned();
    let url = first.url.clone();
    eventually(
        "send to find the first daemon again",
        Duration::from_secs(15),
        || {
            let (code, _, err) = sluice(&["send", "echo", "-c", &config, "n=1"]);
            let found = code == 0 && err.contains(&url);
            async move { found.then_some(()) }
        },
    )
    .await;
    first.daemon.kill9();
}
