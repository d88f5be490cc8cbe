//! Where a run stands ([`Tally`]), and the wait for every input to end exactly once.

use std::time::Duration;

use redis::aio::MultiplexedConnection;

use crate::{entries, eventually_ok, field, pending};

/// Where a run stands: every test of delivery guarantees reports these.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tally {
    /// Entries in the input stream.
    pub input: usize,
    /// Entries in the output stream.
    pub out: usize,
    /// Outputs whose key was seen before.
    pub duplicates: usize,
    /// Inputs with neither an output nor a dead letter.
    pub missing: usize,
    /// Entries pending in the group.
    pub pending: usize,
    /// Entries in the dead-letter stream.
    pub dead: usize,
}

impl Tally {
    /// Counts inputs of `input` (read by `group`) against outputs in `output` and dead
    /// letters in `<input>:dead`, matching them by the value of field `key`.
    pub async fn take(
        con: &mut MultiplexedConnection,
        input: &str,
        group: &str,
        output: &str,
        key: &str,
    ) -> Tally {
        let inputs = entries(con, input).await;
        let outputs = entries(con, output).await;
        let dead = entries(con, &format!("{input}:dead")).await;
        let mut seen = std::collections::HashSet::new();
        let mut duplicates = 0;
        for (_, fields) in &outputs {
            if !seen.insert(field(fields, key).unwrap_or_default().to_owned()) {
                duplicates += 1;
            }
        }
        for (_, fields) in &dead {
            seen.insert(field(fields, key).unwrap_or_default().to_owned());
        }
        let missing = inputs
            .iter()
            .filter(|(_, f)| !seen.contains(field(f, key).unwrap_or_default()))
            .count();
        let pending = pending(con, input, group).await;
        Tally {
            input: inputs.len(),
            out: outputs.len(),
            duplicates,
            missing,
            pending,
            dead: dead.len(),
        }
    }

    /// Whether every input ended exactly once (output or dead letter) with nothing pending.
    pub fn is_exactly_once(&self) -> bool {
        self.duplicates == 0
            && self.missing == 0
            && self.pending == 0
            && self.out + self.dead == self.input
    }
}

impl std::fmt::Display for Tally {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "in={} out={} duplicates={} missing={} pending={} dead={}",
            self.input, self.out, self.duplicates, self.missing, self.pending, self.dead
        )
    }
}

/// Waits until every input of the run ended exactly once, printing the tally; fails
/// with the last tally after `timeout`.
pub async fn wait_exactly_once(
    con: &MultiplexedConnection,
    input: &str,
    group: &str,
    output: &str,
    key: &str,
    timeout: Duration,
) -> Tally {
    let tally = eventually_ok("every input to end exactly once", timeout, || {
        let mut con = con.clone();
        async move {
            let tally = Tally::take(&mut con, input, group, output, key).await;
            assert_eq!(tally.duplicates, 0, "duplicates: {tally}");
            if tally.is_exactly_once() {
                Ok(tally)
            } else {
                Err(tally)
            }
        }
    })
    .await;
    println!("tally: {tally}");
    tally
}

/// [`wait_exactly_once`] for the payments pipeline: every order of `ORDERS_STREAM`
/// (group `ORDERS_CON_GROUP`) paid once in `PAYMENTS_STREAM`, matched by `orderId`.
pub async fn wait_payments_once(con: &MultiplexedConnection, timeout: Duration) -> Tally {
    wait_exactly_once(
        con,
        "ORDERS_STREAM",
        "ORDERS_CON_GROUP",
        "PAYMENTS_STREAM",
        "orderId",
        timeout,
    )
    .await
}
