// The tutorial's consumer loop (shared/seeds/001: listenToStream + onMessage), as written
// there with node-redis v4, forwarding every entry whole to the stream OUT: what the
// scaffolded Sluice handlers do, for the entry-size benchmark.
// Usage: node forward.mjs REDIS_URL ENTRIES
import { createClient, commandOptions } from 'redis';

const [url, total] = [process.argv[2], Number(process.argv[3])];
const nodeRedisClient = createClient({ url });
await nodeRedisClient.connect();

const streamKeyName = 'IN';
const groupName = 'G';
const consumerName = 'FORWARD_CON';
const readMaxCount = 100;
try {
  await nodeRedisClient.xGroupCreate(streamKeyName, groupName, '0', { MKSTREAM: true });
} catch (e) { /* the group exists */ }

let handled = 0;
while (handled < total) {
  const dataArr = await nodeRedisClient.xReadGroup(
    commandOptions({ isolated: true }), groupName, consumerName,
    [{ key: streamKeyName, id: '>' }], { COUNT: readMaxCount, BLOCK: 1000 });
  if (!dataArr) continue;
  for (const data of dataArr) {
    for (const messageItem of data.messages) {
      await nodeRedisClient.xAdd('OUT', '*', { ...messageItem.message, handledBy: 'node' });
      nodeRedisClient.xAck(streamKeyName, groupName, messageItem.id);
      handled += 1;
    }
  }
}
await nodeRedisClient.quit();
