//! A private `redis-server` child process: the embedded default when no Redis URL is
//! configured, and the server every test runs against.
//!
//! It listens on a free loopback port, keeps nothing on disk unless asked to, is ready
//! when it answers PING, and is killed when dropped — and, through `PR_SET_PDEATHSIG`,
//! when this process dies, so a crashed daemon leaves no orphan behind. A thread of its
//! own (the keeper) starts it and waits on it: see `keeper` for why, and
//! [`RedisServer::exit`] to hear of an exit nobody asked for.
//!
//! The binary is `redis-server`, or what [`SERVER_ENV`] names (`valkey-server`, a path).

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

pub mod announce;
mod keeper;

/// The environment variable naming the server binary to run instead of `redis-server`
/// (a name on `PATH` or a path), e.g. Valkey's `valkey-server`.
pub const SERVER_ENV: &str = "SLUICE_REDIS_SERVER";

/// The server binary: [`SERVER_ENV`], else `redis-server`.
pub fn server_binary() -> String {
    std::env::var(SERVER_ENV)
        .ok()
        .filter(|b| !b.is_empty())
        .unwrap_or_else(|| "redis-server".to_owned())
}

/// A running `redis-server` child.
pub struct RedisServer {
    child: Option<keeper::Keeper>,
    port: u16,
    dir: tempfile::TempDir,
    persistent: bool,
    /// More command-line options (`--tls-port ...`, `--replicaof ...`).
    extra: Vec<String>,
}

impl RedisServer {
    /// Starts a server with persistence off on a free port.
    pub fn start() -> Result<Self> {
        Self::start_with::<&str>(&[])
    }

    /// Starts a server that keeps an append-only file, so that a [`restart`] keeps data.
    ///
    /// [`restart`]: RedisServer::restart
    pub fn start_persistent() -> Result<Self> {
        Self::spawn(free_port()?, tempfile::tempdir()?, true, Vec::new())
    }

    /// Starts a server with more command-line options (`--tls-port`, `--replicaof`,
    /// `--requirepass`...), persistence off.
    pub fn start_with<S: AsRef<str>>(options: &[S]) -> Result<Self> {
        let extra = options.iter().map(|o| o.as_ref().to_owned()).collect();
        Self::spawn(free_port()?, tempfile::tempdir()?, false, extra)
    }

    fn spawn(
        port: u16,
        dir: tempfile::TempDir,
        persistent: bool,
        extra: Vec<String>,
    ) -> Result<Self> {
        let mut server = Self {
            child: None,
            port,
            dir,
            persistent,
            extra,
        };
        // A free port can be taken between the check and the server's bind (by another
        // process's listener or outgoing connection): another port, a few times.
        let mut tries = 1;
        loop {
            match server.launch() {
                Err(_) if tries < 5 && server.port_was_taken() => {
                    tries += 1;
                    server.port = free_port()?;
                }
                launched => return launched.map(|()| server),
            }
        }
    }

    /// Whether the server's log says its port was taken.
    fn port_was_taken(&self) -> bool {
        let taken = format!("127.0.0.1:{}: bind: Address already in use", self.port);
        self.log().contains(&taken)
    }

    fn launch(&mut self) -> Result<()> {
        let log = self.log_path();
        let binary = server_binary();
        let mut cmd = Command::new(&binary);
        cmd.arg("--port")
            .arg(self.port.to_string())
            .args(["--bind", "127.0.0.1", "--save", ""])
            .args(["--appendonly", if self.persistent { "yes" } else { "no" }])
            .args(["--appendfsync", "always"])
            .arg("--dir")
            .arg(self.dir.path())
            .arg("--logfile")
            .arg(&log)
            .args(&self.extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = keeper::Keeper::spawn(cmd, "redis-server").map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound if std::env::var_os(SERVER_ENV).is_some() => anyhow::anyhow!(
                "{SERVER_ENV} names {binary:?}, which cannot be found: give the server's path, or a name on PATH"
            ),
            std::io::ErrorKind::NotFound => anyhow::anyhow!(
                "redis-server is not installed: install it (Debian/Ubuntu: `apt-get install redis-server`), point {SERVER_ENV} at a server binary, or set [redis] url in the config"
            ),
            _ => anyhow::Error::new(e).context(format!("cannot start {binary}")),
        })?;
        self.child = Some(child);
        self.wait_ready()
    }

    fn wait_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let client = redis::Client::open(self.url())?;
        loop {
            if let Some(status) = self.child.as_ref().and_then(keeper::Keeper::exited) {
                bail!(
                    "redis-server exited at start-up ({status}); its log:\n{}",
                    self.log()
                );
            }
            let ping = client
                .get_connection_with_timeout(Duration::from_millis(200))
                .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c));
            if ping.is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "redis-server did not answer PING within 10s; its log:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The server's `redis://` URL.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// The TCP port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's process ID, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(keeper::Keeper::pid)
    }

    /// How the server ended, if it has ended without being killed by this handle.
    pub fn exited(&self) -> Option<ExitStatus> {
        self.child.as_ref().and_then(keeper::Keeper::exited)
    }

    /// A receiver that turns `Some(status)` when the server process ends on its own (a
    /// crash, a kill by someone else); its sender is dropped without a value when this
    /// handle kills it ([`RedisServer::kill`], a drop).
    pub fn exit(&self) -> Option<tokio::sync::watch::Receiver<Option<ExitStatus>>> {
        self.child.as_ref().map(keeper::Keeper::exit)
    }

    /// The server's working directory (its files, its log).
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// Stops the server with `signal` (`SIGSTOP` freezes it, `SIGCONT` thaws it).
    pub fn signal(&self, signal: i32) {
        if let Some(child) = &self.child {
            child.signal(signal);
        }
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("redis.log")
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// The server's log file.
    pub fn log_file(&self) -> PathBuf {
        self.log_path()
    }

    /// Kills the server at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        if let Some(child) = self.child.take() {
            child.kill();
        }
    }

    /// Kills the server and starts it again on the same port and directory.
    pub fn restart(&mut self) -> Result<()> {
        self.kill();
        self.launch()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The last `n` lines of the log file at `path` (empty if it cannot be read).
pub fn log_tail(path: &std::path::Path, n: usize) -> String {
    let log = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A loopback TCP port nobody listens on now.
pub fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("cannot find a free port")?;
    Ok(listener.local_addr()?.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A port taken between the check and the server's bind: the server starts on another.
    #[test]
    fn a_port_taken_before_the_bind_is_replaced() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = taken.local_addr().expect("addr").port();
        let dir = tempfile::tempdir().expect("tempdir");
        let server = RedisServer::spawn(port, dir, false, Vec::new()).expect("started");
        assert_ne!(server.port, port);
    }
}
