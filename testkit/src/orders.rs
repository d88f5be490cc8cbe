//! The seed orders: the one place tests, benches and their producers make an order of the
//! tutorial's shape (`orderId`, `orderAmount`, `userId`), and send them to a stream.

use std::time::Duration;

use redis::aio::MultiplexedConnection;

/// The tutorial's input stream.
pub const ORDERS: &str = "ORDERS_STREAM";

/// One order of the seed's shape.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Order {
    /// `orderId`: unique per order.
    pub id: String,
    /// `orderAmount`: a decimal text; the payments handler rejects a negative one.
    pub amount: String,
    /// `userId`.
    pub user: String,
}

impl Order {
    /// Order number `i` of a test: `orderId` `o{i}`, amount `9.99`, user `u`.
    pub fn new(i: usize) -> Order {
        Order {
            id: format!("o{i}"),
            amount: "9.99".to_owned(),
            user: "u".to_owned(),
        }
    }

    /// Order number `i` as the seed data looks (for benches): a ULID-like `orderId`
    /// ending in `i`, an amount that varies, a UUID-like user.
    pub fn seed(i: usize) -> Order {
        Order {
            id: format!("01GTP3K2TZQQCQ0T2G{i:08}"),
            amount: format!("{}.{:02}", 100 + i % 900, i % 100),
            user: format!("USR_4e7acc44-e91e-4c5c-9112-{i:012}"),
        }
    }

    /// Another `orderId`.
    pub fn id(mut self, id: impl Into<String>) -> Order {
        self.id = id.into();
        self
    }

    /// Another `orderAmount`.
    pub fn amount(mut self, amount: impl Into<String>) -> Order {
        self.amount = amount.into();
        self
    }

    /// Another `userId`.
    pub fn user(mut self, user: impl Into<String>) -> Order {
        self.user = user.into();
        self
    }

    /// The entry's fields, in the seed's order.
    pub fn fields(&self) -> [(&'static str, &str); 3] {
        [
            ("orderId", &self.id),
            ("orderAmount", &self.amount),
            ("userId", &self.user),
        ]
    }

    /// The order as an entry read from a stream (for handler benchmarks).
    pub fn entry(&self) -> sluice::message::Entry {
        sluice::message::Entry {
            id: "1700000000000-0".into(),
            fields: self
                .fields()
                .iter()
                .map(|(name, value)| ((*name).into(), value.as_bytes().to_vec()))
                .collect(),
            attempt: 1,
            raw_names: None,
            trace: None,
        }
    }

    /// Queues `XADD stream * <fields>` on `pipe` (its reply ignored).
    pub fn add_to(&self, pipe: &mut redis::Pipeline, stream: &str) {
        pipe.xadd(stream, "*", &self.fields()).ignore();
    }
}

/// Sends `orders` to `stream` in one round trip.
pub async fn send(con: &mut MultiplexedConnection, stream: &str, orders: &[Order]) {
    let mut pipe = redis::pipe();
    for order in orders {
        order.add_to(&mut pipe, stream);
    }
    let () = pipe.query_async(con).await.expect("XADD orders");
}

/// Adds `good` valid orders (`g0..`, amount 5.00) and `bad` ones the payments handler
/// rejects (`b0..`, a negative amount) to `ORDERS_STREAM`, in one round trip.
pub async fn add_orders(con: &mut MultiplexedConnection, good: usize, bad: usize) {
    let orders: Vec<Order> = (0..good)
        .map(|i| Order::new(i).id(format!("g{i}")).amount("5.00"))
        .chain((0..bad).map(|i| Order::new(i).id(format!("b{i}")).amount("-1")))
        .collect();
    send(con, ORDERS, &orders).await;
}

/// Sends `n` orders `o0..` ([`Order::new`]) to `ORDERS_STREAM`, in chunks of `chunk`,
/// `pause` apart (the pause is the producer's pace).
pub async fn produce_orders(
    mut con: MultiplexedConnection,
    n: usize,
    chunk: usize,
    pause: Duration,
) {
    for start in (0..n).step_by(chunk) {
        let orders: Vec<Order> = (start..(start + chunk).min(n)).map(Order::new).collect();
        send(&mut con, ORDERS, &orders).await;
        tokio::time::sleep(pause).await;
    }
}
