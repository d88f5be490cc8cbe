//! Who holds a consumer name: a daemon's identity in its leases, and whether this host
//! can tell that a holder is gone.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime};

/// Identities of the daemons alive in this process (tests and embedders run several), each
/// with how many hold it (two daemons of one name made in the same millisecond share an
/// identity): a holder with this process's pid is alive only if listed here.
static LIVE: Mutex<Option<HashMap<String, usize>>> = Mutex::new(None);

/// Who holds a name: `<name>\t<host>\t<pid>\t<process start>\t<since, ms>`. Names and
/// host names hold no tab (a consumer name with a control character is refused).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Holder {
    pub(super) name: String,
    pub(super) host: String,
    pub(super) pid: u32,
    pub(super) start: u64,
    pub(super) since_ms: u64,
}

impl Holder {
    pub(super) fn this(name: &str) -> Self {
        let pid = std::process::id();
        let since_ms = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        Self {
            name: name.to_owned(),
            host: crate::supervisor::hostname(),
            pid,
            start: crate::redis_server::announce::start_time(pid).unwrap_or(0),
            since_ms,
        }
    }

    /// The holder a lease value (`<identity>/<token>`) names.
    pub(super) fn parse(value: &str) -> Option<Self> {
        let (identity, _token) = value.rsplit_once('/')?;
        let mut parts = identity.split('\t');
        let holder = Self {
            name: parts.next()?.to_owned(),
            host: parts.next()?.to_owned(),
            pid: parts.next()?.parse().ok()?,
            start: parts.next()?.parse().ok()?,
            since_ms: parts.next()?.parse().ok()?,
        };
        parts.next().is_none().then_some(holder)
    }

    /// Lists this daemon as alive in this process (until [`Holder::unregister`]).
    pub(super) fn register(&self) {
        let mut live = LIVE.lock().unwrap_or_else(PoisonError::into_inner);
        *live
            .get_or_insert_with(HashMap::new)
            .entry(self.identity())
            .or_insert(0) += 1;
    }

    /// Takes back one [`Holder::register`].
    pub(super) fn unregister(&self) {
        let mut live = LIVE.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(Entry::Occupied(mut held)) = live.as_mut().map(|l| l.entry(self.identity())) {
            *held.get_mut() -= 1;
            if *held.get() == 0 {
                held.remove();
            }
        }
    }

    pub(super) fn identity(&self) -> String {
        format!(
            "{}\t{}\t{}\t{}\t{}",
            self.name, self.host, self.pid, self.start, self.since_ms
        )
    }

    /// Whether this host can tell that the holder's process is gone.
    pub(super) fn is_gone(&self, me: &Holder) -> bool {
        if self.host != me.host {
            return false;
        }
        if self.pid == me.pid && self.start == me.start {
            let live = LIVE.lock().unwrap_or_else(PoisonError::into_inner);
            return !live
                .as_ref()
                .is_some_and(|l| l.contains_key(&self.identity()));
        }
        crate::redis_server::announce::start_time(self.pid) != Some(self.start)
    }

    /// For an error: `host vm, pid 4242, since 2026-12-06T04:02:51Z`.
    pub(super) fn describe(&self) -> String {
        let since = SystemTime::UNIX_EPOCH + Duration::from_millis(self.since_ms);
        format!(
            "host {}, pid {}, since {}",
            self.host,
            self.pid,
            humantime::format_rfc3339_seconds(since)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_holder_reads_back_from_its_lease_value() {
        let me = Holder::this("c 1");
        let value = format!("{}/42", me.identity());
        assert_eq!(Holder::parse(&value), Some(me.clone()));
        assert_eq!(Holder::parse("c1/7"), None, "an older value names nobody");
        // Alive: this very daemon (registered) is not gone; one of this process that
        // is not registered any more is.
        me.register();
        assert!(!me.is_gone(&me));
        let dropped = Holder {
            since_ms: me.since_ms + 1,
            ..me.clone()
        };
        assert!(dropped.is_gone(&me));
        let elsewhere = Holder {
            host: "another-host".into(),
            pid: 1,
            ..me.clone()
        };
        assert!(
            !elsewhere.is_gone(&me),
            "another host's process cannot be checked"
        );
    }

    /// Two daemons of one name made in the same millisecond share an identity: the first
    /// one dropped leaves the other alive (a set of identities forgot both).
    #[test]
    fn a_shared_identity_stays_alive_while_one_holds_it() {
        let first = Holder::this("twins");
        let second = first.clone();
        first.register();
        second.register();
        first.unregister();
        assert!(!second.is_gone(&second), "the second daemon is still alive");
        second.unregister();
        assert!(second.is_gone(&second), "both gone");
    }
}
