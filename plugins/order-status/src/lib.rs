//! The tutorial's orders service, payment side: reads a payment from `PAYMENTS_STREAM`
//! and emits the order's status update `{orderId, paymentId, orderStatusCode}` to
//! `ORDER_STATUS_STREAM` (config key `status_stream` overrides it).
//!
//! Build: `cargo build -p order-status --target wasm32-wasip2 --profile plugin`

use serde::{Deserialize, Serialize};
use sluice_sdk::{Guest, HandlerResult, Message, Output};

#[derive(Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
struct StatusUpdate {
    order_id: String,
    payment_id: String,
    order_status_code: String,
}

struct OrderStatus;

impl Guest for OrderStatus {
    fn handle(msg: Message) -> HandlerResult {
        let update: StatusUpdate = msg.to_struct()?;
        let target = sluice_sdk::config_or("status_stream", "ORDER_STATUS_STREAM");
        Ok(vec![Output::from_struct(target, &update)?])
    }
}

sluice_sdk::export!(OrderStatus);
