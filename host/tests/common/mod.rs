//! Shared test harness: real `redis-server`s, real plugins built from `plugins/`, and the
//! daemon run in-process.
#![allow(dead_code)]

pub mod proxy;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use redis::AsyncCommands;
use redis::aio::MultiplexedConnection;
use sluice::config::Config;
pub use sluice::redis_server::RedisServer;
use tokio_util::sync::CancellationToken;

/// The plugins the tests use (every one in `plugins/` is built).
const PLUGINS: &[&str] = &[
    "payments",
    "payments-js",
    "echo-js",
    "echo-lists-js",
    "payments-python",
    "payments-c",
    "order-status",
    "order-status-js",
    "order-status-python",
    "order-status-c",
    "echo",
    "hostile",
    "other-world",
    "stateful",
    "legacy-0-1-0",
];

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("host/ has a parent")
        .to_owned()
}

/// The component built from `plugins/NAME` for `wasm32-wasip2`.
///
/// The first call in a test binary runs `scripts/build-plugins.sh`, which builds every
/// plugin into `target/plugins` (its own target directory: the outer `cargo test` holds
/// the lock on the main one) — the same files the example configs point at.
pub fn plugin_wasm(name: &str) -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    let dir = BUILT.get_or_init(|| {
        let status = Command::new("bash")
            .arg(workspace().join("scripts/build-plugins.sh"))
            .env_remove("RUSTFLAGS")
            .env_remove("CARGO_ENCODED_RUSTFLAGS")
            .env_remove("CARGO_TARGET_DIR")
            .status()
            .expect("cannot run scripts/build-plugins.sh");
        assert!(status.success(), "building the plugins failed (is the wasm32-wasip2 target installed? `rustup target add wasm32-wasip2`)");
        workspace().join("target/plugins")
    });
    let path = dir.join(format!("{}.wasm", name.replace('-', "_")));
    assert!(path.is_file(), "no plugin at {}", path.display());
    path
}

/// Replaces each `{plugin:NAME}` in `text` with the path of the built plugin.
pub fn with_plugins(text: &str) -> String {
    let mut text = text.to_owned();
    for name in PLUGINS {
        let marker = format!("{{plugin:{name}}}");
        if text.contains(&marker) {
            text = text.replace(&marker, &plugin_wasm(name).display().to_string());
        }
    }
    text
}

/// Parses a config whose text may mention `{plugin:NAME}` for a built plugin's path.
pub fn config(text: &str) -> Config {
    let text = with_plugins(text);
    Config::parse(&text, &workspace())
        .unwrap_or_else(|e| panic!("test config is invalid: {e:#}\n{text}"))
}

/// Writes a config file (with `{plugin:NAME}` filled in) into `dir` for a daemon process.
pub fn config_file(dir: &tempfile::TempDir, text: &str) -> PathBuf {
    let path = dir.path().join("sluice.toml");
    std::fs::write(&path, with_plugins(text)).expect("write config");
    path
}

/// The config's `[admin]` table on a free loopback port.
pub const ADMIN: &str = "[admin]\nlisten = \"127.0.0.1:0\"\n\n";

/// One `[[pipeline]]` table of a config: the tests' one way to write a pipeline.
/// `Display` gives its TOML; `{plugin:NAME}` stands for a built plugin (see [`config`]).
#[derive(Clone, Debug)]
pub struct PipelineToml {
    name: String,
    plugin: String,
    input: String,
    group: String,
    outputs: Vec<String>,
    settings: Vec<String>,
}

/// The tutorial's payments pipeline: `ORDERS_STREAM` (group `ORDERS_CON_GROUP`) →
/// `PAYMENTS_STREAM`, with `plugins/payments`.
pub fn payments(name: &str) -> PipelineToml {
    PipelineToml {
        name: name.to_owned(),
        plugin: "{plugin:payments}".to_owned(),
        input: "ORDERS_STREAM".to_owned(),
        group: "ORDERS_CON_GROUP".to_owned(),
        outputs: vec!["PAYMENTS_STREAM".to_owned()],
        settings: Vec::new(),
    }
}

/// The test handler `plugins/echo` on `IN` (group `G`) → `OUT`.
pub fn echo(name: &str) -> PipelineToml {
    PipelineToml {
        name: name.to_owned(),
        plugin: "{plugin:echo}".to_owned(),
        input: "IN".to_owned(),
        group: "G".to_owned(),
        outputs: vec!["OUT".to_owned()],
        settings: Vec::new(),
    }
}

