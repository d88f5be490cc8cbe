// The payments plugins' order, read and checked exactly as plugins/payments (Rust) does,
// their payment output, the payment ID derived from the order, and their logs: shared by
// plugins/payments-js, plugins/payments-ts and plugins/payments-http-js, so that they
// cannot drift.

import { reject, output, config, log } from '../../guest-sdk/js/sluice.js';

const PAYMENT_SUCCESSFUL = '3';

/**
 * Wraps `pay(msg)` (sync or async) with the payments plugins' logs (the conformance suite
 * holds every language to these lines): `warn` for each rejected order, `info` for an
 * entry on a later delivery attempt.
 */
export function logged(pay) {
  return (msg) => {
    if (msg.attempt > 1) log.info(`entry ${msg.id} is on delivery attempt ${msg.attempt}`);
    let value;
    try {
      value = pay(msg);
    } catch (failure) {
      throw warned(msg, failure);
    }
    if (value && typeof value.then === 'function') {
      return value.then(undefined, (failure) => {
        throw warned(msg, failure);
      });
    }
    return value;
  };
}

function warned(msg, failure) {
  if (failure && failure.tag === 'reject') log.warn(`rejected entry ${msg.id}: ${failure.val}`);
  return failure;
}

/**
 * The order in `msg`: its fields as text (`orderId`, `userId`...) and its `amount` (the
 * orderAmount text as given). Throws a reject if a field is missing or the amount is not
 * a finite number >= 0.
 */
export function readOrder(msg) {
  const order = msg.require('orderId', 'userId');
  const amount = order.orderAmount;
  if (amount === undefined) throw reject(`order ${order.orderId} has no orderAmount`);
  const value = parseAmount(amount);
  if (value === undefined) {
    throw reject(`order ${order.orderId} has an orderAmount that is not a number: ${debug(amount)}`);
  }
  if (!(Number.isFinite(value) && value >= 0)) {
    throw reject(`order ${order.orderId} has a negative orderAmount ${debug(amount)}`);
  }
  return { order, amount };
}

/** The payment of `order` with `paymentId`, to config `payments_stream` (PAYMENTS_STREAM). */
export function payment(order, amount, paymentId) {
  return output(config('payments_stream', 'PAYMENTS_STREAM'), {
    orderId: order.orderId,
    paymentId,
    orderAmount: amount,
    paidAmount: amount,
    orderStatusCode: PAYMENT_SUCCESSFUL,
    userId: order.userId,
  });
}

// Rust's `str::trim` (Unicode White_Space) and `f64::from_str` grammar, so that both
// plugins accept exactly the same amounts.
const WHITE = '[\\t\\n\\v\\f\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]';
const TRIM = new RegExp(`^${WHITE}+|${WHITE}+$`, 'g');
const DECIMAL = /^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$/;
const SPECIAL = /^[+-]?(inf|infinity|nan)$/i;

// Every White_Space character is U+0020 or below, or U+0085 or above.
const mayBeWhite = (code) => code <= 0x20 || code >= 0x85;

function parseAmount(text) {
  // The regular expression scans every position: most amounts need no trim, and two
  // character codes tell.
  const trimmed =
    text.length > 0 && (mayBeWhite(text.charCodeAt(0)) || mayBeWhite(text.charCodeAt(text.length - 1)))
      ? text.replace(TRIM, '')
      : text;
  if (DECIMAL.test(trimmed)) return Number(trimmed);
  const special = SPECIAL.exec(trimmed);
  if (!special) return undefined;
  return special[1].toLowerCase() === 'nan' ? NaN : Infinity;
}

// Rust's `{:?}` of a string, for the reasons.
function debug(text) {
  let out = '"';
  for (const ch of text) {
    const code = ch.codePointAt(0);
    if (ch === '"' || ch === '\\') out += `\\${ch}`;
    else if (ch === '\n') out += '\\n';
    else if (ch === '\r') out += '\\r';
    else if (ch === '\t') out += '\\t';
    else if (ch === '\0') out += '\\0';
    else if (code < 0x20 || code === 0x7f) out += `\\u{${code.toString(16)}}`;
    else out += ch;
  }
  return `${out}"`;
}

// A 24-hex-digit payment ID derived from the order ID (two FNV-1a hashes), as in Rust.
// 64-bit FNV-1a in two 32-bit halves held in plain numbers: the prime is 2^40 + 0x1b3,
// so h * prime = (h << 40) + h * 0x1b3 (mod 2^64). Written for an interpreter (a
// component has no JIT): BigInt, the obvious way, allocates at every step; here both
// hashes share one pass over the bytes, with no call per byte (every term is an integer
// below 2^42 in magnitude, exact in a double; `>>> 0` floors the carry and reduces the
// sum mod 2^32), and an
// ASCII ID is read with charCodeAt instead of being encoded first.
export function paymentId(orderId) {
  let ah = 0xcbf29ce4;
  let al = 0x84222325;
  let bh = 0x84222325;
  let bl = 0xcbf29ce4;
  const bytes = ASCII.test(orderId) ? undefined : encoder.encode(orderId);
  const n = bytes ? bytes.length : orderId.length;
  for (let i = 0; i < n; i += 1) {
    const b = bytes ? bytes[i] : orderId.charCodeAt(i);
    al = (al ^ b) >>> 0;
    let p = al * 0x1b3;
    ah = (ah * 0x1b3 + (al << 8) + ((p / 0x100000000) >>> 0)) >>> 0;
    al = p >>> 0;
    bl = (bl ^ b) >>> 0;
    p = bl * 0x1b3;
    bh = (bh * 0x1b3 + (bl << 8) + ((p / 0x100000000) >>> 0)) >>> 0;
    bl = p >>> 0;
  }
  return hex8(ah) + hex8(al) + hex8(bl);
}

const ASCII = /^[\x00-\x7f]*$/;
const encoder = new TextEncoder();
const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'));
const hex8 = (n) => HEX[n >>> 24] + HEX[(n >>> 16) & 0xff] + HEX[(n >>> 8) & 0xff] + HEX[n & 0xff];
