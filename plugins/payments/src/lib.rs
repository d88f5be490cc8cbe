//! The tutorial's payments service as a Sluice handler.
//!
//! Reads an order `{orderId, orderAmount, userId}` from `ORDERS_STREAM` and emits a
//! payment `{orderId, paymentId, orderAmount, paidAmount, orderStatusCode, userId}` to
//! `PAYMENTS_STREAM` (config key `payments_stream` overrides it). An order whose amount is
//! missing, not a number or negative is rejected with the reason.
//!
//! Logs (the conformance suite holds every language to these lines): `warn` for each
//! rejected order, `info` for an entry on a later delivery attempt.
//!
//! With feature `http` (`payments_http.wasm`, world `http-handler`), the payment ID is the
//! one a payment provider gives: the order is POSTed as JSON `{"orderId", "amount",
//! "userId"}` to config `provider_url` with the entry's idempotency key in
//! `Idempotency-Key`, so that a call made again for the same entry (a retry, a crash
//! before the commit, a reclaim) charges once. A provider that answers 429 or 5xx, or
//! cannot be reached, is retried (`the payment provider answered 503`, `the payment
//! provider could not be reached: ...`); another status rejects the order (`the payment
//! provider refused the charge (400)`); an answer without `payment_id` is retried.
//!
//! Build: `cargo build -p payments --target wasm32-wasip2 --profile plugin`

use serde::{Deserialize, Serialize};
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
        if msg.attempt > 1 {
            sluice_sdk::log::info(&format!(
                "entry {} is on delivery attempt {}",
                msg.id, msg.attempt
            ));
        }
        let result = pay(&msg);
        if let Err(Failure::Reject(reason)) = &result {
            sluice_sdk::log::warn(&format!("rejected entry {}: {reason}", msg.id));
        }
        result
    }
}

fn pay(msg: &Message) -> HandlerResult {
    let order: Order = msg.to_struct()?;
    let amount = order
        .order_amount
        .as_deref()
        .ok_or_else(|| Failure::reject(format!("order {} has no orderAmount", order.order_id)))?;
    match amount.trim().parse::<f64>() {
        Ok(value) if value.is_finite() && value >= 0.0 => {}
        Ok(_) => {
            return Err(Failure::reject(format!(
                "order {} has a negative orderAmount {amount:?}",
                order.order_id
            )));
        }
        Err(_) => {
            return Err(Failure::reject(format!(
                "order {} has an orderAmount that is not a number: {amount:?}",
                order.order_id
            )));
        }
    }
    let paid = paid_amount(amount);
    let payment = Payment {
        order_id: &order.order_id,
        payment_id: payment_id(msg, &order, amount)?,
        order_amount: amount,
        paid_amount: &paid,
        order_status_code: PAYMENT_SUCCESSFUL,
        user_id: &order.user_id,
    };
    #[cfg(feature = "with-state")]
    record(&payment, amount)?;
    let target = sluice_sdk::config_or("payments_stream", "PAYMENTS_STREAM");
    let output = Output::from_struct(target, &payment)?;
    Ok(vec![tagged(output)])
}

/// The benchmark variant's handler state: the order's record and its user's total.
#[cfg(feature = "with-state")]
fn record(payment: &Payment, amount: &str) -> Result<(), Failure> {
    use sluice_sdk::state;
    let order = format!("order:{}", payment.order_id);
    state::hset(&order, "orderStatusCode", payment.order_status_code)?;
    state::hset(&order, "paymentId", &payment.payment_id)?;
    let cents = (amount.trim().parse::<f64>().unwrap_or(0.0) * 100.0).round() as i64;
    state::add(&format!("user-total:{}", payment.user_id), cents)?;
    Ok(())
}

/// What is paid: the amount as ordered; with feature `rounding` (a candidate for `sluice
/// diff`), the amount rounded to whole units.
fn paid_amount(amount: &str) -> String {
    if cfg!(feature = "rounding") {
        let value = amount.trim().parse::<f64>().unwrap_or(0.0);
        format!("{:.2}", value.round())
    } else {
        amount.to_owned()
    }
}

/// Test builds (features `tag-a`, `tag-b`) mark their outputs, so that hot-reload tests
/// can tell which version handled an order.
fn tagged(output: Output) -> Output {
    if cfg!(feature = "tag-a") {
        output.field("tag", "a")
    } else if cfg!(feature = "tag-b") {
        output.field("tag", "b")
    } else {
        output
    }
}

/// The payment ID: one derived from the order.
#[cfg(not(feature = "http"))]
fn payment_id(_: &Message, order: &Order, _: &str) -> Result<String, Failure> {
    Ok(derived_payment_id(&order.order_id))
}

/// The payment ID: the provider's.
#[cfg(feature = "http")]
fn payment_id(msg: &Message, order: &Order, amount: &str) -> Result<String, Failure> {
    charge(msg, order, amount)
}

/// Charges the order with the provider at config `provider_url`: its payment ID.
#[cfg(feature = "http")]
fn charge(msg: &Message, order: &Order, amount: &str) -> Result<String, Failure> {
    let url = sluice_sdk::config("provider_url")
        .ok_or_else(|| Failure::reject("config provider_url is not set"))?;
    let body = serde_json::json!({
        "orderId": order.order_id,
        "amount": amount,
        "userId": order.user_id,
    });
    let response = sluice_sdk::http::Request::post(&url)
        .header("content-type", "application/json")
        .header("idempotency-key", msg.idempotency_key())
        .body(body.to_string())
        .send()
        .map_err(|e| Failure::retry(format!("the payment provider could not be reached: {e}")))?;
    match response.status {
        200..=299 => {}
        429 | 500..=599 => {
            let status = response.status;
            return Err(Failure::retry(format!(
                "the payment provider answered {status}"
            )));
        }
        status => {
            return Err(Failure::reject(format!(
                "the payment provider refused the charge ({status})"
            )));
        }
    }
    let answer: serde_json::Value = serde_json::from_slice(&response.body).unwrap_or_default();
    match answer.get("payment_id").and_then(|id| id.as_str()) {
        Some(id) => Ok(id.to_owned()),
        None => Err(Failure::retry(
            "the payment provider's answer has no payment_id",
        )),
    }
}

/// A 24-hex-digit payment ID (the shape of the tutorial's MongoDB IDs), derived from the
/// order ID so that a redelivered order gets the same payment ID.
#[cfg_attr(feature = "http", allow(dead_code))]
fn derived_payment_id(order_id: &str) -> String {
    let hash = |seed: u64| {
        order_id.bytes().fold(seed, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
        })
    };
    format!(
        "{:016x}{:08x}",
        hash(0xcbf2_9ce4_8422_2325),
        hash(0x8422_2325_cbf2_9ce4) as u32
    )
}

sluice_sdk::export!(Payments);