impl PipelineToml {
    /// Adds settings: TOML lines such as `batch = 50`.
    pub fn with(mut self, settings: &str) -> Self {
        if !settings.is_empty() {
            self.settings.push(settings.to_owned());
        }
        self
    }

    /// Another plugin: `{plugin:NAME}` or a path.
    pub fn plugin(mut self, plugin: impl std::fmt::Display) -> Self {
        self.plugin = plugin.to_string();
        self
    }

    /// Another input stream and group.
    pub fn reading(mut self, input: &str, group: &str) -> Self {
        self.input = input.to_owned();
        self.group = group.to_owned();
        self
    }

    /// Other output streams.
    pub fn writing(mut self, outputs: &[&str]) -> Self {
        self.outputs = outputs.iter().map(|o| (*o).to_owned()).collect();
        self
    }

    /// A config with this pipeline alone (and `head`, e.g. [`ADMIN`], before it).
    pub fn config(&self, head: &str) -> Config {
        config(&format!("{head}{self}"))
    }
}

impl std::fmt::Display for PipelineToml {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "[[pipeline]]")?;
        writeln!(f, "name = {:?}", self.name)?;
        writeln!(f, "plugin = {:?}", self.plugin)?;
        writeln!(f, "input = {:?}", self.input)?;
        writeln!(f, "group = {:?}", self.group)?;
        writeln!(f, "outputs = {:?}", self.outputs)?;
        for line in &self.settings {
            writeln!(f, "{line}")?;
        }
        writeln!(f)
    }
}

/// Adds `good` valid orders and `bad` ones the payments handler rejects (a negative
/// amount) to `ORDERS_STREAM`, in one round trip.
pub async fn add_orders(con: &mut MultiplexedConnection, good: usize, bad: usize) {
    let orders = (0..good)
        .map(|i| (format!("g{i}"), "5.00"))
        .chain((0..bad).map(|i| (format!("b{i}"), "-1")));
    let mut pipe = redis::pipe();
    for (id, amount) in orders {
        pipe.xadd(
            "ORDERS_STREAM",
            "*",
            &[
                ("orderId", id.as_str()),
                ("orderAmount", amount),
                ("userId", "u"),
            ],
        )
        .ignore();
    }
    let () = pipe.query_async(con).await.expect("XADD orders");
}

/// A Sluice daemon run in-process by a test (`sluice::start`), the way an embedder runs
/// it; `DaemonProcess` runs the real binary.
pub struct Host {
    pub shutdown: CancellationToken,
    /// Where the admin API listens, if the config turns it on.
    pub admin: Option<std::net::SocketAddr>,
    /// The daemon's live plugins.
    pub registry: std::sync::Arc<sluice::registry::Registry>,
    handle: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Host {
    /// Starts the daemon for `config` (whose `[redis] url` is set to `redis`).
    pub async fn start(redis: &RedisServer, config: Config) -> Host {
        Host::start_at(&redis.url(), config).await
    }

    /// Starts the daemon for `config` against the Redis at `url` (a proxy, an ACL user).
    pub async fn start_at(url: &str, mut config: Config) -> Host {
        config.redis.url = Some(url.to_owned());
        let shutdown = CancellationToken::new();
        let daemon = sluice::start(config, shutdown.clone())
            .await
            .expect("daemon starts");
        Host::running(daemon, shutdown)
    }

    /// Starts the daemon for `config` as it is (its `[redis]` table says where).
    pub async fn launch(config: Config) -> Host {
        let shutdown = CancellationToken::new();
        let daemon = sluice::start(config, shutdown.clone())
            .await
            .expect("daemon starts");
        Host::running(daemon, shutdown)
    }

    /// Takes over a started daemon, which runs until `shutdown`.
    fn running(daemon: sluice::Daemon, shutdown: CancellationToken) -> Host {
        let admin = daemon.admin_addr();
        let registry = daemon.registry().clone();
        let handle = tokio::spawn(daemon.wait());
        Host {
            shutdown,
            admin,
            registry,
            handle,
        }
    }

    /// The admin API's address (the config must turn it on).
    pub fn admin(&self) -> std::net::SocketAddr {
        self.admin.expect("the config turns the admin API on")
    }

    /// Starts the daemon for the config `load` gives, reloading it with `load` on
    /// `POST /v1/reload` (as `sluice run` reloads its file).
    pub async fn start_reloading(
        load: impl Fn() -> anyhow::Result<Config> + Send + Sync + 'static,
    ) -> Host {
        let shutdown = CancellationToken::new();
        let mut daemon = sluice::start(load().expect("config"), shutdown.clone())
            .await
            .expect("daemon starts");
        daemon.reload_with(Box::new(load));
        Host::running(daemon, shutdown)
    }

    /// Drops the daemon without a drain, as a panicking embedder would.
    pub async fn abandon(self) {
        self.handle.abort();
        let _ = self.handle.await;
    }

    /// Asks for a drain and waits for the daemon to stop.
    pub async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(20), self.handle)
            .await
            .expect("daemon drains within 20s")
            .expect("daemon task does not panic")
            .expect("the daemon stopped because it was asked to");
    }
}

