//! Outbound HTTP under a grant, through `sluice invoke`'s library call (no Redis): the
//! real `fetch` plugin (world `http-handler`) against the test kit's real HTTP server.
//! Each way around the grant is refused before any connection is made; each limit
//! holds. The daemon's side (admission, the idempotency header, traces, metrics, the
//! in-flight limit, crashes) is in `outbound_daemon.rs`.

use std::time::Duration;

use sluice::config::HttpConfig;
use sluice::invoke::{Invocation, Invoked, invoke};
use sluice_testkit::*;

/// Calls `fetch` once with `fields`, granting `allowed`, under `http`.
async fn fetch(fields: &[(&str, &str)], allowed: &[String], http: HttpConfig) -> Invoked {
    let mut call = Invocation {
        fields: fields
            .iter()
            .map(|(n, v)| (n.to_string(), v.as_bytes().to_vec()))
            .collect(),
        allowed_outbound_hosts: allowed.to_vec(),
        http,
        ..Default::default()
    };
    call.limits.timeout = Duration::from_secs(20);
    invoke(&plugin_wasm("fetch"), None, call)
        .await
        .expect("invoke")
}

/// The value of output field `name`.
fn out<'a>(invoked: &'a Invoked, name: &str) -> Option<&'a str> {
    let outputs = invoked.result.as_ref().expect("the handler succeeded");
    let (_, value) = outputs[0].fields.iter().find(|(n, _)| n == name)?;
    std::str::from_utf8(value).ok()
}

#[tokio::test]
async fn a_granted_origin_is_called_and_any_other_is_refused_before_connecting() {
    let server = HttpServer::start();
    let granted = [server.origin()];
    let ok = fetch(
        &[
            ("url", &server.url("/echo")),
            ("method", "POST"),
            ("body", "hi"),
        ],
        &granted,
        HttpConfig::default(),
    )
    .await;
    assert_eq!(out(&ok, "status"), Some("200"));
    assert_eq!(out(&ok, "body"), Some("hi"));
    let seen = server.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        seen[0].header("host"),
        Some(format!("127.0.0.1:{}", server.port).as_str())
    );

    // Another port of the same host, and the same port by name: not granted.
    let other = HttpServer::start();
    for url in [
        other.url("/echo"),
        format!("http://localhost:{}/echo", server.port),
    ] {
        let denied = fetch(&[("url", &url)], &granted, HttpConfig::default()).await;
        assert_eq!(out(&denied, "error"), Some("denied"), "{url}");
    }
    // Nothing granted at all: the plugin is refused before it runs.
    let call = Invocation {
        fields: vec![("url".into(), server.url("/echo").into_bytes())],
        ..Default::default()
    };
    let refused = invoke(&plugin_wasm("fetch"), None, call)
        .await
        .expect_err("no grant");
    assert!(
        format!("{refused:#}").contains("--allow-outbound"),
        "{refused:#}"
    );
    assert_eq!(
        server.seen().len(),
        1,
        "no request reached the server after the first"
    );
    assert!(other.seen().is_empty());
}

#[tokio::test]
async fn each_redirect_hop_is_checked_against_the_grant() {
    let (server, elsewhere) = (HttpServer::start(), HttpServer::start());
    let granted = [server.origin()];
    // A hop within the grant is followed.
    let inside = format!("/redirect?to={}", server.url("/echo"));
    let ok = fetch(
        &[("url", &server.url(&inside)), ("follow", "3")],
        &granted,
        HttpConfig::default(),
    )
    .await;
    assert_eq!(
        (out(&ok, "status"), out(&ok, "hops")),
        (Some("200"), Some("1"))
    );
    // A hop to a host not granted is refused; it never sees a request.
    let outside = format!("/redirect?to={}", elsewhere.url("/echo"));
    let refused = fetch(
        &[("url", &server.url(&outside)), ("follow", "3")],
        &granted,
        HttpConfig::default(),
    )
    .await;
    assert_eq!(
        (out(&refused, "error"), out(&refused, "hops")),
        (Some("denied"), Some("1"))
    );
    assert!(elsewhere.seen().is_empty());
}

