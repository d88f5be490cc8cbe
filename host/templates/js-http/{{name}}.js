// {{name}}: a Sluice handler that calls an HTTP service for each entry.
//
// POSTs the entry's fields as a JSON object to config `url` (default
// http://127.0.0.1:8080/) with `fetch`, the entry's idempotency key in
// `Idempotency-Key`, and writes the answer's status and body to the stream OUT (config
// `target` overrides it). A service that answers 429 or 5xx, or cannot be reached, is
// tried again later (retry); another 4xx dead-letters the entry (reject). Replace with
// your own.
//
// The pipeline must grant the service's origin:
//     allowed_outbound_hosts = ["http://127.0.0.1:8080"]
//
// Build: sluice build (writes {{file}}.wasm).
// Try:   sluice invoke {{file}}.wasm --allow-outbound http://127.0.0.1:8080 greeting=hello

import { handler, output, reject, retry, config } from './sluice.js';

export const handle = handler(async (msg) => {
  const url = config('url', 'http://127.0.0.1:8080/');
  let response;
  try {
    response = await fetch(url, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        // The same key on every delivery of this entry: the service can do its work
        // once even when this call is made again (a retry, a crash before the commit).
        'idempotency-key': msg.idempotencyKey(),
      },
      body: JSON.stringify(msg.fields()),
    });
  } catch (error) {
    throw retry(`${url} could not be reached: ${error}`);
  }
  if (response.status === 429 || response.status >= 500) throw retry(`${url} answered ${response.status}`);
  if (response.status >= 400) throw reject(`${url} refused the entry (${response.status})`);
  return [
    output(config('target', 'OUT'), { status: String(response.status), body: await response.text() }),
  ];
});
