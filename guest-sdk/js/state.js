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

import * as wit from 'sluice:plugin/state@0.1.4';
import { reject, retry } from './sluice.js';

const decoder = new TextDecoder();
const encoder = new TextEncoder();

function bytes(value) {
  if (value instanceof Uint8Array) return value;
  return encoder.encode(String(value));
}

// An s64 from a number or a BigInt; anything else is the handler's mistake: reject.
function s64(value, what) {
  if (typeof value === 'bigint') return value;
  if (Number.isSafeInteger(value)) return BigInt(value);
  throw reject(`${what} needs an integer, not ${String(value)}`);
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
  /**
   * Adds `delta` (an integer Number or a BigInt) to the integer in `key` and returns the
   * sum (INCRBY, read and checked): a Number when it is a safe integer, else a BigInt.
   */
  incr: (key, delta) => {
    const sum = call(() => wit.incr(key, s64(delta, 'state.incr')));
    return sum >= BigInt(Number.MIN_SAFE_INTEGER) && sum <= BigInt(Number.MAX_SAFE_INTEGER)
      ? Number(sum)
      : sum;
  },
  /** Adds `delta` to the integer in `key` at the commit, unread: no conflicts. */
  add: (key, delta) => call(() => wit.add(key, s64(delta, 'state.add'))),
  /** Field `field` of the hash `key` as text (HGET); undefined when absent. */
  hget: (key, field) => text(call(() => wit.hget(key, field))),
  /** Sets `field` of the hash `key` (HSET), applied with the entry's commit. */
  hset: (key, field, value) => call(() => wit.hset(key, field, bytes(value))),
  /**
   * Every field of the hash `key` as text, in a Map sorted by name (HGETALL). (A Map,
   * not an object: objects put number-like names first.)
   */
  hgetall: (key) => new Map(call(() => wit.hgetall(key)).map(([f, v]) => [f, text(v)])),
});
