//! The lint that keeps `commit.lua` free of bare codes (test-only): the script names the
//! protocol's constants, never the numbers or numeric strings behind them.
//!
//! - [`lexer`]: a tiny Lua lexer (no comments; quoted and long strings) and the operands
//!   on either side of an operator;
//! - [`rules`]: what the lint finds wrong with a script, one fn per rule, and the
//!   allow-lists it reads (flag comparisons, code holders, status tables);
//! - `tests`: the lint over `commit.lua`, and the breaches it must catch.

mod lexer;
mod rules;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use super::protocol;

/// The commit script as written, without the generated preamble.
const COMMIT_LUA: &str = include_str!("../commit.lua");

/// The constants the script is loaded with, parsed back: (name, value).
pub(super) fn preamble() -> BTreeMap<String, String> {
    protocol::lua_constants()
        .lines()
        .filter_map(|line| line.strip_prefix("local "))
        .filter_map(|rest| rest.split_once(" = "))
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect()
}
