//! Dead-letter pages bounded in bytes: read and cut inside Redis by a script, one entry
//! at a time, so that listing huge letters costs the daemon no more than a page.

use std::sync::LazyLock;

use anyhow::{Context, Result};
use redis::Value;

use super::Broker;
use crate::message::Field;

static PAGE: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(include_str!("dead_page.lua")));

/// How much one page may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageLimits {
    /// Entries at most.
    pub count: usize,
    /// Bytes of one field name or value at most; longer ones are cut.
    pub value_bytes: usize,
    /// Bytes of the page's names and values at most.
    pub page_bytes: usize,
    /// Whether the first entry is returned whatever its size, cut to fit (so that a
    /// reader always moves on); otherwise only entries that fit whole are.
    pub cut_first: bool,
}

/// An entry as a page holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageEntry {
    /// Its ID.
    pub id: String,
    /// Its fields, in order; values cut to the limits.
    pub fields: Vec<Field>,
    /// Whether a name or value was cut, or fields were left out.
    pub cut: bool,
}

/// A page of a stream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Page {
    /// The entries, oldest first.
    pub entries: Vec<PageEntry>,
    /// The page is full (by count or bytes): entries may follow the last one.
    pub more: bool,
}

impl Broker {
    /// Entries of stream `dead` after ID `after` (`None`: from the start), oldest first,
    /// within `limits`.
    pub async fn dead_page(
        &self,
        dead: &str,
        after: Option<&str>,
        limits: PageLimits,
    ) -> Result<Page> {
        let start = after.map_or_else(|| "-".to_owned(), |id| format!("({id}"));
        let mut call = PAGE.key(dead);
        call.arg(start)
            .arg(limits.count)
            .arg(limits.value_bytes)
            .arg(limits.page_bytes)
            .arg(if limits.cut_first { "1" } else { "0" });
        let reply: Vec<Value> = self
            .call(&format!("reading a page of {dead:?}"), |mut c| async move {
                call.invoke_async(&mut c).await
            })
            .await?;
        let mut reply = reply.into_iter();
        let over_budget = matches!(reply.next(), Some(Value::Int(1)));
        let entries = reply
            .map(|row| {
                let (id, cut, flat): (String, i64, Vec<Vec<u8>>) =
                    redis::from_redis_value(row).context("unexpected dead-letter page reply")?;
                let fields = flat
                    .chunks(2)
                    .map(|pair| {
                        let name = String::from_utf8_lossy(&pair[0]).into_owned();
                        (name, pair.get(1).cloned().unwrap_or_default())
                    })
                    .collect();
                Ok(PageEntry {
                    id,
                    fields,
                    cut: cut != 0,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let more = over_budget || entries.len() == limits.count;
        Ok(Page { entries, more })
    }
}
