"""The tutorial's payments service as a Sluice handler in Python: the same outputs and
the same rejects as plugins/payments (Rust), checked by the conformance suite. The order
is read and checked in payments_order.py, shared with plugins/payments-http-python.

Build: scripts/build-plugins.sh (componentize-py; see docs/src/guide/plugins-python.md, "Writing a plugin in Python").
"""

import sluice
from payments_order import logged, payment, read_order


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
    def on_message(self, msg):
        return logged(self.pay, msg)

    def pay(self, msg):
        order, amount = read_order(msg)
        return [payment(order, amount, payment_id(order["orderId"]))]
