//! A real HTTP server for handlers that call out, on 127.0.0.1 and a free port, plain or
//! TLS (a [`Pki`](crate::Pki) certificate). It records every request and can delay,
//! fail, hang, redirect, stream slowly and send huge bodies:
//!
//! | path | answer |
//! |---|---|
//! | `/echo` | 200 with the request's body |
//! | `/delay/{ms}` | 200 `ok` after `ms` milliseconds |
//! | `/status/{code}` | that status, body `status {code}` |
//! | `/hang` | nothing, ever |
//! | `/redirect?to=URL` | 302 to `URL` |
//! | `/slow/{chunks}/{ms}` | `chunks` chunks of `x`, `ms` apart |
//! | `/huge/{bytes}` | `bytes` bytes (`?chunked` leaves out `Content-Length`) |
//! | `/pay` | the payment provider: `{"payment_id": "pay_…"}`, one ID per `Idempotency-Key` |

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;

/// One request the server got.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    /// Header names in lower case; values as text (lossy).
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Seen {
    /// The first value of header `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Default)]
struct Shared {
    seen: Mutex<Vec<Seen>>,
    /// Payment IDs by idempotency key (or by body, without one).
    payments: Mutex<BTreeMap<String, String>>,
    /// `/pay` answers after this many milliseconds.
    pay_delay_ms: std::sync::atomic::AtomicU64,
    /// `/delay` and `/pay` requests being answered now, and the most at once.
    busy: std::sync::atomic::AtomicUsize,
    most_busy: std::sync::atomic::AtomicUsize,
    /// Connections accepted.
    connections: std::sync::atomic::AtomicUsize,
}

impl Shared {
    /// Counts a request being answered until the guard drops.
    fn busy(self: &Arc<Self>) -> Busy {
        use std::sync::atomic::Ordering::SeqCst;
        let now = self.busy.fetch_add(1, SeqCst) + 1;
        self.most_busy.fetch_max(now, SeqCst);
        Busy(self.clone())
    }
}

struct Busy(Arc<Shared>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0
            .busy
            .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// The running server; it stops when dropped.
pub struct HttpServer {
    pub port: u16,
    tls: bool,
    shared: Arc<Shared>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl HttpServer {
    /// A plain HTTP server.
    pub fn start() -> Self {
        Self::spawn(None)
    }

    /// An HTTPS server with `pki`'s `server.pem` and `server.key`.
    pub fn start_tls(pki: &crate::Pki) -> Self {
        let chain = std::fs::read(pki.path("server.pem")).expect("server.pem");
        let key = std::fs::read(pki.path("server.key")).expect("server.key");
        Self::spawn(Some((chain, key)))
    }

    fn spawn(tls: Option<(Vec<u8>, Vec<u8>)>) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().expect("addr").port();
        let shared = Arc::new(Shared::default());
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let app = router(shared.clone());
        let counted = shared.clone();
        let is_tls = tls.is_some();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                tokio::select! {
                    _ = serve(listener, app, tls, counted) => {}
                    _ = stopped => {}
                }
            });
        });
        Self {
            port,
            tls: is_tls,
            shared,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:PORT` (or `https://localhost:PORT` for a TLS server).
    pub fn origin(&self) -> String {
        if self.tls {
            format!("https://localhost:{}", self.port)
        } else {
            format!("http://127.0.0.1:{}", self.port)
        }
    }

    /// `origin()` followed by `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.origin())
    }

    /// How many requests came so far.
    pub fn seen_count(&self) -> usize {
        self.shared.seen.lock().expect("seen").len()
    }

    /// Every request so far, in arrival order.
    pub fn seen(&self) -> Vec<Seen> {
        self.shared.seen.lock().expect("seen").clone()
    }

    /// The most `/delay` and `/pay` requests answered at once so far.
    pub fn most_busy(&self) -> usize {
        self.shared
            .most_busy
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.shared
            .connections
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Makes `/pay` answer after `delay`.
    pub fn set_pay_delay(&self, delay: Duration) {
        let ms = delay.as_millis() as u64;
        self.shared
            .pay_delay_ms
            .store(ms, std::sync::atomic::Ordering::Relaxed);
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    tls: Option<(Vec<u8>, Vec<u8>)>,
    shared: Arc<Shared>,
) {
    let acceptor = tls.map(|(chain, key)| {
        use rustls::pki_types::pem::PemObject;
        let certs = rustls::pki_types::CertificateDer::pem_slice_iter(&chain)
            .collect::<Result<Vec<_>, _>>()
            .expect("certificates");
        let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(&key).expect("key");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .expect("server config");
        tokio_rustls::TlsAcceptor::from(Arc::new(config))
    });
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        shared
            .connections
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let (app, acceptor) = (app.clone(), acceptor.clone());
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let mut app = app.clone();
                async move {
                    use tower_service::Service;
                    app.call(request).await
                }
            });
            let builder = hyper::server::conn::http1::Builder::new();
            match acceptor {
                None => {
                    let io = hyper_util::rt::TokioIo::new(tcp);
                    let _ = builder.serve_connection(io, service).await;
                }
                Some(acceptor) => {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let io = hyper_util::rt::TokioIo::new(tls);
                    let _ = builder.serve_connection(io, service).await;
                }
            }
        });
    }
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/echo", any(echo))
        .route("/delay/{ms}", any(delay))
        .route("/status/{code}", any(status))
        .route("/hang", any(hang))
        .route("/redirect", any(redirect))
        .route("/slow/{chunks}/{ms}", any(slow))
        .route("/huge/{bytes}", any(huge))
        .route("/pay", any(pay))
        .fallback(any(echo))
        .layer(axum::middleware::from_fn_with_state(shared.clone(), record))
        .with_state(shared)
}