#[tokio::test]
async fn host_headers_userinfo_and_other_schemes_are_never_sent() {
    let server = HttpServer::start();
    let granted = [server.origin()];
    // A Host header of the guest's own: wasi:http forbids it; nothing is sent.
    let host = fetch(
        &[
            ("url", &server.url("/echo")),
            ("header.host", "internal.example"),
        ],
        &granted,
        HttpConfig::default(),
    )
    .await;
    assert_eq!(out(&host, "error"), Some("failed"));
    // A user name and password in the URL.
    let userinfo = format!("http://user:secret@127.0.0.1:{}/echo", server.port);
    let refused = fetch(&[("url", &userinfo)], &granted, HttpConfig::default()).await;
    assert_eq!(out(&refused, "error"), Some("denied"));
    // Schemes other than http(s), even to a granted host and port.
    for url in [
        format!("ftp://127.0.0.1:{}/x", server.port),
        format!("gopher://127.0.0.1:{}/", server.port),
    ] {
        let other = fetch(
            &[("url", &url)],
            &["*://127.0.0.1:*".to_string()],
            HttpConfig::default(),
        )
        .await;
        assert!(out(&other, "error").is_some(), "{url} must fail");
    }
    assert!(server.seen().is_empty(), "{:?}", server.seen());
}

#[tokio::test]
async fn block_private_networks_checks_the_dialled_address() {
    let server = HttpServer::start();
    let port = server.port;
    let blocking = HttpConfig {
        block_private_networks: true,
        ..Default::default()
    };
    // A granted name that resolves to loopback, the loopback literal, and an
    // IPv4-mapped IPv6 loopback: each granted, each refused at the dial.
    for (grant, url) in [
        (
            format!("http://localhost:{port}"),
            format!("http://localhost:{port}/echo"),
        ),
        (server.origin(), server.url("/echo")),
        (
            format!("http://[::ffff:127.0.0.1]:{port}"),
            format!("http://[::ffff:127.0.0.1]:{port}/echo"),
        ),
    ] {
        let refused = fetch(&[("url", &url)], &[grant], blocking.clone()).await;
        assert_eq!(out(&refused, "error"), Some("denied"), "{url}");
    }
    assert!(server.seen().is_empty());
    // Off (the default), the same request goes through.
    let ok = fetch(
        &[("url", &server.url("/echo"))],
        &[server.origin()],
        HttpConfig::default(),
    )
    .await;
    assert_eq!(out(&ok, "status"), Some("200"));
}

#[tokio::test]
async fn timeouts_hold_and_a_guests_own_is_honoured_up_to_them() {
    let server = HttpServer::start();
    let granted = [server.origin()];
    let short = HttpConfig {
        first_byte_timeout: Duration::from_millis(300),
        between_bytes_timeout: Duration::from_millis(300),
        ..Default::default()
    };
    let hang = fetch(&[("url", &server.url("/hang"))], &granted, short.clone()).await;
    assert_eq!(out(&hang, "error"), Some("timeout"));
    assert!(
        hang.call_time < Duration::from_secs(5),
        "{:?}",
        hang.call_time
    );
    let slow = fetch(
        &[("url", &server.url("/slow/4/800"))],
        &granted,
        short.clone(),
    )
    .await;
    assert_eq!(out(&slow, "error"), Some("timeout"));
    // The guest asks for 100 ms where the pipeline allows 10 s.
    let own = fetch(
        &[("url", &server.url("/delay/2000")), ("timeout_ms", "100")],
        &granted,
        HttpConfig::default(),
    )
    .await;
    assert_eq!(out(&own, "error"), Some("timeout"));
    assert!(
        own.call_time < Duration::from_secs(1),
        "{:?}",
        own.call_time
    );
    // A guest asking for more than the pipeline allows gets the pipeline's.
    let more = fetch(
        &[("url", &server.url("/hang")), ("timeout_ms", "60000")],
        &granted,
        short,
    )
    .await;
    assert_eq!(out(&more, "error"), Some("timeout"));
    assert!(
        more.call_time < Duration::from_secs(5),
        "{:?}",
        more.call_time
    );
}

