//! Configuration: every example parses; every invalid config in `tests/configs/` fails
//! with a message that names the problem (checked both in-process and through the
//! `sluice` binary's exit code and stderr).

use std::path::Path;
use std::process::Command;

use sluice::config::Config;
use sluice_testkit::*;

/// Writes `tests/configs/NAME` with plugin markers filled in, next to the original so
/// that relative paths keep their meaning, and returns its path.
fn prepared(name: &str) -> std::path::PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/configs");
    let mut text = std::fs::read_to_string(dir.join(name)).expect("config exists");
    if text.contains("{plugin:payments}") {
        text = text.replace(
            "{plugin:payments}",
            &plugin_wasm("payments").display().to_string(),
        );
    }
    // Next to the original, so that relative paths keep their meaning.
    let path = dir.join(format!(".prepared-{}-{name}", std::process::id()));
    std::fs::write(&path, text).expect("write config");
    path
}

fn load_error(name: &str) -> String {
    let path = prepared(name);
    let result = Config::load(&path);
    let _ = std::fs::remove_file(&path);
    format!("{:#}", result.expect_err("config must be refused"))
}

/// An unknown key is refused, naming the key and what is allowed.
#[test]
fn unknown_key_is_named() {
    let e = load_error("unknown-key.toml");
    assert!(
        e.contains("unknown field `bacth`") && e.contains("batch"),
        "{e}"
    );
    assert!(e.contains("unknown-key.toml"), "names the file: {e}");
}

/// A missing plugin file is refused with its path and what to do.
#[test]
fn missing_plugin_is_named() {
    let e = load_error("missing-plugin.toml");
    assert!(
        e.contains("no/such/plugin.wasm") && e.contains("does not exist"),
        "{e}"
    );
    assert!(e.contains("\"payments\""), "names the pipeline: {e}");
}

/// Two pipelines with one name are refused.
#[test]
fn duplicate_pipeline_name_is_named() {
    let e = load_error("duplicate-name.toml");
    assert!(
        e.contains("pipeline name \"payments\" is used twice"),
        "{e}"
    );
}

/// A duration that does not parse says how to write one.
#[test]
fn bad_duration_says_how_to_write_it() {
    let e = load_error("bad-duration.toml");
    assert!(
        e.contains("\"soon\" is not a duration") && e.contains("250ms"),
        "{e}"
    );
}

/// A pipeline that would consume its own outputs is refused.
#[test]
fn output_that_is_the_input_is_refused() {
    let e = load_error("output-is-input.toml");
    assert!(e.contains("also the input"), "{e}");
}

/// A throttle share outside (0, 1] is refused, saying what the setting means.
#[test]
fn throttle_share_out_of_range_is_refused() {
    let e = load_error("bad-throttle.toml");
    assert!(
        e.contains("`limits.throttle_share` must be more than 0 and at most 1")
            && e.contains("turns throttling off"),
        "{e}"
    );
    assert!(e.contains("\"payments\""), "names the pipeline: {e}");
}

/// An `allowed_hosts` entry that is not a bare host name says how to write one; a
/// `max_uploads` of 0 is refused.
#[test]
fn admin_settings_are_checked() {
    let e = load_error("bad-admin.toml");
    assert!(
        e.contains("\"https://sluice.internal:9090\" is not a host name")
            && e.contains("allowed_hosts = [\"sluice.internal\"]"),
        "{e}"
    );
    let e = format!(
        "{:#}",
        Config::parse("[admin]\nmax_uploads = 0\n", &workspace()).expect_err("refused")
    );
    assert!(
        e.contains("max_uploads = 0 would refuse every plugin upload"),
        "{e}"
    );
    let admin = Config::parse("[admin]\n", &workspace())
        .expect("defaults")
        .admin
        .expect("[admin]");
    assert_eq!(
        (
            admin.request_timeout,
            admin.max_uploads,
            admin.allowed_hosts.len()
        ),
        (std::time::Duration::from_secs(30), 2, 0)
    );
}

