//! The consumer group's life: creation, re-creation after a loss, what the ACL user may
//! not do, and what `XINFO` tells of the group and its stream.

use redis::Value;

use super::Consumer;
use crate::broker::{Fault, reply};
use crate::message::StreamId;

/// Where a consumer group lost at runtime was created again, and why there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recreated {
    /// The ID the group starts after.
    pub id: String,
    /// Why that ID.
    pub why: String,
}

impl Consumer {
    /// Creates the group at the start of the stream (and the stream) unless it exists.
    pub async fn ensure_group(&mut self) -> Result<(), Fault> {
        match self.create_group("0").await? {
            true => {
                tracing::info!(stream = %self.id.stream, group = %self.id.group, "created consumer group");
                Ok(())
            }
            false => Ok(()),
        }
    }

    /// `XGROUP CREATE stream group id MKSTREAM`; false if the group exists (BUSYGROUP).
    async fn create_group(&mut self, id: &str) -> Result<bool, Fault> {
        let created = self
            .commands
            .query::<()>(
                "XGROUP CREATE",
                None,
                redis::cmd("XGROUP")
                    .arg("CREATE")
                    .arg(&self.id.stream)
                    .arg(&self.id.group)
                    .arg(id)
                    .arg("MKSTREAM"),
            )
            .await;
        match created {
            Ok(()) => Ok(true),
            Err(f) if f.code() == "BUSYGROUP" => Ok(false),
            Err(f) => Err(f),
        }
    }

    /// Creates the consumer group again after it was lost (`NOGROUP`: the stream or the
    /// group was deleted, `FLUSHALL`, a restart without persistence), starting after
    /// `last_known` (the last entry ID this pipeline knows was delivered to the group) so
    /// that every entry added after the loss is delivered, and nothing before it twice.
    /// If the stream's newest ID is below `last_known`, the stream itself is new (its IDs
    /// started again) and the group starts at its beginning. Returns `None` if another
    /// consumer created the group first.
    pub async fn recreate_group(
        &mut self,
        last_known: Option<&str>,
    ) -> Result<Option<Recreated>, Fault> {
        let newest = self.newest_id().await?;
        let choice = match (last_known, newest) {
            (None, _) => Recreated {
                id: "0".into(),
                why: "no entry of the group was known to be delivered before the loss: every entry in the stream is delivered".into(),
            },
            (Some(known), Some(newest)) if StreamId::parse(&newest) < StreamId::parse(known) => Recreated {
                id: "0".into(),
                why: format!("the stream's newest entry {newest} is older than {known}, the last one delivered before the loss: the stream was created anew, so all of it is new"),
            },
            (Some(_), None) => Recreated {
                id: "0".into(),
                why: "the stream is empty or gone: every entry added to it from now on is new".into(),
            },
            (Some(known), Some(_)) => Recreated {
                id: known.to_owned(),
                why: format!("{known} is the last entry known delivered to the group before the loss: entries added after it (during and after the loss) are delivered, those before it are not delivered again"),
            },
        };
        Ok(self.create_group(&choice.id).await?.then_some(choice))
    }

    /// The stream's newest entry ID, `None` if the stream does not exist or is empty.
    async fn newest_id(&mut self) -> Result<Option<String>, Fault> {
        let reply: Value = self
            .commands
            .query(
                "XREVRANGE",
                None,
                redis::cmd("XREVRANGE")
                    .arg(&self.id.stream)
                    .arg("+")
                    .arg("-")
                    .arg("COUNT")
                    .arg(1),
            )
            .await?;
        let (entries, _) =
            reply::entry_list(reply).map_err(|e| Fault::unexpected("XREVRANGE", &e))?;
        Ok(entries.into_iter().next().map(|e| e.id))
    }

    /// What the ACL user is missing, found by asking Redis to check each of `keys` with
    /// a script that does nothing (`EVAL` checks its declared keys' permissions first).
    /// `None` if every key is allowed.
    pub async fn missing_permission(&mut self, keys: &[String]) -> Option<String> {
        for key in keys {
            let probe = self
                .commands
                .query::<i64>(
                    "permission check",
                    None,
                    redis::cmd("EVAL").arg("return 1").arg(1).arg(key),
                )
                .await;
            if let Err(f) = probe
                && f.code() == "NOPERM"
            {
                let detail = f.to_string();
                if detail.contains("command") {
                    return Some(format!(
                        "the ACL user {:?} may not run a command Sluice needs ({detail}); grant it, e.g. ACL SETUSER {} +@stream +@scripting",
                        self.user, self.user
                    ));
                }
                return Some(format!(
                    "the ACL user {:?} has no permission for key {key:?}; grant it with ACL SETUSER {} ~{key}",
                    self.user, self.user
                ));
            }
        }
        None
    }

    /// The group's pending count, lag and last delivered ID, from `XINFO GROUPS`.
    pub async fn group_info(&mut self) -> Result<reply::GroupInfo, Fault> {
        let reply: Value = self
            .commands
            .query(
                "XINFO GROUPS",
                None,
                redis::cmd("XINFO").arg("GROUPS").arg(&self.id.stream),
            )
            .await?;
        reply::group_info(reply, &self.id.group).ok_or_else(|| {
            Fault::group_missing(
                &format!("XINFO GROUPS on stream {:?}", self.id.stream),
                &format!("XINFO GROUPS does not list group {:?}", self.id.group),
            )
        })
    }

    /// The stream's length and its oldest and newest entry IDs (`XLEN`, `XRANGE - +
    /// COUNT 1`, `XREVRANGE + - COUNT 1`), for estimating the lag when Redis cannot
    /// tell it. `None` for an empty or missing stream.
    pub async fn stream_extent(&mut self) -> Result<Option<(u64, String, String)>, Fault> {
        let length: u64 = self
            .commands
            .query("XLEN", None, redis::cmd("XLEN").arg(&self.id.stream))
            .await?;
        let oldest: Value = self
            .commands
            .query(
                "XRANGE",
                None,
                redis::cmd("XRANGE")
                    .arg(&self.id.stream)
                    .arg("-")
                    .arg("+")
                    .arg("COUNT")
                    .arg(1),
            )
            .await?;
        let (oldest, _) = reply::entry_list(oldest).map_err(|e| Fault::unexpected("XRANGE", &e))?;
        let newest = self.newest_id().await?;
        Ok(match (oldest.into_iter().next(), newest) {
            (Some(first), Some(last)) if length > 0 => Some((length, first.id, last)),
            _ => None,
        })
    }
}
