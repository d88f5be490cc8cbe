//! The commit's wire format: golden arguments, the Lua constants against the enums, and
//! the statuses.

use std::collections::BTreeMap;

use super::encode::{Recorded, encode};
use super::lua_lint::preamble;
use super::protocol::{self, ReadOp, STATUSES, WriteOp};
use super::*;
use crate::broker::fault::Remedy;
use crate::state::Changes;

fn consumer() -> ConsumerId {
    ConsumerId {
        stream: "IN".into(),
        group: "G".into(),
        name: "c".into(),
    }
}

fn output(stream: &str, fields: &[(&str, &str)]) -> Output {
    Output {
        stream: stream.into(),
        fields: fields
            .iter()
            .map(|(n, v)| ((*n).to_owned(), v.as_bytes().to_vec()))
            .collect(),
        raw_names: None,
    }
}

/// Two entries: one with outputs to two streams, every kind of read and every kind of
/// write (two fields of one hash in a row); one with an output to a stream the first
/// wrote to too.
fn known_batch() -> Vec<Ack> {
    let reads = vec![
        Read::Str {
            key: "acct:1".into(),
            seen: Some(b"5".to_vec()),
        },
        Read::Field {
            key: "user:9".into(),
            field: "name".into(),
            seen: None,
        },
        Read::Hash {
            key: "user:9".into(),
            seen: BTreeMap::from([("age".to_owned(), b"40".to_vec())]),
        },
    ];
    let writes = vec![
        Write::Set {
            key: "acct:1".into(),
            value: b"6".to_vec(),
        },
        Write::HSet {
            key: "user:9".into(),
            field: "a".into(),
            value: b"x".to_vec(),
        },
        Write::HSet {
            key: "user:9".into(),
            field: "b".into(),
            value: b"y".to_vec(),
        },
        Write::Delete {
            key: "tmp:1".into(),
        },
        Write::Add {
            key: "acct:2".into(),
            delta: -3,
        },
    ];
    let mut raw = output("OUT", &[("n", "1"), ("m", "2")]);
    raw.raw_names = Some(vec!["N".into(), "M".into()]);
    vec![
        Ack {
            id: "5-1".into(),
            outputs: vec![raw, output("AUDIT", &[("k", "v")])],
            state: Changes { reads, writes },
        },
        Ack {
            id: "3-0".into(),
            outputs: vec![output("OUT", &[("n", "2")])],
            state: Changes::default(),
        },
    ]
}

fn text(args: &[Vec<u8>]) -> Vec<String> {
    args.iter()
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect()
}

#[test]
fn a_known_commit_encodes_to_these_keys_and_arguments() {
    let keys = KeyMap::new(vec![("acct:".into(), "{p1}acct:".into())]);
    let fence = Fence {
        key: "lease:{p1}".into(),
        value: "d/7".into(),
    };
    let mut recorded = Recorded::default();
    encode(
        &mut recorded,
        &consumer(),
        &keys,
        Some(&fence),
        &known_batch(),
        true,
    )
    .expect("encodes");
    let expected_keys = [
        "IN",
        "OUT",
        "AUDIT",
        "{p1}acct:1",
        "user:9",
        "tmp:1",
        "{p1}acct:2",
        "lease:{p1}",
    ];
    assert_eq!(recorded.keys, expected_keys);
    #[rustfmt::skip]
    let expected_args = [
        // group, consumer, entries, lowest and highest ID, adopt, output streams,
        // the lease key's index and value
        "G", "c", "2", "3-0", "5-1", "1", "2", "8", "d/7",
        // the first entry: two outputs (the first with its raw names)
        "5-1", "2",
        "2", "2", "N", "1", "M", "2",
        "3", "1", "k", "v",
        // three reads: GET seen "5", HGET seen nothing, HGETALL seen one field
        "3",
        "1", "4", "1", "5",
        "2", "5", "name", "0",
        "3", "5", "1", "age", "40",
        // four writes: SET, one HSET of two fields, DEL, INCRBY
        "4",
        "1", "4", "6",
        "3", "5", "2", "a", "x", "b", "y",
        "2", "6",
        "4", "7", "-3",
        // the second entry: one output, no state
        "3-0", "1",
        "2", "1", "n", "2",
        "0",
        "0",
    ];
    assert_eq!(text(&recorded.args), expected_args);
}

