"""{{name}}: a Sluice handler.

Copies every field of a message to the stream `OUT` (config key `target` overrides it)
and adds `handledBy`; rejects a message that has no fields. Replace with your own.

Build: sluice build (writes {{file}}.wasm). Try: sluice invoke {{file}}.wasm greeting=hello
"""

import sluice


class WitWorld(sluice.Handler):
    def on_message(self, msg):
        if not msg.raw:
            raise sluice.Reject(f"message {msg.id} has no fields")
        sluice.log.debug(f"handling {msg.id} (attempt {msg.attempt})")
        fields = msg.fields()
        fields["handledBy"] = "{{name}}"
        return [sluice.output(sluice.config("target", "OUT"), **fields)]
