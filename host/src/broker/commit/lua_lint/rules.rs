//! The rules of the bare-code lint over commit.lua's tokens, one fn each: every protocol
//! constant used in code, none made up or defined again; no opcode or status compared
//! with or stored as a number or numeric string, but for the flags of FLAG_COMPARISONS.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;

use super::lexer::{Lua, Token, left_operand, lua_tokens, right_operand};

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
const CODE_HOLDERS: [&str; 6] = ["kind", "op", "ARGV", "status", "result", "fenced"];

/// Where the script keeps statuses: the entry's `status`, and the tables it returns.
/// What is stored in them must be a status constant (or, in a table, the `status`).
const STATUS_TABLES: [&str; 3] = ["status", "result", "fenced"];

/// The one status variable among STATUS_TABLES (the others are tables).
const STATUS_VAR: &str = "status";

/// What may not follow a value stored in a status table: an operator or call that makes
/// it part of a larger expression, or a `,` of a multiple assignment.
const CONTINUES: [&str; 26] = [
    "and", "or", "+", "-", "*", "/", "//", "%", "^", "..", "(", ".", ":", "[", "==", "~=", "<",
    ">", "<=", ">=", "&", "|", "~", "<<", ">>", ",",
];

/// What `commit_lua_names_every_constant_and_no_bare_code` finds wrong with `script`
/// (one line each, `commit.lua:LINE: ...`), in the order of the script.
pub(super) fn bare_codes(script: &str, constants: &BTreeMap<String, String>) -> Vec<String> {
    let tokens = lua_tokens(script);
    let mut lint = Lint {
        tokens: &tokens,
        constants,
        statuses: constants
            .iter()
            .filter(|(_, v)| !v.starts_with('\''))
            .map(|(k, _)| k.as_str())
            .collect(),
        problems: Vec::new(),
        flags: BTreeMap::new(),
        flag_strings: BTreeSet::new(),
    };
    lint.unused_constants();
    for i in 0..tokens.len() {
        lint.constant_name(i);
        lint.comparison(i);
        lint.numeric_string(i);
        lint.status_store(i);
    }
    lint.flag_counts();
    lint.problems
}

/// One pass of the lint over a script's tokens, and what it has found so far.
struct Lint<'a> {
    tokens: &'a [Token],
    constants: &'a BTreeMap<String, String>,
    /// The status constants: those whose value is a number, not a quoted opcode.
    statuses: Vec<&'a str>,
    problems: Vec<String>,
    /// How many times the script makes each of FLAG_COMPARISONS' comparisons.
    flags: BTreeMap<String, usize>,
    /// The tokens of the numeric strings in FLAG_COMPARISONS' comparisons.
    flag_strings: BTreeSet<usize>,
}

impl<'a> Lint<'a> {
    /// Where `tokens[i]` is, for a message: `commit.lua:LINE`.
    fn at(&self, i: usize) -> String {
        format!("commit.lua:{}", self.tokens[i].line)
    }

