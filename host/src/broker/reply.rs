//! Parsing of stream replies into domain types, keeping field order (redis-rs's
//! `StreamReadReply` uses a `HashMap` and would lose it) and binary values.

use anyhow::{Result, anyhow, bail};
use redis::Value;

use crate::message::{Entry, Field};

/// Parses an `XREADGROUP` reply for one stream into entries, and the IDs of pending
/// entries that were deleted from the stream (they come back without fields).
pub fn stream_entries(reply: Value) -> Result<(Vec<Entry>, Vec<String>)> {
    let streams = match reply {
        Value::Nil => return Ok((Vec::new(), Vec::new())),
        Value::Array(streams) => streams
            .into_iter()
            .map(|s| match s {
                Value::Array(mut pair) if pair.len() == 2 => Ok(pair.remove(1)),
                other => Err(anyhow!("unexpected stream in XREADGROUP reply: {other:?}")),
            })
            .collect::<Result<Vec<_>>>()?,
        Value::Map(streams) => streams.into_iter().map(|(_, v)| v).collect(),
        other => bail!("unexpected XREADGROUP reply: {other:?}"),
    };
    let mut entries = Vec::new();
    let mut deleted = Vec::new();
    for list in streams {
        let (mut e, mut d) = entry_list(list)?;
        entries.append(&mut e);
        deleted.append(&mut d);
    }
    Ok((entries, deleted))
}

/// Parses a list of entries (`XCLAIM`, `XRANGE`, one stream of `XREADGROUP`); entries
/// without fields were deleted from the stream and are returned by ID only.
pub fn entry_list(list: Value) -> Result<(Vec<Entry>, Vec<String>)> {
    let mut entries = Vec::new();
    let mut deleted = Vec::new();
    let Value::Array(items) = list else {
        bail!("unexpected entry list in stream reply: {list:?}");
    };
    {
        for item in items {
            let Value::Array(mut pair) = item else {
                bail!("unexpected entry in XREADGROUP reply: {item:?}");
            };
            if pair.len() != 2 {
                bail!("unexpected entry in XREADGROUP reply: {pair:?}");
            }
            let fields = pair.pop().unwrap_or(Value::Nil);
            let id = text(pair.pop().unwrap_or(Value::Nil))?;
            match fields {
                Value::Nil => deleted.push(id),
                Value::Array(flat) => {
                    if !flat.len().is_multiple_of(2) {
                        bail!("stream entry {id} has an odd number of field items");
                    }
                    let mut items = flat.into_iter();
                    let mut raw = Vec::new();
                    while let (Some(name), Some(value)) = (items.next(), items.next()) {
                        raw.push((bytes(name)?, bytes(value)?));
                    }
                    entries.push(entry(id, raw));
                }
                Value::Map(map) => {
                    let raw = map
                        .into_iter()
                        .map(|(k, v)| Ok((bytes(k)?, bytes(v)?)))
                        .collect::<Result<_>>()?;
                    entries.push(entry(id, raw));
                }
                other => bail!("unexpected fields of entry {id}: {other:?}"),
            }
        }
    }
    Ok((entries, deleted))
}

/// The group's state as `XINFO GROUPS` shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupInfo {
    /// Entries pending in the group (delivered, not acknowledged).
    pub pending: u64,
    /// Entries in the stream not yet delivered to the group (0 when Redis cannot tell).
    pub lag: u64,
    /// Whether Redis told the lag: it answers nil when entries were deleted between the
    /// group's last-delivered ID and the stream's end, or before Redis 7.0
    /// (<https://redis.io/docs/latest/commands/xinfo-groups/>).
    pub lag_known: bool,
    /// Entries delivered to the group so far (`entries-read`, Redis 7.0+), if Redis
    /// knows: it grows by the group's delivery rate, across all its consumers.
    pub entries_read: Option<u64>,
    /// The ID of the last entry delivered to the group.
    pub last_delivered: String,
}

/// A row of the extended form of `XPENDING`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingEntry {
    /// The entry ID.
    pub id: String,
    /// The consumer that owns it.
    pub consumer: String,
    /// Milliseconds since it was last delivered.
    pub idle_ms: u64,
    /// How many times it was delivered.
    pub deliveries: u32,
}

