// A test handler in JavaScript with the batch export (world batch-handler): each entry's
// fields go to config `target` (default `OUT`) with `via` = `handle-batch` or `handle`,
// the export that handled it; `action` = `reject` rejects the entry, `trap` throws an
// Error (the call traps), `spin` never returns (the call times out).
//
// Build: scripts/build-plugins.sh (componentize-js).

import { handler, batch, reject, output, config } from '../../guest-sdk/js/sluice.js';

let via = 'handle';

export const handle = handler((msg) => {
  const action = msg.text('action');
  if (action === 'reject') throw reject(`rejected entry ${msg.id}`);
  if (action === 'trap') throw new Error(`trap on entry ${msg.id}`);
  if (action === 'spin') for (;;);
  const fields = {};
  for (const [name, value] of msg.raw) fields[name] = value;
  fields.via = via;
  return [output(config('target', 'OUT'), fields)];
});

const each = batch(handle);

export const handleBatch = (messages) => {
  via = 'handle-batch';
  try {
    return each(messages);
  } finally {
    via = 'handle';
  }
};
