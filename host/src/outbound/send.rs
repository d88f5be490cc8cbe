//! One outgoing request, from the checks to the response head: the URL and `Host`, the
//! grant, DNS and the dialled address, TCP, TLS and HTTP/1.1 under the timeouts.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result};
use http::{Request, Response};
use http_body_util::BodyExt;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody};

use super::body::Capped;
use super::grant::{Origin, Scheme, normal_name};
use super::{CallContext, Outbound};
use crate::trace_context::{ClientSpan, SpanContext};

/// What the `send_request` hook returns: the response head (its body streams), and a
/// future for errors of the connection after it (none here: the connection is driven by
/// a task of its own, and its errors end the body).
pub type Sent = Result<(Response<WasiBody>, IoFuture), Error>;
/// The second half of [`Sent`].
pub type IoFuture = Box<dyn Future<Output = Result<(), Error>> + Send>;

/// The effective timeouts of one request: the guest's, up to the pipeline's.
#[derive(Debug, Clone, Copy)]
struct Timeouts {
    connect: Duration,
    first_byte: Duration,
    between_bytes: Duration,
}

impl Outbound {
    /// Sends `request` for a handler call, or refuses it (see the module doc).
    pub fn send(
        self: &Arc<Self>,
        request: Request<WasiBody>,
        options: Option<RequestOptions>,
        call: CallContext,
    ) -> Box<dyn Future<Output = Sent> + Send> {
        let this = self.clone();
        Box::new(async move {
            let ended = call.ended.clone();
            tokio::select! {
                sent = this.exchange(request, options, call) => sent,
                // The call is over: nobody waits for this response any more.
                () = ended.cancelled() => Err(Error::ConnectionTerminated),
            }
        })
    }

    async fn exchange(
        self: Arc<Self>,
        mut request: Request<WasiBody>,
        options: Option<RequestOptions>,
        call: CallContext,
    ) -> Sent {
        let started = (Instant::now(), SystemTime::now());
        let origin = match check(&request) {
            Ok(origin) => origin,
            Err(why) => return Err(self.deny(&target_text(&request), &why)),
        };
        let Some(entry) = self.settings.allowed.allows(&origin) else {
            let why = "not in the pipeline's allowed_outbound_hosts (add the origin to grant it)";
            return Err(self.deny(&origin.to_string(), why));
        };
        let label: Arc<str> = entry.as_str().into();
        self.metrics.sent(&label);
        let span = self.decorate(&mut request, &call);
        let method = request.method().to_string();
        let head = request.method() == http::Method::HEAD;
        let url = format!("{origin}{}", request.uri().path());
        let permit = self.in_flight.clone().acquire_owned().await;
        let permit = permit.map_err(|_| Error::ConnectionLimitReached)?;
        let timeouts = self.timeouts(options);
        let result = self.round_trip(&origin, request, timeouts).await;
        let elapsed = started.0.elapsed();
        self.metrics
            .finished(&label, elapsed, result.as_ref().err());
        if let (Some(span), Some(spans)) = (span, &call.spans) {
            let status = result.as_ref().ok().map(|(r, _)| r.status().as_u16());
            let error = result.as_ref().err().map(|e| error_kind(e).to_owned());
            let (start, end) = (started.1, started.1 + elapsed);
            let client = ClientSpan {
                span: span.0,
                parent: span.1,
                start,
                end,
                method,
                url,
                origin: origin.to_string(),
                status,
                error,
            };
            crate::lock::lock(spans).push(client);
        }
        let (response, sender) = result?;
        let pool = self.pool.clone();
        let key = origin.to_string();
        let reuse = Box::new(move || pool.put(key, sender));
        self.capped(
            response,
            label,
            (permit, reuse),
            (timeouts, head, call.ended),
        )
    }

