//! A test handler that sends one HTTP request per entry (world `http-handler`), as each
//! entry's fields ask, and writes what came back to config `target` (default `OUT`).
//!
//! Fields read: `url` (required), `method` (default `GET`), `body`, `header.NAME` (sent
//! as header NAME), `timeout_ms` (the request's own timeouts), `follow` (follow up to
//! this many redirects: each hop is a new request, checked by the host again),
//! `on_error` (`retry`: fail the entry when the request fails; default: write `error`).
//!
//! Fields written: `status`, `body`, `error` (when it failed), `hops` (redirects
//! followed), `key` (the entry's idempotency key).
//!
//! With `leave = waiting` the request is sent and the call returns without waiting for
//! the response; with `leave = unread`, without reading the response body. Either way
//! what it left is kept in the instance (a handler that leaks), and the call writes
//! `left`.
//!
//! Build: `cargo build -p fetch --target wasm32-wasip2 --profile plugin`

use std::time::Duration;

use sluice_sdk::http::{Error, Request, Response};
use sluice_sdk::{Failure, Guest, HandlerResult, Message, Output};

struct Fetch;

impl Guest for Fetch {
    fn handle(msg: Message) -> HandlerResult {
        let target = sluice_sdk::config_or("target", "OUT");
        if let Some(how) = msg.get("leave") {
            let how = String::from_utf8_lossy(how).into_owned();
            leave(msg.text("url")?, &how)?;
            return Ok(vec![Output::to(target).field("left", how)]);
        }
        let key = msg.idempotency_key();
        let mut url = msg.text("url")?.to_owned();
        let follow: u32 = msg.get("follow").map_or(Ok(0), |_| msg.parse("follow"))?;
        let mut hops = 0;
        let outcome = loop {
            match request(&msg, &url)?.send() {
                Ok(response) if (300..400).contains(&response.status) && hops < follow => {
                    let location = response.header("location").unwrap_or_default();
                    url = String::from_utf8_lossy(location).into_owned();
                    hops += 1;
                }
                other => break other,
            }
        };
        let out = Output::to(target)
            .field("key", key)
            .field("hops", hops.to_string());
        match outcome {
            Ok(Response { status, body, .. }) => Ok(vec![
                out.field("status", status.to_string()).field("body", body),
            ]),
            Err(error) if msg.get("on_error") == Some(b"retry") => Err(error.into()),
            Err(error) => Ok(vec![
                out.field("error", kind(&error))
                    .field("detail", error.to_string()),
            ]),
        }
    }
}

fn request(msg: &Message, url: &str) -> Result<Request, Failure> {
    let method = msg
        .get("method")
        .map_or(Ok("GET"), |_| msg.text("method"))?;
    let mut request = Request::new(method, url);
    for (name, value) in &msg.fields {
        if let Some(header) = name.strip_prefix("header.") {
            request = request.header(header, value);
        }
    }
    if let Some(body) = msg.get("body") {
        request = request.body(body.to_vec());
    }
    if msg.get("timeout_ms").is_some() {
        request = request.timeout(Duration::from_millis(msg.parse("timeout_ms")?));
    }
    Ok(request)
}

std::thread_local! {
    /// What `leave` keeps alive across calls.
    static LEFT: std::cell::RefCell<Vec<Box<dyn std::any::Any>>> = Default::default();
}

/// Sends a GET of `url` and returns without waiting for the response (`waiting`) or
/// without reading its body (`unread`), keeping the handles.
fn leave(url: &str, how: &str) -> Result<(), Failure> {
    use sluice_sdk::bindings::wasi::http::outgoing_handler;
    use sluice_sdk::bindings::wasi::http::types::{Fields, OutgoingBody, OutgoingRequest, Scheme};
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| Failure::reject("http:// only"))?;
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let request = OutgoingRequest::new(Fields::new());
    let _ = request.set_scheme(Some(&Scheme::Http));
    let _ = request.set_authority(Some(authority));
    let _ = request.set_path_with_query(Some(if path.is_empty() { "/" } else { path }));
    let body = request.body().map_err(|()| Failure::reject("no body"))?;
    let future =
        outgoing_handler::handle(request, None).map_err(|e| Failure::retry(format!("{e:?}")))?;
    let _ = OutgoingBody::finish(body, None);
    if how == "unread" {
        future.subscribe().block();
        match future.get() {
            Some(Ok(Ok(response))) => LEFT.with(|l| l.borrow_mut().push(Box::new(response))),
            other => return Err(Failure::retry(format!("no response: {other:?}"))),
        }
    }
    LEFT.with(|l| l.borrow_mut().push(Box::new(future)));
    Ok(())
}

fn kind(error: &Error) -> &'static str {
    match error {
        Error::Denied => "denied",
        Error::Timeout => "timeout",
        Error::InvalidUrl(_) => "invalid_url",
        Error::Failed(_) => "failed",
    }
}

sluice_sdk::export!(Fetch);
