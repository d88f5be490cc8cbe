// {{name}}: a Sluice handler.
//
// Copies every field of a message to the stream `OUT` (config key `target` overrides it)
// and adds `handledBy`; rejects a message that has no fields. Replace with your own.
//
// Build: sluice build (writes {{file}}.wasm). Try: sluice invoke {{file}}.wasm greeting=hello
// ./sluice.js is Sluice's guest-sdk/js/sluice.js: `sluice build` finds it there.
import { config, handler, log, output, packed, reject } from "./sluice.js";

export const handle = handler((msg) => {
  if (msg.raw.length === 0) {
    throw reject(`message ${msg.id} has no fields`);
  }
  log.debug(`handling ${msg.id} (attempt ${msg.attempt})`);
  return [output(config("target", "OUT"), { ...msg.fields(), handledBy: "{{name}}" })];
});

// A share of a batch in one call, as one byte string each way (world
// packed-batch-handler): the runtime's cost of a call, and of lifting and lowering each
// field, is paid once per share instead of once per message and field.
export const handlePacked = packed(handle);