/// Parses the extended form of `XPENDING`.
pub fn pending_entries(reply: Value) -> Result<Vec<PendingEntry>> {
    let Value::Array(rows) = reply else {
        bail!("unexpected XPENDING reply: {reply:?}");
    };
    rows.into_iter()
        .map(|row| match row {
            Value::Array(cols) if cols.len() == 4 => {
                let mut cols = cols.into_iter();
                let id = text(cols.next().unwrap_or(Value::Nil))?;
                let consumer = text(cols.next().unwrap_or(Value::Nil))?;
                let (Some(Value::Int(idle)), Some(Value::Int(count))) = (cols.next(), cols.next())
                else {
                    bail!("unexpected XPENDING row for {id}");
                };
                Ok(PendingEntry {
                    id,
                    consumer,
                    idle_ms: u64::try_from(idle).unwrap_or(0),
                    deliveries: u32::try_from(count).unwrap_or(u32::MAX),
                })
            }
            other => bail!("unexpected XPENDING row: {other:?}"),
        })
        .collect()
}

/// An entry from its raw fields. Names that are all UTF-8 (the rule) become `String`s
/// without copying; otherwise the raw names are kept beside their lossy form, so that the
/// entry can be dead-lettered byte for byte (see [`Entry::raw_names`]).
fn entry(id: String, raw: Vec<(Vec<u8>, Vec<u8>)>) -> Entry {
    let all_text = raw
        .iter()
        .all(|(name, _)| std::str::from_utf8(name).is_ok());
    let raw_names = (!all_text).then(|| raw.iter().map(|(name, _)| name.clone()).collect());
    let fields: Vec<Field> = raw
        .into_iter()
        .map(|(name, value)| {
            let name = String::from_utf8(name)
                .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
            (name, value)
        })
        .collect();
    Entry {
        id,
        fields,
        attempt: 1,
        raw_names,
        trace: None,
    }
}

fn bytes(value: Value) -> Result<Vec<u8>> {
    match value {
        Value::BulkString(b) => Ok(b),
        Value::SimpleString(s) => Ok(s.into_bytes()),
        Value::VerbatimString { text, .. } => Ok(text.into_bytes()),
        Value::Int(n) => Ok(n.to_string().into_bytes()),
        other => bail!("unexpected value in stream reply: {other:?}"),
    }
}

/// Entry IDs, consumer names and stream keys as text (they are ASCII in practice; other
/// bytes are replaced).
fn text(value: Value) -> Result<String> {
    let raw = bytes(value)?;
    Ok(match String::from_utf8(raw) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    })
}