#[tokio::test]
async fn the_connect_timeout_covers_a_server_that_never_speaks_tls() {
    // Accepts connections and says nothing: the TLS handshake never ends.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let _held = std::thread::spawn(move || {
        let mut kept = Vec::new();
        for stream in listener.incoming().flatten() {
            kept.push(stream);
        }
    });
    let http = HttpConfig {
        connect_timeout: Duration::from_millis(300),
        ..Default::default()
    };
    let url = format!("https://127.0.0.1:{port}/");
    let stuck = fetch(
        &[("url", &url)],
        &[format!("https://127.0.0.1:{port}")],
        http,
    )
    .await;
    assert_eq!(out(&stuck, "error"), Some("timeout"));
    assert!(
        stuck.call_time < Duration::from_secs(5),
        "{:?}",
        stuck.call_time
    );
}

#[tokio::test]
async fn response_bodies_are_capped_declared_or_streamed() {
    let server = HttpServer::start();
    let granted = [server.origin()];
    let capped = HttpConfig {
        max_response_bytes: bytesize::ByteSize::kib(512),
        ..Default::default()
    };
    for path in ["/huge/2000000", "/huge/2000000?chunked"] {
        let over = fetch(&[("url", &server.url(path))], &granted, capped.clone()).await;
        assert_eq!(out(&over, "error"), Some("failed"), "{path}");
        let detail = out(&over, "detail")
            .unwrap_or_default()
            .to_ascii_lowercase();
        assert!(
            detail.contains("body size") || detail.contains("bodysize"),
            "{path}: {detail}"
        );
    }
    let under = fetch(&[("url", &server.url("/huge/100000"))], &granted, capped).await;
    assert_eq!(out(&under, "body").map(str::len), Some(100_000));
}

#[tokio::test]
async fn https_trusts_the_platform_roots_and_an_optional_ca_file() {
    let pki = Pki::new(&["localhost"]);
    let server = HttpServer::start_tls(&pki);
    let granted = [server.origin()];
    let untrusted = fetch(
        &[("url", &server.url("/echo"))],
        &granted,
        HttpConfig::default(),
    )
    .await;
    assert_eq!(
        out(&untrusted, "error"),
        Some("failed"),
        "{:?}",
        out(&untrusted, "detail")
    );
    let with_ca = HttpConfig {
        ca_file: Some(pki.path("ca.pem")),
        ..Default::default()
    };
    let ok = fetch(
        &[
            ("url", &server.url("/echo")),
            ("method", "POST"),
            ("body", "tls"),
        ],
        &granted,
        with_ca,
    )
    .await;
    assert_eq!(
        (out(&ok, "status"), out(&ok, "body")),
        (Some("200"), Some("tls"))
    );
}

#[tokio::test]
async fn waiting_on_a_response_is_not_cpu_time_for_throttling() {
    let server = HttpServer::start();
    let mut call = Invocation {
        fields: vec![("url".into(), server.url("/delay/400").into_bytes())],
        allowed_outbound_hosts: vec![server.origin()],
        ..Default::default()
    };
    call.limits.throttle_after = Duration::from_millis(50);
    call.limits.throttle_share = 0.1;
    let invoked = invoke(&plugin_wasm("fetch"), None, call)
        .await
        .expect("invoke");
    assert_eq!(out(&invoked, "status"), Some("200"));
    assert!(
        !invoked.throttled,
        "a call that waited 400 ms on I/O was throttled"
    );
}

