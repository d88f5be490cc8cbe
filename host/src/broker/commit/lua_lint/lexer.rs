//! A tiny Lua lexer, enough for the lint: names, numbers, strings (quoted, with escapes,
//! and long) and operators, without comments; and the operands on either side of an
//! operator.

/// Lua's keywords but the values (`nil`, `true`, `false`): lexed as operators.
const KEYWORDS: [&str; 19] = [
    "and", "break", "do", "else", "elseif", "end", "for", "function", "goto", "if", "in", "local",
    "not", "or", "repeat", "return", "then", "until", "while",
];

/// Lua's operators of more than one character, each before any it starts with.
const LONG_OPS: [&str; 10] = ["...", "==", "~=", "<=", ">=", "..", "::", "//", "<<", ">>"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Lua {
    Name,
    Number,
    /// A quoted or long string; its text is what is between the delimiters.
    Str,
    Op,
}

#[derive(Debug)]
pub(super) struct Token {
    pub(super) kind: Lua,
    pub(super) text: String,
    pub(super) line: usize,
}

impl Token {
    /// How the token reads in a message (strings quoted the one way).
    pub(super) fn source(&self) -> String {
        match self.kind {
            Lua::Str => format!("'{}'", self.text),
            _ => self.text.clone(),
        }
    }
}

/// Lua's tokens without comments (`-- ...`, `--[[ ... ]]`, `--[==[ ... ]==]`); strings
/// in either quote, with escapes, and long (`[[ ... ]]`, `[=[ ... ]=]`).
pub(super) fn lua_tokens(source: &str) -> Vec<Token> {
    let mut lexer = Lexer {
        s: source.chars().collect(),
        i: 0,
        line: 1,
        tokens: Vec::new(),
    };
    while lexer.i < lexer.s.len() {
        lexer.step();
    }
    lexer.tokens
}

/// Where the lexer is in the source (`i`, on `line`), and the tokens so far.
struct Lexer {
    s: Vec<char>,
    i: usize,
    line: usize,
    tokens: Vec<Token>,
}

impl Lexer {
    /// Lexes what starts at `i`: a line break, a blank, a comment or one token.
    fn step(&mut self) {
        let (s, i) = (&self.s, self.i);
        let c = s[i];
        if c == '\n' {
            self.line += 1;
            self.i += 1;
        } else if c.is_whitespace() {
            self.i += 1;
        } else if s[i..].starts_with(&['-', '-']) {
            self.comment();
        } else if let Some(level) = self.long_open(i) {
            self.long_string(level);
        } else if c == '\'' || c == '"' {
            self.quoted(c);
        } else if c.is_ascii_alphabetic() || c == '_' {
            self.name();
        } else if c.is_ascii_digit() || (c == '.' && s.get(i + 1).is_some_and(char::is_ascii_digit))
        {
            self.number();
        } else {
            self.op(c);
        }
    }

    fn push(&mut self, kind: Lua, text: String, line: usize) {
        self.tokens.push(Token { kind, text, line });
    }

    /// A long bracket at `at` (`[`, any `=`, `[`): its level.
    fn long_open(&self, at: usize) -> Option<usize> {
        let s = &self.s;
        if s.get(at) != Some(&'[') {
            return None;
        }
        let level = s[at + 1..].iter().take_while(|c| **c == '=').count();
        (s.get(at + 1 + level) == Some(&'[')).then_some(level)
    }

    /// From a long bracket of `level` opened at `at`: its text and the index past it.
    fn long_body(&self, at: usize, level: usize) -> (String, usize) {
        let s = &self.s;
        let close: Vec<char> = std::iter::once(']')
            .chain(std::iter::repeat_n('=', level))
            .chain(std::iter::once(']'))
            .collect();
        let from = at + level + 2;
        let mut j = from;
        while j < s.len() && !s[j..].starts_with(&close) {
            j += 1;
        }
        (s[from..j].iter().collect(), (j + close.len()).min(s.len()))
    }

    /// A comment at `i`, to the end of the line or in a long bracket: skipped.
    fn comment(&mut self) {
        if let Some(level) = self.long_open(self.i + 2) {
            let (body, end) = self.long_body(self.i + 2, level);
            self.line += body.matches('\n').count();
            self.i = end;
        } else {
            while self.i < self.s.len() && self.s[self.i] != '\n' {
                self.i += 1;
            }
        }
    }

    /// A long string of `level` at `i`, as a token on the line it starts on.
    fn long_string(&mut self, level: usize) {
        let line = self.line;
        let (body, end) = self.long_body(self.i, level);
        self.line += body.matches('\n').count();
        self.push(Lua::Str, body, line);
        self.i = end;
    }

    /// A string in `quote` at `i`, its escapes as written, to its closing quote or the
    /// end of the line.
    fn quoted(&mut self, quote: char) {
        let s = &self.s;
        let mut text = String::new();
        let mut i = self.i + 1;
        while i < s.len() && s[i] != quote && s[i] != '\n' {
            if s[i] == '\\' && i + 1 < s.len() {
                text.push(s[i]);
                i += 1;
            }
            text.push(s[i]);
            i += 1;
        }
        self.i = i + 1;
        self.push(Lua::Str, text, self.line);
    }

    /// A name at `i`, or a keyword (lexed as an operator).
    fn name(&mut self) {
        let s = &self.s;
        let from = self.i;
        let mut i = from;
        while i < s.len() && (s[i].is_ascii_alphanumeric() || s[i] == '_') {
            i += 1;
        }
        let text: String = s[from..i].iter().collect();
        let kind = if KEYWORDS.contains(&text.as_str()) {
            Lua::Op
        } else {
            Lua::Name
        };
        self.i = i;
        self.push(kind, text, self.line);
    }

    /// A number at `i`, with an exponent's sign (`1e-3`, `0x1p+4`).
    fn number(&mut self) {
        let s = &self.s;
        let from = self.i;
        let mut i = from;
        while i < s.len()
            && (s[i].is_ascii_alphanumeric()
                || s[i] == '.'
                || ((s[i] == '-' || s[i] == '+') && "eEpP".contains(s[i - 1])))
        {
            i += 1;
        }
        let text = s[from..i].iter().collect();
        self.i = i;
        self.push(Lua::Number, text, self.line);
    }

    /// An operator at `i` (its first character `c`): one of LONG_OPS, else `c` alone.
    fn op(&mut self, c: char) {
        let op = LONG_OPS
            .into_iter()
            .find(|op| self.s[self.i..].starts_with(&op.chars().collect::<Vec<_>>()))
            .map(str::to_owned)
            .unwrap_or_else(|| c.to_string());
        self.i += op.chars().count();
        self.push(Lua::Op, op, self.line);
    }
}

/// The operand that ends just before `tokens[op]`: a name, literal or parenthesized
/// expression with what indexes or calls it (`ARGV[p + 2]`, `redis.call(...)`).
pub(super) fn left_operand(tokens: &[Token], op: usize) -> std::ops::Range<usize> {
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
pub(super) fn right_operand(tokens: &[Token], at: usize) -> std::ops::Range<usize> {
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
