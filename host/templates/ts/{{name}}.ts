// {{name}}: a Sluice handler in TypeScript.
//
// Copies every field of a message to the stream `OUT` (config key `target` overrides it)
// and adds `handledBy`; rejects a message that has no fields. Replace with your own.
//
// npm packages work: `npm install zod`, then `import { z } from "zod"`; sluice build bundles
// them (esbuild) before componentize-js. The SDK's types are in ./sluice.d.ts.
//
// Build: sluice build (writes {{file}}.wasm). Try: sluice invoke {{file}}.wasm greeting=hello
// Test:  sluice test {{file}}.wasm (the cases in fixtures.toml)
import { config, handler, log, output, packed, reject, type Message } from "./sluice.js";

export const handle = handler((msg: Message) => {
  if (msg.raw.length === 0) {
    throw reject(`message ${msg.id} has no fields`);
  }
  log.debug(`handling ${msg.id} (attempt ${msg.attempt})`);
  return [output(config("target", "OUT"), { ...msg.fields(), handledBy: "{{name}}" })];
});

// A share of a batch in one call, as one byte string each way (world
// packed-batch-handler).
export const handlePacked = packed(handle);
