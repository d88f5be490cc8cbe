"""The payments service charging a payment provider over HTTP, in Python: the same
outputs, rejects, retries and logs as plugins/payments built with feature `http`
(payments_http.wasm), checked by the HTTP conformance suite. The order is read and
checked as in plugins/payments-python (../payments-python/payments_order.py, shared:
scripts/build-plugins.sh puts that directory on the path).

The order is POSTed as JSON {"orderId", "amount", "userId"} to config `provider_url` with
the entry's idempotency key in `idempotency-key`; the payment ID is the answer's
`payment_id`. 429 or 5xx, or no answer, is retried; another status rejects the order.

Build: scripts/build-plugins.sh (componentize-py, world http-handler).
"""

import json

import sluice
import sluice_http
from payments_order import logged, payment, read_order


def charge(msg, order, amount):
    """Charges the order with the provider at config `provider_url`: its payment ID."""
    url = sluice.config("provider_url")
    if url is None:
        raise sluice.Reject("config provider_url is not set")
    body = {"orderId": order["orderId"], "amount": amount, "userId": order["userId"]}
    headers = {"content-type": "application/json", "idempotency-key": msg.idempotency_key()}
    try:
        # serde_json's text: compact, non-ASCII as it is.
        data = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
        response = sluice_http.post(url, data, headers)
    except sluice_http.HttpError as e:
        raise sluice.Retry(f"the payment provider could not be reached: {e}") from None
    status = response.status
    if status == 429 or 500 <= status <= 599:
        raise sluice.Retry(f"the payment provider answered {status}")
    if not 200 <= status <= 299:
        raise sluice.Reject(f"the payment provider refused the charge ({status})")
    payment_id = payment_id_of(response.body)
    if payment_id is None:
        raise sluice.Retry("the payment provider's answer has no payment_id")
    return payment_id


def payment_id_of(body):
    """The string `payment_id` of the JSON object in `body`, or None."""
    try:
        answer = json.loads(body.decode("utf-8"))
    except ValueError:
        return None
    payment_id = answer.get("payment_id") if isinstance(answer, dict) else None
    return payment_id if isinstance(payment_id, str) else None


class WitWorld(sluice.Handler):
    def on_message(self, msg):
        return logged(self.pay, msg)

    def pay(self, msg):
        order, amount = read_order(msg)
        return [payment(order, amount, charge(msg, order, amount))]
