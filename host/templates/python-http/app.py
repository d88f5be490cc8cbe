"""{{name}}: a Sluice handler that calls an HTTP service for each entry.

POSTs the entry's fields as a JSON object to config `url` (default
http://127.0.0.1:8080/) with the entry's idempotency key in `Idempotency-Key`, and
writes the answer's status and body to the stream OUT (config `target` overrides it). A
service that answers 429 or 5xx, or cannot be reached, is tried again later (retry);
another 4xx dead-letters the entry (reject). Replace with your own.

The pipeline must grant the service's origin:
    allowed_outbound_hosts = ["http://127.0.0.1:8080"]

Build: sluice build (writes {{file}}.wasm; the grant in plugin.toml builds it for world
http-handler).
Try:   sluice invoke {{file}}.wasm --allow-outbound http://127.0.0.1:8080 greeting=hello
"""

import json

import sluice
import sluice_http


class WitWorld(sluice.Handler):
    def on_message(self, msg):
        url = sluice.config("url", "http://127.0.0.1:8080/")
        body = json.dumps(msg.fields()).encode()
        # The same key on every delivery of this entry: the service can do its work once
        # even when this call is made again (a retry, a crash before the commit).
        headers = {"content-type": "application/json", "idempotency-key": msg.idempotency_key()}
        try:
            response = sluice_http.post(url, body, headers)
        except sluice_http.HttpError as e:
            raise sluice.Retry(f"{url} could not be reached: {e}") from None
        if response.status == 429 or response.status >= 500:
            raise sluice.Retry(f"{url} answered {response.status}")
        if response.status >= 400:
            raise sluice.Reject(f"{url} refused the entry ({response.status})")
        target = sluice.config("target", "OUT")
        return [sluice.output(target, status=str(response.status), body=response.body)]
