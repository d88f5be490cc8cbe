// The payments service charging a payment provider over HTTP, in C: the same outputs,
// rejects, retries and logs as plugins/payments built with feature `http`
// (payments_http.wasm), checked by the HTTP conformance suite. The order is read and
// checked as in plugins/payments-c (order.h, shared).
//
// The order is POSTed as JSON {"orderId", "amount", "userId"} to config `provider_url`
// with the entry's idempotency key in `idempotency-key`; the payment ID is the answer's
// `payment_id`. 429 or 5xx, or no answer, is retried; another status rejects the order.
//
// Build: scripts/build-plugins.sh (bindings of world stateful-http-handler).
#include "../payments-c/order.h"

// --- JSON -----------------------------------------------------------------------------

// Appends `len` bytes of UTF-8 `text` to `out` as a JSON string, escaped as serde_json
// escapes it.
static size_t json_string(char *out, const char *text, size_t len) {
    size_t w = 0;
    out[w++] = '"';
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)text[i];
        const char *escape = c == '"' ? "\\\"" : c == '\\' ? "\\\\" : c == '\n' ? "\\n"
                           : c == '\r' ? "\\r" : c == '\t' ? "\\t" : c == '\b' ? "\\b"
                           : c == '\f' ? "\\f" : NULL;
        if (escape) w += (size_t)sprintf(out + w, "%s", escape);
        else if (c < 0x20) w += (size_t)sprintf(out + w, "\\u%04x", c);
        else out[w++] = (char)c;
    }
    out[w++] = '"';
    return w;
}

// The request body: {"orderId":..,"amount":..,"userId":..}, malloc'ed.
static char *charge_body(const order_t *order, size_t *len) {
    // Each byte takes at most 6 (\u00XX).
    size_t most = (order->id_len + order->amount_len + order->user_len) * 6 + 64;
    char *body = malloc(most);
    if (!body) __builtin_trap();
    size_t w = (size_t)sprintf(body, "{\"orderId\":");
    w += json_string(body + w, order->id, order->id_len);
    w += (size_t)sprintf(body + w, ",\"amount\":");
    w += json_string(body + w, order->amount, order->amount_len);
    w += (size_t)sprintf(body + w, ",\"userId\":");
    w += json_string(body + w, order->user, order->user_len);
    body[w++] = '}';
    body[w] = '\0';
    *len = w;
    return body;
}

// A JSON reader over `p[0..end]`: each function skips one value (and the white space
// before it) and returns where it ends, or NULL if it is not JSON.
typedef struct {
    const char *end;
} json_t;

static const char *skip_white(const json_t *j, const char *p) {
    while (p < j->end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')) p++;
    return p;
}

static const char *json_value(const json_t *j, const char *p, int depth);

// A string; its text (escapes decoded) to `*text` unless that is NULL.
static const char *json_text(const json_t *j, const char *p, char **text) {
    if (p >= j->end || *p != '"') return NULL;
    char *out = malloc((size_t)(j->end - p) + 1);
    if (!out) __builtin_trap();
    size_t w = 0;
    for (p++; p < j->end && *p != '"'; p++) {
        unsigned char c = (unsigned char)*p;
        if (c < 0x20) break;
        if (c != '\\') { out[w++] = (char)c; continue; }
        if (++p >= j->end) break;
        const char *simple = strchr("\"\\/bfnrt", *p);
        if (simple && *p) { out[w++] = "\"\\/\b\f\n\r\t"[simple - "\"\\/bfnrt"]; continue; }
        unsigned code;
        if (*p != 'u' || j->end - p < 5 || sscanf(p + 1, "%4x", &code) != 1) break;
        p += 4;
        if (code >= 0xD800 && code < 0xDC00 && j->end - p > 6 && p[1] == '\\' && p[2] == 'u') {
            unsigned low;
            if (sscanf(p + 3, "%4x", &low) == 1 && low >= 0xDC00 && low < 0xE000) {
                code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00);
                p += 6;
            }
        }
        if (code >= 0xD800 && code < 0xE000) break; // a lone surrogate: serde_json refuses it
        if (code < 0x80) out[w++] = (char)code;
        else if (code < 0x800) w += (size_t)sprintf(out + w, "%c%c", 0xC0 | code >> 6, 0x80 | (code & 0x3F));
        else if (code < 0x10000)
            w += (size_t)sprintf(out + w, "%c%c%c", 0xE0 | code >> 12, 0x80 | (code >> 6 & 0x3F), 0x80 | (code & 0x3F));
        else
            w += (size_t)sprintf(out + w, "%c%c%c%c", 0xF0 | code >> 18, 0x80 | (code >> 12 & 0x3F),
                                 0x80 | (code >> 6 & 0x3F), 0x80 | (code & 0x3F));
    }
    out[w] = '\0';
    bool closed = p < j->end && *p == '"';
    if (closed && text) *text = out;
    else free(out);
    return closed ? p + 1 : NULL;
}

