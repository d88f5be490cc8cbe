"""The tutorial's orders service, payment side, in Python: the same status update and
the same handler state as plugins/order-status (Rust), checked by the conformance suite.

Build: scripts/build-plugins.sh (componentize-py, world stateful-handler).
"""

import json
import re

import sluice
import sluice_state as state

_AMOUNT = re.compile(r"([0-9]*)(?:\.([0-9]{0,2}))?")


def cents(amount):
    """"12.34" as 1234 cents; at most two decimals, not negative (as the Rust plugin)."""
    match = _AMOUNT.fullmatch(amount.strip())
    if not match or (match.group(1) == "" and (match.group(2) or "") == ""):
        return None
    units = int(match.group(1) or "0")
    fraction = int((match.group(2) or "").ljust(2, "0") or "0")
    total = units * 100 + fraction
    return total if total <= 2**63 - 1 else None


class WitWorld(sluice.Handler):
    def on_message(self, msg):
        payment = msg.require("orderId", "paymentId", "orderStatusCode", "userId", "paidAmount")
        paid = cents(payment["paidAmount"])
        if paid is None:
            raise sluice.Reject(
                f"payment {payment['paymentId']} has a paidAmount that is not an amount: "
                f"{json.dumps(payment['paidAmount'])}"
            )
        order = f"order:{payment['orderId']}"
        state.hset(order, "orderStatusCode", payment["orderStatusCode"])
        state.hset(order, "paymentId", payment["paymentId"])
        state.add(f"user-total:{payment['userId']}", paid)
        return [
            sluice.output(
                sluice.config("status_stream", "ORDER_STATUS_STREAM"),
                orderId=payment["orderId"],
                paymentId=payment["paymentId"],
                orderStatusCode=payment["orderStatusCode"],
            )
        ]
