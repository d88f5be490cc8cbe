// Handler state for JavaScript handlers: keys in Redis read and written with the entry's
// commit (WIT `sluice:plugin/state`). A plugin that imports this module is built for the
// world `stateful-handler` (scripts/build-plugins.sh picks it) and runs only in pipelines
// that declare `state` prefixes.
//
//   import { state } from '../../guest-sdk/js/state.js';
//   state.hset(`order:${id}`, 'orderStatusCode', '3');
//   state.add(`user-total:${user}`, cents);
//
// Every call that fails throws the matching failure (`reject` for a key outside the
// prefixes or of another type, `retry` when Redis cannot be read), and the entry fails
// whatever the handler then does. Values are strings or Uint8Arrays; reads give text.

import * as wit from 'sluice:plugin/state@0.1.1';
import { reject, retry } from './sluice.js';

const decoder = new TextDecoder();
const encoder = new TextEncoder();

function bytes(value) {
  if (value instanceof Uint8Array) return value;
  return encoder.encode(String(value));
}

function text(value) {
  return value === undefined || value === null ? undefined : decoder.decode(value);
}

// jco raises a WIT `result` error as an exception whose `payload` is the variant.
function call(f) {
  try {
    return f();
  } catch (e) {
    const error = e && e.payload;
    if (error && typeof error.tag === 'string') {
      throw error.tag === 'unavailable' ? retry(error.val) : reject(error.val);
    }
    throw e;
  }
}

export const state = Object.freeze({
  /** The string value of `key` as text (GET); undefined when absent. */
  get: (key) => text(call(() => wit.get(key))),
  /** The string value of `key` as bytes; undefined when absent. */
  getBytes: (key) => call(() => wit.get(key)) ?? undefined,
  /** Sets `key` (SET), applied with the entry's commit. */
  set: (key, value) => call(() => wit.set(key, bytes(value))),
  /** Removes `key` (DEL), applied with the entry's commit. */
  delete: (key) => call(() => wit.delete(key)),
  /** Adds `delta` to the integer in `key` and returns the sum (INCRBY, read and checked). */
  incr: (key, delta) => Number(call(() => wit.incr(key, BigInt(delta)))),
  /** Adds `delta` to the integer in `key` at the commit, unread: no conflicts. */
  add: (key, delta) => call(() => wit.add(key, BigInt(delta))),
  /** Field `field` of the hash `key` as text (HGET); undefined when absent. */
  hget: (key, field) => text(call(() => wit.hget(key, field))),
  /** Sets `field` of the hash `key` (HSET), applied with the entry's commit. */
  hset: (key, field, value) => call(() => wit.hset(key, field, bytes(value))),
  /** Every field of the hash `key` as text, sorted by name (HGETALL). */
  hgetall: (key) => Object.fromEntries(call(() => wit.hgetall(key)).map(([f, v]) => [f, text(v)])),
});