/// What nearly every test starts with: a redis-server of its own on a free port, and a
/// plain connection to it for producing and inspecting (like redis-rs's `TestContext`).
pub struct TestContext {
    pub redis: RedisServer,
    pub con: MultiplexedConnection,
}

/// Gives this test process rustls's ring provider (reqwest is built without one, and the
/// daemon installs it only when it runs in this process).
pub fn tls_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

impl TestContext {
    pub async fn new() -> Self {
        tls_provider();
        let redis = RedisServer::start().expect("redis-server starts");
        let con = connect(&redis).await;
        Self { redis, con }
    }
}

/// A plain connection for producing and inspecting.
pub async fn connect(redis: &RedisServer) -> MultiplexedConnection {
    redis::Client::open(redis.url())
        .expect("valid url")
        .get_multiplexed_async_connection()
        .await
        .expect("redis answers")
}

/// The broker of a daemon, on its own, for tests of the data path below the pipeline.
pub async fn broker(redis: &RedisServer) -> sluice::broker::Broker {
    sluice::broker::Broker::connect(
        &sluice::broker::Target::url(redis.url()),
        CancellationToken::new(),
    )
    .await
    .expect("broker connects")
}

/// Polls `check` until it returns `Some`, failing after `timeout` with `what`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until `stream` holds exactly `n` entries (20 s at most).
pub async fn wait_len(con: &MultiplexedConnection, stream: &str, n: usize) {
    let what = format!("{stream} to hold {n} entries");
    eventually(&what, Duration::from_secs(20), || {
        let mut con = con.clone();
        async move { (len(&mut con, stream).await == n).then_some(()) }
    })
    .await
}

/// Waits until `stream` holds at least `n` entries (30 s at most).
pub async fn wait_len_at_least(con: &MultiplexedConnection, stream: &str, n: usize) {
    let what = format!("{stream} to hold at least {n} entries");
    eventually(&what, Duration::from_secs(30), || {
        let mut con = con.clone();
        async move { (len(&mut con, stream).await >= n).then_some(()) }
    })
    .await
}

/// Entries of `stream` as (id, fields) in order.
pub async fn entries(
    con: &mut MultiplexedConnection,
    stream: &str,
) -> Vec<(String, Vec<(String, Vec<u8>)>)> {
    let reply: redis::Value = redis::cmd("XRANGE")
        .arg(stream)
        .arg("-")
        .arg("+")
        .query_async(con)
        .await
        .expect("XRANGE");
    let redis::Value::Array(items) = reply else {
        panic!("XRANGE reply: {reply:?}")
    };
    items
        .into_iter()
        .map(|item| {
            let redis::Value::Array(mut pair) = item else {
                panic!("entry: {item:?}")
            };
            let fields: Vec<Vec<u8>> =
                redis::from_redis_value(pair.pop().expect("fields")).expect("field list");
            let id: String = redis::from_redis_value(pair.pop().expect("id")).expect("id");
            let fields = fields
                .chunks(2)
                .map(|kv| {
                    (
                        String::from_utf8(kv[0].clone()).expect("utf-8 name"),
                        kv[1].clone(),
                    )
                })
                .collect();
            (id, fields)
        })
        .collect()
}

