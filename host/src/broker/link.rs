//! A connection that heals: opened on first use, dropped when a [`Fault`] says so, every
//! call under a response deadline.
//!
//! redis-rs's multiplexed connection reconnects only when its socket reports an error.
//! A path that stops moving bytes without closing (a dropped network route, a frozen
//! proxy), or a node demoted to replica behind the same name, leaves it "connected" for
//! ever. Here every call has a deadline (a blocking read's: its `BLOCK` plus a margin),
//! and a call that misses it, or fails in a way whose remedy is a new connection, drops
//! the connection: the next call opens a new one, resolving the host name again.
//! TCP keepalive and `TCP_USER_TIMEOUT` catch dead peers even on idle connections.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use redis::{AsyncConnectionConfig, RedisResult};

use super::conn::Conn;
use super::endpoint::{CONNECT_TIMEOUT, Endpoint};
use super::fault::{Fault, Remedy};

/// The response deadline of a call that does not block on the server.
pub const CALL_DEADLINE: Duration = Duration::from_secs(5);
/// What a blocking read's deadline adds to its `BLOCK` time.
pub const BLOCK_MARGIN: Duration = Duration::from_secs(2);

/// One connection to Redis (to one node, or to a whole cluster) that re-opens itself
/// after faults. Shareable: calls clone the (multiplexed) connection and run beside each
/// other.
pub struct Link {
    endpoint: Arc<Endpoint>,
    /// The open connection and the endpoint epoch it was opened in.
    conn: std::sync::Mutex<Option<(Conn, u64)>>,
    /// What the connection is for, in error messages ("stream \"IN\" group \"G\"").
    label: String,
}

impl Link {
    /// A link to `endpoint`; nothing is opened until the first call.
    pub fn new(endpoint: Arc<Endpoint>, label: String) -> Self {
        Self {
            endpoint,
            conn: std::sync::Mutex::new(None),
            label,
        }
    }

    /// The open connection, opening it if need be.
    pub async fn connection(&self) -> Result<Conn, Fault> {
        if let Some(conn) = self.open() {
            return Ok(conn);
        }
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(None);
        let epoch = self.endpoint.epoch();
        let opened = tokio::time::timeout(CONNECT_TIMEOUT * 2, self.endpoint.open(config)).await;
        let conn = match opened {
            Err(_) => {
                return Err(
                    Fault::deadline("connecting to redis", CONNECT_TIMEOUT).while_connecting()
                );
            }
            Ok(Err(e)) => {
                return Err(Fault::from_redis(&e, "connecting to redis").while_connecting());
            }
            Ok(Ok(conn)) => conn,
        };
        *self.slot() = Some((conn.clone(), epoch));
        Ok(conn)
    }

    /// The connection if it is open and still to the current primary (for helpers that
    /// run beside the link's owner).
    pub fn open(&self) -> Option<Conn> {
        let mut slot = self.slot();
        match &*slot {
            Some((conn, epoch)) if *epoch == self.endpoint.epoch() => Some(conn.clone()),
            Some(_) => {
                *slot = None;
                None
            }
            None => None,
        }
    }

    /// What the link connects to.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Drops the connection; the next call opens a new one.
    pub fn reset(&self) {
        *self.slot() = None;
    }

    fn slot(&self) -> std::sync::MutexGuard<'_, Option<(Conn, u64)>> {
        crate::lock::lock(&self.conn)
    }

    /// Runs one command within `deadline` ([`CALL_DEADLINE`] if `None`); see [`Link::call`].
    pub async fn query<T: redis::FromRedisValue>(
        &self,
        what: &str,
        deadline: Option<Duration>,
        cmd: &redis::Cmd,
    ) -> Result<T, Fault> {
        self.call(what, deadline, |mut c| async move {
            cmd.query_async(&mut c).await
        })
        .await
    }

    /// Runs `call` on the connection within `deadline` ([`CALL_DEADLINE`] if `None`).
    /// `what` names the command for errors. A fault whose remedy is a new connection,
    /// and a missed deadline, drop the connection.
    pub async fn call<T, F, Fut>(
        &self,
        what: &str,
        deadline: Option<Duration>,
        call: F,
    ) -> Result<T, Fault>
    where
        F: FnOnce(Conn) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        let conn = self.connection().await?;
        let deadline = deadline.unwrap_or(CALL_DEADLINE);
        match tokio::time::timeout(deadline, call(conn)).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => {
                let fault = Fault::from_redis(&e, &format!("{what} on {}", self.label));
                if fault.remedy() == Remedy::Reconnect {
                    self.reset();
                }
                Err(fault)
            }
            Err(_) => {
                self.reset();
                Err(Fault::deadline(
                    &format!("{what} on {}", self.label),
                    deadline,
                ))
            }
        }
    }
}
