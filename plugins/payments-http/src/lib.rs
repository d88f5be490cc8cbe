//! The tutorial's payments service as a Sluice handler that charges each order with a
//! payment provider over HTTP (world `http-handler`).
//!
//! Reads an order `{orderId, orderAmount, userId}`, POSTs
//! `{"orderId", "amount", "userId"}` as JSON to config `provider_url` with the entry's
//! idempotency key in `Idempotency-Key`, and emits the payment
//! `{orderId, paymentId, orderAmount, paidAmount, orderStatusCode, userId}` with the
//! provider's `payment_id` to `PAYMENTS_STREAM` (config `payments_stream` overrides it).
//!
//! A call can happen more than once for one order (a retry, a crash before the commit, a
//! reclaim); the key is the same each time, so a provider that honours it charges once.
//! An order whose amount is missing, not a number or negative is rejected; a provider
//! that answers 5xx, 429 or not at all is retried; one that answers another 4xx rejects
//! the order.
//!
//! Build: `cargo build -p payments-http --target wasm32-wasip2 --profile plugin`

use serde::{Deserialize, Serialize};
use sluice_sdk::http::Request;
use sluice_sdk::{Failure, Guest, HandlerResult, Message, Output};

/// Payment succeeded, as in the tutorial.
const PAYMENT_SUCCESSFUL: &str = "3";

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Order {
    order_id: String,
    order_amount: Option<String>,
    user_id: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Charge<'a> {
    order_id: &'a str,
    amount: f64,
    user_id: &'a str,
}

#[derive(Deserialize)]
struct Charged {
    payment_id: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Payment<'a> {
    order_id: &'a str,
    payment_id: String,
    order_amount: &'a str,
    paid_amount: &'a str,
    order_status_code: &'a str,
    user_id: &'a str,
}

struct Payments;

impl Guest for Payments {
    fn handle(msg: Message) -> HandlerResult {
        let result = pay(&msg);
        if let Err(Failure::Reject(reason)) = &result {
            sluice_sdk::log::warn(&format!("rejected entry {}: {reason}", msg.id));
        }
        result
    }
}

fn pay(msg: &Message) -> HandlerResult {
    let order: Order = msg.to_struct()?;
    let text = order
        .order_amount
        .as_deref()
        .ok_or_else(|| Failure::reject(format!("order {} has no orderAmount", order.order_id)))?;
    let amount = match text.trim().parse::<f64>() {
        Ok(value) if value.is_finite() && value >= 0.0 => value,
        _ => {
            return Err(Failure::reject(format!(
                "order {} has an orderAmount that is not a non-negative number: {text:?}",
                order.order_id
            )));
        }
    };
    let payment_id = charge(msg, &order, amount)?;
    let payment = Payment {
        order_id: &order.order_id,
        payment_id,
        order_amount: text,
        paid_amount: text,
        order_status_code: PAYMENT_SUCCESSFUL,
        user_id: &order.user_id,
    };
    let stream = sluice_sdk::config_or("payments_stream", "PAYMENTS_STREAM");
    Ok(vec![Output::from_struct(stream, &payment)?])
}

/// Charges the order with the provider; its payment ID.
fn charge(msg: &Message, order: &Order, amount: f64) -> Result<String, Failure> {
    let url = sluice_sdk::config("provider_url")
        .ok_or_else(|| Failure::reject("config provider_url is not set"))?;
    let charge = Charge {
        order_id: &order.order_id,
        amount,
        user_id: &order.user_id,
    };
    let body = serde_json::to_vec(&charge).map_err(|e| Failure::reject(e.to_string()))?;
    let response = Request::post(&url)
        .header("content-type", "application/json")
        .header("idempotency-key", msg.idempotency_key())
        .body(body)
        .send()?;
    match response.status {
        200..=299 => {}
        429 | 500..=599 => {
            return Err(Failure::retry(format!(
                "the provider answered {}",
                response.status
            )));
        }
        status => {
            return Err(Failure::reject(format!(
                "the provider refused the charge ({status})"
            )));
        }
    }
    let charged: Charged = serde_json::from_slice(&response.body).map_err(|e| {
        Failure::retry(format!(
            "the provider's answer is not JSON with payment_id: {e}"
        ))
    })?;
    Ok(charged.payment_id)
}

sluice_sdk::export!(Payments);