    /// The response with its body under the cap and the between-bytes timeout; one
    /// whose `Content-Length` is over the cap fails now.
    fn capped(
        &self,
        response: Response<hyper::body::Incoming>,
        label: Arc<str>,
        held: (tokio::sync::OwnedSemaphorePermit, Box<dyn FnOnce() + Send>),
        (timeouts, head, ended): (Timeouts, bool, tokio_util::sync::CancellationToken),
    ) -> Sent {
        let cap = self.settings.max_response_bytes;
        let declared = response
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        // A HEAD's, a 1xx's, a 204's and a 304's length is of a body that is not sent.
        let bodiless = head || matches!(response.status().as_u16(), 100..=199 | 204 | 304);
        if !bodiless && declared.is_some_and(|n| n > cap) {
            self.metrics.error(&label, "body_too_large");
            return Err(Error::HttpResponseBodySize(declared));
        }
        let metrics = self.metrics.clone();
        let response = response.map(|incoming| {
            let limits = (cap, timeouts.between_bytes);
            Capped::new(incoming, limits, held, ended, move |kind| {
                metrics.error(&label, kind)
            })
            .boxed_unsync()
        });
        Ok((response, Box::new(async { Ok(()) })))
    }

    /// Refuses a request: logged (rate-limited), counted, and the guest's error.
    fn deny(&self, target: &str, why: &str) -> Error {
        self.refusals.refused(target, why);
        Error::HttpRequestDenied
    }

    /// Adds the idempotency key and, for a traced entry, `traceparent` naming the
    /// request's own client span; returns that span and its parent.
    fn decorate(
        &self,
        request: &mut Request<WasiBody>,
        call: &CallContext,
    ) -> Option<(SpanContext, [u8; 8])> {
        if let (Some(name), Some(key)) = (&self.header, &call.idempotency_key)
            && let Ok(value) = http::HeaderValue::from_str(key)
        {
            request.headers_mut().insert(name.clone(), value);
        }
        let parent = call.parent?;
        let span = SpanContext {
            span_id: crate::trace_context::random_span_id(),
            ..parent
        };
        if let Ok(value) = http::HeaderValue::from_str(&span.to_string()) {
            request
                .headers_mut()
                .insert(crate::trace_context::TRACEPARENT, value);
        }
        Some((span, parent.span_id))
    }

    /// The request to its response head on an idle connection to its origin or a new
    /// one (dialled within the connect timeout); the head within the first-byte timeout.
    async fn round_trip(
        &self,
        origin: &Origin,
        mut request: Request<WasiBody>,
        timeouts: Timeouts,
    ) -> Result<(Response<hyper::body::Incoming>, SendRequest<WasiBody>), Error> {
        let mut sender = match self.pool.take(&origin.to_string()).await {
            Some(sender) => sender,
            None => self.open(origin, timeouts.connect).await?,
        };
        // On the wire the request line holds the path; the authority is in `Host`.
        *request.uri_mut() = origin_form(request.uri())?;
        let response = tokio::time::timeout(timeouts.first_byte, sender.send_request(request));
        match response.await {
            Ok(Ok(response)) => Ok((response, sender)),
            Ok(Err(e)) if e.is_timeout() => Err(Error::HttpResponseTimeout),
            Ok(Err(e)) => Err(Error::from(e)),
            Err(_) => Err(Error::ConnectionReadTimeout),
        }
    }

    /// A new HTTP/1.1 connection to `origin`, its I/O driven by a task of its own.
    async fn open(
        &self,
        origin: &Origin,
        timeout: Duration,
    ) -> Result<SendRequest<WasiBody>, Error> {
        let open = async {
            let stream = self.connector.dial(origin).await?;
            let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .map_err(Error::from)?;
            tokio::spawn(async move {
                if let Err(e) = conn.await {
                    tracing::debug!(error = %e, "outbound connection ended with an error");
                }
            });
            Ok(sender)
        };
        tokio::time::timeout(timeout, open)
            .await
            .map_err(|_| Error::ConnectionTimeout)?
    }

    fn timeouts(&self, options: Option<RequestOptions>) -> Timeouts {
        let s = &self.settings;
        let pick = |guest: Option<Duration>, ours: Duration| guest.map_or(ours, |g| g.min(ours));
        let o = options.unwrap_or_default();
        Timeouts {
            connect: pick(o.connect_timeout, s.connect_timeout),
            first_byte: pick(o.first_byte_timeout, s.first_byte_timeout),
            between_bytes: pick(o.between_bytes_timeout, s.between_bytes_timeout),
        }
    }
}

