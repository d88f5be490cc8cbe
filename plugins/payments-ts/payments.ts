// The tutorial's payments service as a Sluice handler in TypeScript (the tutorial's own
// services are TypeScript): the same outputs and rejects as plugins/payments (Rust),
// checked by the conformance suite. The order is read and checked by the JavaScript
// variant's order.js; the payment ID is derived as in Rust (two FNV-1a hashes).
//
// Build: scripts/build-plugins.sh (esbuild bundles it, then componentize-js).

import { handler, packed, type Message, type Output } from '../../guest-sdk/js/sluice.js';
import { logged, readOrder, payment } from '../payments-js/order.js';

interface Order {
  orderId: string;
  userId: string;
}

export const handle = handler(
  logged((msg: Message): Output[] => {
    const { order, amount } = readOrder(msg) as { order: Order; amount: string };
    return [payment(order, amount, paymentId(order.orderId))];
  }),
);

// A batch in one call, as one byte string each way (world packed-batch-handler).
export const handlePacked = packed(handle);

// 64-bit FNV-1a twice, in 32-bit halves held in numbers (exact below 2^53), as
// plugins/payments-js explains.
function paymentId(orderId: string): string {
  let [ah, al, bh, bl] = [0xcbf29ce4, 0x84222325, 0x84222325, 0xcbf29ce4];
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
const hex8 = (n: number): string =>
  HEX[n >>> 24] + HEX[(n >>> 16) & 0xff] + HEX[(n >>> 8) & 0xff] + HEX[n & 0xff];