/// The example config parses, with the plugin paths resolved.
#[test]
fn example_configs_parse() {
    plugin_wasm("payments"); // builds every plugin the examples point at
    let path = workspace().join("examples/orders-payments/sluice.toml");
    let config = Config::load(&path).unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(config.pipelines.len(), 2);
    assert!(
        config.redis.url.is_none(),
        "the demo uses the embedded redis-server"
    );
}

/// The binary exits 1 with the error on stderr for each invalid config, before touching
/// Redis; a file that is not a component fails start-up with a clear error too.
#[test]
fn sluice_run_refuses_invalid_configs() {
    let cases = [
        ("unknown-key.toml", "unknown field `bacth`"),
        ("missing-plugin.toml", "does not exist"),
        ("duplicate-name.toml", "used twice"),
        ("shared-dead-letter.toml", "both dead-letter to \"DEAD\""),
        ("not-a-component.toml", "not a WebAssembly file"),
    ];
    let redis = RedisServer::start().expect("redis");
    for (name, expected) in cases {
        let path = prepared(name);
        let output = Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(["run", "--config"])
            .arg(&path)
            .args(["--redis", &redis.url()])
            .output()
            .expect("run sluice");
        let _ = std::fs::remove_file(&path);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{name}: {stderr}");
        assert!(
            stderr.contains(expected),
            "{name}: expected {expected:?} in:\n{stderr}"
        );
    }
}

/// A state prefix may not cover any pipeline's streams: its handler would overwrite them.
#[test]
fn a_state_prefix_over_another_pipelines_stream_is_refused() {
    let text = format!(
        "{}{}",
        echo("s").plugin("{plugin:stateful}").state(&["k:"]),
        echo("s2").reading("k:in2", "G2").writing(&["OUT2"])
    );
    let error = format!(
        "{:#}",
        sluice::config::Config::parse(&with_plugins(&text), &workspace()).expect_err("refused")
    );
    assert!(
        error.contains("state prefix \"k:\" covers the stream \"k:in2\" of pipeline \"s2\""),
        "{error}"
    );
}

/// Issue 28 (1): two pipelines may not share a dead-letter stream — a replay of one
/// moved the other's letters into its input. Refused whether the stream is named, the
/// default `INPUT:dead` of two groups on one input, or a partition's.
#[test]
fn a_shared_dead_letter_stream_is_refused() {
    let e = load_error("shared-dead-letter.toml");
    assert!(
        e.contains("pipelines \"orders\" and \"echo\" both dead-letter to \"DEAD\"")
            && e.contains("give each its own stream with `dead_letter"),
        "{e}"
    );
    let parse = |text: String| {
        sluice::config::Config::parse(&with_plugins(&text), &workspace())
            .map(|_| ())
            .map_err(|e| format!("{e:#}"))
    };
    let fan_out = format!(
        "{}{}",
        payments("a").reading("ORDERS_STREAM", "GA"),
        payments("b").reading("ORDERS_STREAM", "GB")
    );
    let e = parse(fan_out.clone()).expect_err("refused");
    assert!(
        e.contains("pipelines \"a\" and \"b\" both dead-letter to \"ORDERS_STREAM:dead\""),
        "{e}"
    );
    let own = format!(
        "{}{}",
        payments("a").reading("ORDERS_STREAM", "GA"),
        payments("b")
            .reading("ORDERS_STREAM", "GB")
            .dead_letter("B:dead")
    );
    assert_eq!(parse(own), Ok(()));
    let partitioned = format!(
        "{}{}",
        payments("p").partitions(4),
        echo("q").dead_letter("ORDERS_STREAM:dead:{2}")
    );
    let e = parse(partitioned).expect_err("refused");
    assert!(
        e.contains("pipelines \"p\" and \"q\" both dead-letter to \"ORDERS_STREAM:dead:{2}\""),
        "{e}"
    );
}
