//! The admin API from a stranger's side: who may read what, what one request may cost
//! the daemon (bodies, time, connections, answers), which `Host` it answers, what its
//! errors and `/readyz` tell, the plugin file it writes, and the dashboard with Redis
//! gone. A real daemon and redis-server; reqwest, or raw TCP where the bytes on the wire
//! are the point (partial bodies, `Host` headers).

use std::time::{Duration, Instant};

use serde_json::Value;
use sluice_testkit::*;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const TOKEN: &str = "admin-token";

/// The `[admin]` settings a test adds to the config.
type AdminSettings = fn(ConfigBuilder) -> ConfigBuilder;

/// No more `[admin]` settings.
fn defaults(file: ConfigBuilder) -> ConfigBuilder {
    file
}

/// A daemon running `pipelines`, its admin API on `listen` with the token and the
/// `[admin]` settings `admin` adds.
async fn daemon_on(
    redis: &RedisServer,
    listen: &str,
    admin: AdminSettings,
    pipelines: &[PipelineBuilder],
) -> TestDaemon {
    let mut file = admin(ConfigBuilder::new().admin_set("listen", listen));
    for pipeline in pipelines {
        file = file.pipeline(pipeline.clone());
    }
    let mut config = file.config();
    config.admin.as_mut().expect("[admin]").token = Some(TOKEN.to_owned());
    TestDaemon::start(redis, config).await
}

/// [`daemon_on`] a free loopback port.
async fn daemon(
    redis: &RedisServer,
    admin: AdminSettings,
    pipelines: &[PipelineBuilder],
) -> TestDaemon {
    daemon_on(redis, "127.0.0.1:0", admin, pipelines).await
}

/// Where to connect to the admin API (a wildcard listener is reached on loopback).
fn target(host: &TestDaemon) -> std::net::SocketAddr {
    let mut addr = host.admin();
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    addr
}

/// Reads from `stream` until the peer closes it or `within` passes: what was read, and
/// whether it was closed.
async fn read_until_closed(stream: &mut TcpStream, within: Duration) -> (String, bool) {
    let deadline = tokio::time::Instant::now() + within;
    let mut got = Vec::new();
    let mut buf = [0u8; 16 << 10];
    let closed = loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => break false,
            Ok(Ok(0) | Err(_)) => break true,
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    };
    (String::from_utf8_lossy(&got).into_owned(), closed)
}

/// The status code of a raw HTTP response (0 when there is none).
fn status_of(response: &str) -> u16 {
    response
        .strip_prefix("HTTP/1.")
        .and_then(|rest| rest.get(2..5))
        .and_then(|code| code.parse().ok())
        .unwrap_or(0)
}

/// The body of a raw HTTP response as JSON, checking that it says it is.
fn json_of(response: &str) -> Value {
    let (head, body) = response.split_once("\r\n\r\n").expect("a head and a body");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/json"),
        "{response}"
    );
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {response}"))
}

/// `request` (whole, with `Connection: close`) over raw TCP: (status, whole response).
async fn exchange(addr: std::net::SocketAddr, request: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(request.as_bytes()).await.expect("send");
    let (response, closed) = read_until_closed(&mut stream, Duration::from_secs(5)).await;
    assert!(
        closed,
        "the server closes a Connection: close exchange: {response}"
    );
    (status_of(&response), response)
}

/// `GET path` with `Host: host` over raw TCP: (status, whole response).
async fn get_as(addr: std::net::SocketAddr, path: &str, host: &str) -> (u16, String) {
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    exchange(addr, &request).await
}

/// Opens a connection and sends the head of a plugin upload of 8 MiB to `pipeline`
/// (with `Authorization: Bearer token` if given) and the first 64 KiB of its body.
async fn start_upload(
    addr: std::net::SocketAddr,
    pipeline: &str,
    token: Option<&str>,
) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let head = format!(
        "PUT /v1/plugins/{pipeline} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}Content-Type: application/wasm\r\nContent-Length: {}\r\n\r\n",
        8 << 20
    );
    stream.write_all(head.as_bytes()).await.expect("send head");
    stream.write_all(&[0u8; 64 << 10]).await.expect("send body");
    stream
}

/// Adds to `stream` a dead letter as the daemon writes them: reason first, then `fields`.
async fn add_letter(
    con: &mut redis::aio::MultiplexedConnection,
    stream: &str,
    reason: &str,
    fields: &[(&str, &str)],
) {
    let mut all = vec![("sluice.error", reason)];
    all.extend_from_slice(fields);
    add(con, stream, &all).await;
}

