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
//
// A handler may be `async` (or return a promise): componentize-js runs the event loop
// until it settles. So `fetch` works in a plugin built with the `http` feature for world
// `http-handler` (scripts/build-plugins.sh does for a plugin that calls `fetch(`):
//
//   export const handle = handler(async (msg) => {
//     const response = await fetch(config('url'), {
//       method: 'POST',
//       headers: { 'idempotency-key': msg.idempotencyKey() },
//       body: msg.text('payload'),
//     });
//     if (response.status >= 500) throw retry(`the service answered ${response.status}`);
//     return [output('OUT', { answer: await response.text() })];
//   });

import { log as hostLog, config as hostConfig, idempotencyKey as hostIdempotencyKey } from 'sluice:plugin/host@0.1.4';

// Lossy (invalid UTF-8 becomes U+FFFD) and keeping a leading U+FEFF, as Rust's
// `String::from_utf8_lossy` does (a WHATWG decoder drops it unless told not to).
const decoder = new TextDecoder('utf-8', { ignoreBOM: true });
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

  /**
   * This entry's idempotency key: 32 hex digits, the same for every delivery of the entry
   * to the pipeline's consumer group (a retry, a redelivery after a crash, a reclaim),
   * different for every other entry. Send it with a side effect (a payment, an e-mail)
   * so that the receiver does it once.
   */
  idempotencyKey() {
    return idempotencyKey(this);
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

/** The idempotency key of `msg` (a Message or the raw `message` record): see `Message.idempotencyKey`. */
export function idempotencyKey(msg) {
  return hostIdempotencyKey(msg.id);
}

/** A failure that dead-letters the message: `throw reject('why')`. */
export function reject(reason) {
  return { tag: 'reject', val: String(reason) };
}

/** A failure that leaves the message pending for a later delivery. */
export function retry(reason) {
  return { tag: 'retry', val: String(reason) };
}

// A field value as the bindings take it: a string or bytes as they are (strings are
// encoded when the output is lowered), anything else as JSON text.
function toValue(value) {
  if (typeof value === 'string' || value instanceof Uint8Array) return value;
  // The bindings' byte lists may come from another realm, where `instanceof` says no:
  // any typed array or DataView (or ArrayBuffer) is bytes.
  if (ArrayBuffer.isView(value)) return new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
  if (value instanceof ArrayBuffer || Object.prototype.toString.call(value) === '[object ArrayBuffer]') {
    return new Uint8Array(value);
  }
  return JSON.stringify(value);
}

function toBytes(value) {
  const converted = toValue(value);
  return converted instanceof Uint8Array ? converted : encoder.encode(converted);
}

/**
 * An output entry for stream `target`, its fields from `object` in insertion order:
 * strings (written as UTF-8) and Uint8Arrays as they are, null/undefined skipped,
 * anything else as JSON. `fields` holds [name, string | Uint8Array] pairs.
 */
export function output(target, object = {}) {
  const fields = [];
  const names = Object.keys(object);
  for (let i = 0; i < names.length; i += 1) {
    const value = object[names[i]];
    if (typeof value === 'string') fields.push([names[i], value]);
    else if (value !== null && value !== undefined) fields.push([names[i], toValue(value)]);
  }
  return { target, fields };
}

// Outputs as the `list<output>` bindings take them: every value bytes, in new arrays (the
// handler's may be frozen). Anything but a list (or nothing) fails the call, as in
// `handle-packed`: the bindings would take it for an empty list and lose the outputs.
function lowered(outputs) {
  if (outputs === null || outputs === undefined) return [];
  if (!Array.isArray(outputs)) throw new TypeError(`a handler returned ${describe(outputs)}, not a list of outputs`);
  const lists = new Array(outputs.length);
  for (let i = 0; i < outputs.length; i += 1) {
    const { target, fields } = outputs[i];
    const bytes = new Array(fields.length);
    for (let j = 0; j < fields.length; j += 1) {
      const value = fields[j][1];
      bytes[j] = [fields[j][0], value instanceof Uint8Array ? value : toBytes(value)];
    }
    lists[i] = { target, fields: bytes };
  }
  return lists;
}

const describe = (value) => (Array.isArray(value) ? 'a list' : value && typeof value === 'object' ? 'an object' : typeof value);

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
  const run = (raw) => {
    const value = fn(new Message(raw));
    // Any thenable, as `await` takes it (`handle-packed` awaits).
    if (value && typeof value.then === 'function') return Promise.resolve(value).then(lowered);
    return lowered(value);
  };
  const handle = (raw) => {
    let value;
    try {
      value = run(raw);
    } catch (failure) {
      throw unexpected(failure, raw);
    }
    if (value && typeof value.then === 'function') {
      return Promise.resolve(value).then(undefined, (failure) => {
        throw unexpected(failure, raw);
      });
    }
    return value;
  };
  // `packed` calls `fn` itself, with outputs it encodes from strings directly; `batch`
  // calls `run`, which does not log what it throws.
  handle[HANDLER] = fn;
  handle[RUN] = run;
  return handle;
}

