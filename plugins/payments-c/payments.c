// The tutorial's payments service as a Sluice handler in C: the same outputs and the
// same rejects as plugins/payments (Rust), checked by the conformance suite. The order is
// read and checked in order.h, shared with plugins/payments-http-c.
//
// Build: scripts/build-plugins.sh (clang --target=wasm32-wasip1, then `sluice-c component`;
// see docs/src/guide/plugins-c.md).
#include "order.h"

// A 24-hex-digit payment ID derived from the order ID (two FNV-1a hashes), as in Rust.
static void payment_id(const char *order_id, size_t len, char out[25]) {
    uint64_t a = 0xcbf29ce484222325ULL, b = 0x84222325cbf29ce4ULL;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)order_id[i];
        a = (a ^ c) * 0x00000100000001b3ULL;
        b = (b ^ c) * 0x00000100000001b3ULL;
    }
    snprintf(out, 25, "%016llx%08x", (unsigned long long)a, (unsigned)(uint32_t)b);
}

static bool pay(const sluice_message_t *msg, sluice_outputs_t *out, sluice_failure_t *err) {
    order_t order;
    if (!read_order(msg, &order, err)) return false;
    char id[25];
    payment_id(order.id, order.id_len, id);
    add_payment(out, &order, id);
    order_free(&order);
    return true;
}

bool sluice_handle(const sluice_message_t *msg, sluice_outputs_t *out, sluice_failure_t *err) {
    return handle_logged(msg, out, err, pay);
}