    /// The text of the token before `tokens[i]`.
    fn prev(&self, i: usize) -> Option<&'a str> {
        let tokens = self.tokens;
        i.checked_sub(1).map(|p| tokens[p].text.as_str())
    }

    /// Every constant of the protocol is used in code.
    fn unused_constants(&mut self) {
        for name in self.constants.keys() {
            if !self
                .tokens
                .iter()
                .any(|t| t.kind == Lua::Name && t.text == *name)
            {
                self.problems.push(format!(
                    "commit.lua does not use {name} in its code (a comment or string does not count)"
                ));
            }
        }
    }

    /// A name spelled like a constant at `tokens[i]` is the protocol's (or Redis's), and
    /// the script does not define it again.
    fn constant_name(&mut self, i: usize) {
        let t = &self.tokens[i];
        if t.kind != Lua::Name || !looks_constant(&t.text) {
            return;
        }
        let at = self.at(i);
        let prev = self.prev(i);
        let field_of_redis = prev == Some(".")
            && i >= 2
            && self.tokens[i - 2].text == "redis"
            && t.text == "LOG_WARNING";
        if !self.constants.contains_key(&t.text)
            && !NOT_PROTOCOL.contains(&t.text.as_str())
            && !field_of_redis
        {
            self.problems.push(format!(
                "{at}: {} looks like a constant but the protocol does not define it: add it to broker/commit/protocol.rs, or spell the script's own name in lower case",
                t.text
            ));
        }
        if prev == Some("local") && self.constants.contains_key(&t.text) {
            self.problems.push(format!(
                "{at}: commit.lua defines {} again; the preamble generated from protocol.rs is its one definition",
                t.text
            ));
        }
    }

    /// A comparison at `tokens[i]` of an opcode or status holder with a number or numeric
    /// string is a bare code, unless it is one of FLAG_COMPARISONS (then counted).
    fn comparison(&mut self, i: usize) {
        let tokens = self.tokens;
        let t = &tokens[i];
        if !((t.text == "==" || t.text == "~=") && t.kind == Lua::Op) {
            return;
        }
        let left = left_operand(tokens, i);
        let right = right_operand(tokens, i + 1);
        let context: String = tokens[left.clone()]
            .iter()
            .chain(std::iter::once(t))
            .chain(&tokens[right.clone()])
            .map(Token::source)
            .collect();
        let numeric = |r: &Range<usize>| is_numeric(&tokens[r.clone()]);
        let holder = |r: &Range<usize>| {
            tokens
                .get(r.start)
                .is_some_and(|t| t.kind == Lua::Name && CODE_HOLDERS.contains(&t.text.as_str()))
        };
        if FLAG_COMPARISONS.iter().any(|(c, _)| *c == context) {
            *self.flags.entry(context).or_default() += 1;
            self.flag_strings.extend(right);
        } else if (holder(&left) && numeric(&right)) || (holder(&right) && numeric(&left)) {
            let at = self.at(i);
            self.problems.push(format!(
                "{at}: `{context}` compares with a bare code: name its constant (READ_*, WRITE_*, a status)"
            ));
        }
    }

    /// A numeric string at `tokens[i]` is a bare code, unless a flag comparison before it
    /// compares with it.
    fn numeric_string(&mut self, i: usize) {
        let t = &self.tokens[i];
        if t.kind == Lua::Str
            && is_numeric(std::slice::from_ref(t))
            && !self.flag_strings.contains(&i)
        {
            let at = self.at(i);
            self.problems.push(format!(
                "{at}: the numeric string {} is a bare code unless it is one of the flags in FLAG_COMPARISONS (broker/commit/lua_lint/rules.rs)",
                t.source()
            ));
        }
    }

    /// A store into a status table or the status variable at `tokens[i]`
    /// (STATUS_TABLES) is of one status constant (into a table also the status
    /// variable, or `{}` into the table itself), and never in a multiple assignment.
    fn status_store(&mut self, i: usize) {
        let tokens = self.tokens;
        let t = &tokens[i];
        if t.kind != Lua::Name
            || !STATUS_TABLES.contains(&t.text.as_str())
            || self.prev(i) == Some(".")
        {
            return;
        }
        let at = self.at(i);
        let target = right_operand(tokens, i);
        let next = tokens.get(target.end).map(|t| t.text.as_str());
        if next == Some("=") {
            let value = right_operand(tokens, target.end + 1);
            if !self.stores_a_status(&target, &value) {
                let text: String = tokens[target.start..value.end]
                    .iter()
                    .map(Token::source)
                    .collect();
                self.problems.push(format!(
                    "{at}: `{text}` stores something other than one status constant ({}) in {}",
                    self.statuses.join(", "),
                    t.text
                ));
            }
        } else if next == Some(",")
            && tokens[target.end..]
                .iter()
                .take_while(|n| n.line == t.line)
                .any(|n| n.text == "=" && n.kind == Lua::Op)
        {
            self.problems.push(format!(
                "{at}: assign {} on its own (one status constant), not in a multiple assignment",
                t.text
            ));
        }
    }

    /// Whether `target = value` (ranges of tokens) stores what a status table may hold.
    fn stores_a_status(&self, target: &Range<usize>, value: &Range<usize>) -> bool {
        let vt = &self.tokens[value.clone()];
        let variable = self.tokens[target.start].text == STATUS_VAR;
        if target.len() == 1 && !variable {
            return vt.len() == 2 && vt[0].text == "{" && vt[1].text == "}";
        }
        let after = self.tokens.get(value.end).map(|t| t.text.as_str());
        let status = vt.len() == 1 && self.statuses.contains(&vt[0].text.as_str());
        let copied = !variable && vt.len() == 1 && vt[0].text == STATUS_VAR;
        (status || copied) && !after.is_some_and(|a| CONTINUES.contains(&a))
    }

    /// The script makes each of FLAG_COMPARISONS' comparisons exactly as many times as
    /// it says.
    fn flag_counts(&mut self) {
        for (context, times) in FLAG_COMPARISONS {
            let found = self.flags.get(context).copied().unwrap_or(0);
            if found != times {
                self.problems.push(format!(
                    "commit.lua compares `{context}` {found} times, FLAG_COMPARISONS allows exactly {times}: a new flag comparison must be listed (and explained) there, a removed one taken out"
                ));
            }
        }
    }
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