/// Length of `stream`.
pub async fn len(con: &mut MultiplexedConnection, stream: &str) -> usize {
    con.xlen(stream).await.expect("XLEN")
}

/// Number of entries pending in `group` of `stream`.
pub async fn pending(con: &mut MultiplexedConnection, stream: &str, group: &str) -> usize {
    let reply: redis::Value = redis::cmd("XPENDING")
        .arg(stream)
        .arg(group)
        .query_async(con)
        .await
        .expect("XPENDING");
    match reply {
        redis::Value::Array(v) => match v.first() {
            Some(redis::Value::Int(n)) => *n as usize,
            other => panic!("XPENDING summary: {other:?}"),
        },
        other => panic!("XPENDING summary: {other:?}"),
    }
}

/// Number of entries pending in `group` of `stream`, 0 while the group does not exist.
pub async fn pending_or_zero(con: &mut MultiplexedConnection, stream: &str, group: &str) -> usize {
    let reply: redis::RedisResult<redis::Value> = redis::cmd("XPENDING")
        .arg(stream)
        .arg(group)
        .query_async(con)
        .await;
    match reply {
        Ok(redis::Value::Array(v)) => match v.first() {
            Some(redis::Value::Int(n)) => *n as usize,
            _ => 0,
        },
        _ => 0,
    }
}

/// Appends an entry with text fields.
pub async fn add(con: &mut MultiplexedConnection, stream: &str, fields: &[(&str, &str)]) -> String {
    con.xadd(stream, "*", fields).await.expect("XADD")
}

/// A field's value as text.
pub fn field<'a>(fields: &'a [(String, Vec<u8>)], name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| std::str::from_utf8(v).expect("utf-8 value"))
}

/// (pid, command name) of the processes whose parent is `parent`.
pub fn children_of(parent: i32) -> Vec<(i32, String)> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let (name, rest) = stat.split_once(" (")?.1.rsplit_once(") ")?;
            let ppid: i32 = rest.split_whitespace().nth(1)?.parse().ok()?;
            (ppid == parent).then(|| (pid, name.to_owned()))
        })
        .collect()
}

/// The real `sluice` binary run as a child process, as an operator runs it: any
/// arguments, signals, exit status; its log (stderr) goes to a file.
pub struct DaemonProcess {
    child: std::process::Child,
    log: PathBuf,
}

impl DaemonProcess {
    /// Starts `sluice run -c config --redis url --consumer consumer`.
    pub fn spawn(config: &Path, redis: &RedisServer, consumer: &str) -> Self {
        static RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let run = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let log = config.with_file_name(format!("daemon-{consumer}-{run}.log"));
        let mut args: Vec<std::ffi::OsString> = vec!["run".into(), "-c".into()];
        args.push(config.into());
        args.extend([
            "--redis".into(),
            redis.url().into(),
            "--consumer".into(),
            consumer.into(),
        ]);
        Self::start(&args, &log)
    }

    /// Starts `sluice ARGS` with its log (stderr) going to `log`; without a Redis URL
    /// or password from the environment.
    pub fn start<S: AsRef<std::ffi::OsStr>>(args: &[S], log: &Path) -> Self {
        Self::start_env(args, log, &[])
    }

    /// [`DaemonProcess::start`] with more environment variables (`SLUICE_LOG=debug`,
    /// `SLUICE_REDIS_PASSWORD=...`).
    pub fn start_env<S: AsRef<std::ffi::OsStr>>(
        args: &[S],
        log: &Path,
        env: &[(&str, &str)],
    ) -> Self {
        tls_provider();
        let file = std::fs::File::create(log).expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(args)
            .env("SLUICE_LOG", "info")
            .env_remove("SLUICE_REDIS_URL")
            .env_remove("SLUICE_REDIS_PASSWORD")
            .envs(env.iter().copied())
            .stdout(std::process::Stdio::null())
            .stderr(file)
            .spawn()
            .expect("start sluice");
        Self {
            child,
            log: log.to_owned(),
        }
    }

