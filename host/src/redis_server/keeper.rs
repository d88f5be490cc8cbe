//! The thread that owns a `redis-server` child: it starts it, waits on it, kills it when
//! asked, and publishes how it ended.
//!
//! Why a thread of its own: `PR_SET_PDEATHSIG` fires when the *thread* that forked the
//! child exits, not the process (prctl(2): "the parent is considered to be the thread
//! that created this process"). A server started from a tokio `spawn_blocking` thread
//! was killed 10 s later, when tokio retired that idle thread. The keeper thread lives
//! exactly as long as the child, so the signal fires only when this process dies.

use std::io;
use std::process::{Command, ExitStatus};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::watch;

/// How often the keeper looks for an exit it did not cause.
const POLL: Duration = Duration::from_millis(50);

/// A running child and the thread that keeps it.
pub(super) struct Keeper {
    pid: u32,
    /// Dropping it (or sending) makes the keeper kill the child and reap it.
    stop: Option<mpsc::Sender<()>>,
    exit: watch::Receiver<Option<ExitStatus>>,
    /// True once the child is reaped; held while reaping and while signalling, so that
    /// a signal never reaches a reaped (and perhaps reused) pid.
    reaped: Arc<Mutex<bool>>,
    thread: Option<JoinHandle<()>>,
}

impl Keeper {
    /// Starts `cmd` on a new keeper thread named `name`; on Linux the child is killed
    /// (SIGKILL) when this process dies.
    pub(super) fn spawn(mut cmd: Command, name: &str) -> io::Result<Self> {
        #[cfg(target_os = "linux")]
        // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
        unsafe {
            use std::os::unix::process::CommandExt;
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let (started_tx, started_rx) = mpsc::channel();
        let (stop_tx, stop_rx) = mpsc::channel::<()>();
        let (exit_tx, exit) = watch::channel(None);
        let reaped = Arc::new(Mutex::new(false));
        let reaping = reaped.clone();
        let thread = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                let child = match cmd.spawn() {
                    Ok(child) => child,
                    Err(e) => {
                        let _ = started_tx.send(Err(e));
                        return;
                    }
                };
                let _ = started_tx.send(Ok(child.id()));
                let ended = keep(child, &stop_rx, &reaping);
                if let Some(status) = ended {
                    exit_tx.send_replace(Some(status));
                }
            })?;
        let pid = started_rx.recv().map_err(|_| {
            io::Error::other("the keeper thread ended before it started the server")
        })??;
        Ok(Self {
            pid,
            stop: Some(stop_tx),
            exit,
            reaped,
            thread: Some(thread),
        })
    }

    /// The child's process ID.
    pub(super) fn pid(&self) -> u32 {
        self.pid
    }

    /// How the child ended, once it has ended on its own (not by [`Keeper::kill`]).
    pub(super) fn exited(&self) -> Option<ExitStatus> {
        *self.exit.borrow()
    }

    /// A receiver that changes to `Some(status)` when the child ends on its own; its
    /// sender is dropped without a value when the child is killed by [`Keeper::kill`]
    /// or the keeper is dropped.
    pub(super) fn exit(&self) -> watch::Receiver<Option<ExitStatus>> {
        self.exit.clone()
    }

    /// Sends `signal` to the child while it is not reaped.
    pub(super) fn signal(&self, signal: i32) {
        let reaped = self.reaped.lock().unwrap_or_else(PoisonError::into_inner);
        if !*reaped {
            // SAFETY: kill(2) on our own child's pid, which is not reaped while the
            // lock is held, so it cannot have been reused.
            unsafe {
                libc::kill(self.pid as i32, signal);
            }
        }
    }

    /// Kills the child (SIGKILL) and waits until it is reaped.
    pub(super) fn kill(mut self) {
        self.stop_now();
    }

    fn stop_now(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Keeper {
    fn drop(&mut self) {
        self.stop_now();
    }
}

/// Waits on `child` until it ends on its own (its status) or a stop is asked for or the
/// keeper is dropped (`None`: killed and reaped, nothing published).
fn keep(
    mut child: std::process::Child,
    stop_rx: &mpsc::Receiver<()>,
    reaping: &Mutex<bool>,
) -> Option<ExitStatus> {
    loop {
        let stop = stop_rx.recv_timeout(POLL);
        let mut reaped = reaping.lock().unwrap_or_else(PoisonError::into_inner);
        let status = match stop {
            Ok(()) | Err(RecvTimeoutError::Disconnected) => {
                let _ = child.kill();
                let _ = child.wait();
                *reaped = true;
                // Asked for: not published (see `exit`).
                break None;
            }
            Err(RecvTimeoutError::Timeout) => child.try_wait(),
        };
        match status {
            Ok(None) => {}
            Ok(Some(status)) => {
                *reaped = true;
                break Some(status);
            }
            Err(_) => break None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sleeper() -> Keeper {
        let mut cmd = Command::new("sleep");
        cmd.arg("600");
        Keeper::spawn(cmd, "test-keeper").expect("sleep starts")
    }

    /// The keeper thread outlives the thread that asked for it: the child lives on after
    /// the spawning thread has ended (PR_SET_PDEATHSIG would fire when it did).
    #[test]
    fn the_child_outlives_the_thread_that_started_it() {
        let keeper = std::thread::spawn(sleeper).join().expect("spawning thread");
        std::thread::sleep(POLL * 4);
        assert!(keeper.exited().is_none());
        assert!(std::path::Path::new(&format!("/proc/{}", keeper.pid())).exists());
    }

    /// An exit nobody asked for is published with its status; a kill by the keeper's
    /// owner is not.
    #[test]
    fn an_exit_on_its_own_is_published_a_kill_is_not() {
        let keeper = sleeper();
        let mut exit = keeper.exit();
        keeper.signal(libc::SIGKILL);
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while keeper.exited().is_none() {
            assert!(std::time::Instant::now() < deadline, "no exit published");
            std::thread::sleep(POLL);
        }
        assert!(exit.borrow_and_update().is_some());

        let keeper = sleeper();
        let exit = keeper.exit();
        keeper.kill();
        assert!(exit.borrow().is_none());
        assert!(
            exit.has_changed().is_err(),
            "the sender is gone, nothing sent"
        );
    }
}