/// Records the request (its body read whole, then handed on).
async fn record(
    State(shared): State<Arc<Shared>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, 64 << 20)
        .await
        .unwrap_or_default();
    let headers = parts
        .headers
        .iter()
        .map(|(n, v)| {
            (
                n.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    shared.seen.lock().expect("seen").push(Seen {
        method: parts.method.to_string(),
        path: parts
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_owned(),
        headers,
        body: bytes.to_vec(),
    });
    let request = axum::extract::Request::from_parts(parts, Body::from(bytes));
    next.run(request).await
}

async fn echo(_method: Method, _uri: Uri, body: Bytes) -> Bytes {
    body
}

async fn delay(State(shared): State<Arc<Shared>>, Path(ms): Path<u64>) -> &'static str {
    let _busy = shared.busy();
    tokio::time::sleep(Duration::from_millis(ms)).await;
    "ok"
}

async fn status(Path(code): Path<u16>) -> Response {
    let code = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (code, format!("status {}", code.as_u16())).into_response()
}

async fn hang() -> &'static str {
    tokio::time::sleep(Duration::from_secs(3600)).await;
    "late"
}

async fn redirect(Query(query): Query<BTreeMap<String, String>>) -> Response {
    let to = query.get("to").cloned().unwrap_or_else(|| "/echo".into());
    (StatusCode::FOUND, [(header::LOCATION, to)], "").into_response()
}

async fn slow(Path((chunks, ms)): Path<(u32, u64)>) -> Response {
    let stream = futures_stream(chunks, move |_| async move {
        tokio::time::sleep(Duration::from_millis(ms)).await;
        Bytes::from_static(b"x")
    });
    Response::new(Body::from_stream(stream))
}

async fn huge(Path(bytes): Path<usize>, Query(q): Query<BTreeMap<String, String>>) -> Response {
    if q.contains_key("chunked") {
        let chunk = 64 * 1024;
        let n = bytes.div_ceil(chunk) as u32;
        let stream = futures_stream(n, move |_| async move { Bytes::from(vec![b'h'; chunk]) });
        return Response::new(Body::from_stream(stream));
    }
    Response::new(Body::from(vec![b'h'; bytes]))
}

async fn pay(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let _busy = shared.busy();
    let delay = shared
        .pay_delay_ms
        .load(std::sync::atomic::Ordering::Relaxed);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let key = headers
        .get("idempotency-key")
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
    let mut payments = shared.payments.lock().expect("payments");
    let next = payments.len() + 1;
    let id = payments
        .entry(key)
        .or_insert_with(|| format!("pay_{next:06}"))
        .clone();
    let json = format!("{{\"payment_id\": \"{id}\"}}");
    ([(header::CONTENT_TYPE, "application/json")], json).into_response()
}

/// A body stream of `n` items made by `make`.
fn futures_stream<F, Fut>(
    n: u32,
    make: F,
) -> impl futures::Stream<Item = Result<Bytes, Infallible>> + Send + 'static
where
    F: Fn(u32) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Bytes> + Send + 'static,
{
    use futures::StreamExt;
    futures::stream::iter(0..n).then(move |i| {
        let item = make(i);
        async move { Ok(item.await) }
    })
}
