// The tutorial's payments service as a Sluice handler in TypeScript (the tutorial's own
// services are TypeScript): the same outputs and rejects as plugins/payments (Rust),
// checked by the conformance suite. The order is read and checked, and its payment ID
// derived, by the JavaScript variant's order.js.
//
// Build: scripts/build-plugins.sh (esbuild bundles it, then componentize-js).

import { handler, packed, type Message, type Output } from '../../guest-sdk/js/sluice.js';
import { logged, readOrder, payment, paymentId } from '../payments-js/order.js';

interface Order {
  orderId: string;
  userId: string;
}

export const handle = handler(
  logged((msg: Message): Output[] => {
    const { order, amount } = readOrder(msg) as { order: Order; amount: string };
    return [payment(order, amount, paymentId(order.orderId))];
  }),
);

// A batch in one call, as one byte string each way (world packed-batch-handler).
export const handlePacked = packed(handle);
