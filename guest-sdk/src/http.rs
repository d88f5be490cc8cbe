//! Outgoing HTTP requests, over the standard `wasi:http/outgoing-handler` interface.
//!
//! The pipeline must grant the origin (`allowed_outbound_hosts`); a request to any other
//! fails with [`Error::Denied`] before a connection is made. The host's limits apply
//! (`[pipeline.http]`: timeouts, response size, requests in flight), and the whole call
//! stays within the entry's `limits.timeout`.
//!
//! ```ignore
//! use sluice_sdk::http;
//!
//! let response = http::Request::post("https://payments.internal/charges")
//!     .header("content-type", "application/json")
//!     .header("idempotency-key", msg.idempotency_key())
//!     .body(r#"{"amount": 42}"#)
//!     .send()?;
//! if response.status >= 500 {
//!     return Err(Failure::retry(format!("provider answered {}", response.status)));
//! }
//! ```

use std::time::Duration;

use crate::Failure;
use crate::bindings::wasi::http::outgoing_handler;
use crate::bindings::wasi::http::types::{
    ErrorCode, Fields, IncomingBody, Method, OutgoingBody, OutgoingRequest, RequestOptions, Scheme,
};
use crate::bindings::wasi::io::streams::StreamError;

/// A request to send.
#[derive(Debug, Clone)]
pub struct Request {
    method: String,
    url: String,
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
    timeout: Option<Duration>,
}

/// A response: the status, the headers and the whole body.
#[derive(Debug, Clone)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The headers, names in lower case, in order.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The body.
    pub body: Vec<u8>,
}

/// Why a request got no response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The pipeline does not grant the origin (or the URL may not be sent).
    Denied,
    /// A timeout: connecting, waiting for the response, or between parts of its body.
    Timeout,
    /// The URL could not be understood.
    InvalidUrl(String),
    /// Anything else: DNS, connection refused, TLS, a body over the host's limit... (the
    /// wasi:http `error-code`).
    Failed(String),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Denied => f.write_str("the request was denied: its origin is not granted (allowed_outbound_hosts) or is a private address the pipeline blocks (block_private_networks)"),
            Error::Timeout => f.write_str("the request timed out"),
            Error::InvalidUrl(why) => write!(f, "invalid URL: {why}"),
            Error::Failed(why) => write!(f, "the request failed: {why}"),
        }
    }
}

impl std::error::Error for Error {}

/// A request that failed is a reason to try the entry again later.
impl From<Error> for Failure {
    fn from(error: Error) -> Self {
        match error {
            Error::Denied | Error::InvalidUrl(_) => Failure::Reject(error.to_string()),
            _ => Failure::Retry(error.to_string()),
        }
    }
}

impl Request {
    /// A request with `method` (`GET`, `POST`...) to `url` (`https://host[:port]/path?query`).
    pub fn new(method: &str, url: &str) -> Self {
        Self {
            method: method.to_owned(),
            url: url.to_owned(),
            headers: Vec::new(),
            body: Vec::new(),
            timeout: None,
        }
    }

    /// A `GET` of `url`.
    pub fn get(url: &str) -> Self {
        Self::new("GET", url)
    }

    /// A `POST` to `url`.
    pub fn post(url: &str) -> Self {
        Self::new("POST", url)
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: impl AsRef<[u8]>) -> Self {
        self.headers
            .push((name.to_owned(), value.as_ref().to_vec()));
        self
    }

