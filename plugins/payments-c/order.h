// The payments plugins' order, read and checked exactly as plugins/payments (Rust) does:
// shared by plugins/payments-c and plugins/payments-http-c, so that the two cannot drift.
// Header-only (every function static): include it in one C file of a plugin.
#ifndef PAYMENTS_ORDER_H
#define PAYMENTS_ORDER_H

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

// An order's fields as text (lengths kept, so values holding NUL bytes are copied whole;
// only the reasons, formatted with %s, would stop at one).
typedef struct {
    char *id, *amount, *user;
    size_t id_len, amount_len, user_len;
} order_t;

static void order_free(order_t *order) {
    free(order->id);
    free(order->amount);
    free(order->user);
}

// Reads {orderId, orderAmount, userId} from `msg`; false with `err` filled (a reject) if
// a field is missing or the amount is not a finite number >= 0.
static bool read_order(const sluice_message_t *msg, order_t *order, sluice_failure_t *err) {
    // The Rust plugin deserializes {orderId, orderAmount?, userId} and names the first
    // missing field.
    if (!sluice_field(msg, "orderId"))
        return sluice_reject(err, "message does not have the expected fields: missing field `orderId`");
    if (!sluice_field(msg, "userId"))
        return sluice_reject(err, "message does not have the expected fields: missing field `userId`");
    *order = (order_t){0};
    const handler_list_u8_t *field = sluice_field(msg, "orderId");
    order->id = sluice_lossy(field->ptr, field->len, &order->id_len);
    field = sluice_field(msg, "userId");
    order->user = sluice_lossy(field->ptr, field->len, &order->user_len);
    const handler_list_u8_t *raw = sluice_field(msg, "orderAmount");
    if (!raw) {
        sluice_reject(err, "order %s has no orderAmount", order->id);
        order_free(order);
        return false;
    }
    order->amount = sluice_lossy(raw->ptr, raw->len, &order->amount_len);
    size_t start, end;
    trim(order->amount, order->amount_len, &start, &end);
    double value;
    bool number = parse_f64(order->amount + start, end - start, &value);
    if (number && isfinite(value) && value >= 0) return true;
    char *quoted = sluice_quote(order->amount, order->amount_len);
    if (number) sluice_reject(err, "order %s has a negative orderAmount %s", order->id, quoted);
    else sluice_reject(err, "order %s has an orderAmount that is not a number: %s", order->id, quoted);
    free(quoted);
    order_free(order);
    return false;
}

// Appends the payment of `order` with `payment_id` to the stream in config
// `payments_stream` (PAYMENTS_STREAM).
static void add_payment(sluice_outputs_t *out, const order_t *order, const char *payment_id) {
    char *target = sluice_config_or("payments_stream", "PAYMENTS_STREAM");
    sluice_output_t *payment = sluice_output(out, target);
    sluice_set_bytes(payment, "orderId", (const uint8_t *)order->id, order->id_len);
    sluice_set(payment, "paymentId", payment_id);
    sluice_set_bytes(payment, "orderAmount", (const uint8_t *)order->amount, order->amount_len);
    sluice_set_bytes(payment, "paidAmount", (const uint8_t *)order->amount, order->amount_len);
    sluice_set(payment, "orderStatusCode", PAYMENT_SUCCESSFUL);
    sluice_set_bytes(payment, "userId", (const uint8_t *)order->user, order->user_len);
    free(target);
}

// `pay(msg, out, err)` with the payments plugins' logs (the conformance suite holds every
// language to these lines): `warn` for each rejected order, `info` for an entry on a
// later delivery attempt.
static bool handle_logged(const sluice_message_t *msg, sluice_outputs_t *out, sluice_failure_t *err,
                          bool (*pay)(const sluice_message_t *, sluice_outputs_t *, sluice_failure_t *)) {
    int id_len = (int)msg->id.len;
    const char *id = (const char *)msg->id.ptr;
    if (msg->attempt > 1) sluice_info("entry %.*s is on delivery attempt %u", id_len, id, msg->attempt);
    if (pay(msg, out, err)) return true;
    if (err->tag == SLUICE_PLUGIN_TYPES_FAILURE_REJECT)
        sluice_warn("rejected entry %.*s: %.*s", id_len, id, (int)err->val.reject.len,
                    (const char *)err->val.reject.ptr);
    return false;
}

#endif
