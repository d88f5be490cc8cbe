//! A test handler whose behaviour each message chooses with its `action` field.
//!
//! - no `action`: echo every field, unchanged, to config `target` (default `OUT`);
//! - `retry` / `reject`: fail that way; `trap`: panic; `spin`: loop forever;
//! - `sleep` with field `ms`: wait that long (a slow handler), then echo the fields plus
//!   `seen-attempt`;
//! - `undeclared`: output to the stream `NOT_DECLARED`; `none`: succeed with no output;
//! - `succeed-on` with field `attempt` = N: retry until delivery N, then echo the
//!   fields plus `seen-attempt`;
//! - `config` with field `key`: output field `reversed`, the value of `config(key)`
//!   reversed (tests of secrets check what the handler saw without the secret itself
//!   appearing in an output).
//!
//! Build: `cargo build -p echo --target wasm32-wasip2 --profile plugin`

use sluice_sdk::{Failure, Guest, HandlerResult, Message, Output};

struct Echo;

impl Guest for Echo {
    fn handle(msg: Message) -> HandlerResult {
        let target = sluice_sdk::config_or("target", "OUT");
        let echo = |msg: Message| Output {
            target: target.clone(),
            fields: msg.fields,
        };
        match msg.get("action") {
            None => Ok(vec![echo(msg)]),
            Some(b"retry") => Err(Failure::retry("asked to retry")),
            Some(b"reject") => Err(Failure::reject("asked to reject")),
            Some(b"trap") => panic!("asked to trap"),
            Some(b"spin") => spin(),
            Some(b"sleep") => {
                let ms: u64 = msg.parse("ms")?;
                std::thread::sleep(std::time::Duration::from_millis(ms));
                let attempt = msg.attempt.to_string();
                Ok(vec![echo(msg).field("seen-attempt", attempt)])
            }
            Some(b"undeclared") => Ok(vec![Output::to("NOT_DECLARED").field("x", "1")]),
            Some(b"none") => Ok(Vec::new()),
            Some(b"config") => {
                let key = msg.text("key")?;
                let value = sluice_sdk::config(key).unwrap_or_default();
                let reversed: String = value.chars().rev().collect();
                Ok(vec![
                    Output::to(target.as_str()).field("reversed", reversed),
                ])
            }
            Some(b"succeed-on") => {
                let wanted: u32 = msg.parse("attempt")?;
                if msg.attempt < wanted {
                    return Err(Failure::retry(format!(
                        "attempt {} of {wanted}",
                        msg.attempt
                    )));
                }
                let attempt = msg.attempt.to_string();
                Ok(vec![echo(msg).field("seen-attempt", attempt)])
            }
            Some(other) => Err(Failure::reject(format!(
                "unknown action {:?}",
                String::from_utf8_lossy(other)
            ))),
        }
    }
}

fn spin() -> ! {
    let mut x: u64 = 0;
    loop {
        x = std::hint::black_box(x.wrapping_add(1));
    }
}

sluice_sdk::export!(Echo);