/// Finds `group` in an `XINFO GROUPS` reply: its pending count, lag (0 when Redis cannot
/// tell) and last delivered ID. `None` if the group is not listed.
pub fn group_info(reply: Value, group: &str) -> Option<GroupInfo> {
    let Value::Array(groups) = reply else {
        return None;
    };
    for info in groups {
        let pairs: Vec<(Value, Value)> = match info {
            Value::Map(pairs) => pairs,
            Value::Array(flat) => {
                let mut items = flat.into_iter();
                let mut pairs = Vec::new();
                while let (Some(k), Some(v)) = (items.next(), items.next()) {
                    pairs.push((k, v));
                }
                pairs
            }
            _ => continue,
        };
        let field = |name: &str| {
            pairs.iter().find_map(|(k, v)| match k {
                Value::BulkString(b) if b == name.as_bytes() => Some(v.clone()),
                Value::SimpleString(s) if s == name => Some(v.clone()),
                _ => None,
            })
        };
        let is_group = matches!(field("name"), Some(Value::BulkString(b)) if b == group.as_bytes());
        if is_group {
            let number = |v: Option<Value>| match v {
                Some(Value::Int(n)) => u64::try_from(n).unwrap_or(0),
                _ => 0,
            };
            let known = |name: &str| match field(name) {
                Some(Value::Int(n)) => u64::try_from(n).ok(),
                _ => None,
            };
            return Some(GroupInfo {
                pending: number(field("pending")),
                lag: number(field("lag")),
                lag_known: known("lag").is_some(),
                entries_read: known("entries-read"),
                last_delivered: field("last-delivered-id")
                    .and_then(|v| text(v).ok())
                    .unwrap_or_default(),
            });
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &[u8]) -> Value {
        Value::BulkString(s.to_vec())
    }

    /// RESP2 and RESP3 `XREADGROUP` replies give the same entries, in field order,
    /// repeated names kept; a pending entry deleted from the stream comes back by ID.
    #[test]
    fn stream_replies_keep_order_and_report_deleted_entries() {
        let entries = Value::Array(vec![
            Value::Array(vec![
                bulk(b"1-1"),
                Value::Array(vec![
                    bulk(b"b"),
                    bulk(b"2"),
                    bulk(b"a"),
                    bulk(b"\xff"),
                    bulk(b"b"),
                    bulk(b"3"),
                ]),
            ]),
            Value::Array(vec![bulk(b"1-2"), Value::Nil]),
        ]);
        let resp2 = Value::Array(vec![Value::Array(vec![bulk(b"IN"), entries.clone()])]);
        let resp3 = Value::Map(vec![(bulk(b"IN"), entries)]);
        for reply in [resp2, resp3] {
            let (read, deleted) = stream_entries(reply).expect("parses");
            assert_eq!(deleted, ["1-2"]);
            assert_eq!(read.len(), 1);
            assert_eq!(read[0].id, "1-1");
            let names: Vec<&str> = read[0].fields.iter().map(|(n, _)| n.as_str()).collect();
            assert_eq!(names, ["b", "a", "b"]);
            assert_eq!(read[0].fields[1].1, b"\xff");
            assert_eq!(read[0].raw_names, None);
        }
        assert_eq!(stream_entries(Value::Nil).expect("nil").0, Vec::new());
        assert!(stream_entries(Value::Int(1)).is_err());
    }

    /// A name that is not UTF-8 keeps its bytes beside the lossy text.
    #[test]
    fn names_that_are_not_utf8_keep_their_bytes() {
        let list = Value::Array(vec![Value::Array(vec![
            bulk(b"1-1"),
            Value::Array(vec![bulk(b"\xff"), bulk(b"a"), bulk(b"ok"), bulk(b"b")]),
        ])]);
        let (read, _) = entry_list(list).expect("parses");
        assert_eq!(
            read[0].raw_names,
            Some(vec![b"\xff".to_vec(), b"ok".to_vec()])
        );
        let odd = Value::Array(vec![Value::Array(vec![
            bulk(b"1-1"),
            Value::Array(vec![bulk(b"a")]),
        ])]);
        assert!(entry_list(odd).is_err(), "an odd number of field items");
    }

    #[test]
    fn pending_rows_and_group_info_parse() {
        let rows = Value::Array(vec![Value::Array(vec![
            bulk(b"5-0"),
            bulk(b"worker"),
            Value::Int(1500),
            Value::Int(3),
        ])]);
        assert_eq!(
            pending_entries(rows).expect("parses"),
            [PendingEntry {
                id: "5-0".into(),
                consumer: "worker".into(),
                idle_ms: 1500,
                deliveries: 3
            }]
        );
        assert!(pending_entries(Value::Array(vec![Value::Int(1)])).is_err());
        let group = |name: &[u8], pending: i64| {
            vec![
                bulk(b"name"),
                bulk(name),
                bulk(b"pending"),
                Value::Int(pending),
                bulk(b"last-delivered-id"),
                bulk(b"9-1"),
                bulk(b"lag"),
                Value::Nil,
            ]
        };
        let resp2 = Value::Array(vec![
            Value::Array(group(b"other", 1)),
            Value::Array(group(b"G", 7)),
        ]);
        let info = group_info(resp2, "G").expect("listed");
        assert_eq!((info.pending, info.lag), (7, 0), "a nil lag reads 0");
        assert!(!info.lag_known, "and is not known");
        assert_eq!(info.last_delivered, "9-1");
        let flat = group(b"G", 2);
        let resp3 = Value::Array(vec![Value::Map(
            flat.chunks(2)
                .map(|p| (p[0].clone(), p[1].clone()))
                .collect(),
        )]);
        assert_eq!(group_info(resp3, "G").expect("listed").pending, 2);
        assert_eq!(group_info(Value::Array(vec![]), "G"), None);
    }
}
