//! {{name}}: a Sluice handler that calls an HTTP service for each entry.
//!
//! POSTs the entry's fields as a JSON object to config `url` (default
//! `http://127.0.0.1:8080/`) with the entry's idempotency key in `Idempotency-Key`, and
//! writes the answer's status and body to the stream `OUT` (config `target` overrides
//! it). A service that answers 429 or 5xx, or cannot be reached, is tried again later
//! (`retry`); another 4xx dead-letters the entry (`reject`). Replace with your own.
//!
//! The pipeline must grant the service's origin:
//!     allowed_outbound_hosts = ["http://127.0.0.1:8080"]
//!
//! Build: `sluice build` (writes {{file}}.wasm).
//! Try:   `sluice invoke {{file}}.wasm --allow-outbound http://127.0.0.1:8080 greeting=hello`

use sluice_sdk::http::Request;
use sluice_sdk::{Failure, Guest, HandlerResult, Message, Output};

struct Handler;

impl Guest for Handler {
    fn handle(msg: Message) -> HandlerResult {
        let url = sluice_sdk::config_or("url", "http://127.0.0.1:8080/");
        let body: serde_json::Map<String, serde_json::Value> = msg
            .fields
            .iter()
            .map(|(name, value)| {
                let text = String::from_utf8_lossy(value).into_owned();
                (name.clone(), serde_json::Value::String(text))
            })
            .collect();
        // The same key on every delivery of this entry: the service can do its work once
        // even when this call is made again (a retry, a crash before the commit).
        let response = Request::post(&url)
            .header("content-type", "application/json")
            .header("idempotency-key", msg.idempotency_key())
            .body(serde_json::Value::Object(body).to_string())
            .send()
            .map_err(|e| Failure::retry(format!("{url} could not be reached: {e}")))?;
        match response.status {
            200..=299 => {}
            429 | 500..=599 => {
                return Err(Failure::retry(format!("{url} answered {}", response.status)));
            }
            status => return Err(Failure::reject(format!("{url} refused the entry ({status})"))),
        }
        let target = sluice_sdk::config_or("target", "OUT");
        Ok(vec![
            Output::to(target)
                .field("status", response.status.to_string())
                .field("body", response.body),
        ])
    }
}

sluice_sdk::export!(Handler);
