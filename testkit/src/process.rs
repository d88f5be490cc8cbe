//! The real `sluice` binary run as a child process, as an operator runs it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use sluice::redis_server::RedisServer;

use crate::tls_provider;

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

/// The resident memory (`VmRSS`) of process `pid`, in KiB; panics when it is gone.
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("process alive");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// The `sluice` binary a test or bench runs: `SLUICE_BIN` if set, else the one Cargo
/// built beside the running test (`target/debug/sluice` for `target/debug/deps/suite-..`;
/// Cargo builds a package's binaries before its integration tests and benches).
pub fn sluice_binary() -> PathBuf {
    if let Some(bin) = std::env::var_os("SLUICE_BIN").filter(|b| !b.is_empty()) {
        return bin.into();
    }
    let exe = std::env::current_exe().expect("the test's own path");
    let deps = exe.parent().expect("the test's directory");
    let dir = if deps.ends_with("deps") {
        deps.parent().expect("the profile's directory")
    } else {
        deps
    };
    let bin = dir.join(format!("sluice{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.is_file(),
        "no sluice binary at {} (build it, or set SLUICE_BIN)",
        bin.display()
    );
    bin
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
        let child = Command::new(sluice_binary())
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

    /// Whether the daemon holds an established TCP connection to `port` on loopback
    /// (read from `/proc`: its socket inodes against the kernel's TCP table).
    pub fn is_connected_to(&self, port: u16) -> bool {
        let pid = self.child.id();
        let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
            return false;
        };
        let sockets: Vec<String> = fds
            .filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
            .filter_map(|link| {
                let link = link.to_str()?.strip_prefix("socket:[")?.strip_suffix(']')?;
                Some(link.to_owned())
            })
            .collect();
        let table = std::fs::read_to_string(format!("/proc/{pid}/net/tcp")).unwrap_or_default();
        let remote = format!(":{port:04X}");
        table.lines().skip(1).any(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            f.len() > 9
                && f[2].ends_with(&remote)
                && f[3] == "01"
                && sockets.iter().any(|s| s == f[9])
        })
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
