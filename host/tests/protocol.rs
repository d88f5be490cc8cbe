//! The checks the commit makes of handler state, written once on each side: in Rust
//! (`sluice::state::{integer, check_writes}`, what `sluice invoke` and the handler's
//! view of state rely on) and in Lua (`redis_integer` and `writable` in `commit.lua`).
//! Both run against the same table of cases: the Rust side in-process, the Lua side
//! through the real commit script on a redis-server of the test's own; integer parsing
//! is also held to Redis's own `INCRBY`.

use redis::AsyncCommands;
use sluice::broker::{Ack, Consumer};
use sluice::message::CommitStatus;
use sluice::state::{Changes, MemoryStore, Write};
use sluice_testkit::*;

/// Sums the Lua side refuses at or past (in absolute value): 2^63 less a margin for its
/// doubles' rounding (`LIMIT` in `commit.lua`). The Rust side refuses only past 64 bits;
/// the integers in between are the one place the two sides differ, on purpose: Lua
/// refuses what it cannot add exactly, and the entry is dead-lettered either way.
const LUA_LIMIT: u64 = 9_223_372_036_854_771_712;

fn set(key: &str, value: &str) -> Write {
    Write::Set {
        key: key.into(),
        value: value.as_bytes().to_vec(),
    }
}

fn hset(key: &str, field: &str) -> Write {
    Write::HSet {
        key: key.into(),
        field: field.into(),
        value: b"v".to_vec(),
    }
}

fn del(key: &str) -> Write {
    Write::Delete { key: key.into() }
}

fn incr_by(key: &str, delta: i64) -> Write {
    Write::Add {
        key: key.into(),
        delta,
    }
}

/// A write check: what the keys hold before (JSON, as `sluice invoke --state` reads
/// it: strings and hashes), the entry's writes, and whether the commit applies them.
/// A refused write after another one is decided by the script's own check (`writable`);
/// a refused first write may also be Redis refusing it as it is applied.
struct WriteCase {
    name: &'static str,
    before: &'static str,
    writes: Vec<Write>,
    applied: bool,
}

fn write_cases() -> Vec<WriteCase> {
    let case = |name, before, writes, applied| WriteCase {
        name,
        before,
        writes,
        applied,
    };
    vec![
        case("a new string", "{}", vec![set("a", "1")], true),
        case("a new hash", "{}", vec![hset("h", "f")], true),
        case(
            "a field of a hash",
            r#"{"h": {"f": "1"}}"#,
            vec![hset("h", "g")],
            true,
        ),
        case(
            "a hash write on a string",
            r#"{"a": "x"}"#,
            vec![hset("a", "f")],
            false,
        ),
        case(
            "a later hash write on a string",
            r#"{"a": "x"}"#,
            vec![set("b", "1"), hset("a", "f")],
            false,
        ),
        case(
            "an add to a hash",
            r#"{"h": {"f": "1"}}"#,
            vec![incr_by("h", 1)],
            false,
        ),
        case(
            "an add to text",
            r#"{"a": "x"}"#,
            vec![incr_by("a", 1)],
            false,
        ),
        case(
            "an add to an integer",
            r#"{"a": "5"}"#,
            vec![incr_by("a", 1)],
            true,
        ),
        case(
            "an add to a negative integer",
            r#"{"a": "-5"}"#,
            vec![incr_by("a", 5)],
            true,
        ),
        case(
            "an add to a leading zero",
            r#"{"a": "007"}"#,
            vec![incr_by("a", 1)],
            false,
        ),
        case(
            "a later add to a leading zero",
            r#"{"a": "007"}"#,
            vec![set("b", "1"), incr_by("a", 1)],
            false,
        ),
        case(
            "a later add to a hash",
            r#"{"h": {"f": "1"}}"#,
            vec![set("b", "1"), incr_by("h", 1)],
            false,
        ),
        case(
            "an add to nothing",
            "{}",
            vec![incr_by("a", 5), incr_by("a", -7)],
            true,
        ),
        case(
            "an add that overflows",
            r#"{"a": "9000000000000000000"}"#,
            vec![incr_by("a", 1_000_000_000_000_000_000)],
            false,
        ),
        case(
            "a hash after a delete",
            r#"{"a": "x"}"#,
            vec![del("a"), hset("a", "f")],
            true,
        ),
        case(
            "an add after a set",
            r#"{"a": "x"}"#,
            vec![set("a", "3"), incr_by("a", 1)],
            true,
        ),
        case(
            "an add after setting text",
            "{}",
            vec![set("a", "x"), incr_by("a", 1)],
            false,
        ),
        case(
            "an add to the entry's own hash",
            "{}",
            vec![hset("h", "f"), incr_by("h", 1)],
            false,
        ),
        case(
            "a set over a hash",
            r#"{"h": {"f": "1"}}"#,
            vec![set("h", "1")],
            true,
        ),
    ]
}

/// Integers as Redis's `INCRBY` reads them: (text, the integer, `None` if not one).
const INTEGERS: &[(&str, Option<i64>)] = &[
    ("0", Some(0)),
    ("1", Some(1)),
    ("-1", Some(-1)),
    ("1234567890", Some(1_234_567_890)),
    ("007", None),
    ("-0", None),
    ("+1", None),
    (" 1", None),
    ("1 ", None),
    ("", None),
    ("-", None),
    ("1.0", None),
    ("1e3", None),
    ("0x10", None),
    ("9223372036854771000", Some(9_223_372_036_854_771_000)),
    ("9223372036854775807", Some(i64::MAX)),
    ("-9223372036854775808", Some(i64::MIN)),
    ("9223372036854775808", None),
    ("123456789012345678901", None),
];