#[tokio::test]
async fn the_idempotency_key_is_a_function_of_group_stream_and_id() {
    let server = HttpServer::start();
    let granted = [server.origin()];
    let key = |group: &str, stream: &str, id: &str| {
        let (group, stream, id) = (group.to_owned(), stream.to_owned(), id.to_owned());
        let url = server.url("/echo");
        let granted = granted.clone();
        async move {
            let call = Invocation {
                fields: vec![("url".into(), url.into_bytes())],
                allowed_outbound_hosts: granted.to_vec(),
                group,
                stream,
                id,
                idempotency_key_header: Some("Idempotency-Key".into()),
                ..Default::default()
            };
            let invoked = invoke(&plugin_wasm("fetch"), None, call)
                .await
                .expect("invoke");
            out(&invoked, "key").expect("key").to_owned()
        }
    };
    let first = key("g", "ORDERS", "1-1").await;
    assert_eq!(first.len(), 32);
    assert!(
        first
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    );
    assert_eq!(
        key("g", "ORDERS", "1-1").await,
        first,
        "same entry, same key"
    );
    for other in [
        key("h", "ORDERS", "1-1").await,
        key("g", "OTHER", "1-1").await,
        key("g", "ORDERS", "1-2").await,
    ] {
        assert_ne!(other, first);
    }
    // No collision by moving the separator: ("ab", "c") is not ("a", "bc").
    assert_ne!(key("ab", "c", "1-1").await, key("a", "bc", "1-1").await);
    // Sent in the configured header, the same value the handler saw.
    let sent: Vec<String> = server
        .seen()
        .iter()
        .filter_map(|s| s.header("idempotency-key").map(str::to_owned))
        .collect();
    assert!(sent.contains(&first), "{sent:?}");
}

#[tokio::test]
async fn waiting_on_a_response_counts_toward_the_entrys_timeout() {
    let server = HttpServer::start();
    let mut call = Invocation {
        fields: vec![("url".into(), server.url("/hang").into_bytes())],
        allowed_outbound_hosts: vec![server.origin()],
        ..Default::default()
    };
    call.limits.timeout = Duration::from_millis(500);
    let invoked = invoke(&plugin_wasm("fetch"), None, call)
        .await
        .expect("invoke");
    assert!(
        matches!(
            invoked.result,
            Err(sluice::message::HandlerError::Timeout(_))
        ),
        "{:?}",
        invoked.result
    );
    assert!(
        invoked.call_time < Duration::from_secs(3),
        "{:?}",
        invoked.call_time
    );
}

#[tokio::test]
async fn a_query_without_a_path_and_a_head_of_a_large_body_are_sent() {
    let server = HttpServer::start();
    let granted = [server.origin()];
    let query = format!("{}?x=1", server.origin());
    let ok = fetch(&[("url", &query)], &granted, HttpConfig::default()).await;
    assert_eq!(out(&ok, "status"), Some("200"), "{:?}", out(&ok, "detail"));
    assert_eq!(server.seen()[0].path, "/?x=1");
    // A HEAD's Content-Length is of a body that is not sent: no cap applies.
    let capped = HttpConfig {
        max_response_bytes: bytesize::ByteSize::kib(512),
        ..Default::default()
    };
    let head = fetch(
        &[("url", &server.url("/huge/2000000")), ("method", "HEAD")],
        &granted,
        capped,
    )
    .await;
    assert_eq!(
        out(&head, "status"),
        Some("200"),
        "{:?}",
        out(&head, "detail")
    );
    // A body goes with its length, not chunked.
    let post = fetch(
        &[
            ("url", &server.url("/echo")),
            ("method", "POST"),
            ("body", "abc"),
        ],
        &granted,
        HttpConfig::default(),
    )
    .await;
    assert_eq!(out(&post, "body"), Some("abc"));
    let last = server.seen().pop().expect("the POST");
    assert_eq!(last.header("content-length"), Some("3"), "{last:?}");
}
