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
//! Build: `cargo build -p fetch --target wasm32-wasip2 --profile plugin`

use std::time::Duration;

use sluice_sdk::http::{Error, Request, Response};
use sluice_sdk::{Failure, Guest, HandlerResult, Message, Output};

struct Fetch;

impl Guest for Fetch {
    fn handle(msg: Message) -> HandlerResult {
        let target = sluice_sdk::config_or("target", "OUT");
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

fn kind(error: &Error) -> &'static str {
    match error {
        Error::Denied => "denied",
        Error::Timeout => "timeout",
        Error::InvalidUrl(_) => "invalid_url",
        Error::Failed(_) => "failed",
    }
}

sluice_sdk::export!(Fetch);
