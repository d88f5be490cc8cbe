// The tutorial's payments service as a Sluice handler in C: the same outputs and the
// same rejects as plugins/payments (Rust), checked by the conformance suite.
//
// Build: scripts/build-plugins.sh (clang --target=wasm32-wasip1, then `sluice-c component`;
// see docs/src/guide/plugins-c.md).
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "sluice.h"

#define PAYMENT_SUCCESSFUL "3"

// The code point of the UTF-8 sequence at `s` (valid UTF-8: text from sluice_lossy), and
// its length in `*n`.
static uint32_t decode(const unsigned char *s, size_t *n) {
    if (s[0] < 0x80) { *n = 1; return s[0]; }
    if (s[0] < 0xE0) { *n = 2; return (uint32_t)(s[0] & 0x1F) << 6 | (s[1] & 0x3F); }
    if (s[0] < 0xF0) {
        *n = 3;
        return (uint32_t)(s[0] & 0x0F) << 12 | (uint32_t)(s[1] & 0x3F) << 6 | (s[2] & 0x3F);
    }
    *n = 4;
    return (uint32_t)(s[0] & 0x07) << 18 | (uint32_t)(s[1] & 0x3F) << 12 |
           (uint32_t)(s[2] & 0x3F) << 6 | (s[3] & 0x3F);
}

// Unicode White_Space, which Rust's str::trim removes.
static bool is_white(uint32_t c) {
    return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
           c == 0x205F || c == 0x3000;
}

// Rust's `text.trim()`: the bounds of `text[*start..*end]` without white space at either end.
static void trim(const char *text, size_t len, size_t *start, size_t *end) {
    const unsigned char *s = (const unsigned char *)text;
    size_t a = 0, b = len, n;
    while (a < b && is_white(decode(s + a, &n))) a += n;
    while (b > a) {
        size_t p = b - 1;
        while (p > a && (s[p] & 0xC0) == 0x80) p--;
        if (!is_white(decode(s + p, &n))) break;
        b = p;
    }
    *start = a;
    *end = b;
}

// Rust's `f64::from_str` on `s[0..len]`: false when it is not a number; else the value.
static bool parse_f64(const char *s, size_t len, double *value) {
    size_t i = 0;
    bool negative = false;
    if (i < len && (s[i] == '+' || s[i] == '-')) negative = s[i++] == '-';
    const char *rest = s + i;
    size_t left = len - i;
    if ((left == 3 && strncasecmp(rest, "inf", 3) == 0) ||
        (left == 8 && strncasecmp(rest, "infinity", 8) == 0)) {
        *value = negative ? -INFINITY : INFINITY;
        return true;
    }
    if (left == 3 && strncasecmp(rest, "nan", 3) == 0) {
        *value = NAN;
        return true;
    }
    size_t digits = 0;
    while (i < len && isdigit((unsigned char)s[i])) i++, digits++;
    if (i < len && s[i] == '.') {
        i++;
        while (i < len && isdigit((unsigned char)s[i])) i++, digits++;
    }
    if (digits == 0) return false;
    if (i < len && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        if (i < len && (s[i] == '+' || s[i] == '-')) i++;
        size_t exponent = 0;
        while (i < len && isdigit((unsigned char)s[i])) i++, exponent++;
        if (exponent == 0) return false;
    }
    if (i != len) return false;
    // The grammar matched: strtod (correctly rounded, inf on overflow) gives the value.
    char *copy = strndup(s, len);
    *value = strtod(copy, NULL);
    free(copy);
    return true;
}

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
    // The Rust plugin deserializes {orderId, orderAmount?, userId} and names the first
    // missing field.
    if (!sluice_field(msg, "orderId"))
        return sluice_reject(err, "message does not have the expected fields: missing field `orderId`");
    if (!sluice_field(msg, "userId"))
        return sluice_reject(err, "message does not have the expected fields: missing field `userId`");
    // Lengths are kept, so values holding NUL bytes are copied whole (only the reasons,
    // formatted with %s, would stop at one).
    size_t order_len, user_len;
    const handler_list_u8_t *field = sluice_field(msg, "orderId");
    char *order_id = sluice_lossy(field->ptr, field->len, &order_len);
    const handler_list_u8_t *raw = sluice_field(msg, "orderAmount");
    if (!raw) {
        bool failed = sluice_reject(err, "order %s has no orderAmount", order_id);
        free(order_id);
        return failed;
    }
    size_t len, start, end;
    char *amount = sluice_lossy(raw->ptr, raw->len, &len);
    trim(amount, len, &start, &end);
    double value;
    bool number = parse_f64(amount + start, end - start, &value);
    if (!number || !isfinite(value) || value < 0) {
        char *quoted = sluice_quote(amount, len);
        bool failed = number
            ? sluice_reject(err, "order %s has a negative orderAmount %s", order_id, quoted)
            : sluice_reject(err, "order %s has an orderAmount that is not a number: %s", order_id, quoted);
        free(quoted);
        free(amount);
        free(order_id);
        return failed;
    }
    field = sluice_field(msg, "userId");
    char *user_id = sluice_lossy(field->ptr, field->len, &user_len);
    char *target = sluice_config_or("payments_stream", "PAYMENTS_STREAM");
    char id[25];
    payment_id(order_id, order_len, id);

    sluice_output_t *payment = sluice_output(out, target);
    sluice_set_bytes(payment, "orderId", (const uint8_t *)order_id, order_len);
    sluice_set(payment, "paymentId", id);
    sluice_set_bytes(payment, "orderAmount", (const uint8_t *)amount, len);
    sluice_set_bytes(payment, "paidAmount", (const uint8_t *)amount, len);
    sluice_set(payment, "orderStatusCode", PAYMENT_SUCCESSFUL);
    sluice_set_bytes(payment, "userId", (const uint8_t *)user_id, user_len);

    free(target);
    free(user_id);
    free(amount);
    free(order_id);
    return true;
}

// Logs (the conformance suite holds every language to these lines): `warn` for each
// rejected order, `info` for an entry on a later delivery attempt.
bool sluice_handle(const sluice_message_t *msg, sluice_outputs_t *out, sluice_failure_t *err) {
    int id_len = (int)msg->id.len;
    const char *id = (const char *)msg->id.ptr;
    if (msg->attempt > 1) sluice_info("entry %.*s is on delivery attempt %u", id_len, id, msg->attempt);
    if (pay(msg, out, err)) return true;
    if (err->tag == SLUICE_PLUGIN_TYPES_FAILURE_REJECT)
        sluice_warn("rejected entry %.*s: %.*s", id_len, id, (int)err->val.reject.len,
                    (const char *)err->val.reject.ptr);
    return false;
}
