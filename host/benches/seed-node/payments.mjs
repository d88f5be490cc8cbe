// The tutorial's payments consumer (shared/seeds/001: listenToStream + onMessage +
// addPaymentIdToStream), as written there with node-redis v4, for the Sluice
// throughput benchmark. Usage: node payments.mjs REDIS_URL ORDERS
import { createClient, commandOptions } from 'redis';

const [url, total] = [process.argv[2], Number(process.argv[3])];
const nodeRedisClient = createClient({ url });
await nodeRedisClient.connect();

const addPaymentIdToStream = async (orderId, paymentId, orderStatus, userId) => {
  const entry = { orderId, paymentId, orderStatusCode: orderStatus.toString(), userId };
  await nodeRedisClient.xAdd('PAYMENTS_STREAM', '*', entry);
};

let handled = 0;
const processPaymentForNewOrders = async (message, messageId) => {
  const paymentId = messageId.replace('-', '').padStart(24, '0').slice(-24);
  await addPaymentIdToStream(message.orderId, paymentId, 3, message.userId);
  handled += 1;
};

const streamKeyName = 'ORDERS_STREAM';
const groupName = 'ORDERS_CON_GROUP';
const consumerName = 'PAYMENTS_CON';
const readMaxCount = 100;
try {
  await nodeRedisClient.xGroupCreate(streamKeyName, groupName, '0', { MKSTREAM: true });
} catch (e) { /* the group exists */ }

while (handled < total) {
  const dataArr = await nodeRedisClient.xReadGroup(
    commandOptions({ isolated: true }), groupName, consumerName,
    [{ key: streamKeyName, id: '>' }], { COUNT: readMaxCount, BLOCK: 1000 });
  if (!dataArr) continue;
  for (const data of dataArr) {
    for (const messageItem of data.messages) {
      await processPaymentForNewOrders(messageItem.message, messageItem.id);
      nodeRedisClient.xAck(streamKeyName, groupName, messageItem.id);
    }
  }
}
await nodeRedisClient.quit();
