// The tutorial's payments service as a Sluice handler in JavaScript: the same outputs
// and the same rejects as plugins/payments (Rust), checked by the conformance suite. The
// order is read and checked in order.js, shared with plugins/payments-http-js.
//
// Build: scripts/build-plugins.sh (componentize-js; see docs/src/guide/plugins-js.md, "Writing a plugin in JavaScript").

import { handler, packed } from '../../guest-sdk/js/sluice.js';
import { logged, readOrder, payment, paymentId } from './order.js';

export const handle = handler(
  logged((msg) => {
    const { order, amount } = readOrder(msg);
    return [payment(order, amount, paymentId(order.orderId))];
  }),
);

// A batch in one call, as one byte string each way (world packed-batch-handler): the
// runtime's cost of a call, and of lifting and lowering each field, paid once.
export const handlePacked = packed(handle);