    /// Sets the body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// Waits at most `timeout` to connect, for the response head, and between parts of
    /// the body (each at most the pipeline's own).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Sends the request and reads the whole response.
    pub fn send(self) -> Result<Response, Error> {
        let (scheme, authority, path) = split_url(&self.url)?;
        let mut headers = self.headers.clone();
        // A known length, not chunked: some servers read a body only by its length.
        let has_length = headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("content-length"));
        if !self.body.is_empty() && !has_length {
            headers.push((
                "content-length".into(),
                self.body.len().to_string().into_bytes(),
            ));
        }
        let headers = Fields::from_list(&headers)
            .map_err(|e| Error::Failed(format!("header not allowed: {e:?}")))?;
        let request = OutgoingRequest::new(headers);
        let method = match self.method.to_ascii_uppercase().as_str() {
            "GET" => Method::Get,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "DELETE" => Method::Delete,
            "PATCH" => Method::Patch,
            "HEAD" => Method::Head,
            "OPTIONS" => Method::Options,
            other => Method::Other(other.to_owned()),
        };
        let invalid = |what: &str| Error::InvalidUrl(format!("{what} of {}", self.url));
        request
            .set_method(&method)
            .map_err(|()| invalid("method"))?;
        request
            .set_scheme(Some(&scheme))
            .map_err(|()| invalid("scheme"))?;
        request
            .set_authority(Some(authority))
            .map_err(|()| invalid("authority"))?;
        request
            .set_path_with_query(Some(path))
            .map_err(|()| invalid("path"))?;
        let body = request
            .body()
            .map_err(|()| Error::Failed("no request body".into()))?;
        let future = outgoing_handler::handle(request, self.options()).map_err(error)?;
        write_body(&body, &self.body)?;
        OutgoingBody::finish(body, None).map_err(error)?;
        future.subscribe().block();
        let response = match future.get() {
            Some(Ok(Ok(response))) => response,
            Some(Ok(Err(code))) => return Err(error(code)),
            _ => return Err(Error::Failed("no response".into())),
        };
        let status = response.status();
        let headers = response.headers().entries();
        let body = response
            .consume()
            .map_err(|()| Error::Failed("no response body".into()))?;
        let bytes = read_body(&body)?;
        IncomingBody::finish(body);
        Ok(Response {
            status,
            headers,
            body: bytes,
        })
    }

    fn options(&self) -> Option<RequestOptions> {
        let timeout = self.timeout?;
        let options = RequestOptions::new();
        let nanos = Some(timeout.as_nanos().min(u64::MAX as u128) as u64);
        let _ = options.set_connect_timeout(nanos);
        let _ = options.set_first_byte_timeout(nanos);
        let _ = options.set_between_bytes_timeout(nanos);
        Some(options)
    }
}

impl Response {
    /// The body as UTF-8 text.
    pub fn text(&self) -> Result<&str, Failure> {
        std::str::from_utf8(&self.body)
            .map_err(|_| Failure::Reject("the response body is not UTF-8".into()))
    }

    /// The first header named `name` (any case).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }
}

/// `scheme://authority/path?query` in three parts.
fn split_url(url: &str) -> Result<(Scheme, &str, &str), Error> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| Error::InvalidUrl(format!("{url:?} has no scheme")))?;
    let scheme = match scheme.to_ascii_lowercase().as_str() {
        "http" => Scheme::Http,
        "https" => Scheme::Https,
        other => Scheme::Other(other.to_owned()),
    };
    let split = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(split);
    if authority.is_empty() {
        return Err(Error::InvalidUrl(format!("{url:?} has no host")));
    }
    Ok((scheme, authority, if path.is_empty() { "/" } else { path }))
}

fn write_body(body: &OutgoingBody, bytes: &[u8]) -> Result<(), Error> {
    if bytes.is_empty() {
        return Ok(());
    }
    let stream = body
        .write()
        .map_err(|()| Error::Failed("no body stream".into()))?;
    // `blocking-write-and-flush` takes at most 4096 bytes a call.
    for chunk in bytes.chunks(4096) {
        stream
            .blocking_write_and_flush(chunk)
            .map_err(|e| Error::Failed(format!("writing the body: {e:?}")))?;
    }
    Ok(())
}

fn read_body(body: &IncomingBody) -> Result<Vec<u8>, Error> {
    let stream = body
        .stream()
        .map_err(|()| Error::Failed("no body stream".into()))?;
    let mut bytes = Vec::new();
    loop {
        match stream.blocking_read(64 * 1024) {
            Ok(chunk) => bytes.extend_from_slice(&chunk),
            Err(StreamError::Closed) => return Ok(bytes),
            Err(StreamError::LastOperationFailed(e)) => {
                let code = crate::bindings::wasi::http::types::http_error_code(&e);
                return Err(code.map_or_else(|| body_error(&e.to_debug_string()), error));
            }
        }
    }
}

/// A body error the host gave as text only (wasmtime 48 passes the body's errors as
/// text): its first line, a timeout told apart.
fn body_error(text: &str) -> Error {
    let line = text.lines().next().unwrap_or(text).trim().to_owned();
    if line.to_ascii_lowercase().contains("timeout") || line.contains("timed out") {
        Error::Timeout
    } else {
        Error::Failed(line)
    }
}

fn error(code: ErrorCode) -> Error {
    match code {
        ErrorCode::HttpRequestDenied | ErrorCode::DestinationIpProhibited => Error::Denied,
        ErrorCode::ConnectionTimeout
        | ErrorCode::ConnectionReadTimeout
        | ErrorCode::HttpResponseTimeout => Error::Timeout,
        other => Error::Failed(format!("{other:?}")),
    }
}
