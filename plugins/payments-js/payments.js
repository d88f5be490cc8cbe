// The tutorial's payments service as a Sluice handler in JavaScript: the same outputs
// and the same rejects as plugins/payments (Rust), checked by the conformance suite.
//
// Build: scripts/build-plugins.sh (componentize-js; see guest-sdk/js/README.md).

import { handler, reject, output, config, log } from '../../guest-sdk/js/sluice.js';

const PAYMENT_SUCCESSFUL = '3';

// Logs (the conformance suite holds every language to these lines): `warn` for each
// rejected order, `info` for an entry on a later delivery attempt.
export const handle = handler((msg) => {
  if (msg.attempt > 1) log.info(`entry ${msg.id} is on delivery attempt ${msg.attempt}`);
  try {
    return pay(msg);
  } catch (failure) {
    if (failure && failure.tag === 'reject') log.warn(`rejected entry ${msg.id}: ${failure.val}`);
    throw failure;
  }
});

function pay(msg) {
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
  return [
    output(config('payments_stream', 'PAYMENTS_STREAM'), {
      orderId: order.orderId,
      paymentId: paymentId(order.orderId),
      orderAmount: amount,
      paidAmount: amount,
      orderStatusCode: PAYMENT_SUCCESSFUL,
      userId: order.userId,
    }),
  ];
}

// Rust's `str::trim` (Unicode White_Space) and `f64::from_str` grammar, so that both
// plugins accept exactly the same amounts.
const WHITE = '[\\t\\n\\v\\f\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]';
const TRIM = new RegExp(`^${WHITE}+|${WHITE}+$`, 'g');
const FLOAT = /^[+-]?(?:(inf|infinity|nan)|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)$/i;

function parseAmount(text) {
  const trimmed = text.replace(TRIM, '');
  const match = FLOAT.exec(trimmed);
  if (!match) return undefined;
  if (match[1]) return match[1].toLowerCase() === 'nan' ? NaN : Infinity;
  return Number(trimmed);
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
function paymentId(orderId) {
  const bytes = new TextEncoder().encode(orderId);
  const hash = (seed) => {
    let h = seed;
    for (const b of bytes) h = BigInt.asUintN(64, (h ^ BigInt(b)) * 0x100000001b3n);
    return h;
  };
  const high = hash(0xcbf29ce484222325n).toString(16).padStart(16, '0');
  const low = BigInt.asUintN(32, hash(0x84222325cbf29ce4n)).toString(16).padStart(8, '0');
  return high + low;
}
