// The payments service charging a payment provider over HTTP, in JavaScript: the same
// outputs, rejects, retries and logs as plugins/payments built with feature `http`
// (payments_http.wasm), checked by the HTTP conformance suite. The order is read and
// checked as in plugins/payments-js (order.js, shared).
//
// The order is POSTed as JSON {"orderId", "amount", "userId"} to config `provider_url`
// with the entry's idempotency key in `idempotency-key`; the payment ID is the answer's
// `payment_id`. 429 or 5xx, or no answer, is retried; another status rejects the order.
//
// Build: scripts/build-plugins.sh (componentize-js with `fetch`, world http-handler).

import { handler, reject, retry, config } from '../../guest-sdk/js/sluice.js';
import { logged, readOrder, payment } from '../payments-js/order.js';

export const handle = handler(
  logged(async (msg) => {
    const { order, amount } = readOrder(msg);
    return [payment(order, amount, await charge(msg, order, amount))];
  }),
);

// Charges the order with the provider at config `provider_url`: its payment ID.
async function charge(msg, order, amount) {
  const url = config('provider_url');
  if (url === undefined) throw reject('config provider_url is not set');
  let status;
  let body;
  try {
    const response = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'idempotency-key': msg.idempotencyKey() },
      body: JSON.stringify({ orderId: order.orderId, amount, userId: order.userId }),
    });
    status = response.status;
    body = await response.arrayBuffer();
  } catch (e) {
    throw retry(`the payment provider could not be reached: ${e && e.message ? e.message : e}`);
  }
  if (status === 429 || (status >= 500 && status <= 599)) throw retry(`the payment provider answered ${status}`);
  if (status < 200 || status > 299) throw reject(`the payment provider refused the charge (${status})`);
  const id = paymentIdOf(body);
  if (id === undefined) throw retry("the payment provider's answer has no payment_id");
  return id;
}

// The string `payment_id` of the JSON object in `body`, or undefined (not UTF-8, not
// JSON, not an object, or none).
function paymentIdOf(body) {
  let answer;
  try {
    answer = JSON.parse(new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(body));
  } catch {
    return undefined;
  }
  const isObject = answer !== null && typeof answer === 'object' && !Array.isArray(answer);
  const id = isObject && Object.prototype.hasOwnProperty.call(answer, 'payment_id') ? answer.payment_id : undefined;
  return typeof id === 'string' ? id : undefined;
}
