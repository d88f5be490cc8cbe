// Sluice SDK for JavaScript handlers, built into a component with componentize-js.
//
//   import { handler, batch, reject, output, config } from '../../guest-sdk/js/sluice.js';
//   export const handle = handler((msg) => {
//     const order = msg.require('orderId', 'userId');   // rejects if one is missing
//     return [output(config('target', 'OUT'), { orderId: order.orderId })];
//   });
//
// A handler returns a list of outputs (or nothing); `throw reject(reason)` dead-letters
// the message, `throw retry(reason)` leaves it pending for a later delivery. Any other
// exception traps the instance, which counts as a retry.

import { log as hostLog, config as hostConfig } from 'sluice:plugin/host@0.1.2';

const decoder = new TextDecoder(); // lossy: invalid UTF-8 becomes U+FFFD, as in Rust
const encoder = new TextEncoder();

/** One stream entry: its source stream, ID, delivery attempt (1 first) and fields. */
export class Message {
  constructor(raw) {
    this.source = raw.source;
    this.id = raw.id;
    this.attempt = raw.attempt;
    /** [name, Uint8Array] pairs, in order; names may repeat. */
    this.raw = raw.fields;
  }

  /** The last value of field `name` as bytes, or undefined. */
  bytes(name) {
    for (let i = this.raw.length - 1; i >= 0; i -= 1) {
      if (this.raw[i][0] === name) return this.raw[i][1];
    }
    return undefined;
  }

  /** The last value of field `name` as text, or undefined. */
  text(name) {
    const value = this.bytes(name);
    return value === undefined ? undefined : decoder.decode(value);
  }

  /** Field `name` parsed as JSON; a missing or malformed field rejects the message. */
  json(name) {
    const text = this.text(name);
    if (text === undefined) throw reject(`missing field \`${name}\``);
    try {
      return JSON.parse(text);
    } catch (e) {
      throw reject(`field \`${name}\` is not JSON: ${e.message}`);
    }
  }

  /** Every field as text, keyed by name (the last value wins). */
  fields() {
    const object = {};
    const raw = this.raw;
    for (let i = 0; i < raw.length; i += 1) object[raw[i][0]] = decoder.decode(raw[i][1]);
    return object;
  }

  /** The fields as text, rejecting the message if one of `names` is missing. */
  require(...names) {
    const object = this.fields();
    for (const name of names) {
      if (!(name in object)) {
        throw reject(`message does not have the expected fields: missing field \`${name}\``);
      }
    }
    return object;
  }
}

/** A failure that dead-letters the message: `throw reject('why')`. */
export function reject(reason) {
  return { tag: 'reject', val: String(reason) };
}

/** A failure that leaves the message pending for a later delivery. */
export function retry(reason) {
  return { tag: 'retry', val: String(reason) };
}

function toBytes(value) {
  if (typeof value === 'string') return encoder.encode(value);
  if (value instanceof Uint8Array) return value;
  // The bindings' byte lists may come from another realm, where `instanceof` says no:
  // any typed array or DataView (or ArrayBuffer) is bytes.
  if (ArrayBuffer.isView(value)) return new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
  if (value instanceof ArrayBuffer || Object.prototype.toString.call(value) === '[object ArrayBuffer]') {
    return new Uint8Array(value);
  }
  return encoder.encode(JSON.stringify(value));
}

/**
 * An output entry for stream `target`, its fields from `object` in insertion order:
 * strings and Uint8Arrays as they are, null/undefined skipped, anything else as JSON.
 */
export function output(target, object = {}) {
  const fields = [];
  const names = Object.keys(object);
  for (let i = 0; i < names.length; i += 1) {
    const value = object[names[i]];
    if (value !== null && value !== undefined) fields.push([names[i], toBytes(value)]);
  }
  return { target, fields };
}

/** Logs through the host, tagged with the pipeline, plugin and message. */
export const log = Object.freeze({
  trace: (message) => hostLog('trace', String(message)),
  debug: (message) => hostLog('debug', String(message)),
  info: (message) => hostLog('info', String(message)),
  warn: (message) => hostLog('warn', String(message)),
  error: (message) => hostLog('error', String(message)),
});

/** The pipeline's `config` value for `key`, or `fallback`. */
export function config(key, fallback = undefined) {
  let value = configCache.get(key);
  if (value === undefined && !configCache.has(key)) {
    value = hostConfig(key) ?? undefined;
    configCache.set(key, value);
  }
  return value === undefined ? fallback : value;
}

// An instance lives within one pipeline's config (a changed config restarts the
// pipeline, with new instances): each key is asked of the host once.
const configCache = new Map();

/** Wraps `fn(message)` as the component's `handle` export. */
export function handler(fn) {
  return (raw) => fn(new Message(raw)) ?? [];
}

/**
 * Wraps a `handle` export as `handleBatch` (world `batch-handler`, sluice:plugin@0.1.2):
 * one call for a share of a batch, each message's result what `handle` gives for it.
 * Entering and leaving a JavaScript component costs more than a small handler's own
 * work; a batch pays it once.
 *
 *   export const handle = handler((msg) => ...);
 *   export const handleBatch = batch(handle);
 *
 * `reject`/`retry` thrown for one message fail that message only; any other exception
 * fails the call, and the host then calls `handle` on each message alone.
 */
export function batch(handle) {
  return (raws) => {
    const results = new Array(raws.length);
    for (let i = 0; i < raws.length; i += 1) {
      let value;
      try {
        value = handle(raws[i]);
      } catch (failure) {
        results[i] = failed(failure);
        continue;
      }
      // An async handler: the rest of the batch goes through the event loop (the host
      // awaits the returned promise), one message after the other.
      if (value && typeof value.then === 'function') return settleFrom(handle, raws, results, i, value);
      results[i] = { tag: 'ok', val: value ?? [] };
    }
    return results;
  };
}

// A message's failure as its result: `reject`/`retry` fail it alone; anything else
// fails the call (the host then calls `handle` on each message by itself).
function failed(failure) {
  if (failure && (failure.tag === 'reject' || failure.tag === 'retry')) {
    return { tag: 'err', val: failure };
  }
  throw failure;
}

async function settleFrom(handle, raws, results, from, pending) {
  for (let i = from; i < raws.length; i += 1) {
    try {
      results[i] = { tag: 'ok', val: (await (i === from ? pending : handle(raws[i]))) ?? [] };
    } catch (failure) {
      results[i] = failed(failure);
    }
  }
  return results;
}
