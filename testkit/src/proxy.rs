//! A TCP proxy between Sluice and Redis that injects network faults: it freezes the
//! connections it carries (they stop moving bytes but stay open, like a dropped network
//! path), sends new connections to another server (like a name that moved to a new
//! primary after a failover), and hangs up on requests over a size (like a server that
//! closes the connection on a value over its `proto-max-bulk-len` without a reply),
//! slows replies down to a rate (like a slow link, on which a large reply takes long), and
//! delays requests (like a distant server: every round trip takes that much longer).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A running proxy; stops when dropped.
pub struct Proxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: tokio::task::JoinHandle<()>,
}

struct Shared {
    target: Mutex<SocketAddr>,
    /// The state of every connection accepted so far.
    connections: Mutex<Vec<Arc<Conn>>>,
    /// Bytes a client may send between two replies before the connection is cut (0: any).
    max_request: AtomicUsize,
    /// New connections still to be closed at once (like a server that is down).
    refuse: AtomicUsize,
    /// Bytes per second the server's replies are passed on at (0: as fast as they come).
    reply_rate: AtomicUsize,
    /// Milliseconds each read of requests waits before it is passed on (0: none).
    request_delay: AtomicU64,
}

/// One proxied connection's switches.
#[derive(Default)]
struct Conn {
    frozen: AtomicBool,
    cut: AtomicBool,
    /// Bytes the client sent since the server last sent anything.
    unanswered: AtomicUsize,
}

impl Proxy {
    /// Listens on a free loopback port and forwards each connection to `target`.
    pub async fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("proxy binds");
        let addr = listener.local_addr().expect("proxy address");
        let shared = Arc::new(Shared {
            target: Mutex::new(target),
            connections: Mutex::new(Vec::new()),
            max_request: AtomicUsize::new(0),
            refuse: AtomicUsize::new(0),
            reply_rate: AtomicUsize::new(0),
            request_delay: AtomicU64::new(0),
        });
        let state = shared.clone();
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let refused = state
                    .refuse
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                    .is_ok();
                if refused {
                    drop(client);
                    continue;
                }
                let target = *state.target.lock().expect("target");
                let conn = Arc::new(Conn::default());
                state
                    .connections
                    .lock()
                    .expect("connections")
                    .push(conn.clone());
                let shared = state.clone();
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(target).await else {
                        return;
                    };
                    let (cr, cw) = client.into_split();
                    let (sr, sw) = server.into_split();
                    tokio::join!(
                        pump(cr, sw, conn.clone(), shared.clone(), true),
                        pump(sr, cw, conn, shared, false)
                    );
                });
            }
        });
        Proxy {
            addr,
            shared,
            accept,
        }
    }

    /// The proxy's address, for a `redis://` URL.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `redis://127.0.0.1:PORT` (with `user:password@` if given).
    pub fn url(&self, auth: Option<(&str, &str)>) -> String {
        match auth {
            Some((user, password)) => format!("redis://{user}:{password}@{}", self.addr),
            None => format!("redis://{}", self.addr),
        }
    }

    /// Every connection open now stops moving bytes, without closing; new connections
    /// work.
    pub fn freeze(&self) {
        for conn in self.shared.connections.lock().expect("connections").iter() {
            conn.frozen.store(true, Ordering::SeqCst);
        }
    }

    /// Closes every connection open now (both ends).
    pub fn cut(&self) {
        for conn in self.shared.connections.lock().expect("connections").iter() {
            conn.cut.store(true, Ordering::SeqCst);
        }
    }

    /// Closes the next `n` new connections as soon as they are accepted.
    pub fn refuse_next(&self, n: usize) {
        self.shared.refuse.store(n, Ordering::SeqCst);
    }

    /// From now on, a connection whose client sends more than `bytes` without a reply
    /// in between is closed (both ends), with no reply.
    pub fn cut_requests_over(&self, bytes: usize) {
        self.shared.max_request.store(bytes, Ordering::SeqCst);
    }

    /// From now on, replies reach the client at `bytes_per_second` at most (0: no limit).
    pub fn limit_replies(&self, bytes_per_second: usize) {
        self.shared
            .reply_rate
            .store(bytes_per_second, Ordering::SeqCst);
    }

    /// From now on, requests reach the server `delay` late (to the millisecond).
    pub fn delay_requests(&self, delay: std::time::Duration) {
        let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.shared.request_delay.store(ms, Ordering::SeqCst);
    }

    /// New connections go to `target`; open ones stay where they are.
    pub fn redirect(&self, target: SocketAddr) {
        *self.shared.target.lock().expect("target") = target;
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.freeze();
    }
}

/// Copies bytes from `from` to `to` until either end closes; once frozen, holds both
/// ends open and moves nothing more. `requests` is true for the client-to-server
/// direction (which counts unanswered bytes against the size limit, and is delayed); the
/// other is held to the reply rate.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    conn: Arc<Conn>,
    shared: Arc<Shared>,
    requests: bool,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = tokio::select! {
            read = from.read(&mut buf) => match read {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            },
            () = until(&conn) => break,
        };
        if requests {
            let limit = shared.max_request.load(Ordering::SeqCst);
            let sent = conn.unanswered.fetch_add(n, Ordering::SeqCst) + n;
            if limit > 0 && sent > limit {
                conn.cut.store(true, Ordering::SeqCst);
                break;
            }
            let delay = shared.request_delay.load(Ordering::SeqCst);
            if delay > 0 {
                tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
            }
        } else {
            conn.unanswered.store(0, Ordering::SeqCst);
        }
        if conn.frozen.load(Ordering::SeqCst) || to.write_all(&buf[..n]).await.is_err() {
            break;
        }
        let rate = shared.reply_rate.load(Ordering::SeqCst);
        if !requests && rate > 0 {
            tokio::time::sleep(std::time::Duration::from_secs_f64(n as f64 / rate as f64)).await;
        }
    }
    if conn.frozen.load(Ordering::SeqCst) {
        // A dropped path: nothing more arrives, nothing is closed. Held until the test
        // process ends.
        std::future::pending::<()>().await;
    }
    conn.cut.store(true, Ordering::SeqCst);
}

/// Resolves once the connection is frozen or cut (checked every 20 ms).
async fn until(conn: &Conn) {
    while !conn.frozen.load(Ordering::SeqCst) && !conn.cut.load(Ordering::SeqCst) {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
