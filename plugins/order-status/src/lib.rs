//! The tutorial's orders service, payment side: reads a payment from `PAYMENTS_STREAM`,
//! emits the order's status update `{orderId, paymentId, orderStatusCode}` to
//! `ORDER_STATUS_STREAM` (config key `status_stream` overrides it) and, as the tutorial's
//! `updateOrderStatusInRedis` does, records the order in Redis: the hash
//! `order:<orderId>` gets `orderStatusCode` and `paymentId`, and the paid amount in cents
//! is added to the counter `user-total:<userId>`. Both are handler state, committed with
//! the status update and the acknowledgement: never applied twice, never lost.
//!
//! Build: `cargo build -p order-status --target wasm32-wasip2 --profile plugin`

use serde::{Deserialize, Serialize};
use sluice_sdk::{Failure, Guest, HandlerResult, Message, Output, state};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Payment {
    order_id: String,
    payment_id: String,
    order_status_code: String,
    user_id: String,
    paid_amount: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct StatusUpdate<'a> {
    order_id: &'a str,
    payment_id: &'a str,
    order_status_code: &'a str,
}

struct OrderStatus;

impl Guest for OrderStatus {
    fn handle(msg: Message) -> HandlerResult {
        let payment: Payment = msg.to_struct()?;
        let cents = cents(&payment.paid_amount).ok_or_else(|| {
            Failure::reject(format!(
                "payment {} has a paidAmount that is not an amount: {:?}",
                payment.payment_id, payment.paid_amount
            ))
        })?;
        let order = format!("order:{}", payment.order_id);
        state::hset(&order, "orderStatusCode", &payment.order_status_code)?;
        state::hset(&order, "paymentId", &payment.payment_id)?;
        state::add(&format!("user-total:{}", payment.user_id), cents)?;
        let update = StatusUpdate {
            order_id: &payment.order_id,
            payment_id: &payment.payment_id,
            order_status_code: &payment.order_status_code,
        };
        let target = sluice_sdk::config_or("status_stream", "ORDER_STATUS_STREAM");
        Ok(vec![Output::from_struct(target, &update)?])
    }
}

/// `"12.34"` as 1234 cents; at most two decimals, not negative.
fn cents(amount: &str) -> Option<i64> {
    let (units, fraction) = amount.trim().split_once('.').unwrap_or((amount.trim(), ""));
    if fraction.len() > 2 || units.is_empty() && fraction.is_empty() {
        return None;
    }
    let units: i64 = if units.is_empty() {
        0
    } else {
        units.parse().ok()?
    };
    let fraction: i64 = if fraction.is_empty() {
        0
    } else {
        format!("{fraction:0<2}").parse().ok()?
    };
    if units < 0 {
        return None;
    }
    units.checked_mul(100)?.checked_add(fraction)
}

sluice_sdk::export!(OrderStatus);

#[cfg(test)]
mod tests {
    #[test]
    fn cents() {
        assert_eq!(super::cents("12.34"), Some(1234));
        assert_eq!(super::cents("9.9"), Some(990));
        assert_eq!(super::cents("5"), Some(500));
        assert_eq!(super::cents("0.05"), Some(5));
        assert_eq!(super::cents("1.234"), None);
        assert_eq!(super::cents("-1"), None);
        assert_eq!(super::cents("x"), None);
    }
}
