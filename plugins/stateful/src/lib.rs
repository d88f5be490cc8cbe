//! A test handler for handler state, driven by its input: each field is a state call, in
//! order, and the results go to `OUT` (config `target`).
//!
//! - `incr` = `KEY DELTA`: adds; the output gets `incr:KEY` = the sum;
//! - `add` = `KEY DELTA`: adds at the commit, unread;
//! - `set` = `KEY VALUE`, `delete` = `KEY`, `hset` = `KEY FIELD VALUE`;
//! - `get` = `KEY`: the output gets `get:KEY` = the value (or `(nil)`);
//! - `hgetall` = `KEY`: the output gets `hgetall:KEY` = `f=v,f=v`;
//! - `sleep` = `MS`: waits (to widen the window for a conflicting write);
//! - `fail` = `retry` | `reject` | `trap`: fails that way after the calls before it;
//! - `ignore-errors` (any value): a failed call is ignored and the handler returns `ok`
//!   (the entry must fail anyway);
//! - any other field is copied to the output (`n`, an ID for tallies).
//!
//! Build: `cargo build -p stateful --target wasm32-wasip2 --profile plugin`

use sluice_sdk::{Failure, Guest, HandlerResult, Message, Output, state};

struct Stateful;

impl Guest for Stateful {
    fn handle(msg: Message) -> HandlerResult {
        let target = sluice_sdk::config_or("target", "OUT");
        let ignore = msg.get("ignore-errors").is_some();
        let mut out = Output::to(target);
        for (name, value) in &msg.fields {
            let text = String::from_utf8_lossy(value).into_owned();
            let mut args = text.splitn(3, ' ');
            let mut arg = || args.next().unwrap_or_default().to_owned();
            let done: Result<(), state::StateError> = match name.as_str() {
                "incr" => {
                    let key = arg();
                    let delta: i64 = arg()
                        .parse()
                        .map_err(|_| Failure::reject("incr needs KEY DELTA"))?;
                    state::incr(&key, delta).map(|sum| {
                        out.fields
                            .push((format!("incr:{key}"), sum.to_string().into_bytes()));
                    })
                }
                "add" => {
                    let key = arg();
                    let delta: i64 = arg()
                        .parse()
                        .map_err(|_| Failure::reject("add needs KEY DELTA"))?;
                    state::add(&key, delta)
                }
                "set" => {
                    let key = arg();
                    state::set(&key, arg())
                }
                "delete" => state::delete(&arg()),
                "hset" => {
                    let (key, field) = (arg(), arg());
                    state::hset(&key, &field, arg())
                }
                "get" => {
                    let key = arg();
                    state::get_text(&key).map(|v| {
                        let v = v.unwrap_or_else(|| "(nil)".into());
                        out.fields.push((format!("get:{key}"), v.into_bytes()));
                    })
                }
                "hgetall" => {
                    let key = arg();
                    state::hgetall(&key).map(|all| {
                        let text: Vec<String> = all
                            .iter()
                            .map(|(f, v)| format!("{f}={}", String::from_utf8_lossy(v)))
                            .collect();
                        out.fields
                            .push((format!("hgetall:{key}"), text.join(",").into_bytes()));
                    })
                }
                "sleep" => {
                    let ms: u64 = text.parse().unwrap_or(0);
                    std::thread::sleep(std::time::Duration::from_millis(ms));
                    Ok(())
                }
                "fail" => match text.as_str() {
                    "retry" => return Err(Failure::retry("asked to retry")),
                    "reject" => return Err(Failure::reject("asked to reject")),
                    _ => panic!("asked to trap"),
                },
                "ignore-errors" => Ok(()),
                _ => {
                    out.fields.push((name.clone(), value.clone()));
                    Ok(())
                }
            };
            match done {
                Err(_) if ignore => {}
                Err(e) => return Err(e.into()),
                Ok(()) => {}
            }
        }
        Ok(vec![out])
    }
}

sluice_sdk::export!(Stateful);
