//! Reading and writing streams from a test: entries, lengths, pending counts, and
//! waits on them.

use std::time::Duration;

use redis::AsyncCommands;
use redis::aio::MultiplexedConnection;

use crate::eventually;

/// Waits until `stream` holds exactly `n` entries (20 s at most).
pub async fn wait_len(con: &MultiplexedConnection, stream: &str, n: usize) {
    let what = format!("{stream} to hold {n} entries");
    eventually(&what, Duration::from_secs(20), || {
        let mut con = con.clone();
        async move { (len(&mut con, stream).await == n).then_some(()) }
    })
    .await
}

/// Waits until `stream` holds at least `n` entries (30 s at most).
pub async fn wait_len_at_least(con: &MultiplexedConnection, stream: &str, n: usize) {
    let what = format!("{stream} to hold at least {n} entries");
    eventually(&what, Duration::from_secs(30), || {
        let mut con = con.clone();
        async move { (len(&mut con, stream).await >= n).then_some(()) }
    })
    .await
}

/// Entries of `stream` as (id, fields) in order.
pub async fn entries(
    con: &mut MultiplexedConnection,
    stream: &str,
) -> Vec<(String, Vec<(String, Vec<u8>)>)> {
    let reply: redis::Value = redis::cmd("XRANGE")
        .arg(stream)
        .arg("-")
        .arg("+")
        .query_async(con)
        .await
        .expect("XRANGE");
    let redis::Value::Array(items) = reply else {
        panic!("XRANGE reply: {reply:?}")
    };
    items
        .into_iter()
        .map(|item| {
            let redis::Value::Array(mut pair) = item else {
                panic!("entry: {item:?}")
            };
            let fields: Vec<Vec<u8>> =
                redis::from_redis_value(pair.pop().expect("fields")).expect("field list");
            let id: String = redis::from_redis_value(pair.pop().expect("id")).expect("id");
            let fields = fields
                .chunks(2)
                .map(|kv| {
                    (
                        String::from_utf8(kv[0].clone()).expect("utf-8 name"),
                        kv[1].clone(),
                    )
                })
                .collect();
            (id, fields)
        })
        .collect()
}

/// Length of `stream`.
pub async fn len(con: &mut MultiplexedConnection, stream: &str) -> usize {
    con.xlen(stream).await.expect("XLEN")
}

/// Number of entries pending in `group` of `stream`.
pub async fn pending(con: &mut MultiplexedConnection, stream: &str, group: &str) -> usize {
    let reply: redis::Value = redis::cmd("XPENDING")
        .arg(stream)
        .arg(group)
        .query_async(con)
        .await
        .expect("XPENDING");
    match reply {
        redis::Value::Array(v) => match v.first() {
            Some(redis::Value::Int(n)) => *n as usize,
            other => panic!("XPENDING summary: {other:?}"),
        },
        other => panic!("XPENDING summary: {other:?}"),
    }
}

/// Number of entries pending in `group` of `stream`, 0 while the group does not exist.
pub async fn pending_or_zero(con: &mut MultiplexedConnection, stream: &str, group: &str) -> usize {
    let reply: redis::RedisResult<redis::Value> = redis::cmd("XPENDING")
        .arg(stream)
        .arg(group)
        .query_async(con)
        .await;
    match reply {
        Ok(redis::Value::Array(v)) => match v.first() {
            Some(redis::Value::Int(n)) => *n as usize,
            _ => 0,
        },
        _ => 0,
    }
}

/// Appends an entry with text fields.
pub async fn add(con: &mut MultiplexedConnection, stream: &str, fields: &[(&str, &str)]) -> String {
    con.xadd(stream, "*", fields).await.expect("XADD")
}

/// A field's value as text.
pub fn field<'a>(fields: &'a [(String, Vec<u8>)], name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| std::str::from_utf8(v).expect("utf-8 value"))
}
