//! The bare-code lint over `commit.lua`, and the breaches it must catch.

use super::rules::bare_codes;
use super::{COMMIT_LUA, preamble};

#[test]
fn commit_lua_names_every_constant_and_no_bare_code() {
    let problems = bare_codes(COMMIT_LUA, &preamble());
    assert!(
        problems.is_empty(),
        "commit.lua must name the protocol's constants (broker/commit/protocol.rs), never their codes:\n{}",
        problems.join("\n")
    );
}

/// Breaches the check above must catch: each edit of commit.lua (every `from` replaced
/// by its `to`, once) and what the check must then say.
const BREACHES: &[(&[(&str, &str)], &str)] = &[
    (&[("kind == READ_GET", "'1' == kind")], "numeric string '1'"),
    (
        &[("kind == READ_GET", "kind ~= '1'")],
        "`kind~='1'` compares",
    ),
    (&[("kind == READ_GET", "kind=='1'")], "`kind=='1'` compares"),
    (&[("kind == READ_GET", "kind == 1")], "`kind==1` compares"),
    (
        &[("if kind == READ_GET then", "if ARGV[p] == '1' then")],
        "`ARGV[p]=='1'` compares",
    ),
    (&[("op == WRITE_DEL", "op == \"2\"")], "`op=='2'` compares"),
    (&[("op == WRITE_DEL", "(2) == op")], "`(2)==op` compares"),
    (
        &[("status == COMMITTED", "status == 1")],
        "`status==1` compares",
    ),
    (
        &[("result[e] = status", "result[e] = 1")],
        "`result[e]=1` stores",
    ),
    (
        &[("fenced[e] = NOT_OWNED", "fenced[e + 0] = 0")],
        "`fenced[e+0]=0` stores",
    ),
    (
        &[("status = UNDELIVERED", "status = (4)")],
        "`status=(4)` stores",
    ),
    (
        &[("status = COMMITTED", "status = Committed")],
        "`status=Committed` stores",
    ),
    (
        &[("status = ADOPTED", "status = ADOPTED2")],
        "ADOPTED2 looks like a constant",
    ),
    (
        &[("status = GONE", "status = adopt and 2 or GONE")],
        "stores something other",
    ),
    (
        &[("status = GONE", "status, x = 3, 1")],
        "multiple assignment",
    ),
    (
        &[("local result = {}", "local result = { 1 }")],
        "`result={1}` stores",
    ),
    (
        &[
            ("local pos = 10", "local pos = 10 -- it's"),
            ("status = GONE", "status = 3"),
        ],
        "`status=3` stores",
    ),
    (
        &[("status = GONE", "--[[ it's ]] status = 3")],
        "`status=3` stores",
    ),
    (
        &[
            ("local pos = 10", "local pos = 10 local s = [[it's]]"),
            ("status = GONE", "status = 3"),
        ],
        "`status=3` stores",
    ),
    (
        &[("status = UNDELIVERED", "status = GONE -- UNDELIVERED")],
        "does not use UNDELIVERED",
    ),
    (
        &[(
            "status = UNDELIVERED",
            "status = GONE redis.log(redis.LOG_WARNING, 'UNDELIVERED')",
        )],
        "does not use UNDELIVERED",
    ),
    (
        &[("local pos = 10", "local pos = 10 local COMMITTED = 1")],
        "defines COMMITTED again",
    ),
    (
        &[(
            "local pos = 10",
            "local pos = 10 local FLAG = ARGV[p + 2] == '1'",
        )],
        "`ARGV[p+2]=='1'` 2 times",
    ),
    (
        &[("local pos = 10", "local pos = 10 local one = '1'")],
        "numeric string '1'",
    ),
];

#[test]
fn the_bare_code_check_catches_these_breaches() {
    let constants = preamble();
    for (edits, expected) in BREACHES {
        let mut script = COMMIT_LUA.to_owned();
        for (from, to) in *edits {
            assert!(
                script.contains(from),
                "commit.lua no longer has {from:?}: update this breach"
            );
            script = script.replacen(from, to, 1);
        }
        let problems = bare_codes(&script, &constants);
        assert!(
            problems.iter().any(|p| p.contains(expected)),
            "the breach {edits:?} was not caught as {expected:?}; the check said: {problems:#?}"
        );
    }
}
