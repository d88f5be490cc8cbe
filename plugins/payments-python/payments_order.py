"""The payments plugins' order, read and checked exactly as plugins/payments (Rust) does,
their payment output and their logs: shared by plugins/payments-python and
plugins/payments-http-python, so that the two cannot drift."""

import re

import sluice

PAYMENT_SUCCESSFUL = "3"

# Rust's `str::trim` (Unicode White_Space) and `f64::from_str` grammar, so that both
# plugins accept exactly the same amounts.
_WHITE = "[\t\n\v\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"
_TRIM = re.compile(f"^{_WHITE}+|{_WHITE}+$")
_FLOAT = re.compile(r"[+-]?(?:(inf|infinity|nan)|(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)", re.I)


def parse_amount(text):
    trimmed = _TRIM.sub("", text)
    match = _FLOAT.fullmatch(trimmed)
    if not match:
        return None
    if match.group(1):
        return float("nan") if match.group(1).lower() == "nan" else float("inf")
    return float(trimmed)


def debug(text):
    """Rust's `{:?}` of a string, for the reasons."""
    out = ['"']
    for ch in text:
        code = ord(ch)
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\0":
            out.append("\\0")
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\u{{{code:x}}}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def read_order(msg):
    """The order in `msg` (its fields as text) and its amount (the orderAmount text as
    given). Raises sluice.Reject if a field is missing or the amount is not a finite
    number >= 0."""
    order = msg.require("orderId", "userId")
    amount = order.get("orderAmount")
    if amount is None:
        raise sluice.Reject(f"order {order['orderId']} has no orderAmount")
    value = parse_amount(amount)
    if value is None:
        raise sluice.Reject(
            f"order {order['orderId']} has an orderAmount that is not a number: {debug(amount)}"
        )
    if not (value == value and value not in (float("inf"), float("-inf")) and value >= 0):
        raise sluice.Reject(f"order {order['orderId']} has a negative orderAmount {debug(amount)}")
    return order, amount


def payment(order, amount, payment_id):
    """The payment of `order` with `payment_id`, to config `payments_stream`
    (PAYMENTS_STREAM)."""
    return sluice.output(
        sluice.config("payments_stream", "PAYMENTS_STREAM"),
        orderId=order["orderId"],
        paymentId=payment_id,
        orderAmount=amount,
        paidAmount=amount,
        orderStatusCode=PAYMENT_SUCCESSFUL,
        userId=order["userId"],
    )


def logged(pay, msg):
    """`pay(msg)` with the payments plugins' logs (the conformance suite holds every
    language to these lines): `warn` for each rejected order, `info` for an entry on a
    later delivery attempt."""
    if msg.attempt > 1:
        sluice.log.info(f"entry {msg.id} is on delivery attempt {msg.attempt}")
    try:
        return pay(msg)
    except sluice.Reject as e:
        sluice.log.warn(f"rejected entry {msg.id}: {e}")
        raise
