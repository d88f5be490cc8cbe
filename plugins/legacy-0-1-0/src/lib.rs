//! A handler built against `sluice:plugin@0.1.0` (the WIT as it was before 0.1.1 added
//! `state`, kept in `wit/`), for the test that such components keep loading and running
//! unchanged. It echoes every field to `OUT` and logs a line through `host@0.1.0`.
//!
//! Build: `cargo build -p legacy-0-1-0 --target wasm32-wasip2 --profile plugin`

wit_bindgen::generate!({ world: "handler", path: "wit" });

use sluice::plugin::host::{Level, config, log};

struct Legacy;

impl Guest for Legacy {
    fn handle(msg: Message) -> Result<Vec<Output>, Failure> {
        log(Level::Info, &format!("legacy handler saw {}", msg.id));
        let mut fields = msg.fields;
        fields.push(("built-against".into(), b"0.1.0".to_vec()));
        Ok(vec![Output {
            target: config("target").unwrap_or_else(|| "OUT".into()),
            fields,
        }])
    }
}

export!(Legacy);
