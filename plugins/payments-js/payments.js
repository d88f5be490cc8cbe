// The tutorial's payments service as a Sluice handler in JavaScript: the same outputs
// and the same rejects as plugins/payments (Rust), checked by the conformance suite.
//
// Build: scripts/build-plugins.sh (componentize-js; see guest-sdk/js/README.md).

import { handler, packed, reject, output, config, log } from '../../guest-sdk/js/sluice.js';

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

// A batch in one call, as one byte string each way (world packed-batch-handler): the
// runtime's cost of a call, and of lifting and lowering each field, paid once.
export const handlePacked = packed(handle);

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
// 64-bit FNV-1a in two 32-bit halves held in plain numbers: the prime is 2^40 + 0x1b3,
// so h * prime = (h << 40) + h * 0x1b3 (mod 2^64). BigInt, the obvious way, allocates
// at every step and cost this handler a third of its time in the interpreter.
function fnv1a(bytes, hi, lo) {
  for (let i = 0; i < bytes.length; i += 1) {
    lo = (lo ^ bytes[i]) >>> 0;
    const product = lo * 0x1b3; // below 2^41: exact in a double
    hi = (Math.imul(hi, 0x1b3) + (lo << 8) + Math.floor(product / 0x100000000)) >>> 0;
    lo = product >>> 0;
  }
  return [hi, lo];
}

const hex8 = (n) => n.toString(16).padStart(8, '0');
const encoder = new TextEncoder();

function paymentId(orderId) {
  const bytes = encoder.encode(orderId);
  const [hi, lo] = fnv1a(bytes, 0xcbf29ce4, 0x84222325);
  const [, low] = fnv1a(bytes, 0x84222325, 0xcbf29ce4);
  return hex8(hi) + hex8(lo) + hex8(low);
}
