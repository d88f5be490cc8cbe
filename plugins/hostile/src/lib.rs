//! A hostile handler for the sandbox tests: each message's `attack` field picks what it
//! tries. The host must contain every one of them to that message.
//!
//! Attacks that must be stopped by a limit: `loop`, `grow` (memory), `recurse` (stack),
//! `panic`, `sleep` (past the timeout), `flood` (100,000 outputs), `big` (one 50 MiB
//! output), `undeclared` (output to a stream not declared).
//!
//! A slow leak: `leak` keeps field `mb` MiB (default 1) for as long as the instance lives
//! and succeeds, reporting `outcome` = `leaked`; a reused instance grows call by call.
//!
//! Attacks on capabilities, which must fail inside the guest: `read-file`, `list-root`,
//! `env`, `socket` (to `127.0.0.1:<port>`). For these the handler succeeds and reports
//! `outcome` = `denied: ...` or `ALLOWED: ...` to config `target` (default `OUT`).
//!
//! Build: `cargo build -p hostile --target wasm32-wasip2 --profile plugin`

use std::hint::black_box;

use sluice_sdk::{Failure, Guest, HandlerResult, Message, Output};

struct Hostile;

thread_local! {
    /// What `leak` keeps: the instance's memory only grows.
    static LEAKED: std::cell::RefCell<Vec<Vec<u8>>> = const { std::cell::RefCell::new(Vec::new()) };
}

impl Guest for Hostile {
    fn handle(msg: Message) -> HandlerResult {
        let target = sluice_sdk::config_or("target", "OUT");
        let attack = msg.text("attack")?.to_owned();
        let report = |outcome: String| {
            Ok(vec![
                Output::to(&target)
                    .field("attack", &attack)
                    .field("outcome", outcome),
            ])
        };
        match attack.as_str() {
            "leak" => {
                let mb: usize = msg.parse("mb").unwrap_or(1);
                LEAKED.with(|l| l.borrow_mut().push(vec![1u8; mb << 20]));
                report("leaked".to_owned())
            }
            "loop" => loop {
                black_box(());
            },
            "grow" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 1 << 20]);
                    black_box(&hoard);
                }
            }
            "recurse" => Err(Failure::reject(format!("depth {}", recurse(0, u64::MAX)))),
            "panic" => panic!("hostile plugin panics on purpose"),
            "sleep" => {
                std::thread::sleep(std::time::Duration::from_secs(3600));
                report("woke up".into())
            }
            "flood" => Ok((0..100_000)
                .map(|i| Output::to(&target).field("i", i.to_string()))
                .collect()),
            "big" => Ok(vec![Output::to(&target).field("big", vec![7u8; 50 << 20])]),
            "undeclared" => Ok(vec![Output::to("NOT_DECLARED").field("x", "1")]),
            "read-file" => report(outcome(
                std::fs::read("/etc/passwd").map(|b| format!("{} bytes", b.len())),
            )),
            "list-root" => report(outcome(
                std::fs::read_dir("/").map(|d| format!("{} entries", d.count())),
            )),
            "env" => {
                let vars: Vec<String> = std::env::vars().map(|(k, _)| k).collect();
                report(if vars.is_empty() {
                    "denied: empty environment".into()
                } else {
                    format!("ALLOWED: {vars:?}")
                })
            }
            "socket" => {
                let port = msg.text("port")?;
                report(outcome(
                    std::net::TcpStream::connect(format!("127.0.0.1:{port}"))
                        .map(|_| "connected".to_owned()),
                ))
            }
            other => Err(Failure::reject(format!("unknown attack {other:?}"))),
        }
    }
}

fn outcome(result: std::io::Result<String>) -> String {
    match result {
        Ok(what) => format!("ALLOWED: {what}"),
        Err(e) => format!("denied: {e}"),
    }
}

/// Recurses until the Wasm call stack overflows: two calls per frame so that it cannot
/// become a loop, and no address-taken locals so that it uses the real call stack, not
/// the shadow stack in linear memory. `end` is never reached.
fn recurse(depth: u64, end: u64) -> u64 {
    if depth == end {
        return depth;
    }
    recurse(depth + 1, end) ^ recurse(depth + 2, end)
}

sluice_sdk::export!(Hostile);
