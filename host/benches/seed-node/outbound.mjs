// The Node consumer the outbound benchmark compares Sluice with: the tutorial's loop
// (XREADGROUP, handle, XADD, XACK) where handling an order is a `fetch` POST to the
// payment provider, with up to IN_FLIGHT requests at once.
// Usage: node outbound.mjs REDIS_URL ORDERS PROVIDER_URL IN_FLIGHT
import { createClient, commandOptions } from 'redis';

const [url, total, provider, inFlight] = [
  process.argv[2], Number(process.argv[3]), process.argv[4], Number(process.argv[5]),
];
const client = createClient({ url });
await client.connect();
const [stream, group, consumer] = ['ORDERS_STREAM', 'ORDERS_CON_GROUP', 'PAYMENTS_CON'];
try {
  await client.xGroupCreate(stream, group, '0', { MKSTREAM: true });
} catch (e) { /* the group exists */ }

const pay = async (id, order) => {
  const response = await fetch(provider, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'idempotency-key': `${group}/${id}` },
    body: JSON.stringify({ orderId: order.orderId, amount: order.orderAmount, userId: order.userId }),
  });
  const { payment_id: paymentId } = await response.json();
  await client.xAdd('PAYMENTS_STREAM', '*', {
    orderId: order.orderId, paymentId, orderStatusCode: '3', userId: order.userId,
  });
  await client.xAck(stream, group, id);
};

let handled = 0;
while (handled < total) {
  const reply = await client.xReadGroup(
    commandOptions({ isolated: true }), group, consumer,
    [{ key: stream, id: '>' }], { COUNT: Math.max(100, inFlight), BLOCK: 1000 });
  if (!reply) continue;
  const messages = reply.flatMap((r) => r.messages);
  // Up to IN_FLIGHT workers take the batch's entries in turn.
  let next = 0;
  const worker = async () => {
    while (next < messages.length) {
      const { id, message } = messages[next++];
      await pay(id, message);
      handled += 1;
    }
  };
  await Promise.all(Array.from({ length: Math.min(inFlight, messages.length) }, worker));
}
await client.quit();
