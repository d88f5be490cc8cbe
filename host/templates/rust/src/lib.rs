//! {{name}}: a Sluice handler.
//!
//! Copies every field of a message to the stream `OUT` (config key `target` overrides
//! it) and adds `handledBy`; rejects a message that has no fields. Replace with your own.
//!
//! Build: `sluice build` (writes {{file}}.wasm). Try: `sluice invoke {{file}}.wasm greeting=hello`

use sluice_sdk::{Failure, Guest, HandlerResult, Message, Output};

struct Handler;

impl Guest for Handler {
    fn handle(msg: Message) -> HandlerResult {
        if msg.fields.is_empty() {
            return Err(Failure::reject(format!("message {} has no fields", msg.id)));
        }
        sluice_sdk::log::debug(&format!("handling {} (attempt {})", msg.id, msg.attempt));
        let target = sluice_sdk::config_or("target", "OUT");
        let mut output = Output::to(target);
        for (name, value) in msg.fields {
            output = output.field(name, value);
        }
        Ok(vec![output.field("handledBy", "{{name}}")])
    }
}

sluice_sdk::export!(Handler);