// An object's or array's members; in an object, the last string value of `key` (if it
// is not NULL) to `*found`.
static const char *json_members(const json_t *j, const char *p, char close, int depth,
                                const char *key, char **found) {
    p = skip_white(j, p + 1);
    if (p < j->end && *p == close) return p + 1;
    for (;;) {
        char *name = NULL;
        if (close == '}') {
            p = json_text(j, skip_white(j, p), &name);
            if (p) p = skip_white(j, p);
            if (!p || p >= j->end || *p != ':') { free(name); return NULL; }
            p++;
        }
        const char *value = skip_white(j, p);
        p = json_value(j, value, depth + 1);
        if (p && key && name && strcmp(name, key) == 0) {
            free(*found);
            *found = NULL;
            if (*value == '"') json_text(j, value, found);
        }
        free(name);
        if (!p) return NULL;
        p = skip_white(j, p);
        if (p < j->end && *p == close) return p + 1;
        if (p >= j->end || *p != ',') return NULL;
        p++;
    }
}

static const char *json_value(const json_t *j, const char *p, int depth) {
    p = skip_white(j, p);
    if (p >= j->end || depth > 128) return NULL;
    if (*p == '{') return json_members(j, p, '}', depth, NULL, NULL);
    if (*p == '[') return json_members(j, p, ']', depth, NULL, NULL);
    if (*p == '"') return json_text(j, p, NULL);
    static const char *const WORDS[] = {"true", "false", "null"};
    for (int i = 0; i < 3; i++) {
        size_t n = strlen(WORDS[i]);
        if ((size_t)(j->end - p) >= n && strncmp(p, WORDS[i], n) == 0) return p + n;
    }
    // A number: -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?
    const char *q = p + (*p == '-');
    if (q >= j->end || !isdigit((unsigned char)*q)) return NULL;
    if (*q == '0') q++;
    else while (q < j->end && isdigit((unsigned char)*q)) q++;
    if (q < j->end && *q == '.') {
        if (++q >= j->end || !isdigit((unsigned char)*q)) return NULL;
        while (q < j->end && isdigit((unsigned char)*q)) q++;
    }
    if (q < j->end && (*q == 'e' || *q == 'E')) {
        q++;
        if (q < j->end && (*q == '+' || *q == '-')) q++;
        if (q >= j->end || !isdigit((unsigned char)*q)) return NULL;
        while (q < j->end && isdigit((unsigned char)*q)) q++;
    }
    return q;
}

// The string `payment_id` of the JSON object in `body` (malloc'ed), or NULL if the body
// is not JSON or has none, as serde_json's `Value::get(..).as_str()` would find it.
static char *answer_payment_id(const uint8_t *body, size_t len) {
    json_t j = {(const char *)body + len};
    const char *p = skip_white(&j, (const char *)body);
    char *found = NULL;
    const char *end = p < j.end && *p == '{' ? json_members(&j, p, '}', 0, "payment_id", &found)
                                             : json_value(&j, p, 0);
    if (!end || skip_white(&j, end) != j.end) {
        free(found);
        return NULL;
    }
    return found;
}

// --- The handler ----------------------------------------------------------------------

// Charges `order` with the provider at config `provider_url`: true with its payment ID
// in `*id` (malloc'ed), or false with `err` filled.
static bool charge(const sluice_message_t *msg, const order_t *order, char **id, sluice_failure_t *err) {
    char *url = sluice_config("provider_url");
    if (!url) return sluice_reject(err, "config provider_url is not set");
    size_t len;
    char *body = charge_body(order, &len);
    char *key = sluice_idempotency_key(msg);
    sluice_http_response_t response;
    char *error;
    bool sent = sluice_http_post(url, "application/json", key, (const uint8_t *)body, len, &response, &error);
    free(key);
    free(body);
    free(url);
    if (!sent) {
        sluice_retry(err, "the payment provider could not be reached: %s", error);
        free(error);
        return false;
    }
    unsigned status = response.status;
    bool ok = status >= 200 && status <= 299;
    if (!ok && (status == 429 || (status >= 500 && status <= 599)))
        sluice_retry(err, "the payment provider answered %u", status);
    else if (!ok)
        sluice_reject(err, "the payment provider refused the charge (%u)", status);
    else if (!(*id = answer_payment_id(response.body, response.body_len)))
        ok = sluice_retry(err, "the payment provider's answer has no payment_id");
    sluice_http_response_free(&response);
    return ok;
}

static bool pay(const sluice_message_t *msg, sluice_outputs_t *out, sluice_failure_t *err) {
    order_t order;
    if (!read_order(msg, &order, err)) return false;
    char *id;
    bool ok = charge(msg, &order, &id, err);
    if (ok) {
        add_payment(out, &order, id);
        free(id);
    }
    order_free(&order);
    return ok;
}

bool sluice_handle(const sluice_message_t *msg, sluice_outputs_t *out, sluice_failure_t *err) {
    return handle_logged(msg, out, err, pay);
}
