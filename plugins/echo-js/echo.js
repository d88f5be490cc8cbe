// A test handler in JavaScript with both batch exports: built for the world
// packed-batch-handler (handle-packed); plugins/echo-lists-js re-exports it for the world
// batch-handler (handle-batch). Each entry's fields go to config `target` (default `OUT`)
// with `via` = `handle-packed`, `handle-batch` or `handle`, the export that handled it;
// `action` = `reject` rejects the entry, `trap` throws an Error (the call traps), `spin`
// never returns (the call times out), `garble` makes handle-packed return bytes that are
// not in the encoding (the call fails; `handle` then handles the entry). Results shaped
// the way a handler may get them wrong or unusual, which every export must take alike:
// `not-a-list` returns an output without its list (the call fails), `frozen` a frozen
// list of frozen outputs, `thenable` a thenable that is not a Promise, `reason-number`
// throws a hand-built reject with a number for its reason. `own` = `true` when every
// value the handler got is bytes of its own (not a view into a larger buffer).
//
// Build: scripts/build-plugins.sh (componentize-js).

import { handler, batch, packed, reject, output, config } from '../../guest-sdk/js/sluice.js';

let via = 'handle';

export const handle = handler((msg) => {
  const action = msg.text('action');
  if (action === 'reject') throw reject(`rejected entry ${msg.id}`);
  if (action === 'trap') throw new Error(`trap on entry ${msg.id}`);
  if (action === 'spin') for (;;);
  if (action === 'reason-number') throw { tag: 'reject', val: 42 };
  const fields = {};
  for (const [name, value] of msg.raw) fields[name] = value;
  fields.via = via;
  fields.own = String(msg.raw.every(([, v]) => v.byteOffset === 0 && v.buffer.byteLength === v.byteLength));
  const out = output(config('target', 'OUT'), fields);
  if (action === 'not-a-list') return out;
  if (action === 'frozen') {
    out.fields.forEach(Object.freeze);
    Object.freeze(out.fields);
    return Object.freeze([Object.freeze(out)]);
  }
  if (action === 'thenable') return { then: (resolve) => resolve([out]) };
  return [out];
});

const through = (name, call) => (messages) => {
  via = name;
  try {
    return call(messages);
  } finally {
    via = 'handle';
  }
};

export const handleBatch = through('handle-batch', batch(handle));

const each = through('handle-packed', packed(handle));

export const handlePacked = (bytes) => {
  const results = each(bytes);
  // "garble" anywhere in the input: a result count of 0xffffffff and nothing else.
  const garble = new TextEncoder().encode('garble');
  for (let i = 0; i + garble.length <= bytes.length; i += 1) {
    if (garble.every((b, j) => bytes[i + j] === b)) return new Uint8Array([255, 255, 255, 255]);
  }
  return results;
};