    /// The daemon's process ID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the daemon is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Kills the daemon at once, as a crash would.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends a signal (SIGTERM, SIGINT) to the daemon.
    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on our own child's pid.
        assert_eq!(unsafe { libc::kill(self.child.id() as i32, signal) }, 0);
    }

    /// Waits up to `timeout` for the daemon to exit.
    pub fn wait(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "daemon did not exit within {timeout:?}; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The daemon's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for DaemonProcess {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Where a run stands: every test of delivery guarantees reports these.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tally {
    /// Entries in the input stream.
    pub input: usize,
    /// Entries in the output stream.
    pub out: usize,
    /// Outputs whose key was seen before.
    pub duplicates: usize,
    /// Inputs with neither an output nor a dead letter.
    pub missing: usize,
    /// Entries pending in the group.
    pub pending: usize,
    /// Entries in the dead-letter stream.
    pub dead: usize,
}

impl Tally {
    /// Counts inputs of `input` (read by `group`) against outputs in `output` and dead
    /// letters in `<input>:dead`, matching them by the value of field `key`.
    pub async fn take(
        con: &mut MultiplexedConnection,
        input: &str,
        group: &str,
        output: &str,
        key: &str,
    ) -> Tally {
        let inputs = entries(con, input).await;
        let outputs = entries(con, output).await;
        let dead = entries(con, &format!("{input}:dead")).await;
        let mut seen = std::collections::HashSet::new();
        let mut duplicates = 0;
        for (_, fields) in &outputs {
            if !seen.insert(field(fields, key).unwrap_or_default().to_owned()) {
                duplicates += 1;
            }
        }
        for (_, fields) in &dead {
            seen.insert(field(fields, key).unwrap_or_default().to_owned());
        }
        let missing = inputs
            .iter()
            .filter(|(_, f)| !seen.contains(field(f, key).unwrap_or_default()))
            .count();
        let pending = pending(con, input, group).await;
        Tally {
            input: inputs.len(),
            out: outputs.len(),
            duplicates,
            missing,
            pending,
            dead: dead.len(),
        }
    }

    /// Whether every input ended exactly once (output or dead letter) with nothing pending.
    pub fn is_exactly_once(&self) -> bool {
        self.duplicates == 0
            && self.missing == 0
            && self.pending == 0
            && self.out + self.dead == self.input
    }
}

impl std::fmt::Display for Tally {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "in={} out={} duplicates={} missing={} pending={} dead={}",
            self.input, self.out, self.duplicates, self.missing, self.pending, self.dead
        )
    }
}

/// Waits until every input of the run ended exactly once, printing the tally; fails
/// with the last tally after `timeout`.
pub async fn wait_exactly_once(
    con: &MultiplexedConnection,
    input: &str,
    group: &str,
    output: &str,
    key: &str,
    timeout: Duration,
) -> Tally {
    let deadline = Instant::now() + timeout;
    loop {
        let mut c = con.clone();
        let tally = Tally::take(&mut c, input, group, output, key).await;
        assert_eq!(tally.duplicates, 0, "duplicates: {tally}");
        if tally.is_exactly_once() {
            println!("tally: {tally}");
            return tally;
        }
        assert!(
            Instant::now() < deadline,
            "not exactly once after {timeout:?}: {tally}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// [`wait_exactly_once`] for the payments pipeline: every order of `ORDERS_STREAM`
/// (group `ORDERS_CON_GROUP`) paid once in `PAYMENTS_STREAM`, matched by `orderId`.
pub async fn wait_payments_once(con: &MultiplexedConnection, timeout: Duration) -> Tally {
    wait_exactly_once(
        con,
        "ORDERS_STREAM",
        "ORDERS_CON_GROUP",
        "PAYMENTS_STREAM",
        "orderId",
        timeout,
    )
    .await
}

/// Sends `n` seed-shaped orders with ids `o0..` to `ORDERS_STREAM`, in chunks of
/// `chunk`, `pause` apart.
pub async fn produce_orders(
    mut con: MultiplexedConnection,
    n: usize,
    chunk: usize,
    pause: Duration,
) {
    for start in (0..n).step_by(chunk) {
        let mut pipe = redis::pipe();
        for i in start..(start + chunk).min(n) {
            pipe.xadd(
                "ORDERS_STREAM",
                "*",
                &[
                    ("orderId", format!("o{i}")),
                    ("orderAmount", "9.99".into()),
                    ("userId", "u".into()),
                ],
            )
            .ignore();
        }
        let () = pipe.query_async(&mut con).await.expect("produce");
        tokio::time::sleep(pause).await;
    }
}
