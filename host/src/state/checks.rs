//! What Redis accepts of handler state, the Rust side: integers as `INCRBY` reads them
//! and the write checks of the guarded commit. `commit.lua` holds the Lua side
//! (`redis_integer`, `writable`); `tests/protocol.rs` runs both against the same cases
//! on a real Redis.

use std::collections::{BTreeMap, HashMap};

use super::model::{Known, Write};

/// `bytes` as a decimal 64-bit integer, as Redis `INCRBY` reads it (`string2ll`): an
/// optional `-`, no `+`, no leading zero, not `-0`.
pub fn integer(bytes: &[u8]) -> Option<i64> {
    let text = std::str::from_utf8(bytes).ok()?;
    let digits = text.strip_prefix('-').unwrap_or(text);
    let canonical = text == "0"
        || (!digits.is_empty()
            && !digits.starts_with('0')
            && digits.bytes().all(|b| b.is_ascii_digit()));
    if !canonical {
        return None;
    }
    text.parse().ok()
}

/// Whether the guarded commit would apply `writes` to keys that hold what `stored` says
/// (`None`: nothing): a hash write needs a hash (or nothing), an add an integer (or
/// nothing) and a sum within 64 bits, each after the writes before it. The reason if
/// not.
pub fn check_writes(
    writes: &[Write],
    stored: impl Fn(&str) -> Option<Known>,
) -> Result<(), String> {
    let mut known: HashMap<&str, Known> = HashMap::new();
    for write in writes {
        let key = write.key();
        let current = known
            .get(key)
            .cloned()
            .or_else(|| stored(key))
            .unwrap_or(Known::Absent);
        let next = match (write, current) {
            (Write::Set { value, .. }, _) => Known::Str(value.clone()),
            (Write::Delete { .. }, _) => Known::Absent,
            (Write::HSet { .. }, Known::Absent | Known::Hash { .. }) => Known::Hash {
                fields: BTreeMap::new(),
                complete: false,
            },
            (Write::HSet { .. }, _) => {
                return Err(format!("HSET on {key:?}, which is not a hash"));
            }
            (Write::Add { delta, .. }, Known::Absent) => Known::Str(delta.to_string().into_bytes()),
            (Write::Add { delta, .. }, Known::Str(value)) => {
                match integer(&value).and_then(|n| n.checked_add(*delta)) {
                    Some(sum) => Known::Str(sum.to_string().into_bytes()),
                    None => {
                        return Err(format!(
                            "INCRBY {key:?} {delta}: it does not hold a 64-bit integer, or the sum overflows"
                        ));
                    }
                }
            }
            (Write::Add { .. }, _) => {
                return Err(format!("INCRBY on {key:?}, which is not a string"));
            }
        };
        known.insert(key, next);
    }
    Ok(())
}
