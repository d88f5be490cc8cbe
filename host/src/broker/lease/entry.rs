//! Entry leases: a consumer's claim on the entries it is still working on, renewed by
//! resetting their idle time (`touch.lua`) so that a slow handler's entries are not
//! reclaimed by another consumer. Renewed only while the consumer's fence (its name's
//! or its partition's lease) holds.

use std::sync::{Arc, LazyLock};

use anyhow::Result;

use crate::broker::commit::{Fence, Sink};
use crate::broker::consumer_id::ConsumerId;
use crate::broker::link::Link;

/// Renews a consumer's entry leases: its claim on entries it is still working on.
pub struct EntryLeases {
    id: Arc<ConsumerId>,
    commands: Arc<Link>,
    /// Renewals are made only while this holds (see `Consumer::set_fence`).
    fence: Option<Fence>,
}

static TOUCH: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(include_str!("touch.lua")));

impl EntryLeases {
    /// The entry leases of consumer `id`, renewed on `commands` while `fence` holds.
    pub(crate) fn new(id: Arc<ConsumerId>, commands: Arc<Link>, fence: Option<Fence>) -> Self {
        Self {
            id,
            commands,
            fence,
        }
    }

    /// Resets the idle time of those of `ids` this consumer still owns; returns them.
    pub async fn renew(&mut self, ids: &[String]) -> Result<Vec<String>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut invocation = TOUCH.prepare_invoke();
        self.encode(&mut invocation, ids);
        let renewed = self
            .commands
            .call("lease renewal", None, |mut c| async move {
                invocation.invoke_async::<Vec<String>>(&mut c).await
            })
            .await?;
        Ok(renewed)
    }

    /// `touch.lua`'s KEYS (the input stream, the fence's lease key if any) and ARGV
    /// (group, consumer, the fence's value or '', the IDs).
    fn encode<S: Sink>(&self, sink: &mut S, ids: &[String]) {
        sink.key(&self.id.stream);
        if let Some(fence) = &self.fence {
            sink.key(&fence.key);
        }
        sink.arg(&self.id.group)
            .arg(&self.id.name)
            .arg(self.fence.as_ref().map_or("", |f| f.value.as_str()))
            .arg(ids);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::commit::Recorded;

    fn encoded(fence: Option<Fence>, ids: &[&str]) -> (Vec<String>, Vec<String>) {
        let id = ConsumerId {
            stream: "IN".into(),
            group: "G".into(),
            name: "c".into(),
        };
        let link = Link::new(
            Arc::new(
                crate::broker::endpoint::Endpoint::new(&crate::broker::Deployment::url(
                    "redis://127.0.0.1:1",
                ))
                .expect("endpoint"),
            ),
            "test".into(),
        );
        let leases = EntryLeases::new(Arc::new(id), Arc::new(link), fence);
        let ids: Vec<String> = ids.iter().map(|i| (*i).to_owned()).collect();
        let mut recorded = Recorded::default();
        leases.encode(&mut recorded, &ids);
        let args = recorded
            .args
            .iter()
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        (recorded.keys, args)
    }

    #[test]
    fn renewals_name_the_stream_group_consumer_and_ids() {
        let (keys, args) = encoded(None, &["1-0", "2-0"]);
        assert_eq!(keys, ["IN"]);
        assert_eq!(args, ["G", "c", "", "1-0", "2-0"]);
    }

    #[test]
    fn under_a_fence_renewals_check_its_key_and_value() {
        let fence = Fence {
            key: "IN:lease:G".into(),
            value: "d/7".into(),
        };
        let (keys, args) = encoded(Some(fence), &["1-0"]);
        assert_eq!(keys, ["IN", "IN:lease:G"]);
        assert_eq!(args, ["G", "c", "d/7", "1-0"]);
    }
}
