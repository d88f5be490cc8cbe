//! The commit's encoder: a batch of [`Ack`]s as the KEYS and ARGV of `commit.lua`, in
//! the layout described at the top of the script, with the opcodes of
//! [`super::protocol`].

use std::collections::HashMap;
use std::collections::hash_map::Entry;

use redis::ToRedisArgs;

use super::protocol::{ReadOp, WriteOp};
use super::{Ack, Fence, KeyMap, MAX_FIELDS_PER_OUTPUT};
use crate::broker::consumer_id::ConsumerId;
use crate::broker::fault::Fault;
use crate::message::{Output, StreamId};
use crate::state::{Read, Write};

/// Where an encoded commit goes: a script invocation, or a record (tests).
pub(crate) trait Sink {
    /// Appends a key to KEYS.
    fn key(&mut self, key: &str);
    /// Appends an argument (or several: a value's Redis arguments) to ARGV.
    fn arg<T: ToRedisArgs>(&mut self, arg: T) -> &mut Self;
}

impl Sink for redis::ScriptInvocation<'_> {
    fn key(&mut self, key: &str) {
        redis::ScriptInvocation::key(self, key);
    }

    fn arg<T: ToRedisArgs>(&mut self, arg: T) -> &mut Self {
        redis::ScriptInvocation::arg(self, arg)
    }
}

/// An encoded commit as plain data: what the script would get.
#[cfg(test)]
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Recorded {
    /// KEYS, in order.
    pub(crate) keys: Vec<String>,
    /// ARGV, in order.
    pub(crate) args: Vec<Vec<u8>>,
}

#[cfg(test)]
impl Sink for Recorded {
    fn key(&mut self, key: &str) {
        self.keys.push(key.to_owned());
    }

    fn arg<T: ToRedisArgs>(&mut self, arg: T) -> &mut Self {
        self.args.extend(arg.to_redis_args());
        self
    }
}

/// Each key's index in KEYS (Lua arrays start at 1; `KEYS[1]` is the input stream).
struct KeyIndex<'a> {
    index: HashMap<&'a str, usize>,
    /// How many output streams follow the input stream.
    outputs: usize,
    /// The fence's lease key's index (a partition or name lease), 0 for none.
    lease: usize,
}

impl<'a> KeyIndex<'a> {
    fn of(&self, key: &str) -> usize {
        self.index[key]
    }

    /// Indexes `key` unless it is already, appending its `stored` name to KEYS.
    fn add<S: Sink>(&mut self, sink: &mut S, key: &'a str, stored: impl FnOnce() -> String) {
        let next = self.index.len() + 2;
        if let Entry::Vacant(slot) = self.index.entry(key) {
            slot.insert(next);
            sink.key(&stored());
        }
    }
}

/// Encodes the commit of `acks` into `sink`; an output too wide for one `XADD` in Lua
/// is the entry's fault. `acks` is not empty.
pub(crate) fn encode<S: Sink>(
    sink: &mut S,
    id: &ConsumerId,
    keys: &KeyMap,
    fence: Option<&Fence>,
    acks: &[Ack],
    adopt: bool,
) -> Result<(), Fault> {
    check_widths(acks)?;
    let index = key_index(sink, id, keys, fence, acks);
    let ids = || acks.iter().map(|a| a.id.as_str());
    let order = |id: &&str| StreamId::parse(id);
    let (Some(low), Some(high)) = (ids().min_by_key(order), ids().max_by_key(order)) else {
        unreachable!("the caller commits at least one entry");
    };
    sink.arg(&id.group)
        .arg(&id.name)
        .arg(acks.len())
        .arg(low)
        .arg(high)
        .arg(u8::from(adopt))
        .arg(index.outputs)
        .arg(index.lease)
        .arg(fence.map_or("", |f| f.value.as_str()));
    for ack in acks {
        sink.arg(&ack.id).arg(ack.outputs.len());
        for output in &ack.outputs {
            encode_output(sink, &index, output);
        }
        sink.arg(ack.state.reads.len());
        for read in &ack.state.reads {
            encode_read(sink, &index, read);
        }
        encode_writes(sink, &index, &ack.state.writes);
    }
    Ok(())
}

/// Refuses an output wider than [`MAX_FIELDS_PER_OUTPUT`]: the entry's fault.
fn check_widths(acks: &[Ack]) -> Result<(), Fault> {
    let too_wide = acks
        .iter()
        .flat_map(|a| &a.outputs)
        .find(|o| o.fields.len() > MAX_FIELDS_PER_OUTPUT);
    match too_wide {
        Some(output) => Err(Fault::entry_refused(
            "commit",
            &format!(
                "an output to {:?} has {} fields; at most {MAX_FIELDS_PER_OUTPUT} fit one commit",
                output.stream,
                output.fields.len()
            ),
        )),
        None => Ok(()),
    }
}

