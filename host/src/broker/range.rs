//! Reading a stream's entries by ID range (`XRANGE`), with no consumer group: for tools
//! that look at entries without taking them (`sluice diff`, dead-letter listings).

use anyhow::Result;
use redis::Value;

use super::{Broker, reply};
use crate::message::Field;

impl Broker {
    /// Up to `count` entries of `stream` after ID `after` (`None`: from `start`, `-` for
    /// the first) up to and including `end` (`+` for the last), oldest first: `XRANGE
    /// stream (after end COUNT count` (<https://redis.io/docs/latest/commands/xrange/>).
    pub async fn range(
        &self,
        stream: &str,
        after: Option<&str>,
        start: &str,
        end: &str,
        count: usize,
    ) -> Result<Vec<(String, Vec<Field>)>> {
        let start = after.map_or_else(|| start.to_owned(), |id| format!("({id}"));
        let mut cmd = redis::cmd("XRANGE");
        cmd.arg(stream).arg(start).arg(end).arg("COUNT").arg(count);
        let value: Value = self
            .call(&format!("XRANGE on {stream:?}"), |mut c| async move {
                cmd.query_async(&mut c).await
            })
            .await?;
        let (entries, _) = reply::entry_list(value)?;
        Ok(entries.into_iter().map(|e| (e.id, e.fields)).collect())
    }
}