/// `key` in the case's own namespace.
fn scoped(case: usize, key: &str) -> String {
    format!("c{case}:{key}")
}

fn scoped_write(case: usize, write: &Write) -> Write {
    match write.clone() {
        Write::Set { key, value } => Write::Set {
            key: scoped(case, &key),
            value,
        },
        Write::Delete { key } => Write::Delete {
            key: scoped(case, &key),
        },
        Write::HSet { key, field, value } => Write::HSet {
            key: scoped(case, &key),
            field,
            value,
        },
        Write::Add { key, delta } => Write::Add {
            key: scoped(case, &key),
            delta,
        },
    }
}

/// Stores the case's `before` in Redis.
async fn store(con: &mut redis::aio::MultiplexedConnection, case: usize, before: &str) {
    let before: serde_json::Value = serde_json::from_str(before).expect("json");
    for (key, value) in before.as_object().expect("an object") {
        let key = scoped(case, key);
        match value {
            serde_json::Value::String(text) => {
                let () = con.set(&key, text).await.expect("SET");
            }
            serde_json::Value::Object(fields) => {
                for (field, value) in fields {
                    let value = value.as_str().expect("a string");
                    let _: i64 = con.hset(&key, field, value).await.expect("HSET");
                }
            }
            other => panic!("{other} is not a string or a hash"),
        }
    }
}

/// What `keys` hold (`DUMP`; nil for no key), to compare before and after a commit.
async fn dump(
    con: &mut redis::aio::MultiplexedConnection,
    keys: &[String],
) -> Vec<Option<Vec<u8>>> {
    let mut dumped = Vec::new();
    for key in keys {
        let value: Option<Vec<u8>> = redis::cmd("DUMP")
            .arg(key)
            .query_async(con)
            .await
            .expect("DUMP");
        dumped.push(value);
    }
    dumped
}

/// Commits one new entry carrying `writes` through the real commit script.
async fn commit_writes(
    con: &mut redis::aio::MultiplexedConnection,
    consumer: &mut Consumer,
    writes: Vec<Write>,
) -> CommitStatus {
    add(con, "IN", &[("n", "1")]).await;
    let read = consumer
        .read_new(1, std::time::Duration::from_millis(100))
        .await
        .expect("read");
    assert_eq!(read.len(), 1);
    let ack = Ack {
        id: read[0].id.clone(),
        outputs: Vec::new(),
        state: Changes {
            reads: Vec::new(),
            writes,
        },
    };
    let statuses = consumer.commit(&[ack], false).await.expect("commit");
    statuses[0]
}

#[tokio::test]
async fn write_checks_agree_in_rust_and_in_the_commit_script() {
    let TestContext { redis, mut con } = TestContext::new().await;
    let broker = broker(&redis).await;
    let mut consumer = broker.consumer("IN", "G", "c");
    consumer.ensure_group().await.expect("group");
    for (n, case) in write_cases().into_iter().enumerate() {
        let rust = MemoryStore::from_json(case.before)
            .expect("json")
            .check_writes(&case.writes);
        assert_eq!(rust.is_ok(), case.applied, "rust: {}: {rust:?}", case.name);

        store(&mut con, n, case.before).await;
        let writes: Vec<Write> = case.writes.iter().map(|w| scoped_write(n, w)).collect();
        let keys: Vec<String> = writes.iter().map(|w| w.key().to_owned()).collect();
        let before = dump(&mut con, &keys).await;
        let lua = commit_writes(&mut con, &mut consumer, writes).await;
        let expected = match case.applied {
            true => CommitStatus::Committed,
            false => CommitStatus::StateRefused,
        };
        assert_eq!(lua, expected, "lua: {}", case.name);
        if !case.applied {
            assert_eq!(
                dump(&mut con, &keys).await,
                before,
                "lua: {}: a refused entry writes nothing",
                case.name
            );
        }
    }
}

#[tokio::test]
async fn integers_are_read_as_incrby_reads_them_on_both_sides() {
    let TestContext { redis, mut con } = TestContext::new().await;
    let broker = broker(&redis).await;
    let mut consumer = broker.consumer("IN", "G", "c");
    consumer.ensure_group().await.expect("group");
    for (n, (text, integer)) in INTEGERS.iter().enumerate() {
        assert_eq!(
            sluice::state::integer(text.as_bytes()),
            *integer,
            "rust: {text:?}"
        );
        let before = serde_json::json!({ "a": text }).to_string();
        let checked = MemoryStore::from_json(&before)
            .expect("json")
            .check_writes(&[incr_by("a", 0)]);
        assert_eq!(
            checked.is_ok(),
            integer.is_some(),
            "rust: INCRBY {text:?} 0"
        );

        let probe = format!("probe:{n}");
        let () = con.set(&probe, text).await.expect("SET");
        let redis: redis::RedisResult<i64> = con.incr(&probe, 0).await;
        assert_eq!(redis.ok(), *integer, "redis's own INCRBY: {text:?}");

        // A write before the add: only the script's own check (not INCRBY failing as
        // it is applied) keeps it from being written when the add is refused.
        let key = scoped(n, "a");
        let marker = scoped(n, "marker");
        let () = con.set(&key, text).await.expect("SET");
        let writes = vec![set(&marker, "written"), incr_by(&key, 0)];
        let lua = commit_writes(&mut con, &mut consumer, writes).await;
        let within = integer.is_some_and(|i| i.unsigned_abs() < LUA_LIMIT);
        let expected = match within {
            true => CommitStatus::Committed,
            false => CommitStatus::StateRefused,
        };
        assert_eq!(lua, expected, "lua: {text:?}");
        let marked: bool = con.exists(&marker).await.expect("EXISTS");
        assert_eq!(marked, within, "lua: {text:?}: the write before the add");
    }
}