/// Dead letters are whole entries (customer data): they need the token, like handler
/// state, and come in pages of at most about 1 MiB, each value cut at 64 KiB and the
/// letter marked `truncated`; paging on `next` reaches every letter. The open listings
/// show no plugin paths.
#[tokio::test]
async fn dead_letters_need_the_token_and_come_in_bounded_pages() {
    let TestContext { redis, mut con } = TestContext::new().await;
    let host = daemon(&redis, defaults, &[payments("adm-dead")]).await;
    let base = format!("http://{}", host.admin());
    let dead = "ORDERS_STREAM:dead";
    let big = "x".repeat(200 << 10);
    for i in 0..3 {
        let reason = format!("rejected {i}");
        add_letter(
            &mut con,
            dead,
            &reason,
            &[("orderId", "big"), ("blob", &big)],
        )
        .await;
    }
    let wide = "y".repeat(60 << 10);
    let fields: Vec<(String, &str)> = (0..5).map(|i| (format!("b{i}"), wide.as_str())).collect();
    let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    for _ in 0..20 {
        add_letter(&mut con, dead, "rejected wide", &fields).await;
    }
    let client = reqwest::Client::new();
    let url = format!("{base}/v1/pipelines/adm-dead/dead");
    for token in [None, Some("wrong"), Some("admin-token-but-longer")] {
        let mut request = client.get(&url);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let refused = request.send().await.expect("GET");
        assert_eq!(refused.status(), 401, "token {token:?}");
        let text = refused.text().await.expect("text");
        assert!(
            !text.contains("xxxx") && !text.contains("big"),
            "{text:.200}"
        );
    }

    let mut after: Option<String> = None;
    let mut letters: Vec<Value> = Vec::new();
    let mut pages = 0;
    loop {
        let page_url = match &after {
            Some(after) => format!("{url}?count=50&after={after}"),
            None => format!("{url}?count=50"),
        };
        let response = client
            .get(page_url)
            .bearer_auth(TOKEN)
            .send()
            .await
            .expect("GET");
        assert_eq!(response.status(), 200);
        let text = response.text().await.expect("text");
        assert!(
            text.len() <= (1 << 20) + (16 << 10),
            "an answer of {} bytes",
            text.len()
        );
        let page: Value = serde_json::from_str(&text).expect("JSON");
        letters.extend(page["entries"].as_array().expect("entries").iter().cloned());
        pages += 1;
        match page["next"].as_str() {
            Some(next) => after = Some(next.to_owned()),
            None => break,
        }
    }
    println!("{} letters in {pages} pages", letters.len());
    assert_eq!(letters.len(), 23, "paging reaches every letter once");
    assert!(
        pages >= 7,
        "23 letters of 64-300 KiB need 7 pages of 1 MiB: {pages}"
    );
    let value = |letter: &Value, name: &str| -> String {
        let fields = letter["fields"].as_array().expect("fields");
        let field = fields.iter().find(|f| f[0] == name).expect("field");
        field[1].as_str().expect("text").to_owned()
    };
    for (i, letter) in letters[..3].iter().enumerate() {
        assert_eq!(letter["error"], format!("rejected {i}"));
        assert_eq!(letter["truncated"], true);
        assert_eq!(value(letter, "blob").len(), 64 << 10, "cut at 64 KiB");
        assert_eq!(value(letter, "orderId"), "big");
    }
    for letter in &letters[3..] {
        assert_eq!(letter["truncated"], false);
        assert_eq!(value(letter, "b4").len(), 60 << 10, "whole");
    }
    // `count` still bounds a page.
    let two: Value = client
        .get(format!("{url}?count=2"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("GET")
        .json()
        .await
        .expect("JSON");
    assert_eq!(two["entries"].as_array().map(Vec::len), Some(2));
    assert_eq!(two["next"], letters[1]["id"]);

    // Open listings: names and states, no paths (the token holder sees them).
    let open: Value = client
        .get(format!("{base}/v1/plugins"))
        .send()
        .await
        .expect("GET")
        .json()
        .await
        .expect("JSON");
    assert_eq!(open[0]["pipeline"], "adm-dead");
    assert!(open[0].get("path").is_none(), "{open}");
    let one = client
        .get(format!("{base}/v1/plugins/adm-dead"))
        .send()
        .await
        .expect("GET");
    assert_eq!(one.status(), 200);
    let one: Value = one.json().await.expect("JSON");
    assert!(
        one.get("path").is_none() && one["digest"].is_string(),
        "{one}"
    );
    let shown: Value = client
        .get(format!("{base}/v1/plugins/adm-dead"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("GET")
        .json()
        .await
        .expect("JSON");
    assert!(
        shown["path"].as_str().is_some_and(|p| p.ends_with(".wasm")),
        "{shown}"
    );
    let state = client
        .get(format!("{base}/v1/pipelines/adm-dead/state/k"))
        .send()
        .await
        .expect("GET");
    assert_eq!(state.status(), 401);
    host.stop().await;
}

/// A plugin upload is refused before its body is read: a stranger's 8 MiB upload is
/// answered 401 after the head (403 with no token configured) and its connection
/// closed, without waiting for the rest of the body.
#[tokio::test]
async fn uploads_are_refused_before_their_body_is_read() {
    let redis = RedisServer::start().expect("redis");
    let host = daemon(&redis, defaults, &[payments("adm-upload")]).await;
    for token in [None, Some("wrong")] {
        let mut stream = start_upload(host.admin(), "adm-upload", token).await;
        let (response, closed) = read_until_closed(&mut stream, Duration::from_secs(3)).await;
        assert_eq!(status_of(&response), 401, "token {token:?}: {response:?}");
        assert!(response.contains("www-authenticate: Bearer"), "{response}");
        assert!(
            closed,
            "the connection is closed, the rest of the body unread"
        );
    }
    host.stop().await;

    let mut config = payments("adm-upload").with_admin().config();
    config.admin.as_mut().expect("[admin]").token = None;
    let host = TestDaemon::start(&redis, config).await;
    let mut stream = start_upload(host.admin(), "adm-upload", Some(TOKEN)).await;
    let (response, closed) = read_until_closed(&mut stream, Duration::from_secs(3)).await;
    assert_eq!(status_of(&response), 403, "{response:?}");
    assert!(closed);
    host.stop().await;
}

/// Requests cannot hold a connection for ever: 50 uploads whose bodies stall are
/// answered 408 and closed after `request_timeout`, as is a request whose headers never
/// end; the API answers as before afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_requests_are_cut_off_after_request_timeout() {
    let redis = RedisServer::start().expect("redis");
    let admin: AdminSettings = |c| {
        c.admin_set("request_timeout", "1s")
            .admin_set("max_uploads", 64)
    };
    let host = daemon(&redis, admin, &[payments("adm-stall")]).await;
    let started = Instant::now();
    let mut stalled = Vec::new();
    for _ in 0..50 {
        stalled.push(start_upload(host.admin(), "adm-stall", Some(TOKEN)).await);
    }
    let mut slow_head = TcpStream::connect(host.admin()).await.expect("connect");
    slow_head
        .write_all(b"GET /v1/pipelines HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        .await
        .expect("send");
    let mut codes = Vec::new();
    for stream in &mut stalled {
        let (response, closed) = read_until_closed(stream, Duration::from_secs(6)).await;
        assert!(closed, "a stalled upload is closed: {response:?}");
        codes.push(status_of(&response));
    }
    assert!(codes.iter().all(|c| *c == 408), "{codes:?}");
    let (response, closed) = read_until_closed(&mut slow_head, Duration::from_secs(6)).await;
    assert!(
        closed,
        "a request whose headers never end is closed: {response:?}"
    );
    println!("all closed {:?} after they stalled", started.elapsed());
    let (code, _) = get_as(host.admin(), "/healthz", "127.0.0.1").await;
    assert_eq!(code, 200);
    host.stop().await;
}

/// A body may not take longer than `body_timeout` in all, however steadily it drips:
/// an upload sent a byte every 300 ms (never stalling for `request_timeout`) is answered
/// 408 and closed at `body_timeout`.
#[tokio::test]
async fn a_dripping_body_is_cut_off_at_body_timeout() {
    let redis = RedisServer::start().expect("redis");
    let admin: AdminSettings = |c| {
        c.admin_set("request_timeout", "1s")
            .admin_set("body_timeout", "3s")
    };
    let host = daemon(&redis, admin, &[payments("adm-drip")]).await;
    let mut stream = TcpStream::connect(host.admin()).await.expect("connect");
    let head = format!(
        "PUT /v1/plugins/adm-drip HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: 1000\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.expect("send head");
    let started = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while started.elapsed() < Duration::from_secs(8) {
        tokio::select! {
            read = stream.read(&mut buf) => match read {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            },
            () = tokio::time::sleep(Duration::from_millis(300)) => {
                let _ = stream.write_all(b"\0").await;
            }
        }
    }
    let took = started.elapsed();
    let response = String::from_utf8_lossy(&got).into_owned();
    println!("{took:?}: {response}");
    assert_eq!(status_of(&response), 408, "{response:?}");
    let why = json_of(&response)["error"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(why.contains("body_timeout"), "{why}");
    assert!(
        took >= Duration::from_secs(3) && took < Duration::from_secs(5),
        "closed {took:?} after the headers"
    );
    host.stop().await;
}

/// Every error the API answers is JSON with its status: a replay whose body stalls
/// (408), a body over `max_body` (413), a bad query (400), an unknown path (404), a
/// method a path does not take (405, with `Allow`).
#[tokio::test]
async fn every_error_answer_is_json() {
    let redis = RedisServer::start().expect("redis");
    let admin: AdminSettings = |c| {
        c.admin_set("request_timeout", "1s")
            .admin_set("max_body", "1KiB")
    };
    let host = daemon(&redis, admin, &[payments("adm-json")]).await;
    let addr = host.admin();
    let auth = format!("Host: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\n");
    let replay = "POST /v1/pipelines/adm-json/dead/replay HTTP/1.1";
    let mut stalled = TcpStream::connect(addr).await.expect("connect");
    let head = format!("{replay}\r\n{auth}Content-Length: 100\r\n\r\n{{\"ids\": [");
    stalled.write_all(head.as_bytes()).await.expect("send");
    let (response, closed) = read_until_closed(&mut stalled, Duration::from_secs(5)).await;
    assert!(closed, "{response}");
    assert_eq!(status_of(&response), 408, "{response}");
    let why = json_of(&response)["error"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(why.contains("request_timeout"), "{why}");

    let big = format!("{{\"ids\": [\"{}\"]}}", "1".repeat(2000));
    let cases = [
        (
            format!("{replay}\r\n{auth}Content-Length: {}\r\n", big.len()),
            big.as_str(),
            413,
        ),
        (
            format!("GET /v1/pipelines/adm-json/dead?count=-1 HTTP/1.1\r\n{auth}"),
            "",
            400,
        ),
        (
            "GET /v1/nothing HTTP/1.1\r\nHost: localhost\r\n".to_owned(),
            "",
            404,
        ),
        (
            "DELETE /v1/plugins HTTP/1.1\r\nHost: localhost\r\n".to_owned(),
            "",
            405,
        ),
    ];
    for (head, body, expected) in cases {
        let request = format!("{head}Connection: close\r\n\r\n{body}");
        let (code, response) = exchange(addr, &request).await;
        println!("{response}");
        assert_eq!(code, expected, "{head}: {response}");
        let error = json_of(&response)["error"].clone();
        assert!(error.as_str().is_some_and(|e| !e.is_empty()), "{response}");
        if code == 405 {
            assert!(
                response.to_ascii_lowercase().contains("\r\nallow: get"),
                "{response}"
            );
        }
    }
    host.stop().await;
}

/// Opens `n` connections to `addr`, each sending a request head of `size` bytes that
/// never ends (a write the daemon cuts short is fine).
async fn half_sent_heads(addr: std::net::SocketAddr, n: usize, size: usize) -> Vec<TcpStream> {
    let mut head = b"GET /v1/pipelines HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pad: ".to_vec();
    head.resize(size, b'a');
    let head = std::sync::Arc::new(head);
    let mut sending = tokio::task::JoinSet::new();
    for _ in 0..n {
        let head = head.clone();
        sending.spawn(async move {
            let mut stream = TcpStream::connect(addr).await.expect("connect");
            let send = stream.write_all(&head);
            let _ = tokio::time::timeout(Duration::from_secs(20), send).await;
            stream
        });
    }
    sending.join_all().await
}

/// Half-sent headers cannot take the daemon's memory: 400 connections each sending
/// 400 KB of a head that never ends are answered 431 and closed at 64 KiB; of 150 each
/// holding 60 KB only `max_connections` are served, the rest waiting to be accepted, as
/// does a normal request, answered once they go. (More than the listen backlog of 128
/// would wait in their clients' connect.) The daemon runs as its own process, so that
/// its memory is measured apart from the tests running beside this one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_sent_headers_cost_bounded_memory() {
    let redis = RedisServer::start().expect("redis");
    let dir = tempfile::tempdir().expect("tempdir");
    let addr: std::net::SocketAddr = (
        [127, 0, 0, 1],
        sluice::redis_server::free_port().expect("port"),
    )
        .into();
    let config = ConfigBuilder::new()
        .admin_set("listen", addr.to_string())
        .admin_set("max_connections", 32)
        .admin_set("request_timeout", "30s")
        .pipeline(payments("adm-heads"))
        .write(dir.path());
    let daemon = DaemonProcess::spawn(&config, &redis, "heads");
    eventually("the daemon listens", Duration::from_secs(30), || async {
        TcpStream::connect(addr).await.ok().map(drop)
    })
    .await;
    assert_eq!(get_as(addr, "/healthz", "127.0.0.1").await.0, 200);
    let rss = || rss_kib(daemon.pid()) >> 10;
    let before = rss();
    let mut big = half_sent_heads(addr, 400, 400_000).await;
    let after_big = rss();
    let mut closed = tokio::task::JoinSet::new();
    for mut stream in big.drain(..) {
        closed.spawn(async move { read_until_closed(&mut stream, Duration::from_secs(5)).await });
    }
    let closed = closed.join_all().await;
    let answered_431 = closed.iter().filter(|(r, _)| status_of(r) == 431).count();
    println!("400 KB heads: RSS {before} -> {after_big} MiB; {answered_431} answered 431");
    assert!(closed.iter().all(|(_, closed)| *closed), "every one closed");
    assert!(after_big < before + 40, "RSS {before} -> {after_big} MiB");

    let held = half_sent_heads(addr, 150, 60_000).await;
    let after_held = rss();
    println!("60 KB heads held: RSS {before} -> {after_held} MiB");
    assert!(after_held < before + 40, "RSS {before} -> {after_held} MiB");
    let normal = tokio::spawn(get_as(addr, "/healthz", "127.0.0.1"));
    stays(
        "a request waits while max_connections are open",
        Duration::from_secs(1),
        || {
            let waiting = !normal.is_finished();
            async move { waiting }
        },
    )
    .await;
    drop(held);
    let (code, _) = tokio::time::timeout(Duration::from_secs(10), normal)
        .await
        .expect("answered once the held connections go")
        .expect("join");
    assert_eq!(code, 200);
    drop(daemon);
}

/// At most `max_uploads` uploads run at once: one more is answered 429 at once (with
/// `Retry-After`), and goes through once the first is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_beyond_max_uploads_are_answered_429() {
    let redis = RedisServer::start().expect("redis");
    let admin: AdminSettings = |c| {
        c.admin_set("request_timeout", "20s")
            .admin_set("max_uploads", 1)
    };
    let host = daemon(&redis, admin, &[payments("adm-cap")]).await;
    let url = format!("http://{}/v1/plugins/adm-cap", host.admin());
    let plugin = std::fs::read(plugin_wasm("payments")).expect("read plugin");
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .expect("client");
    let first = start_upload(host.admin(), "adm-cap", Some(TOKEN)).await;
    let refused = eventually(
        "the second upload to be refused",
        Duration::from_secs(10),
        || {
            let request = client.put(&url).bearer_auth(TOKEN).body(plugin.clone());
            async move {
                let response = request.send().await.expect("PUT");
                (response.status() == 429).then_some(response)
            }
        },
    )
    .await;
    assert_eq!(refused.headers()["retry-after"], "5");
    let reason: Value = refused.json().await.expect("JSON");
    assert!(
        reason["error"]
            .as_str()
            .is_some_and(|e| e.contains("max_uploads")),
        "{reason}"
    );
    drop(first);
    eventually("the upload to go through", Duration::from_secs(10), || {
        let request = client.put(&url).bearer_auth(TOKEN).body(plugin.clone());
        async move { (request.send().await.expect("PUT").status() == 200).then_some(()) }
    })
    .await;
    host.stop().await;
}

/// On a loopback listener only loopback names and addresses, and the names in
/// `allowed_hosts`, are answered as `Host` (DNS rebinding); others get 421 saying how to
/// allow the name.
#[tokio::test]
async fn a_loopback_listener_answers_only_loopback_hosts() {
    let redis = RedisServer::start().expect("redis");
    let host = daemon(&redis, defaults, &[payments("adm-host")]).await;
    let addr = host.admin();
    let port = addr.port();
    for name in [
        format!("localhost:{port}"),
        "localhost".to_owned(),
        format!("127.0.0.1:{port}"),
        format!("[::1]:{port}"),
        format!("dash.localhost:{port}"),
    ] {
        assert_eq!(get_as(addr, "/v1/pipelines", &name).await.0, 200, "{name}");
    }
    for name in [
        "evil.example".to_owned(),
        format!("evil.example:{port}"),
        format!("127.0.0.1.nip.io:{port}"),
        format!("sluice.internal:{port}"),
    ] {
        for path in ["/", "/v1/pipelines", "/metrics"] {
            let (code, response) = get_as(addr, path, &name).await;
            assert_eq!(code, 421, "{name} {path}: {response}");
            assert!(response.contains("allowed_hosts"), "{response}");
        }
    }
    host.stop().await;

    let host = daemon(
        &redis,
        |c| c.admin_set("allowed_hosts", vec!["sluice.internal"]),
        &[payments("adm-host")],
    )
    .await;
    let port = host.admin().port();
    let (code, _) = get_as(
        host.admin(),
        "/v1/pipelines",
        &format!("sluice.internal:{port}"),
    )
    .await;
    assert_eq!(code, 200);
    assert_eq!(get_as(host.admin(), "/", "evil.example").await.0, 421);
    host.stop().await;
}

/// A wildcard listener is reached on loopback too, so it answers like a loopback one,
/// but to any IP address (a pod scraped by IP): a DNS name only when listed.
#[tokio::test]
async fn a_wildcard_listener_answers_ip_addresses_and_listed_names_only() {
    let redis = RedisServer::start().expect("redis");
    let host = daemon_on(&redis, "0.0.0.0:0", defaults, &[payments("adm-pod")]).await;
    let addr = target(&host);
    let (code, response) = get_as(addr, "/metrics", "evil.example").await;
    assert_eq!(code, 421, "{response}");
    let why = json_of(&response)["error"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(why.contains("allowed_hosts = [\"evil.example\"]"), "{why}");
    for ip in ["10.1.2.3:9090", "127.0.0.1", "[fd00::1]:9090", "localhost"] {
        assert_eq!(get_as(addr, "/metrics", ip).await.0, 200, "{ip}");
    }
    host.stop().await;

    let listed: AdminSettings = |c| c.admin_set("allowed_hosts", vec!["sluice.internal"]);
    let host = daemon_on(&redis, "0.0.0.0:0", listed, &[payments("adm-pod")]).await;
    let addr = target(&host);
    assert_eq!(get_as(addr, "/metrics", "evil.example").await.0, 421);
    assert_eq!(
        get_as(addr, "/metrics", "sluice.internal:9090").await.0,
        200
    );
    assert_eq!(
        get_as(addr, "/metrics", "10.1.2.3:9090").await.0,
        200,
        "by IP"
    );
    assert_eq!(get_as(addr, "/metrics", "localhost").await.0, 200);
    host.stop().await;
}

/// `Host` and `Authorization` are read as RFC 9110 and 9112 say: a `Host` that is not
/// `host[:port]` is refused (400) rather than read as its first part, as are an HTTP/1.1
/// request without one and one with two (HTTP/1.0 may omit it); the bearer scheme is
/// matched in any case, with any spaces before the token.
#[tokio::test]
async fn host_and_authorization_are_parsed_strictly() {
    let redis = RedisServer::start().expect("redis");
    let host = daemon(&redis, defaults, &[payments("adm-strict")]).await;
    let addr = host.admin();
    for name in [
        "[::1]evil.example",
        "[::1].evil.example",
        "[::1]@evil.example",
        "localhost@evil.example",
        "127.0.0.1:80@evil.example",
    ] {
        let (code, response) = get_as(addr, "/v1/pipelines", name).await;
        assert!(code == 400 || code == 421, "{name}: {response}");
        assert!(json_of(&response)["error"].is_string(), "{response}");
    }
    let request = |head: &str| format!("GET /v1/pipelines {head}Connection: close\r\n\r\n");
    let cases = [
        ("HTTP/1.1\r\n", 400),
        ("HTTP/1.1\r\nHost: 127.0.0.1\r\nHost: 127.0.0.1\r\n", 400),
        ("HTTP/1.1\r\nHost: 127.0.0.1\r\nHost: evil.example\r\n", 400),
        ("HTTP/1.0\r\n", 200),
        ("HTTP/1.0\r\nHost: evil.example\r\n", 421),
    ];
    for (head, expected) in cases {
        let (code, response) = exchange(addr, &request(head)).await;
        assert_eq!(code, expected, "{head:?}: {response}");
    }
    for auth in [
        "bearer admin-token",
        "BEARER admin-token",
        "Bearer    admin-token",
        "bEaReR \tadmin-token",
    ] {
        let request = format!(
            "POST /v1/pipelines/adm-strict/resume HTTP/1.1\r\nHost: localhost\r\nAuthorization: {auth}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        let (code, response) = exchange(addr, &request).await;
        assert_eq!(code, 200, "{auth:?}: {response}");
    }
    let twice = "POST /v1/pipelines/adm-strict/resume HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer admin-token\r\nAuthorization: Bearer wrong\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
    assert_eq!(exchange(addr, twice).await.0, 401, "two tokens: neither");
    host.stop().await;
}

/// Whether `text` holds a run of 40 hex digits (a script's SHA; a plugin's digest is 64).
fn has_sha(text: &str) -> bool {
    text.as_bytes()
        .split(|b| !b.is_ascii_hexdigit())
        .any(|run| run.len() == 40)
}

/// Error answers say what failed without internals: no script SHA or script line when
/// Redis refuses a script, no address of Redis when it is down (the log has both).
#[tokio::test]
async fn error_answers_carry_no_internals() {
    let TestContext { mut redis, mut con } = TestContext::new().await;
    let host = daemon(&redis, defaults, &[payments("adm-errors")]).await;
    let base = format!("http://{}", host.admin());
    let client = reqwest::Client::new();
    // A dead-letter key of the wrong type: the scripts that read it fail inside Redis.
    let () = redis::AsyncCommands::set(&mut con, "ORDERS_STREAM:dead", "not a stream")
        .await
        .expect("SET");
    let dead = format!("{base}/v1/pipelines/adm-errors/dead");
    let replay = format!("{dead}/replay");
    let answers = [
        client
            .get(&dead)
            .bearer_auth(TOKEN)
            .send()
            .await
            .expect("GET"),
        client
            .post(&replay)
            .bearer_auth(TOKEN)
            .send()
            .await
            .expect("POST"),
    ];
    for answer in answers {
        let code = answer.status().as_u16();
        let text = answer.text().await.expect("text");
        println!("{code} {text}");
        assert!(code >= 500, "{code} {text}");
        assert!(!has_sha(&text) && !text.contains("user_script"), "{text}");
        assert!(
            text.contains("daemon's log"),
            "says where the details are: {text}"
        );
    }
    let port = redis.port().to_string();
    redis.kill();
    for request in [client.get(&dead), client.post(&replay)] {
        let answer = request.bearer_auth(TOKEN).send().await.expect("answer");
        let code = answer.status().as_u16();
        let text = answer.text().await.expect("text");
        println!("{code} {text}");
        assert_eq!(code, 503, "{text}");
        assert!(text.contains("redis unavailable"), "{text}");
        assert!(
            !text.contains(&port) && !text.contains("127.0.0.1"),
            "{text}"
        );
    }
    host.shutdown.cancel();
}

/// A refused upload leaves the previous version serving, and the daemon ready: `/readyz`
/// stays 200 and reports the refused version in `refused` (without the plugin's path);
/// a good upload clears it.
#[tokio::test]
async fn readiness_follows_the_serving_version() {
    let redis = RedisServer::start().expect("redis");
    let host = daemon(&redis, defaults, &[payments("adm-ready")]).await;
    let base = format!("http://{}", host.admin());
    let client = reqwest::Client::new();
    let put = |body: Vec<u8>| {
        client
            .put(format!("{base}/v1/plugins/adm-ready"))
            .bearer_auth(TOKEN)
            .body(body)
            .send()
    };
    assert_eq!(put(b"garbage".to_vec()).await.expect("PUT").status(), 422);
    let ready = client
        .get(format!("{base}/readyz"))
        .send()
        .await
        .expect("GET");
    assert_eq!(ready.status(), 200, "the previous version serves");
    let body: Value = ready.json().await.expect("JSON");
    println!("{body}");
    assert_eq!(body["pipelines"]["adm-ready"], "ok");
    let refused = body["refused"]["adm-ready"].as_str().unwrap_or_default();
    assert!(refused.contains("not a WebAssembly file"), "{body}");
    assert!(!refused.contains(&*workspace().to_string_lossy()), "{body}");
    let good = std::fs::read(plugin_wasm("payments")).expect("read");
    assert_eq!(put(good).await.expect("PUT").status(), 200);
    let body: Value = client
        .get(format!("{base}/readyz"))
        .send()
        .await
        .expect("GET")
        .json()
        .await
        .expect("JSON");
    assert_eq!(body["refused"], serde_json::json!({}), "{body}");
    host.stop().await;
}

/// `/readyz` is JSON and names every pipeline, healthy ones as `ok`; with Redis gone it
/// says why on one line, without Redis's address.
#[tokio::test]
async fn readyz_lists_every_pipeline() {
    let mut redis = RedisServer::start().expect("redis");
    let host = daemon(&redis, defaults, &[payments("adm-a"), echo("adm-b")]).await;
    let ready = reqwest::get(format!("http://{}/readyz", host.admin()))
        .await
        .expect("GET");
    assert_eq!(ready.status(), 200);
    assert_eq!(ready.headers()["content-type"], "application/json");
    let body: Value = ready.json().await.expect("JSON");
    println!("{body}");
    assert_eq!(
        body["pipelines"],
        serde_json::json!({ "adm-a": "ok", "adm-b": "ok" })
    );
    assert_eq!(
        (body["redis"].clone(), body["plugins"].clone()),
        (Value::Bool(true), Value::Bool(true))
    );
    assert!(body.get("redis_error").is_none(), "{body}");
    let port = redis.port().to_string();
    redis.kill();
    let url = format!("http://{}/readyz", host.admin());
    let body = eventually("readyz to fail", Duration::from_secs(15), || {
        let url = url.clone();
        async move {
            let ready = reqwest::get(url).await.ok()?;
            (ready.status() == 503).then_some(ready.json::<Value>().await.ok()?)
        }
    })
    .await;
    println!("{body}");
    assert_eq!(body["redis"], false);
    let why = body["redis_error"].as_str().expect("redis_error");
    assert!(why.contains("redis"), "{body}");
    assert!(!why.contains(&port) && !why.contains('\n'), "{body}");
    host.shutdown.cancel();
}

/// An upload stores the new version over the plugin file with the file's mode kept.
#[tokio::test]
async fn an_upload_keeps_the_plugin_files_mode() {
    use std::os::unix::fs::PermissionsExt;
    let redis = RedisServer::start().expect("redis");
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("payments.wasm");
    std::fs::copy(plugin_wasm("payments"), &file).expect("copy");
    let tagged = workspace().join("target/plugins/payments_tag_a.wasm");
    let host = daemon(
        &redis,
        defaults,
        &[payments("adm-mode").plugin(file.display())],
    )
    .await;
    let client = reqwest::Client::new();
    let url = format!("http://{}/v1/plugins/adm-mode", host.admin());
    for (mode, source) in [(0o644, &tagged), (0o640, &plugin_wasm("payments"))] {
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).expect("chmod");
        let body = std::fs::read(source).expect("read");
        let answer = client
            .put(&url)
            .bearer_auth(TOKEN)
            .body(body.clone())
            .send()
            .await
            .expect("PUT");
        assert_eq!(answer.status(), 200);
        assert_eq!(std::fs::read(&file).expect("read"), body, "stored");
        let now = std::fs::metadata(&file).expect("stat").permissions().mode() & 0o777;
        assert_eq!(now, mode, "mode {now:o}, was {mode:o}");
    }
    host.stop().await;
}

/// Every series in `/metrics` has a `# HELP` line.
#[tokio::test]
async fn every_metric_has_help() {
    let TestContext { redis, mut con } = TestContext::new().await;
    let host = daemon(&redis, defaults, &[payments("adm-help")]).await;
    add_orders(&mut con, 20, 2).await;
    wait_len(&con, "ORDERS_STREAM:dead", 2).await;
    wait_len(&con, "PAYMENTS_STREAM", 20).await;
    let text = reqwest::get(format!("http://{}/metrics", host.admin()))
        .await
        .expect("GET")
        .text()
        .await
        .expect("text");
    let typed: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .collect();
    assert!(typed.len() > 10, "{text}");
    let missing: Vec<&&str> = typed
        .iter()
        .filter(|name| !text.contains(&format!("# HELP {name} ")))
        .collect();
    assert!(missing.is_empty(), "no # HELP for {missing:?}");
    host.stop().await;
}

/// The dashboard in headless Chromium: without the token it says dead letters need it;
/// with it (kept for the tab across a reload) it lists them; with Redis gone it says
/// they cannot be read, with the daemon's answer, rather than that the daemon cannot be
/// reached, and "replay all" is disabled. Screenshot:
/// `target/test-artifacts/dashboard-admin.png`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_with_the_token_and_with_redis_down() {
    let TestContext { mut redis, mut con } = TestContext::new().await;
    let host = daemon(&redis, defaults, &[payments("adm-dash")]).await;
    add_orders(&mut con, 0, 2).await;
    wait_len(&con, "ORDERS_STREAM:dead", 2).await;
    let artifacts = workspace().join("target/test-artifacts");
    std::fs::create_dir_all(&artifacts).expect("artifacts dir");
    let screenshot = artifacts.join("dashboard-admin.png");
    let _ = std::fs::remove_file(&screenshot);
    let base = format!("http://{}", host.admin());
    let _turn = browser_turn().await;
    let mut node = browser("dashboard-admin.mjs")
        .args([base.as_str(), TOKEN, "adm-dash"])
        .arg(&screenshot)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run node (scripts/setup.sh installs Chromium and playwright-core)");
    let stdout = node.stdout.take().expect("stdout");
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let read = async {
        while let Some(line) = lines.next_line().await.expect("read") {
            println!("{line}");
            if line == "kill redis" {
                redis.kill();
            }
        }
        node.wait().await.expect("wait")
    };
    let status = tokio::time::timeout(Duration::from_secs(90), read)
        .await
        .expect("the browser check ends within 90 s");
    assert!(status.success(), "the browser check failed");
    assert!(screenshot.is_file());
    host.shutdown.cancel();
}

/// With Redis out of memory (`maxmemory 1`) and an entry waiting, the pipeline's error
/// and last error, and `/readyz`'s reasons, say what Redis refused without a script's
/// SHA or line; with Redis gone, they do not say where it was.
#[tokio::test]
async fn open_answers_carry_no_script_or_redis_internals() {
    let TestContext { mut redis, mut con } = TestContext::new().await;
    let host = daemon(&redis, defaults, &[payments("adm-oom")]).await;
    let base = format!("http://{}", host.admin());
    let client = reqwest::Client::new();
    let post = |action: &str| {
        client
            .post(format!("{base}/v1/pipelines/adm-oom/{action}"))
            .bearer_auth(TOKEN)
            .send()
    };
    assert_eq!(post("pause").await.expect("pause").status(), 200);
    add_orders(&mut con, 1, 0).await;
    let () = redis::cmd("CONFIG")
        .arg(&["SET", "maxmemory", "1"])
        .query_async(&mut con)
        .await
        .expect("CONFIG SET");
    assert_eq!(post("resume").await.expect("resume").status(), 200);
    let open = || async {
        let get = |path: &str| client.get(format!("{base}{path}")).send();
        let listing = get("/v1/pipelines").await.ok()?.text().await.ok()?;
        let one = get("/v1/pipelines/adm-oom").await.ok()?.text().await.ok()?;
        let ready = get("/readyz").await.ok()?.text().await.ok()?;
        Some([listing, one, ready])
    };
    // All three read after the failure: the listing is read first, and may predate it.
    let answers = eventually("the pipeline to fail", Duration::from_secs(15), || async {
        open()
            .await
            .filter(|a| a.iter().all(|text| text.contains("maxmemory")))
    })
    .await;
    let port = redis.port().to_string();
    for text in answers {
        println!("{text}");
        assert!(
            text.contains("'maxmemory'"),
            "says what Redis refused: {text}"
        );
        assert!(!has_sha(&text) && !text.contains("user_script"), "{text}");
    }
    redis.kill();
    let answers = eventually(
        "the pipeline to lose Redis",
        Duration::from_secs(15),
        || async {
            open()
                .await
                .filter(|a| a[2].contains("\"redis\":false") && !a[2].contains("maxmemory"))
        },
    )
    .await;
    for text in answers {
        println!("{text}");
        assert!(
            !text.contains(&port) && !text.contains("127.0.0.1"),
            "{text}"
        );
    }
    host.shutdown.cancel();
}
