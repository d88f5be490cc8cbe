//! The commit's wire format: golden arguments, the Lua constants against the enums, and
//! the statuses.

use std::collections::BTreeMap;

use super::encode::{Recorded, encode};
use super::protocol::{self, ReadOp, STATUSES, WriteOp};
use super::*;
use crate::broker::fault::Remedy;
use crate::state::Changes;

const COMMIT_LUA: &str = include_str!("commit.lua");

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

/// The constants the script is loaded with, parsed back: (name, value).
fn preamble() -> BTreeMap<String, String> {
    protocol::lua_constants()
        .lines()
        .filter_map(|line| line.strip_prefix("local "))
        .filter_map(|rest| rest.split_once(" = "))
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect()
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

/// The Lua names that look like constants (capitals, digits, `_`) but are not the
/// protocol's: Redis's globals and the script's own arithmetic limit.
const NOT_PROTOCOL: [&str; 3] = ["KEYS", "ARGV", "LIMIT"];

/// The only comparisons of a value with a numeric string the script may make, each
/// with how many times it makes it. These are not opcodes or statuses but 0/1 flags the
/// encoder writes (`encode.rs`), and Redis's integer syntax:
/// - `adopt` (the sixth argument): `local adopt = ARGV[6] == '1'`;
/// - a read's presence flag: READ_GET's at `p + 2` / `pos + 2`, READ_HGET's at
///   `p + 3` / `pos + 3` (`holds`, and the walk over the entries);
/// - `redis_integer`'s `value == '0'` (the one integer with a leading zero).
///
/// Any other, such as `ARGV[p] == '1'`, is a bare code.
const FLAG_COMPARISONS: [(&str, usize); 6] = [
    ("ARGV[6]=='1'", 1),
    ("ARGV[p+2]=='1'", 1),
    ("ARGV[p+3]=='1'", 1),
    ("ARGV[pos+2]=='1'", 1),
    ("ARGV[pos+3]=='1'", 1),
    ("value=='0'", 1),
];

/// The values the opcodes and statuses are compared with or stored in: none of them may
/// meet a number or a numeric string.
const CODE_HOLDERS: [&str; 6] = ["kind", "op", "ARGV", "owned", "result", "fenced"];

/// The tables of statuses the script returns: what is stored in them must be a status
/// constant (or another entry of `owned`).
const STATUS_TABLES: [&str; 3] = ["owned", "result", "fenced"];

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
#[test]
fn the_bare_code_check_catches_these_breaches() {
    let breaches: &[(&[(&str, &str)], &str)] = &[
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
            &[("owned[e] == COMMITTED", "owned[e] == 1")],
            "`owned[e]==1` compares",
        ),
        (
            &[("result[e] = owned[e]", "result[e] = 1")],
            "`result[e]=1` stores",
        ),
        (
            &[("fenced[e] = NOT_OWNED", "fenced[e + 0] = 0")],
            "`fenced[e+0]=0` stores",
        ),
        (
            &[("owned[e] = UNDELIVERED", "owned[e] = (4)")],
            "`owned[e]=(4)` stores",
        ),
        (
            &[("owned[e] = COMMITTED", "owned[e] = Committed")],
            "`owned[e]=Committed` stores",
        ),
        (
            &[("owned[e] = ADOPTED", "owned[e] = ADOPTED2")],
            "ADOPTED2 looks like a constant",
        ),
        (
            &[("owned[e] = GONE", "owned[e] = adopt and 2 or GONE")],
            "stores something other",
        ),
        (
            &[("owned[e] = GONE", "owned[e], x = 3, 1")],
            "multiple assignment",
        ),
        (
            &[("local owned = {}", "local owned = { 1 }")],
            "`owned={1}` stores",
        ),
        (
            &[
                ("local pos = 10", "local pos = 10 -- it's"),
                ("owned[e] = GONE", "owned[e] = 3"),
            ],
            "`owned[e]=3` stores",
        ),
        (
            &[("owned[e] = GONE", "--[[ it's ]] owned[e] = 3")],
            "`owned[e]=3` stores",
        ),
        (
            &[
                ("local pos = 10", "local pos = 10 local s = [[it's]]"),
                ("owned[e] = GONE", "owned[e] = 3"),
            ],
            "`owned[e]=3` stores",
        ),
        (
            &[("owned[e] = UNDELIVERED", "owned[e] = GONE -- UNDELIVERED")],
            "does not use UNDELIVERED",
        ),
        (
            &[(
                "owned[e] = UNDELIVERED",
                "owned[e] = GONE redis.log(redis.LOG_WARNING, 'UNDELIVERED')",
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
    let constants = preamble();
    for (edits, expected) in breaches {
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

/// What `commit_lua_names_every_constant_and_no_bare_code` finds wrong with `script`
/// (one line each, `commit.lua:LINE: ...`).
fn bare_codes(script: &str, constants: &BTreeMap<String, String>) -> Vec<String> {
    let tokens = lua_tokens(script);
    let statuses: Vec<&str> = constants
        .iter()
        .filter(|(_, v)| !v.starts_with('\''))
        .map(|(k, _)| k.as_str())
        .collect();
    let mut problems = Vec::new();
    let mut flags: BTreeMap<String, usize> = BTreeMap::new();
    // The tokens of the numeric strings in FLAG_COMPARISONS' comparisons.
    let mut flag_strings = std::collections::BTreeSet::new();
    for name in constants.keys() {
        if !tokens
            .iter()
            .any(|t| t.kind == Lua::Name && t.text == *name)
        {
            problems.push(format!(
                "commit.lua does not use {name} in its code (a comment or string does not count)"
            ));
        }
    }
    for (i, t) in tokens.iter().enumerate() {
        let at = format!("commit.lua:{}", t.line);
        let prev = i.checked_sub(1).map(|p| tokens[p].text.as_str());
        if t.kind == Lua::Name && looks_constant(&t.text) {
            let field_of_redis = prev == Some(".")
                && i >= 2
                && tokens[i - 2].text == "redis"
                && t.text == "LOG_WARNING";
            if !constants.contains_key(&t.text)
                && !NOT_PROTOCOL.contains(&t.text.as_str())
                && !field_of_redis
            {
                problems.push(format!(
                    "{at}: {} looks like a constant but the protocol does not define it: add it to broker/commit/protocol.rs, or spell the script's own name in lower case",
                    t.text
                ));
            }
            if prev == Some("local") && constants.contains_key(&t.text) {
                problems.push(format!(
                    "{at}: commit.lua defines {} again; the preamble generated from protocol.rs is its one definition",
                    t.text
                ));
            }
        }
        if (t.text == "==" || t.text == "~=") && t.kind == Lua::Op {
            let left = left_operand(&tokens, i);
            let right = right_operand(&tokens, i + 1);
            let context: String = tokens[left.clone()]
                .iter()
                .chain(std::iter::once(t))
                .chain(&tokens[right.clone()])
                .map(Token::source)
                .collect();
            let numeric = |r: &std::ops::Range<usize>| is_numeric(&tokens[r.clone()]);
            let holder = |r: &std::ops::Range<usize>| {
                tokens
                    .get(r.start)
                    .is_some_and(|t| t.kind == Lua::Name && CODE_HOLDERS.contains(&t.text.as_str()))
            };
            let flag = FLAG_COMPARISONS.iter().any(|(c, _)| *c == context);
            if flag {
                *flags.entry(context.clone()).or_default() += 1;
                flag_strings.extend(right.clone());
            } else if (holder(&left) && numeric(&right)) || (holder(&right) && numeric(&left)) {
                problems.push(format!(
                    "{at}: `{context}` compares with a bare code: name its constant (READ_*, WRITE_*, a status)"
                ));
            }
        }
        if t.kind == Lua::Str && is_numeric(std::slice::from_ref(t)) && !flag_strings.contains(&i) {
            problems.push(format!(
                "{at}: the numeric string {} is a bare code unless it is one of the flags in FLAG_COMPARISONS (broker/commit/tests.rs)",
                t.source()
            ));
        }
        if t.kind == Lua::Name && STATUS_TABLES.contains(&t.text.as_str()) && prev != Some(".") {
            let target = right_operand(&tokens, i);
            let next = tokens.get(target.end).map(|t| t.text.as_str());
            if next == Some("=") {
                let value = right_operand(&tokens, target.end + 1);
                let after = tokens.get(value.end).map(|t| t.text.as_str());
                let vt = &tokens[value.clone()];
                let ok = if target.len() == 1 {
                    vt.len() == 2 && vt[0].text == "{" && vt[1].text == "}"
                } else {
                    let status = vt.len() == 1 && statuses.contains(&vt[0].text.as_str());
                    let copied = vt.len() > 1 && vt[0].text == "owned" && vt[1].text == "[";
                    (status || copied)
                        && !after.is_some_and(|a| {
                            [
                                "and", "or", "+", "-", "*", "/", "//", "%", "^", "..", "(", ".",
                                ":", "[", "==", "~=", "<", ">", "<=", ">=", "&", "|", "~", "<<",
                                ">>", ",",
                            ]
                            .contains(&a)
                        })
                };
                if !ok {
                    let text: String = tokens[target.start..value.end]
                        .iter()
                        .map(Token::source)
                        .collect();
                    problems.push(format!(
                        "{at}: `{text}` stores something other than one status constant ({}) in {}",
                        statuses.join(", "),
                        t.text
                    ));
                }
            } else if next == Some(",")
                && tokens[target.end..]
                    .iter()
                    .take_while(|n| n.line == t.line)
                    .any(|n| n.text == "=" && n.kind == Lua::Op)
            {
                problems.push(format!(
                    "{at}: assign {} on its own (one status constant), not in a multiple assignment",
                    t.text
                ));
            }
        }
    }
    for (context, times) in FLAG_COMPARISONS {
        let found = flags.get(context).copied().unwrap_or(0);
        if found != times {
            problems.push(format!(
                "commit.lua compares `{context}` {found} times, FLAG_COMPARISONS allows exactly {times}: a new flag comparison must be listed (and explained) there, a removed one taken out"
            ));
        }
    }
    problems
}

/// Capitals, digits and `_`, starting with a capital: how the protocol's constants are
/// spelled.
fn looks_constant(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_uppercase())
        && name
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

/// One number or numeric string, in any parentheses, maybe negated.
fn is_numeric(tokens: &[Token]) -> bool {
    let mut t = tokens;
    loop {
        match t {
            [open, inner @ .., close] if open.text == "(" && close.text == ")" => t = inner,
            [minus, rest @ ..] if minus.text == "-" && minus.kind == Lua::Op => t = rest,
            _ => break,
        }
    }
    match t {
        [one] if one.kind == Lua::Number => true,
        [one] if one.kind == Lua::Str => {
            let s = one.text.trim();
            let s = s.strip_prefix(['-', '+']).unwrap_or(s);
            let hex = s
                .strip_prefix("0x")
                .or(s.strip_prefix("0X"))
                .is_some_and(|h| !h.is_empty() && h.chars().all(|c| c.is_ascii_hexdigit()));
            hex || (s.starts_with(|c: char| c.is_ascii_digit() || c == '.')
                && s.parse::<f64>().is_ok())
        }
        _ => false,
    }
}

/// The operand that ends just before `tokens[op]`: a name, literal or parenthesized
/// expression with what indexes or calls it (`ARGV[p + 2]`, `redis.call(...)`).
fn left_operand(tokens: &[Token], op: usize) -> std::ops::Range<usize> {
    let mut start = op;
    while start > 0 {
        let t = &tokens[start - 1];
        match t.text.as_str() {
            "]" | ")" | "}" if t.kind == Lua::Op => {
                start = matching(tokens, start - 1, false);
                let before = start.checked_sub(1).map(|b| &tokens[b]);
                if !before
                    .is_some_and(|b| b.kind == Lua::Name || ["]", ")"].contains(&b.text.as_str()))
                {
                    break;
                }
            }
            _ if t.kind != Lua::Op => {
                start -= 1;
                if start >= 2 && [".", ":"].contains(&tokens[start - 1].text.as_str()) {
                    start -= 1;
                    continue;
                }
                break;
            }
            _ => break,
        }
    }
    start..op
}

/// The operand that starts at `tokens[at]`, with a leading `-`, `not` or `#`, and what
/// indexes or calls it.
fn right_operand(tokens: &[Token], at: usize) -> std::ops::Range<usize> {
    let mut end = at;
    while tokens
        .get(end)
        .is_some_and(|t| ["-", "not", "#"].contains(&t.text.as_str()))
    {
        end += 1;
    }
    match tokens.get(end) {
        Some(t) if ["(", "{"].contains(&t.text.as_str()) => end = matching(tokens, end, true),
        Some(t) if t.kind != Lua::Op => end += 1,
        _ => return at..end,
    }
    while let Some(t) = tokens.get(end) {
        match t.text.as_str() {
            "[" | "(" => end = matching(tokens, end, true),
            "." | ":" => end += 2,
            _ => break,
        }
    }
    at..end.min(tokens.len())
}

/// From a bracket at `at`: forward, the index just past its closing one; backward,
/// the index of its opening one.
fn matching(tokens: &[Token], at: usize, forward: bool) -> usize {
    let mut depth = 0i32;
    let mut i = at;
    loop {
        match tokens[i].text.as_str() {
            "(" | "[" | "{" if tokens[i].kind == Lua::Op => depth += 1,
            ")" | "]" | "}" if tokens[i].kind == Lua::Op => depth -= 1,
            _ => {}
        }
        if depth == 0 {
            return if forward { i + 1 } else { i };
        }
        if forward {
            i += 1;
            if i == tokens.len() {
                return i;
            }
        } else if i == 0 {
            return 0;
        } else {
            i -= 1;
        }
    }
}

/// Lua's keywords but the values (`nil`, `true`, `false`): lexed as operators.
const KEYWORDS: [&str; 19] = [
    "and", "break", "do", "else", "elseif", "end", "for", "function", "goto", "if", "in", "local",
    "not", "or", "repeat", "return", "then", "until", "while",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lua {
    Name,
    Number,
    /// A quoted or long string; its text is what is between the delimiters.
    Str,
    Op,
}

#[derive(Debug)]
struct Token {
    kind: Lua,
    text: String,
    line: usize,
}

impl Token {
    /// How the token reads in a message (strings quoted the one way).
    fn source(&self) -> String {
        match self.kind {
            Lua::Str => format!("'{}'", self.text),
            _ => self.text.clone(),
        }
    }
}

/// Lua's tokens without comments (`-- ...`, `--[[ ... ]]`, `--[==[ ... ]==]`); strings
/// in either quote, with escapes, and long (`[[ ... ]]`, `[=[ ... ]=]`).
fn lua_tokens(source: &str) -> Vec<Token> {
    let s: Vec<char> = source.chars().collect();
    let mut tokens = Vec::new();
    let (mut i, mut line) = (0, 1);
    // A long bracket at `i` (`[`, any `=`, `[`): its level.
    let long_open = |i: usize| -> Option<usize> {
        if s.get(i) != Some(&'[') {
            return None;
        }
        let level = s[i + 1..].iter().take_while(|c| **c == '=').count();
        (s.get(i + 1 + level) == Some(&'[')).then_some(level)
    };
    // From a long bracket of `level` opened at `i`: its text and the index past it.
    let long_body = |i: usize, level: usize| -> (String, usize) {
        let close: Vec<char> = std::iter::once(']')
            .chain(std::iter::repeat_n('=', level))
            .chain(std::iter::once(']'))
            .collect();
        let from = i + level + 2;
        let mut j = from;
        while j < s.len() && !s[j..].starts_with(&close) {
            j += 1;
        }
        (s[from..j].iter().collect(), (j + close.len()).min(s.len()))
    };
    while i < s.len() {
        let c = s[i];
        let start_line = line;
        if c == '\n' {
            line += 1;
            i += 1;
        } else if c.is_whitespace() {
            i += 1;
        } else if s[i..].starts_with(&['-', '-']) {
            if let Some(level) = long_open(i + 2) {
                let (body, end) = long_body(i + 2, level);
                line += body.matches('\n').count();
                i = end;
            } else {
                while i < s.len() && s[i] != '\n' {
                    i += 1;
                }
            }
        } else if let Some(level) = long_open(i) {
            let (body, end) = long_body(i, level);
            line += body.matches('\n').count();
            tokens.push(Token {
                kind: Lua::Str,
                text: body,
                line: start_line,
            });
            i = end;
        } else if c == '\'' || c == '"' {
            let mut text = String::new();
            i += 1;
            while i < s.len() && s[i] != c && s[i] != '\n' {
                if s[i] == '\\' && i + 1 < s.len() {
                    text.push(s[i]);
                    i += 1;
                }
                text.push(s[i]);
                i += 1;
            }
            i += 1;
            tokens.push(Token {
                kind: Lua::Str,
                text,
                line: start_line,
            });
        } else if c.is_ascii_alphabetic() || c == '_' {
            let from = i;
            while i < s.len() && (s[i].is_ascii_alphanumeric() || s[i] == '_') {
                i += 1;
            }
            let text: String = s[from..i].iter().collect();
            let kind = if KEYWORDS.contains(&text.as_str()) {
                Lua::Op
            } else {
                Lua::Name
            };
            tokens.push(Token { kind, text, line });
        } else if c.is_ascii_digit() || (c == '.' && s.get(i + 1).is_some_and(char::is_ascii_digit))
        {
            let from = i;
            while i < s.len()
                && (s[i].is_ascii_alphanumeric()
                    || s[i] == '.'
                    || ((s[i] == '-' || s[i] == '+') && "eEpP".contains(s[i - 1])))
            {
                i += 1;
            }
            tokens.push(Token {
                kind: Lua::Number,
                text: s[from..i].iter().collect(),
                line,
            });
        } else {
            let op = ["...", "==", "~=", "<=", ">=", "..", "::", "//", "<<", ">>"]
                .into_iter()
                .find(|op| s[i..].starts_with(&op.chars().collect::<Vec<_>>()))
                .map(str::to_owned)
                .unwrap_or_else(|| c.to_string());
            i += op.chars().count();
            tokens.push(Token {
                kind: Lua::Op,
                text: op,
                line,
            });
        }
    }
    tokens
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