#[test]
fn without_a_fence_the_lease_index_is_zero() {
    let mut recorded = Recorded::default();
    let acks = &known_batch()[1..];
    encode(
        &mut recorded,
        &consumer(),
        &KeyMap::default(),
        None,
        acks,
        false,
    )
    .expect("encodes");
    assert_eq!(recorded.keys, ["IN", "OUT"]);
    assert_eq!(
        text(&recorded.args[..9]),
        ["G", "c", "1", "3-0", "3-0", "0", "1", "0", ""]
    );
}

#[test]
fn an_output_too_wide_is_the_entry_fault() {
    let fields = vec![("f".to_owned(), Vec::new()); MAX_FIELDS_PER_OUTPUT + 1];
    let ack = Ack {
        id: "1-0".into(),
        outputs: vec![Output {
            stream: "OUT".into(),
            fields,
            raw_names: None,
        }],
        state: Changes::default(),
    };
    let refused = encode(
        &mut Recorded::default(),
        &consumer(),
        &KeyMap::default(),
        None,
        &[ack],
        false,
    )
    .expect_err("too wide");
    assert_eq!(refused.blame(), crate::broker::Blame::Entry);
    assert_eq!(refused.code(), "WRONGTYPE");
}

#[test]
fn the_lua_constants_are_the_enums() {
    let constants = preamble();
    let mut expected = BTreeMap::new();
    for op in ReadOp::ALL {
        expected.insert(op.lua_name().to_owned(), format!("'{}'", op.code()));
    }
    for op in WriteOp::ALL {
        expected.insert(op.lua_name().to_owned(), format!("'{}'", op.code()));
    }
    for status in STATUSES {
        let code = protocol::status_code(status).to_string();
        expected.insert(protocol::status_lua_name(status).to_owned(), code);
    }
    assert_eq!(constants, expected);
    assert!(script_source().starts_with(&protocol::lua_constants()));
}

#[test]
fn each_status_has_its_own_code_and_an_unknown_one_is_an_error() {
    let codes: Vec<i64> = STATUSES.iter().map(|s| protocol::status_code(*s)).collect();
    assert_eq!(codes, (0..7).collect::<Vec<_>>());
    assert_eq!(statuses(codes, 7).expect("known"), STATUSES);
    let unknown = statuses(vec![1, 7], 2).expect_err("7 is no status");
    assert_eq!(unknown.code(), "REPLY");
    assert_eq!(unknown.remedy(), Remedy::Reconnect);
    assert!(statuses(vec![1], 2).is_err(), "one status for two entries");
}

#[test]
fn an_ack_counts_its_fields_and_bytes_and_a_big_commit_gets_more_time() {
    let acks = known_batch();
    assert_eq!(acks[0].fields(), 3 + 3 + 5);
    assert_eq!(acks[1].fields(), 1);
    assert!(acks[0].size() > acks[1].size());
    assert_eq!(deadline(&acks), CALL_DEADLINE);
    let wide = Ack {
        id: "1-0".into(),
        outputs: vec![Output {
            stream: "OUT".into(),
            fields: vec![("f".into(), vec![0; 9 << 20])],
            raw_names: None,
        }],
        state: Changes::default(),
    };
    assert_eq!(deadline(&[wide]), CALL_DEADLINE + Duration::from_secs(1));
}

#[test]
fn state_keys_are_stored_under_the_longest_matching_prefix() {
    let keys = KeyMap::new(vec![
        ("a:".into(), "{p}a:".into()),
        ("a:b:".into(), "{q}a:b:".into()),
        ("same:".into(), "same:".into()),
    ]);
    assert_eq!(keys.stored("a:1"), "{p}a:1");
    assert_eq!(keys.stored("a:b:1"), "{q}a:b:1");
    assert_eq!(keys.stored("same:1"), "same:1");
    assert_eq!(keys.stored("other"), "other");
}
