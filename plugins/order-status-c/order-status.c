// The tutorial's orders service, payment side, in C: the same status update and the
// same handler state as plugins/order-status (Rust), checked by the conformance suite.
//
// Build: scripts/build-plugins.sh (clang, then `sluice-c component`).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sluice.h"

// "12.34" as 1234 cents; at most two decimals, not negative (as the Rust plugin).
static bool cents(const char *amount, int64_t *out) {
    while (*amount == ' ' || *amount == '\t' || *amount == '\n' || *amount == '\r') amount++;
    size_t len = strlen(amount);
    while (len > 0 && (amount[len - 1] == ' ' || amount[len - 1] == '\t' ||
                       amount[len - 1] == '\n' || amount[len - 1] == '\r'))
        len--;
    int64_t units = 0, fraction = 0;
    size_t i = 0, digits = 0, decimals = 0;
    for (; i < len && amount[i] >= '0' && amount[i] <= '9'; i++, digits++) {
        if (units > (INT64_MAX - 9) / 10) return false;
        units = units * 10 + (amount[i] - '0');
    }
    if (i < len && amount[i] == '.') {
        for (i++; i < len && amount[i] >= '0' && amount[i] <= '9'; i++, decimals++) {
            if (decimals == 2) return false;
            fraction = fraction * 10 + (amount[i] - '0');
        }
    }
    if (i != len || (digits == 0 && decimals == 0)) return false;
    if (decimals == 1) fraction *= 10;
    if (units > (INT64_MAX - fraction) / 100) return false;
    *out = units * 100 + fraction;
    return true;
}

bool sluice_handle(const sluice_message_t *msg, sluice_outputs_t *out, sluice_failure_t *err) {
    const char *names[] = {"orderId", "paymentId", "orderStatusCode", "userId", "paidAmount"};
    char *v[5];
    for (int i = 0; i < 5; i++) {
        v[i] = sluice_text(msg, names[i]);
        if (!v[i]) {
            for (int j = 0; j < i; j++) free(v[j]);
            return sluice_reject(err,
                                 "message does not have the expected fields: missing field `%s`",
                                 names[i]);
        }
    }
    bool ok = false;
    int64_t paid;
    char *order = NULL, *total = NULL;
    if (!cents(v[4], &paid)) {
        char *quoted = sluice_quote(v[4], strlen(v[4]));
        sluice_reject(err, "payment %s has a paidAmount that is not an amount: %s", v[1], quoted);
        free(quoted);
        goto done;
    }
    order = malloc(strlen(v[0]) + 7);
    total = malloc(strlen(v[3]) + 12);
    if (!order || !total) abort();
    sprintf(order, "order:%s", v[0]);
    sprintf(total, "user-total:%s", v[3]);
    if (!sluice_state_hset(err, order, "orderStatusCode", v[2])) goto done;
    if (!sluice_state_hset(err, order, "paymentId", v[1])) goto done;
    if (!sluice_state_add(err, total, paid)) goto done;
    char *target = sluice_config_or("status_stream", "ORDER_STATUS_STREAM");
    sluice_output_t *output = sluice_output(out, target);
    free(target);
    sluice_set(output, "orderId", v[0]);
    sluice_set(output, "paymentId", v[1]);
    sluice_set(output, "orderStatusCode", v[2]);
    ok = true;
done:
    free(order);
    free(total);
    for (int i = 0; i < 5; i++) free(v[i]);
    return ok;
}
