// The tutorial's orders service, payment side, in JavaScript: the same status update and
// the same handler state as plugins/order-status (Rust), checked by the conformance suite.
//
// Build: scripts/build-plugins.sh (componentize-js, world stateful-handler).

import { handler, reject, output, config } from '../../guest-sdk/js/sluice.js';
import { state } from '../../guest-sdk/js/state.js';

export const handle = handler((msg) => {
  const payment = msg.require('orderId', 'paymentId', 'orderStatusCode', 'userId', 'paidAmount');
  const paid = cents(payment.paidAmount);
  if (paid === undefined) {
    throw reject(
      `payment ${payment.paymentId} has a paidAmount that is not an amount: ${JSON.stringify(payment.paidAmount)}`,
    );
  }
  const order = `order:${payment.orderId}`;
  state.hset(order, 'orderStatusCode', payment.orderStatusCode);
  state.hset(order, 'paymentId', payment.paymentId);
  state.add(`user-total:${payment.userId}`, paid);
  return [
    output(config('status_stream', 'ORDER_STATUS_STREAM'), {
      orderId: payment.orderId,
      paymentId: payment.paymentId,
      orderStatusCode: payment.orderStatusCode,
    }),
  ];
});

// "12.34" as 1234 cents; at most two decimals, not negative (as the Rust plugin).
function cents(amount) {
  const match = /^(\d*)(?:\.(\d{0,2}))?$/.exec(amount.trim());
  if (!match || (match[1] === '' && (match[2] ?? '') === '')) return undefined;
  const units = match[1] === '' ? 0n : BigInt(match[1]);
  const fraction = BigInt((match[2] ?? '').padEnd(2, '0') || '0');
  const total = units * 100n + fraction;
  return total > 9223372036854775807n ? undefined : total;
}
