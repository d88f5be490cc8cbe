// The Sluice C helper layer: see sluice.h.
#include "sluice.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static void *checked(void *p) {
    // Out of memory inside a sandbox: trap, and the host names the memory limit.
    if (!p) __builtin_trap();
    return p;
}

static char *vformat(const char *format, va_list args) {
    va_list copy;
    va_copy(copy, args);
    int len = vsnprintf(NULL, 0, format, copy);
    va_end(copy);
    if (len < 0) len = 0;
    char *text = checked(malloc((size_t)len + 1));
    vsnprintf(text, (size_t)len + 1, format, args);
    return text;
}

// Takes ownership of `text` into a component string.
static handler_string_t own(char *text) {
    handler_string_t s = {(uint8_t *)text, strlen(text)};
    return s;
}

// The export: calls sluice_handle, then frees the message, and the outputs if it failed
// (on success the bindings free them after the host has copied them).
bool exports_handler_handle(handler_message_t *msg, handler_list_output_t *ret,
                            handler_failure_t *err) {
    ret->ptr = NULL;
    ret->len = 0;
    bool ok = sluice_handle(msg, ret, err);
    handler_message_free(msg);
    if (!ok) handler_list_output_free(ret);
    return ok;
}

const handler_list_u8_t *sluice_field(const sluice_message_t *msg, const char *name) {
    size_t len = strlen(name);
    for (size_t i = msg->fields.len; i > 0; i--) {
        const sluice_plugin_types_field_t *f = &msg->fields.ptr[i - 1];
        if (f->f0.len == len && memcmp(f->f0.ptr, name, len) == 0) return &f->f1;
    }
    return NULL;
}

char *sluice_text(const sluice_message_t *msg, const char *name) {
    const handler_list_u8_t *value = sluice_field(msg, name);
    return value ? sluice_lossy(value->ptr, value->len, NULL) : NULL;
}

// The length of the valid UTF-8 sequence at `s` (at most `n` bytes), or 0 if there is
// none; `*bad` then gets the length of its maximal valid prefix (at least 1), which
// becomes one U+FFFD, as the Unicode standard recommends and Rust does.
static size_t utf8_sequence(const uint8_t *s, size_t n, size_t *bad) {
    uint8_t c = s[0];
    size_t need;
    uint8_t lo = 0x80, hi = 0xBF;
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) need = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        need = 3;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        need = 4;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
    } else {
        *bad = 1;
        return 0;
    }
    size_t i = 1;
    for (; i < need && i < n; i++) {
        uint8_t b = s[i];
        uint8_t min = i == 1 ? lo : 0x80, max = i == 1 ? hi : 0xBF;
        if (b < min || b > max) break;
    }
    if (i == need) return need;
    *bad = i;
    return 0;
}

char *sluice_lossy(const uint8_t *bytes, size_t len, size_t *text_len) {
    // Each bad byte becomes at most 3 bytes (U+FFFD).
    char *text = checked(malloc(len * 3 + 1));
    size_t w = 0;
    for (size_t r = 0; r < len;) {
        size_t bad = 0;
        size_t ok = utf8_sequence(bytes + r, len - r, &bad);
        if (ok) {
            memcpy(text + w, bytes + r, ok);
            w += ok;
            r += ok;
        } else {
            memcpy(text + w, "\xEF\xBF\xBD", 3);
            w += 3;
            r += bad;
        }
    }
    text[w] = '\0';
    if (text_len) *text_len = w;
    return text;
}

sluice_output_t *sluice_output(sluice_outputs_t *out, const char *target) {
    out->ptr = checked(realloc(out->ptr, (out->len + 1) * sizeof(sluice_output_t)));
    sluice_output_t *o = &out->ptr[out->len++];
    handler_string_dup(&o->target, target);
    o->fields.ptr = NULL;
    o->fields.len = 0;
    return o;
}

void sluice_set_bytes(sluice_output_t *output, const char *name, const uint8_t *value,
                      size_t len) {
    sluice_plugin_types_list_field_t *fields = &output->fields;
    fields->ptr =
        checked(realloc(fields->ptr, (fields->len + 1) * sizeof(sluice_plugin_types_field_t)));
    sluice_plugin_types_field_t *f = &fields->ptr[fields->len++];
    handler_string_dup(&f->f0, name);
    f->f1.ptr = checked(malloc(len ? len : 1));
    memcpy(f->f1.ptr, value, len);
    f->f1.len = len;
}

void sluice_set(sluice_output_t *output, const char *name, const char *value) {
    sluice_set_bytes(output, name, (const uint8_t *)value, strlen(value));
}

bool sluice_reject(sluice_failure_t *err, const char *format, ...) {
    va_list args;
    va_start(args, format);
    err->tag = SLUICE_PLUGIN_TYPES_FAILURE_REJECT;
    err->val.reject = own(vformat(format, args));
    va_end(args);
    return false;
}

bool sluice_retry(sluice_failure_t *err, const char *format, ...) {
    va_list args;
    va_start(args, format);
    err->tag = SLUICE_PLUGIN_TYPES_FAILURE_RETRY;
    err->val.retry = own(vformat(format, args));
    va_end(args);
    return false;
}

void sluice_log(sluice_plugin_host_level_t level, const char *format, ...) {
    va_list args;
    va_start(args, format);
    handler_string_t line = own(vformat(format, args));
    va_end(args);
    sluice_plugin_host_log(level, &line);
    handler_string_free(&line);
}

