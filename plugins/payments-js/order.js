// The payments plugins' order, read and checked exactly as plugins/payments (Rust) does,
// their payment output and their logs: shared by plugins/payments-js and
// plugins/payments-http-js, so that the two cannot drift.

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
