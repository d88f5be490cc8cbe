//! Handler state through the layers, on a memory store.

use std::sync::Arc;

use super::*;

fn scope(store: MemoryStore, prefixes: &[&str]) -> Scope {
    Scope {
        prefixes: prefixes.iter().map(|p| (*p).to_owned()).collect(),
        overlay: Arc::new(Overlay::default()),
        store: Arc::new(store),
    }
}

fn block<T>(f: impl std::future::Future<Output = T>) -> T {
    futures::executor::block_on(f)
}

#[test]
fn an_entry_sees_earlier_entries_and_its_own_writes_and_records_what_it_read() {
    let store = MemoryStore::from_json(r#"{"n:a": "5", "h:x": {"f": "1"}}"#).expect("json");
    let scope = scope(store, &["n:", "h:"]);
    let mut first = scope.entry();
    assert_eq!(block(first.incr("n:a", 2)), Ok(7));
    first.hset("h:x", "g", b"2".to_vec()).expect("hset");
    let done = first.finish(true);
    assert_eq!(
        done.changes.reads,
        [Read::Str {
            key: "n:a".into(),
            seen: Some(b"5".to_vec())
        }]
    );

    let mut second = scope.entry();
    assert_eq!(
        block(second.incr("n:a", 1)),
        Ok(8),
        "sees the first entry's write"
    );
    assert_eq!(
        block(second.hget("h:x", "f")),
        Ok(Some(b"1".to_vec())),
        "from redis"
    );
    assert_eq!(
        block(second.hget("h:x", "g")),
        Ok(Some(b"2".to_vec())),
        "from the batch"
    );
    let all = block(second.hgetall("h:x")).expect("hgetall");
    assert_eq!(all.len(), 2);
    let done = second.finish(true);
    assert_eq!(
        done.changes.reads[0],
        Read::Str {
            key: "n:a".into(),
            seen: Some(b"7".to_vec())
        },
        "what the commit checks: the value after the first entry"
    );
}

#[test]
fn a_key_outside_the_prefixes_fails_the_entry_and_a_failed_entry_leaves_no_trace() {
    let scope = scope(MemoryStore::default(), &["order:"]);
    let mut entry = scope.entry();
    entry.set("order:1", b"x".to_vec()).expect("granted");
    assert!(matches!(
        entry.set("user:1", b"x".to_vec()),
        Err(StateError::Forbidden(_))
    ));
    let done = entry.finish(true);
    assert!(matches!(done.failure, Some(StateError::Forbidden(_))));
    let mut next = scope.entry();
    assert_eq!(
        block(next.get("order:1")),
        Ok(None),
        "a failed entry's writes are not seen"
    );
}

#[test]
fn types_are_kept_apart() {
    let store = MemoryStore::from_json(r#"{"k:s": "text", "k:h": {"f": "v"}}"#).expect("json");
    let scope = scope(store, &["k:"]);
    let mut entry = scope.entry();
    assert!(matches!(
        block(entry.get("k:h")),
        Err(StateError::WrongType(_))
    ));
    assert!(matches!(
        block(entry.incr("k:s", 1)),
        Err(StateError::WrongType(_))
    ));
    let mut entry = scope.entry();
    entry.set("k:new", b"1".to_vec()).expect("set");
    assert!(matches!(
        entry.hset("k:new", "f", Vec::new()),
        Err(StateError::WrongType(_))
    ));
    let mut entry = scope.entry();
    assert!(matches!(block(entry.incr("k:max", i64::MAX)), Ok(i64::MAX)));
    assert!(matches!(
        block(entry.incr("k:max", 1)),
        Err(StateError::WrongType(_))
    ));
}