char *sluice_config(const char *key) {
    handler_string_t k = {(uint8_t *)key, strlen(key)};
    handler_string_t value;
    if (!sluice_plugin_host_config(&k, &value)) return NULL;
    char *text = checked(malloc(value.len + 1));
    memcpy(text, value.ptr, value.len);
    text[value.len] = '\0';
    handler_string_free(&value);
    return text;
}

char *sluice_config_or(const char *key, const char *fallback) {
    char *value = sluice_config(key);
    return value ? value : checked(strdup(fallback));
}

char *sluice_quote(const char *text, size_t len) {
    // The longest escape, \u{7f}, is 6 bytes for one.
    char *quoted = checked(malloc(len * 6 + 3));
    size_t w = 0;
    quoted[w++] = '"';
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)text[i];
        switch (c) {
        case '"': w += (size_t)sprintf(quoted + w, "\\\""); break;
        case '\\': w += (size_t)sprintf(quoted + w, "\\\\"); break;
        case '\n': w += (size_t)sprintf(quoted + w, "\\n"); break;
        case '\r': w += (size_t)sprintf(quoted + w, "\\r"); break;
        case '\t': w += (size_t)sprintf(quoted + w, "\\t"); break;
        case '\0': w += (size_t)sprintf(quoted + w, "\\0"); break;
        default:
            if (c < 0x20 || c == 0x7F) w += (size_t)sprintf(quoted + w, "\\u{%x}", c);
            else quoted[w++] = (char)c;
        }
    }
    quoted[w++] = '"';
    quoted[w] = '\0';
    return quoted;
}

// --- Handler state ------------------------------------------------------------------------

static handler_string_t borrow(const char *text) {
    handler_string_t s = {(uint8_t *)text, strlen(text)};
    return s;
}

static handler_list_u8_t borrow_bytes(const char *text) {
    handler_list_u8_t s = {(uint8_t *)text, strlen(text)};
    return s;
}

// Turns a state error into the entry's failure; returns false.
static bool state_failed(sluice_failure_t *err, sluice_plugin_state_state_error_t *e) {
    handler_string_t *reason = &e->val.forbidden; // every case carries a string
    bool ok = e->tag == SLUICE_PLUGIN_STATE_STATE_ERROR_UNAVAILABLE
                  ? sluice_retry(err, "%.*s", (int)reason->len, (const char *)reason->ptr)
                  : sluice_reject(err, "%.*s", (int)reason->len, (const char *)reason->ptr);
    sluice_plugin_state_state_error_free(e);
    return ok;
}

static char *take_text(handler_option_list_u8_t *value) {
    if (!value->is_some) return NULL;
    char *text = checked(malloc(value->val.len + 1));
    memcpy(text, value->val.ptr, value->val.len);
    text[value->val.len] = '\0';
    handler_list_u8_free(&value->val);
    return text;
}

bool sluice_state_get(sluice_failure_t *err, const char *key, char **value) {
    handler_string_t k = borrow(key);
    handler_option_list_u8_t ret;
    sluice_plugin_state_state_error_t e;
    if (!sluice_plugin_state_get(&k, &ret, &e)) return state_failed(err, &e);
    *value = take_text(&ret);
    return true;
}

bool sluice_state_set(sluice_failure_t *err, const char *key, const char *value) {
    handler_string_t k = borrow(key);
    handler_list_u8_t v = borrow_bytes(value);
    sluice_plugin_state_state_error_t e;
    return sluice_plugin_state_set(&k, &v, &e) || state_failed(err, &e);
}

bool sluice_state_delete(sluice_failure_t *err, const char *key) {
    handler_string_t k = borrow(key);
    sluice_plugin_state_state_error_t e;
    return sluice_plugin_state_delete(&k, &e) || state_failed(err, &e);
}

bool sluice_state_incr(sluice_failure_t *err, const char *key, int64_t delta, int64_t *sum) {
    handler_string_t k = borrow(key);
    sluice_plugin_state_state_error_t e;
    return sluice_plugin_state_incr(&k, delta, sum, &e) || state_failed(err, &e);
}

bool sluice_state_add(sluice_failure_t *err, const char *key, int64_t delta) {
    handler_string_t k = borrow(key);
    sluice_plugin_state_state_error_t e;
    return sluice_plugin_state_add(&k, delta, &e) || state_failed(err, &e);
}

bool sluice_state_hget(sluice_failure_t *err, const char *key, const char *field, char **value) {
    handler_string_t k = borrow(key), f = borrow(field);
    handler_option_list_u8_t ret;
    sluice_plugin_state_state_error_t e;
    if (!sluice_plugin_state_hget(&k, &f, &ret, &e)) return state_failed(err, &e);
    *value = take_text(&ret);
    return true;
}

bool sluice_state_hset(sluice_failure_t *err, const char *key, const char *field,
                       const char *value) {
    handler_string_t k = borrow(key), f = borrow(field);
    handler_list_u8_t v = borrow_bytes(value);
    sluice_plugin_state_state_error_t e;
    return sluice_plugin_state_hset(&k, &f, &v, &e) || state_failed(err, &e);
}

bool sluice_state_hgetall(sluice_failure_t *err, const char *key,
                          handler_list_tuple2_string_list_u8_t *fields) {
    handler_string_t k = borrow(key);
    sluice_plugin_state_state_error_t e;
    return sluice_plugin_state_hgetall(&k, fields, &e) || state_failed(err, &e);
}
