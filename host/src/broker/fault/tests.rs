//! Each Redis error classified once, and the retry policy's bounds.

use std::time::Duration;

use super::*;

fn server(code: &str, detail: &str) -> redis::RedisError {
    redis::make_extension_error(code.to_owned(), Some(detail.to_owned()))
}

/// Server errors: (code, detail, who is at fault, what to do).
const SERVER_ERRORS: [(&str, &str, Blame, Remedy); 12] = [
    (
        "NOGROUP",
        "No such key 'IN' or consumer group 'G'",
        Blame::Environment,
        Remedy::RecreateGroup,
    ),
    (
        "NOPERM",
        "this user has no permissions",
        Blame::Environment,
        Remedy::Wait,
    ),
    (
        "READONLY",
        "You can't write against a read only replica.",
        Blame::Environment,
        Remedy::Reconnect,
    ),
    (
        "MASTERDOWN",
        "Link with MASTER is down",
        Blame::Environment,
        Remedy::Reconnect,
    ),
    (
        "UNBLOCKED",
        "force unblock from blocking operation",
        Blame::Environment,
        Remedy::Reconnect,
    ),
    (
        "LOADING",
        "Redis is loading the dataset in memory",
        Blame::Environment,
        Remedy::Wait,
    ),
    (
        "BUSY",
        "Redis is busy running a script",
        Blame::Environment,
        Remedy::Wait,
    ),
    (
        "OOM",
        "command not allowed when used memory > 'maxmemory'",
        Blame::Environment,
        Remedy::Wait,
    ),
    (
        "WRONGTYPE",
        "output key OUT holds a string",
        Blame::Entry,
        Remedy::Wait,
    ),
    (
        "ERR",
        "Protocol error: invalid bulk length",
        Blame::Entry,
        Remedy::Reconnect,
    ),
    ("ERR", "something new", Blame::Environment, Remedy::Wait),
    (
        "SOMETHINGNEW",
        "a code this version does not know",
        Blame::Environment,
        Remedy::Wait,
    ),
];

#[test]
fn each_server_error_has_one_answer() {
    for (code, detail, blame, remedy) in SERVER_ERRORS {
        let fault = Fault::from_redis(&server(code, detail), "test");
        assert_eq!(
            (fault.blame(), fault.remedy()),
            (blame, remedy),
            "{code} {detail}"
        );
        assert_eq!(fault.code(), code);
    }
    assert!(Fault::from_redis(&server("NOPERM", "x"), "t").is_permission());
}

#[test]
fn a_broken_connection_is_reconnected_and_told_from_a_stall() {
    let io = redis::RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
    let fault = Fault::from_redis(&io, "test");
    assert_eq!(
        (fault.blame(), fault.remedy()),
        (Blame::Environment, Remedy::Reconnect)
    );
    assert!(fault.is_dropped_under_call());
    assert!(!fault.clone().while_connecting().is_dropped_under_call());
    assert!(!Fault::deadline("t", Duration::from_secs(1)).is_dropped_under_call());
}

/// The named constructors answer as the Redis errors they stand for would.
#[test]
fn named_faults_answer_as_their_redis_errors() {
    let pairs = [
        (
            Fault::entry_refused("commit", "an output is too wide"),
            Fault::from_redis(&server("WRONGTYPE", "an output is too wide"), "commit"),
        ),
        (
            Fault::group_missing("XINFO GROUPS", "no group \"G\""),
            Fault::from_redis(&server("NOGROUP", "no group \"G\""), "XINFO GROUPS"),
        ),
    ];
    for (named, redis) in pairs {
        assert_eq!(
            (named.blame(), named.remedy(), named.code()),
            (redis.blame(), redis.remedy(), redis.code())
        );
        assert_eq!(named.to_string(), redis.to_string());
    }
}

#[test]
fn backoff_grows_within_bounds() {
    let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
    for n in 1..12u32 {
        let nominal =
            (Duration::from_millis(100) * 2u32.pow((n - 1).min(20))).min(Duration::from_secs(1));
        let d = b.next_delay();
        assert!(
            d >= nominal / 2 && d <= nominal,
            "failure {n}: {d:?} outside [{:?}, {nominal:?}]",
            nominal / 2
        );
    }
    b.reset();
    assert!(b.next_delay() <= Duration::from_millis(100));
}
