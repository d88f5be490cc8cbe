"""The tutorial's payments service as a Sluice handler in Python: the same outputs and
the same rejects as plugins/payments (Rust), checked by the conformance suite.

Build: scripts/build-plugins.sh (componentize-py; see docs/src/guide/plugins-python.md, "Writing a plugin in Python").
"""

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


def payment_id(order_id):
    """A 24-hex-digit payment ID derived from the order ID (two FNV-1a hashes), as in Rust.

    Both hashes in one pass; the second is kept to its low 32 bits, which are all it
    shows (they depend only on the low 32 bits of each product). The products are reduced
    modulo 2^64 once per 16 bytes, not per byte: the low bits do not depend on the high
    ones, and the numbers stay small."""
    data = order_id.encode("utf-8")
    high = 0xCBF29CE484222325
    low = 0xCBF29CE4
    for start in range(0, len(data), 16):
        for b in data[start : start + 16]:
            high = (high ^ b) * 0x100000001B3
            low = (low ^ b) * 0x1B3
        high &= 0xFFFFFFFFFFFFFFFF
        low &= 0xFFFFFFFF
    return f"{high:016x}{low:08x}"


class WitWorld(sluice.Handler):
    """Logs (the conformance suite holds every language to these lines): `warn` for each
    rejected order, `info` for an entry on a later delivery attempt."""

    def on_message(self, msg):
        if msg.attempt > 1:
            sluice.log.info(f"entry {msg.id} is on delivery attempt {msg.attempt}")
        try:
            return self.pay(msg)
        except sluice.Reject as e:
            sluice.log.warn(f"rejected entry {msg.id}: {e}")
            raise

    def pay(self, msg):
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
        return [
            sluice.output(
                sluice.config("payments_stream", "PAYMENTS_STREAM"),
                orderId=order["orderId"],
                paymentId=payment_id(order["orderId"]),
                orderAmount=amount,
                paidAmount=amount,
                orderStatusCode=PAYMENT_SUCCESSFUL,
                userId=order["userId"],
            )
        ]
