// The tutorial's payments service as a Sluice handler in JavaScript: the same outputs
// and the same rejects as plugins/payments (Rust), checked by the conformance suite. The
// order is read and checked in order.js, shared with plugins/payments-http-js.
//
// Build: scripts/build-plugins.sh (componentize-js; see docs/src/guide/plugins-js.md, "Writing a plugin in JavaScript").

import { handler, packed } from '../../guest-sdk/js/sluice.js';
import { logged, readOrder, payment } from './order.js';

export const handle = handler(
  logged((msg) => {
    const { order, amount } = readOrder(msg);
    return [payment(order, amount, paymentId(order.orderId))];
  }),
);

// A batch in one call, as one byte string each way (world packed-batch-handler): the
// runtime's cost of a call, and of lifting and lowering each field, paid once.
export const handlePacked = packed(handle);

// A 24-hex-digit payment ID derived from the order ID (two FNV-1a hashes), as in Rust.
// 64-bit FNV-1a in two 32-bit halves held in plain numbers: the prime is 2^40 + 0x1b3,
// so h * prime = (h << 40) + h * 0x1b3 (mod 2^64). Written for an interpreter (a
// component has no JIT): BigInt, the obvious way, allocates at every step; here both
// hashes share one pass over the bytes, with no call per byte (every term is an integer
// below 2^42 in magnitude, exact in a double; `>>> 0` floors the carry and reduces the
// sum mod 2^32), and an
// ASCII ID is read with charCodeAt instead of being encoded first.
function paymentId(orderId) {
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