/// Appends KEYS: the input stream, every output stream, every state key (as stored),
/// then the fence's lease key if any; each once.
fn key_index<'a, S: Sink>(
    sink: &mut S,
    id: &ConsumerId,
    keys: &KeyMap,
    fence: Option<&Fence>,
    acks: &'a [Ack],
) -> KeyIndex<'a> {
    sink.key(&id.stream);
    let mut index = KeyIndex {
        index: HashMap::new(),
        outputs: 0,
        lease: 0,
    };
    for output in acks.iter().flat_map(|a| &a.outputs) {
        index.add(sink, &output.stream, || output.stream.clone());
    }
    index.outputs = index.index.len();
    let state_keys = acks.iter().flat_map(|a| {
        let reads = a.state.reads.iter().map(Read::key);
        reads.chain(a.state.writes.iter().map(Write::key))
    });
    for key in state_keys {
        index.add(sink, key, || keys.stored(key).into_owned());
    }
    if let Some(fence) = fence {
        sink.key(&fence.key);
        index.lease = index.index.len() + 2;
    }
    index
}

/// One output: key index, field count, then its names and values.
fn encode_output<S: Sink>(sink: &mut S, index: &KeyIndex, output: &Output) {
    sink.arg(index.of(&output.stream)).arg(output.fields.len());
    match &output.raw_names {
        Some(raw) if raw.len() == output.fields.len() => {
            for (name, (_, value)) in raw.iter().zip(&output.fields) {
                sink.arg(name).arg(value);
            }
        }
        _ => {
            for (name, value) in &output.fields {
                sink.arg(name).arg(value);
            }
        }
    }
}

/// One read to check: its op, key index, then what it saw.
fn encode_read<S: Sink>(sink: &mut S, index: &KeyIndex, read: &Read) {
    let key = index.of(read.key());
    match read {
        Read::Str { seen, .. } => {
            sink.arg(ReadOp::Get.code())
                .arg(key)
                .arg(u8::from(seen.is_some()));
            if let Some(value) = seen {
                sink.arg(value);
            }
        }
        Read::Field { field, seen, .. } => {
            sink.arg(ReadOp::HGet.code())
                .arg(key)
                .arg(field)
                .arg(u8::from(seen.is_some()));
            if let Some(value) = seen {
                sink.arg(value);
            }
        }
        Read::Hash { seen, .. } => {
            sink.arg(ReadOp::HGetAll.code()).arg(key).arg(seen.len());
            for (field, value) in seen {
                sink.arg(field).arg(value);
            }
        }
    }
}

/// Fields written to one hash with one `HSET`: (field, value).
type HashFields<'a> = Vec<(&'a str, &'a [u8])>;

/// An entry's writes: their count, then each op, key index and operands. Consecutive
/// fields of one hash go in one `HSET` (an entry usually writes several fields of one
/// record), a thousand at most.
fn encode_writes<S: Sink>(sink: &mut S, index: &KeyIndex, writes: &[Write]) {
    let mut grouped: Vec<(&Write, HashFields)> = Vec::new();
    for write in writes {
        if let Write::HSet { key, field, value } = write
            && let Some((Write::HSet { key: last, .. }, fields)) = grouped.last_mut()
            && last == key
            && fields.len() < 1_000
        {
            fields.push((field, value));
            continue;
        }
        let fields = match write {
            Write::HSet { field, value, .. } => vec![(field.as_str(), value.as_slice())],
            _ => Vec::new(),
        };
        grouped.push((write, fields));
    }
    sink.arg(grouped.len());
    for (write, fields) in grouped {
        let key = index.of(write.key());
        match write {
            Write::Set { value, .. } => {
                sink.arg(WriteOp::Set.code()).arg(key).arg(value);
            }
            Write::Delete { .. } => {
                sink.arg(WriteOp::Delete.code()).arg(key);
            }
            Write::HSet { .. } => {
                sink.arg(WriteOp::HSet.code()).arg(key).arg(fields.len());
                for (field, value) in fields {
                    sink.arg(field).arg(value);
                }
            }
            Write::Add { delta, .. } => {
                sink.arg(WriteOp::Add.code()).arg(key).arg(delta);
            }
        }
    }
}