const HANDLER = Symbol('sluice.handler');
const RUN = Symbol('sluice.run');

// What a handler threw: `reject`/`retry` as they are; anything else (a bug, which traps
// the instance and counts as a retry) is logged first at ERROR with its stack, since the
// trap itself carries no message. Batch calls do not log it: a failed batch call is made
// again entry by entry through `handle`, which does.
function unexpected(failure, raw) {
  const known = asFailure(failure);
  if (known) return known;
  const stack = failure && typeof failure.stack === 'string' && failure.stack ? `\n${failure.stack}` : '';
  hostLog('error', `the handler threw on entry ${raw.id}: ${String(failure)}${stack}`);
  return failure;
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
export function batch(exported) {
  const handle = exported[RUN] ?? exported;
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

/**
 * Wraps a `handle` export as `handlePacked` (world `packed-batch-handler`,
 * sluice:plugin@0.1.3): what `batch` does, with the messages and results each one byte
 * string (the encoding in wit/handler.wit). componentize-js lifts and lowers values in
 * interpreted JavaScript, at about 10 µs per string or byte list: a message of a few
 * fields and its output cost more to cross than to handle, and one byte string each way
 * does not.
 *
 *   export const handle = handler((msg) => ...);
 *   export const handlePacked = packed(handle);
 *
 * Field values reach the handler as copies of their bytes, as through `handle`.
 */
export function packed(handle) {
  const fn = handle[HANDLER];
  const one = fn ? (raw) => fn(new Message(raw)) : handle;
  return (bytes) => {
    const messages = unpack(bytes);
    const out = new Packer();
    out.u32(messages.length);
    for (let i = 0; i < messages.length; i += 1) {
      let value;
      try {
        value = one(messages[i]);
      } catch (failure) {
        out.failure(failed(failure));
        continue;
      }
      if (value && typeof value.then === 'function') return packFrom(one, messages, out, i, value);
      out.outputs(value ?? []);
    }
    return out.done();
  };
}

async function packFrom(one, messages, out, from, pending) {
  for (let i = from; i < messages.length; i += 1) {
    let value;
    try {
      value = await (i === from ? pending : one(messages[i]));
    } catch (failure) {
      out.failure(failed(failure));
      continue;
    }
    out.outputs(value ?? []);
  }
  return out.done();
}

// The messages in `bytes`: u32 count, then per message u32 attempt, str source, str id,
// u32 field count, (str name, bytes value) per field; little-endian, u32-length-prefixed.
function unpack(bytes) {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let at = 0;
  const count = view.getUint32(at, true);
  at += 4;
  const messages = new Array(count);
  for (let i = 0; i < count; i += 1) {
    const attempt = view.getUint32(at, true);
    let len = view.getUint32(at + 4, true);
    at += 8;
    const source = decoder.decode(bytes.subarray(at, at + len));
    at += len;
    len = view.getUint32(at, true);
    const id = decoder.decode(bytes.subarray(at + 4, at + 4 + len));
    at += 4 + len;
    const n = view.getUint32(at, true);
    at += 4;
    const fields = new Array(n);
    for (let j = 0; j < n; j += 1) {
      len = view.getUint32(at, true);
      const name = decoder.decode(bytes.subarray(at + 4, at + 4 + len));
      at += 4 + len;
      len = view.getUint32(at, true);
      // A copy, not a view: a view's `.buffer` would be the whole batch, and would keep
      // it alive as long as the handler keeps the value.
      fields[j] = [name, bytes.slice(at + 4, at + 4 + len)];
      at += 4 + len;
    }
    messages[i] = { source, id, fields, attempt };
  }
  return messages;
}

// The results' encoding, into a buffer kept across calls (the bindings copy the returned
// bytes out before the next call): u8 0, u32 output count, (str target, u32 field count,
// (str name, bytes value) per field) per output; or u8 1 (retry) / 2 (reject), str reason.
let packBuffer = new Uint8Array(1 << 16);
const NUL4 = '\0\0\0\0';

class Packer {
  constructor() {
    // The last call's bytes were copied out when it returned: a buffer grown for a large
    // result is not kept for the instance's lifetime.
    if (packBuffer.length > 1 << 20) packBuffer = new Uint8Array(1 << 16);
    this.buf = packBuffer;
    this.view = new DataView(this.buf.buffer);
    this.at = 0;
  }

  room(n) {
    if (this.at + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.at + n) size *= 2;
    const grown = new Uint8Array(size);
    grown.set(this.buf.subarray(0, this.at));
    this.buf = packBuffer = grown;
    this.view = new DataView(grown.buffer);
  }

  u32(n) {
    this.room(4);
    this.view.setUint32(this.at, n, true);
    this.at += 4;
  }

  value(value) {
    if (typeof value === 'string') {
      // Room for ASCII first; then, if that was not all of it, for the most UTF-8 can
      // take (3 bytes per UTF-16 code unit): a large ASCII value does not reserve 3x.
      this.room(4 + value.length);
      let { read, written } = encoder.encodeInto(value, this.buf.subarray(this.at + 4));
      if (read < value.length) {
        this.room(4 + value.length * 3);
        ({ written } = encoder.encodeInto(value, this.buf.subarray(this.at + 4)));
      }
      this.view.setUint32(this.at, written, true);
      this.at += 4 + written;
    } else {
      const bytes = value instanceof Uint8Array ? value : toBytes(value);
      this.room(4 + bytes.length);
      this.view.setUint32(this.at, bytes.length, true);
      this.buf.set(bytes, this.at + 4);
      this.at += 4 + bytes.length;
    }
  }

  outputs(outputs) {
    // As the bindings of `handle` would: anything but a list fails the call.
    if (!Array.isArray(outputs)) throw new TypeError(`a handler returned ${describe(outputs)}, not a list of outputs`);
    this.room(5);
    this.buf[this.at] = 0;
    this.at += 1;
    this.u32(outputs.length);
    for (let i = 0; i < outputs.length; i += 1) {
      const { target, fields } = outputs[i];
      if (typeof target !== 'string') throw new TypeError(`an output's target is not a string: ${target}`);
      if (this.ascii(target, fields)) continue;
      this.value(target);
      this.u32(fields.length);
      for (let j = 0; j < fields.length; j += 1) {
        const name = fields[j][0];
        if (typeof name !== 'string') throw new TypeError(`a field name is not a string: ${name}`);
        this.value(name);
        this.value(fields[j][1]);
      }
    }
  }

  // An output of strings only, in one `encodeInto` (each call into the runtime costs
  // more than the bytes it copies): the output as one string with four NULs for each
  // u32, which are filled in after if the string was ASCII (one byte per code unit, so
  // every offset is known). Otherwise nothing is kept and the caller encodes each part.
  ascii(target, fields) {
    let text = NUL4 + target + NUL4;
    for (let j = 0; j < fields.length; j += 1) {
      const field = fields[j];
      if (typeof field[0] !== 'string' || typeof field[1] !== 'string') return false;
      text += NUL4 + field[0] + NUL4 + field[1];
    }
    this.room(text.length);
    const { read, written } = encoder.encodeInto(text, this.buf.subarray(this.at));
    if (read !== text.length || written !== text.length) return false;
    const view = this.view;
    let at = this.at;
    view.setUint32(at, target.length, true);
    at += 4 + target.length;
    view.setUint32(at, fields.length, true);
    at += 4;
    for (let j = 0; j < fields.length; j += 1) {
      const field = fields[j];
      view.setUint32(at, field[0].length, true);
      at += 4 + field[0].length;
      view.setUint32(at, field[1].length, true);
      at += 4 + field[1].length;
    }
    this.at = at;
    return true;
  }

  failure(failure) {
    this.room(1);
    this.buf[this.at] = failure.val.tag === 'retry' ? 1 : 2;
    this.at += 1;
    this.value(failure.val.val);
  }

  done() {
    return this.buf.subarray(0, this.at);
  }
}

// A message's failure as its result: `reject`/`retry` fail it alone; anything else
// fails the call (the host then calls `handle` on each message by itself).
function failed(failure) {
  const known = asFailure(failure);
  if (known) return { tag: 'err', val: known };
  throw failure;
}

// `failure` as the WIT `failure` if it is a `reject` or `retry`: a failure built by hand
// may carry a reason that is not a string, which every export takes as its text (as
// `reject` and `retry` do). Anything else: undefined.
function asFailure(failure) {
  if (!failure || (failure.tag !== 'reject' && failure.tag !== 'retry')) return undefined;
  return { tag: failure.tag, val: String(failure.val) };
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