/// The origin of `uri`, if it may be sent at all: an http or https scheme and an
/// authority without user name or password.
pub fn origin_of(uri: &http::Uri) -> Result<Origin, String> {
    let scheme = uri.scheme_str().unwrap_or_default();
    let scheme =
        Scheme::parse(scheme).ok_or_else(|| format!("scheme {scheme:?} is not http or https"))?;
    let authority = uri.authority().ok_or("the URL has no host")?;
    if authority.as_str().contains('@') {
        return Err("a user name or password in the URL is not sent (use a header)".into());
    }
    let host = authority.host();
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    Ok(Origin {
        scheme,
        host: normal_name(host),
        port: authority.port_u16().unwrap_or(scheme.default_port()),
    })
}

/// The request's origin, if its URL and `Host` may be sent at all: [`origin_of`], and one
/// `Host` equal to the URL's authority.
fn check(request: &Request<WasiBody>) -> Result<Origin, String> {
    let origin = origin_of(request.uri())?;
    let authority = request.uri().authority().ok_or("the URL has no host")?;
    let mut hosts = request.headers().get_all(http::header::HOST).iter();
    let host_header = hosts.next().map(|h| h.as_bytes());
    let same = host_header.is_some_and(|h| h.eq_ignore_ascii_case(authority.as_str().as_bytes()));
    if !same || hosts.next().is_some() {
        return Err(format!(
            "the Host header differs from the URL's authority {authority}"
        ));
    }
    Ok(origin)
}

/// The request target in origin form (RFC 9112 §3.2.1): the path and query, `/` for an
/// empty path (`http://host?x=1` is `/?x=1`).
fn origin_form(uri: &http::Uri) -> Result<http::Uri, Error> {
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let path = if path.starts_with('/') {
        path.to_owned()
    } else {
        format!("/{path}")
    };
    http::Uri::try_from(path).map_err(|_| Error::HttpRequestUriInvalid)
}

/// The URL as far as it can be shown for a request refused before it had an origin.
fn target_text(request: &Request<WasiBody>) -> String {
    let uri = request.uri();
    format!(
        "{}://{}",
        uri.scheme_str().unwrap_or("?"),
        uri.authority().map_or("?", |a| a.host())
    )
}

/// The `error.type` of a failed request, as its span and metrics name it.
pub fn error_kind(error: &Error) -> &'static str {
    match error {
        Error::HttpRequestDenied | Error::DestinationIpProhibited => "denied",
        Error::DnsError { .. } | Error::DnsTimeout | Error::DestinationNotFound => "dns",
        Error::Connect(_) | Error::ConnectionRefused | Error::DestinationUnavailable => "connect",
        Error::ConnectionTimeout => "connect_timeout",
        Error::ConnectionReadTimeout | Error::HttpResponseTimeout => "response_timeout",
        Error::Tls(_) | Error::TlsCertificateError | Error::TlsProtocolError => "tls",
        Error::HttpResponseBodySize(_) => "body_too_large",
        _ => "protocol",
    }
}

/// rustls's client config: the platform's roots (`rustls-native-certs`) plus the PEM
/// certificates of `ca` (the file's path, for messages, and its contents).
pub fn tls_config(ca: Option<(&std::path::Path, &[u8])>) -> Result<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for error in &native.errors {
        tracing::debug!(error = %error, "a platform CA certificate could not be loaded");
    }
    roots.add_parsable_certificates(native.certs);
    if let Some((path, pem)) = ca {
        let mut added = 0;
        for cert in <rustls::pki_types::CertificateDer as PemObject>::pem_slice_iter(pem) {
            let cert = cert.with_context(|| {
                format!("http.ca_file {} is not PEM certificates", path.display())
            })?;
            roots.add(cert).with_context(|| {
                format!(
                    "http.ca_file {}: a certificate is not valid",
                    path.display()
                )
            })?;
            added += 1;
        }
        anyhow::ensure!(
            added > 0,
            "http.ca_file {} holds no PEM certificate",
            path.display()
        );
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("rustls has no safe protocol versions")?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// The contents of the CA file at `path` (a regular file of at most 1 MiB).
pub fn read_ca(path: &std::path::Path) -> Result<Vec<u8>> {
    crate::files::read_regular(path, 1 << 20)
        .map_err(|e| anyhow::anyhow!("cannot read http.ca_file {}: {e}", path.display()))
}
